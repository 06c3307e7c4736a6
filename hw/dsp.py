"""A multiplier with registered operands and a registered product, for any target or as the
Lattice ECP5's multiplier blocks with their own registers.

The generation target is Amaranth's ``platform`` argument: ``None`` (simulators, any synthesis
tool) or :data:`ECP5` (the FPGA flows of ``fpga/``, :func:`hw.rtlcache.top_verilog`'s
``target``). Both give the same values in the same cycles; only the Verilog differs:

* generic: a register for each operand, then the product ``a * b`` in a register;
* :data:`ECP5`: the operand split in pieces of at most 18 bits, each piece's product in a
  ``MULT18X18D`` block with its input and output registers (``REG_INPUTA_CLK``,
  ``REG_INPUTB_CLK``, ``REG_OUTPUT_CLK``; clock enable ``CE0``), and the pieces' products added
  in the fabric after them. The block's 3.9 ns multiplier array then lies between two of the
  block's own registers, and the wires into and out of the block are paths of their own;
  without them a block placed far from its logic is one path of wire, block and wire
  (docs/fpga.md 0.6). Simulating this Verilog needs a model of the primitive:
  ``fpga/models/MULT18X18D.v`` (the subset used here).
"""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Signal, signed

from .common import adder_tree

__all__ = ["Ecp5", "ECP5", "is_ecp5", "registered_product", "PRODUCT_REGS", "DSP_WIDTH"]

#: Registers between a :func:`registered_product`'s operands and its product (the latency in
#: enabled cycles).
PRODUCT_REGS = 2
#: Operand bits of one ECP5 multiplier block (18 x 18, two's complement or unsigned per input).
DSP_WIDTH = 18


class Ecp5:
    """Marker of Verilog generated for Lattice ECP5 synthesis (Amaranth's ``platform``)."""

    name = "ecp5"

    def __repr__(self):
        return "ECP5"


#: The ECP5 generation target.
ECP5 = Ecp5()


def is_ecp5(platform):
    """Whether ``platform`` (an ``elaborate`` argument) is the :data:`ECP5` target."""
    return isinstance(platform, Ecp5)


def registered_product(m, a, b, *, en, width, name, platform=None):
    """The low ``width`` bits (signed) of ``a * b`` (``a`` signed or unsigned, ``b``
    unsigned, at most 17 bits): the operands are registered when ``en``, their product is
    registered when ``en``; returns a value that holds the product of the operands of
    :data:`PRODUCT_REGS` enabled cycles before (see the module docstring for the ECP5 form:
    there the returned value is the adder of the blocks' registered products)."""
    if b.shape().signed or len(b) > DSP_WIDTH - 1:
        raise ValueError(f"b must be unsigned and at most {DSP_WIDTH - 1} bits, "
                         f"got {b.shape()}")
    if not is_ecp5(platform):
        ra = Signal.like(a, name=f"{name}_a")
        rb = Signal.like(b, name=f"{name}_b")
        product = Signal(signed(width), name=f"{name}_p")
        with m.If(en):
            m.d.sync += [ra.eq(a), rb.eq(b), product.eq(ra * rb)]
        return product
    # pieces of a: unsigned 17-bit pieces from the bottom, the top piece (up to 18 bits) with
    # a's sign; each piece's product is shifted back into place
    step = DSP_WIDTH - 1
    pieces, lo = [], 0
    while len(a) - lo > DSP_WIDTH:
        pieces.append((lo, a[lo:lo + step], False))
        lo += step
    pieces.append((lo, a[lo:], a.shape().signed))
    terms = []
    for k, (shift, piece, signed_piece) in enumerate(pieces):
        if shift >= width:
            continue
        p = Signal(signed(2 * DSP_WIDTH), name=f"{name}_p{k}")
        m.submodules[f"{name}_dsp{k}"] = Instance(
            "MULT18X18D",
            p_REG_INPUTA_CLK="CLK0", p_REG_INPUTB_CLK="CLK0", p_REG_OUTPUT_CLK="CLK0",
            p_REG_INPUTA_CE="CE0", p_REG_INPUTB_CE="CE0", p_REG_OUTPUT_CE="CE0",
            p_REG_INPUTA_RST="RST0", p_REG_INPUTB_RST="RST0", p_REG_OUTPUT_RST="RST0",
            p_GSR="DISABLED", p_RESETMODE="SYNC",
            **_bits("i", "A", _extend(piece, signed_piece)),
            **_bits("i", "B", _extend(b, False)),
            **_bits("i", "C", Const(0, DSP_WIDTH)),
            i_SIGNEDA=Const(int(signed_piece), 1), i_SIGNEDB=Const(0, 1),
            i_SOURCEA=Const(0, 1), i_SOURCEB=Const(0, 1),
            i_CLK0=ClockSignal(), i_CE0=en, i_RST0=Const(0, 1),
            **_bits("o", "P", p),
        )
        terms.append(p << shift)
    out = Signal(signed(width), name=f"{name}_sum")
    m.d.comb += out.eq(adder_tree(terms))
    return out


def _extend(value, signed_value):
    """``value`` sign- or zero-extended to :data:`DSP_WIDTH` bits."""
    fill = DSP_WIDTH - len(value)
    top = value[-1] if signed_value else Const(0, 1)
    return Cat(value, top.replicate(fill)) if fill else value


def _bits(direction, port, value):
    """One Instance argument per bit: ``MULT18X18D``'s buses are single-bit ports."""
    return {f"{direction}_{port}{k}": value[k] for k in range(len(value))}

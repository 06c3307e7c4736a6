"""Fixed-point stage of the PPU (:class:`hw.ppu.PPU`): per-channel scale, bias, residual,
saturation and ReLU of one element per cycle (docs/numerics.md section 5)."""

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

import numpy as np

from golden import intref
from golden import numerics as nx

from .common import ACC_WIDTH, Format, adder_tree, barrel_shr, check_int, validating

__all__ = ["PPUFixedPoint", "FIXED_LATENCY", "SPLIT_REGISTERS", "fixed_latency",
           "fixed_point_value", "partial_products", "product_sum", "shift_masks", "coarse_shift",
           "fine_shift",
           "clamped_sum", "fp8_thresholds", "scale_code_layout", "scale_code_parts_layout",
           "scale_code_parts", "scale_code_of_parts",
           "ppu_in_layout", "ppu_value_layout"]

#: Registers between the fixed-point stage's input and output: the product register ``f1``
#: (``acc * k``, with ``bias + residual``) and the fixed-point register ``f2`` (``Y``).
FIXED_LATENCY = 2

#: Registers that ``split`` adds (:func:`fixed_latency`): the input ``f0``, the partial
#: products, the coarse shift, the fine shift and ``|Y|``.
SPLIT_REGISTERS = 5

_Y_MAX = 2 ** (intref.PPU_WIDTH - 1) - 1
_Y_MIN = -(2 ** (intref.PPU_WIDTH - 1))
_PART_BITS = 16             # accumulator bits per partial product (one 18x18 multiplier)
_COARSE_BITS = 3            # the shift's low bits, done by the fine shifter


def partial_products(acc, k):
    """``acc * k`` as the products of ``k`` with the accumulator's 16-bit parts (the top one
    signed, the others unsigned): each fits one 18 x 18 multiplier block.
    :func:`product_sum` adds them."""
    parts = []
    for lo in range(0, ACC_WIDTH, _PART_BITS):
        part = acc[lo:lo + _PART_BITS]
        parts.append((part.as_signed() if lo + _PART_BITS >= ACC_WIDTH else part) * k)
    return parts


def product_sum(parts):
    """The sum of :func:`partial_products`, ``acc * k``: a tree of two adder levels."""
    return adder_tree([p << (i * _PART_BITS) for i, p in enumerate(parts)])


def shift_masks(shift):
    """The masks of the shift (a function of the layer's configuration, which a pipeline may
    register) that :func:`coarse_shift` and :func:`fine_shift` use: ``at`` (bit ``b``: ``b ==
    shift - 1``), ``below`` (``b < shift - 1``) and ``from_low`` (``b >=`` the shift's low
    bits), as a dict of values."""
    fb, low = intref.SCALE_SHIFT_MAX, shift[:_COARSE_BITS]
    return {"at": Cat(*(shift == b + 1 for b in range(fb))),
            "below": Cat(*(shift > b + 1 for b in range(fb - 1))),
            "from_low": Cat(*(low <= b for b in range((1 << _COARSE_BITS) - 1)))}


def coarse_shift(m, prod, shift, masks):
    """The first half of :func:`fixed_point_value`'s ``prod * 2**-shift``: ``prod`` shifted
    right (arithmetic) by the shift's multiple of 8, and the two bits the RNE decision needs
    from the bits shifted out in all: ``half`` (``prod[shift - 1]``) and ``sticky`` (any
    one below it), as the signals ``(coarse, half, sticky)``. ``half`` and ``sticky`` are
    ``prod`` masked with :func:`shift_masks`' ``at`` and ``below``, AND-OR trees, not a
    64-way multiplexer."""
    fb = intref.SCALE_SHIFT_MAX
    coarse = barrel_shr(m, prod, shift[_COARSE_BITS:], 1 << _COARSE_BITS, "fix_coarse")
    return coarse, (prod[:fb] & masks["at"]).any(), (prod[:fb - 1] & masks["below"]).any()


def fine_shift(m, coarse, half, sticky, shift, masks):
    """The second half: ``coarse`` shifted right by the shift's low bits, as
    :func:`clamped_sum`'s signals ``(whole, up, big, neg)``: the whole part cut to
    PPU_WIDTH + 2 signed bits, the RNE decision (round up: above half, or half and the whole
    part odd), ``big`` (the whole part does not fit those bits: the value saturates whatever
    is added) and the sign. ``big`` is read from ``coarse`` beside the shifter: a bit at or
    above ``nb - 1 + low`` that differs from the sign, ``low`` the shift's low bits
    (:func:`shift_masks`' ``from_low``)."""
    nb, steps = intref.PPU_WIDTH + 2, 1 << _COARSE_BITS
    whole = barrel_shr(m, coarse, shift[:_COARSE_BITS], 1, "fix_fine")
    differs = Signal(len(coarse) - nb + 1, name="fix_differs")  # bit t: coarse[nb - 1 + t]
    m.d.comb += differs.eq(coarse[nb - 1:] ^ coarse[-1].replicate(len(differs)))
    big = differs[steps - 1:].any() | (differs[:steps - 1] & masks["from_low"]).any()
    up = half & (sticky | whole[0])
    return whole[:nb].as_signed(), up, big, coarse[-1]


def clamped_sum(m, whole, up, big, neg, add):
    """The last part of :func:`fixed_point_value`: ``clamp(whole + up + add)`` from
    :func:`fine_shift`'s signals, as ``(value, saturated)``."""
    width, nb = intref.PPU_WIDTH, intref.PPU_WIDTH + 2
    ysum = Signal(signed(nb + 2))
    m.d.comb += ysum.eq(whole + up + add)
    top = ysum[width - 1:]                    # the bits a 32-bit value sign-extends
    over = Mux(big, ~neg, ~ysum[-1] & top.any())
    under = Mux(big, neg, ysum[-1] & ~top.all())
    return Mux(over, _Y_MAX, Mux(under, _Y_MIN, ysum[:width].as_signed())), over | under


def fixed_point_value(m, prod, add, shift):
    """``clamp(RNE(prod * 2**-shift) + add)`` to signed PPU_WIDTH bits, combinational: returns
    ``(value, saturated)``. ``add`` (bias + residual) has PPU_WIDTH + 1 bits.

    The whole part of the shifted product has 80 bits, but since ``|add| <= 2**32`` a whole
    part outside 34 signed bits saturates whatever is added: the sum needs 36 bits only (short
    carry chains), and the RNE decision and the clamp are bit reductions, not comparators.
    ``hw/test_ppu_blocks.py`` proves it equal to the full-width sum with a SAT solver. It is
    :func:`coarse_shift`, :func:`fine_shift` then :func:`clamped_sum` (which a pipeline can
    split)."""
    masks = shift_masks(shift)
    coarse, half, sticky = coarse_shift(m, prod, shift, masks)
    return clamped_sum(m, *fine_shift(m, coarse, half, sticky, shift, masks), add)


def fixed_latency(split):
    """Registers of :class:`PPUFixedPoint` (``split``: :data:`SPLIT_REGISTERS` more)."""
    return FIXED_LATENCY + SPLIT_REGISTERS * bool(split)


def fp8_thresholds(qmax):
    """``qmax * value * 2**16`` of the FP8 codes below the largest, rising with the code: a
    block's UINT4/INT4 scale is the count of those below its ``max |Y|``."""
    fp8 = nx.fp8_e4m3_decode(np.arange(nx.FP8_MAX_CODE + 1, dtype=np.uint8))
    t = [int(qmax * val * 2 ** intref.PPU_FRAC_BITS) for val in fp8[:nx.FP8_MAX_CODE]]
    assert t == sorted(t)
    return t


def scale_code_layout():
    """What a block's scale needs of one value ``|Y|``, ORed over the block's values
    (:class:`hw.ppu_queue.BlockQueue`'s ``running_scale``): ``below`` (bit ``c``: FP8 code
    ``c``'s threshold (:func:`fp8_thresholds`, of the output format) is below ``|Y|``, a
    thermometer code), ``above`` (bit ``b - 1``: ``|Y| >= 2**b``) and ``nz`` (``Y != 0``)."""
    return data.StructLayout({"below": nx.FP8_MAX_CODE, "above": intref.PPU_WIDTH - 1,
                              "nz": 1})


#: Bits of one comparison ``|y| > t`` in halves (:func:`scale_code_parts`).
_PART_LAYOUT = data.StructLayout({"gt_hi": 1, "eq_hi": 1, "gt_lo": 1,
                                  "lt_hi": 1, "eqn_hi": 1, "lt_lo": 1})
_HALF = intref.PPU_WIDTH // 2


def _code_thresholds():
    """The ``t`` of every bit of :func:`scale_code_layout` (``bit = |y| > t``), for UINT4 and
    for INT4 output (MXINT8 uses ``above`` and ``nz`` only)."""
    rest = [2 ** b - 1 for b in range(1, intref.PPU_WIDTH)] + [0]
    return [fp8_thresholds(qmax) + rest for qmax in (nx.UINT4_MAX, nx.INT4_MAX)]


def scale_code_parts_layout():
    """:func:`scale_code_layout`'s comparisons in halves: for each bit ``|y| > t``, ``y > t``
    and ``y < -t`` as the comparisons of ``y``'s signed high and unsigned low 16 bits with the
    constant's, which :func:`scale_code_of_parts` combines."""
    return data.ArrayLayout(_PART_LAYOUT, len(_code_thresholds()[0]))


def _nibble_compare(m, cache, x, name, c, op):
    """``x > c`` (``op`` "gt"), ``x < c`` ("lt") or ``x == c`` ("eq") for an unsigned value
    ``x`` of whole nibbles and a constant ``c``, as a balanced tree over the nibbles: each
    nibble's comparison with its digit of ``c`` is one LUT (a signal in ``cache``, shared by
    every constant with that digit), two nibbles combine in one more (the higher decides
    unless equal). A 16-bit comparison is three LUT levels, whatever Yosys' comparator
    mapping (a carry-lookahead whose depth ABC did not always recover)."""
    def nibble(i, kind):
        digit = (c >> (4 * i)) & 15
        key = (name, i, kind, digit)
        if key not in cache:
            part = x[4 * i:4 * i + 4]
            cache[key] = s = Signal(name=f"{name}_n{i}_{kind}{digit}")
            m.d.comb += s.eq({"gt": part > digit, "lt": part < digit,
                              "eq": part == digit}[kind])
        return cache[key]
    terms = [(nibble(i, "eq"), None if op == "eq" else nibble(i, op))
             for i in range(len(x) // 4)]  # (equal, decided) from the lowest nibble up
    while len(terms) > 1:
        pairs = []
        for i in range(0, len(terms) - 1, 2):
            (e_lo, d_lo), (e_hi, d_hi) = terms[i], terms[i + 1]
            pairs.append((e_hi & e_lo, None if d_hi is None else d_hi | e_hi & d_lo))
        terms = pairs + terms[len(terms) - len(terms) % 2:]
    eq, decided = terms[0]
    return eq if op == "eq" else decided


def scale_code_parts(m, y, out_format):
    """:func:`scale_code_parts_layout`'s bits of the signed 32-bit value ``y``: 16-bit
    constant comparisons (``|y| > t`` is ``y > t | y < -t``), so that they need not wait for
    ``|y|`` and each is a short cone (:func:`_nibble_compare`; the signed high half compared
    unsigned with its sign bit flipped)."""
    flip = 1 << (_HALF - 1)
    y_hi = Cat(y[_HALF:-1], ~y[-1])  # y's signed high half + 2**15, unsigned
    y_lo = y[:_HALF]
    cache = {}

    def hi(t, op):  # y_hi (signed) op t's high half
        return _nibble_compare(m, cache, y_hi, "code_hi", ((t >> _HALF) + flip) & 0xFFFF, op)

    def lo(t, op):
        return _nibble_compare(m, cache, y_lo, "code_lo", t & 0xFFFF, op)

    def parts(t):
        return Cat(hi(t, "gt"), hi(t, "eq"), lo(t, "gt"), hi(-t, "lt"), hi(-t, "eq"),
                   lo(-t, "lt"))
    uint4, int4 = _code_thresholds()
    return Cat(*[Mux(out_format == Format.UINT4, parts(tu), parts(ti)) if tu != ti
                 else parts(tu) for tu, ti in zip(uint4, int4)])


def scale_code_of_parts(parts):
    """:func:`scale_code_layout`'s bits from :func:`scale_code_parts` (a LUT level or two)."""
    return Cat(*[(p.gt_hi | p.eq_hi & p.gt_lo) | (p.lt_hi | p.eqn_hi & p.lt_lo)
                 for p in parts])


def ppu_in_layout(max_channels):
    """One channel of one output pixel: accumulator, its channel's scale mantissa ``k`` and
    ``bias``, the ``residual`` (ignored unless enabled), the channel index ``chan`` and ``last``
    (this channel ends an output block: block position ``block - 1`` or the last channel)."""
    return data.StructLayout({
        "acc": signed(ACC_WIDTH),
        "k": signed(intref.SCALE_MANT_BITS),
        "bias": signed(intref.PPU_WIDTH),
        "residual": signed(intref.PPU_WIDTH),
        "chan": range(max_channels),
        "last": 1,
    })


def ppu_value_layout(max_channels, codes=False):
    """One PPU value ``Y`` as the quantizer uses it: its magnitude ``mag`` (``|Y|``) and sign
    ``neg`` (``Y < 0``), ``sat`` (``Y`` was clamped), the element's ``chan`` and ``last``, and
    with ``codes`` its scale comparisons in halves ``code`` (:func:`scale_code_parts_layout`)."""
    return data.StructLayout({
        "mag": unsigned(intref.PPU_WIDTH),
        "neg": 1,
        "sat": 1,
        "chan": range(max_channels),
        "last": 1,
        **({"code": scale_code_parts_layout()} if codes else {}),
    })


class PPUFixedPoint(wiring.Component):
    """The PPU's fixed-point value of one element per cycle, exactly golden.intref.ppu_fixed.

    Parameters (keyword-only)
    -------------------------
    max_channels : int, 1..4096
        Largest channel index + 1 (width of ``chan``).
    split : bool (default False)
        :data:`SPLIT_REGISTERS` registers more (:func:`fixed_latency`), each stage short
        enough for an FPGA's clock: the input (``f0``), the partial products (``pp``, one
        multiplier block each), the coarse and the fine shift (``c``, ``s``) and ``|Y|``
        (``f3``, so that ``o``'s payload is a register).
    scale_codes : bool (default False)
        Also compute each value's scale comparisons in halves (``o.payload.code``,
        :func:`scale_code_parts`; with ``split`` into ``f3``) for a queue with
        ``running_scale``: then ``out_format`` is an input.

    Members
    -------
    shift : In(range(64)), relu : In(1), res_en : In(1), (scale_codes) out_format : In(Format)
        Layer configuration, stable while elements are in flight.
    i : In(stream.Signature(ppu_in_layout(max_channels)))
        One channel per transfer.
    o : Out(stream.Signature(ppu_value_layout(max_channels, scale_codes)))
        Its value ``Y = RNE(acc * k * 2**-shift) + bias (+ residual if res_en)``, clamped to
        signed 32 bits (``sat``), ``max(Y, 0)`` if ``relu``, as ``|Y|`` and the sign; ``chan``
        and ``last`` passed through.

    Timing and backpressure
    -----------------------
    Registers (:func:`fixed_latency`) that move together, empty or not, in every cycle with
    ``o.ready``: with ``split`` the input register ``f0`` and the partial products ``pp``
    (:func:`partial_products`), the product register ``f1`` (``acc * k``; ``bias +
    residual``), with ``split`` the shift registers ``c`` (:func:`coarse_shift`) and ``s``
    (:func:`fine_shift`), the fixed-point register ``f2`` (:func:`clamped_sum`, ReLU) and
    with ``split`` the magnitude register
    ``f3``, whose value is on ``o`` (without ``split``, ``|Y|`` and the sign are
    combinational after ``f2``). An element taken in cycle ``n`` is on ``o`` in cycle ``n +
    fixed_latency(split)`` if ``o`` was ready in the cycles between. ``i.ready = o.ready``;
    ``o.valid`` is a register.
    """

    def __init__(self, *, max_channels, split=False, scale_codes=False):
        with validating(self):
            self.max_channels = check_int("max_channels", max_channels, 1, 4096)
        self.split, self.scale_codes = bool(split), bool(scale_codes)
        super().__init__({
            "shift": In(range(intref.SCALE_SHIFT_MAX + 1)),
            "relu": In(1),
            "res_en": In(1),
            **({"out_format": In(Format)} if scale_codes else {}),
            "i": In(stream.Signature(ppu_in_layout(max_channels))),
            "o": Out(stream.Signature(ppu_value_layout(max_channels, scale_codes))),
        })

    def elaborate(self, platform):
        m = Module()
        p = self.i.payload
        width = intref.PPU_WIDTH
        go = self.o.ready  # all registers move together
        m.d.comb += self.i.ready.eq(go)
        tag = {"valid": 1, "chan": range(self.max_channels), "last": 1}

        def move(reg, src, **values):  # the register takes src's tag and ``values``
            with m.If(go):
                m.d.sync += [getattr(reg, n).eq(getattr(src, n)) for n in tag
                             if n not in values]
                m.d.sync += [getattr(reg, n).eq(v) for n, v in values.items()]

        prod_shape = signed(ACC_WIDTH + intref.SCALE_MANT_BITS)
        if self.split:
            # ---- f0: the input (registered: the serializer's block RAM outputs)
            f0 = Signal(data.StructLayout({**tag, "acc": signed(ACC_WIDTH),
                                           "k": signed(intref.SCALE_MANT_BITS),
                                           "bias": signed(width), "res": signed(width)}))
            move(f0, p, valid=self.i.valid, acc=p.acc, k=p.k, bias=p.bias,
                 res=Mux(self.res_en, p.residual, 0))
            # ---- pp: the partial products, one multiplier block each (registered)
            parts = partial_products(f0.acc, f0.k)
            pp = Signal(data.StructLayout({
                **tag, **{f"p{i}": signed(len(v)) for i, v in enumerate(parts)},
                "add": signed(width + 1)}))
            move(pp, f0, add=f0.bias + f0.res, **{f"p{i}": v for i, v in enumerate(parts)})
            # ---- f1: their sum, the product
            f1 = Signal(data.StructLayout({**tag, "prod": prod_shape, "add": signed(width + 1)}))
            move(f1, pp, add=pp.add,
                 prod=product_sum([pp[f"p{i}"] for i in range(len(parts))]))
            # the shift's masks, registered in every cycle (the shift, a layer constant, is
            # stable from before an element enters f0; the masks are used four registers on)
            masks = {}
            for name, value in shift_masks(self.shift).items():
                masks[name] = Signal(len(value), name=f"shift_{name}")
                m.d.sync += masks[name].eq(value)
            # ---- c: the coarse shift (registered)
            coarse, half, sticky = coarse_shift(m, f1.prod, self.shift, masks)
            c = Signal(data.StructLayout({**tag, "coarse": prod_shape, "half": 1, "sticky": 1,
                                          "add": signed(width + 1)}))
            move(c, f1, coarse=coarse, half=half, sticky=sticky, add=f1.add)
            # ---- s: the fine shift (registered)
            shifted = fine_shift(m, c.coarse, c.half, c.sticky, self.shift, masks)
            s = Signal(data.StructLayout({
                **tag, "whole": signed(len(shifted[0])), "up": 1, "big": 1, "neg": 1,
                "add": signed(width + 1)}))
            move(s, c, add=c.add, **dict(zip(("whole", "up", "big", "neg"), shifted)))
            yclip, ysat = clamped_sum(m, s.whole, s.up, s.big, s.neg, s.add)
            src = s
        else:
            # ---- f1: the product (registered)
            f1 = Signal(data.StructLayout({**tag, "prod": prod_shape, "add": signed(width + 1)}))
            move(f1, p, valid=self.i.valid, prod=p.acc * p.k,
                 add=p.bias + Mux(self.res_en, p.residual, 0))
            yclip, ysat = fixed_point_value(m, f1.prod, f1.add, self.shift)
            src = f1
        # ---- f2: round, add, clamp, ReLU (registered)
        f2 = Signal(data.StructLayout({**tag, "y": signed(width), "sat": 1}))
        move(f2, src, sat=ysat, y=Mux(self.relu & (yclip < 0), 0, yclip))
        y = f2.y
        yabs = Signal(unsigned(width))
        m.d.comb += yabs.eq(Mux(y < 0, -y, y))

        # ---- (split: f3, |Y| registered) the output
        out = self.o.payload
        code = {"code": scale_code_parts(m, y, self.out_format)} if self.scale_codes else {}
        if self.split:
            f3 = Signal(data.StructLayout({
                **tag, "mag": unsigned(width), "neg": 1, "sat": 1,
                **({"code": scale_code_parts_layout()} if code else {})}))
            move(f3, f2, mag=yabs, neg=y < 0, sat=f2.sat, **code)
            code = {"code": f3.code} if code else {}
            m.d.comb += [out.mag.eq(f3.mag), out.neg.eq(f3.neg), out.sat.eq(f3.sat)]
            last = f3
        else:
            m.d.comb += [out.mag.eq(yabs), out.neg.eq(y < 0), out.sat.eq(f2.sat)]
            last = f2
        m.d.comb += [out.code.eq(v) for v in code.values()]
        m.d.comb += [self.o.valid.eq(last.valid), out.chan.eq(last.chan),
                     out.last.eq(last.last)]
        return m

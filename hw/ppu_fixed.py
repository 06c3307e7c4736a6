"""Fixed-point stage of the PPU (:class:`hw.ppu.PPU`): per-channel scale, bias, residual,
saturation and ReLU of one element per cycle (docs/numerics.md section 5)."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import intref

from .common import ACC_WIDTH, barrel_shl, check_int, validating

__all__ = ["PPUFixedPoint", "FIXED_LATENCY", "fixed_latency", "fixed_point_value",
           "shifted_product", "clamped_sum", "ppu_in_layout", "ppu_value_layout"]

#: Registers between the fixed-point stage's input and output: the product register ``f1``
#: (``acc * k``, with ``bias + residual``) and the fixed-point register ``f2`` (``Y``).
FIXED_LATENCY = 2

_Y_MAX = 2 ** (intref.PPU_WIDTH - 1) - 1
_Y_MIN = -(2 ** (intref.PPU_WIDTH - 1))


def shifted_product(m, prod, shift):
    """The first half of :func:`fixed_point_value`: ``prod * 2**-shift`` as the signals
    ``(whole, up, big, neg)``, its whole part cut to PPU_WIDTH + 2 signed bits, the RNE
    decision (round up), ``big`` (the whole part does not fit those bits: the value saturates
    whatever is added) and the sign."""
    width, fb = intref.PPU_WIDTH, intref.SCALE_SHIFT_MAX
    lsh = Signal(range(fb + 1))
    m.d.comb += lsh.eq(fb - shift)
    wide = barrel_shl(m, prod, lsh, fb, "fix")
    whole = wide[fb:].as_signed()
    frac = wide[:fb]
    # RNE: up if frac > half, or frac == half and whole is odd
    up = frac[fb - 1] & (frac[:fb - 1].any() | whole[0])
    nb = width + 2
    big = ~(whole[nb - 1:].all() | ~whole[nb - 1:].any())
    return whole[:nb].as_signed(), up, big, whole[-1]


def clamped_sum(m, whole, up, big, neg, add):
    """The second half of :func:`fixed_point_value`: ``clamp(whole + up + add)`` from
    :func:`shifted_product`'s signals, as ``(value, saturated)``."""
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
    :func:`shifted_product` then :func:`clamped_sum` (which a pipeline can split)."""
    return clamped_sum(m, *shifted_product(m, prod, shift), add)


def fixed_latency(split):
    """Registers of :class:`PPUFixedPoint` (``split``: the shifted product's and ``|Y|``'s
    registers besides ``f1`` and ``f2``)."""
    return FIXED_LATENCY + 2 * bool(split)


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


def ppu_value_layout(max_channels):
    """One PPU value ``Y`` as the quantizer uses it: its magnitude ``mag`` (``|Y|``) and sign
    ``neg`` (``Y < 0``), ``sat`` (``Y`` was clamped), and the element's ``chan`` and ``last``."""
    return data.StructLayout({
        "mag": unsigned(intref.PPU_WIDTH),
        "neg": 1,
        "sat": 1,
        "chan": range(max_channels),
        "last": 1,
    })


class PPUFixedPoint(wiring.Component):
    """The PPU's fixed-point value of one element per cycle, exactly golden.intref.ppu_fixed.

    Parameters (keyword-only)
    -------------------------
    max_channels : int, 1..4096
        Largest channel index + 1 (width of ``chan``).
    split : bool (default False)
        Two registers more (:func:`fixed_latency`): the shifted product (``s``, between the
        shifter and the sum) and ``|Y|`` (``f3``, so that ``o``'s payload is a register).

    Members
    -------
    shift : In(range(64)), relu : In(1), res_en : In(1)
        Layer configuration, stable while elements are in flight.
    i : In(stream.Signature(ppu_in_layout(max_channels)))
        One channel per transfer.
    o : Out(stream.Signature(ppu_value_layout(max_channels)))
        Its value ``Y = RNE(acc * k * 2**-shift) + bias (+ residual if res_en)``, clamped to
        signed 32 bits (``sat``), ``max(Y, 0)`` if ``relu``, as ``|Y|`` and the sign; ``chan``
        and ``last`` passed through.

    Timing and backpressure
    -----------------------
    Registers (:func:`fixed_latency`) that move together, empty or not, in every cycle with
    ``o.ready``: the product register ``f1`` (``acc * k``; ``bias + residual``), with
    ``split`` the shifted-product register ``s`` (:func:`shifted_product`), the fixed-point
    register ``f2`` (round, add, clamp, ReLU) and with ``split`` the magnitude register
    ``f3``, whose value is on ``o`` (without ``split``, ``|Y|`` and the sign are
    combinational after ``f2``). An element taken in cycle ``n`` is on ``o`` in cycle ``n +
    fixed_latency(split)`` if ``o`` was ready in the cycles between. ``i.ready = o.ready``;
    ``o.valid`` is a register.
    """

    def __init__(self, *, max_channels, split=False):
        with validating(self):
            self.max_channels = check_int("max_channels", max_channels, 1, 4096)
        self.split = bool(split)
        super().__init__({
            "shift": In(range(intref.SCALE_SHIFT_MAX + 1)),
            "relu": In(1),
            "res_en": In(1),
            "i": In(stream.Signature(ppu_in_layout(max_channels))),
            "o": Out(stream.Signature(ppu_value_layout(max_channels))),
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

        # ---- f1: the product (registered)
        f1 = Signal(data.StructLayout({
            **tag, "prod": signed(ACC_WIDTH + intref.SCALE_MANT_BITS), "add": signed(width + 1)}))
        move(f1, p, valid=self.i.valid, prod=p.acc * p.k,
             add=p.bias + Mux(self.res_en, p.residual, 0))

        # ---- (split: s, the shifted product) f2: round, add, clamp, ReLU (registered)
        shifted = shifted_product(m, f1.prod, self.shift)
        if self.split:
            s = Signal(data.StructLayout({
                **tag, "whole": signed(len(shifted[0])), "up": 1, "big": 1, "neg": 1,
                "add": signed(width + 1)}))
            move(s, f1, add=f1.add, **dict(zip(("whole", "up", "big", "neg"), shifted)))
            yclip, ysat = clamped_sum(m, s.whole, s.up, s.big, s.neg, s.add)
            src = s
        else:
            yclip, ysat = clamped_sum(m, *shifted, f1.add)
            src = f1
        f2 = Signal(data.StructLayout({**tag, "y": signed(width), "sat": 1}))
        move(f2, src, sat=ysat, y=Mux(self.relu & (yclip < 0), 0, yclip))
        y = f2.y
        yabs = Signal(unsigned(width))
        m.d.comb += yabs.eq(Mux(y < 0, -y, y))

        # ---- (split: f3, |Y| registered) the output
        out = self.o.payload
        if self.split:
            f3 = Signal(data.StructLayout({**tag, "mag": unsigned(width), "neg": 1, "sat": 1}))
            move(f3, f2, mag=yabs, neg=y < 0, sat=f2.sat)
            m.d.comb += [out.mag.eq(f3.mag), out.neg.eq(f3.neg), out.sat.eq(f3.sat)]
            last = f3
        else:
            m.d.comb += [out.mag.eq(yabs), out.neg.eq(y < 0), out.sat.eq(f2.sat)]
            last = f2
        m.d.comb += [self.o.valid.eq(last.valid), out.chan.eq(last.chan),
                     out.last.eq(last.last)]
        return m

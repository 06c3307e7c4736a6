"""Fixed-point stage of the PPU (:class:`hw.ppu.PPU`): per-channel scale, bias, residual,
saturation and ReLU of one element per cycle (docs/numerics.md section 5)."""

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from golden import intref

from .common import ACC_WIDTH, barrel_shl, check_int, validating

__all__ = ["PPUFixedPoint", "FIXED_LATENCY", "fixed_point_value", "ppu_in_layout",
           "ppu_value_layout"]

#: Registers between the fixed-point stage's input and output: the product register ``f1``
#: (``acc * k``, with ``bias + residual``) and the fixed-point register ``f2`` (``Y``).
FIXED_LATENCY = 2

_Y_MAX = 2 ** (intref.PPU_WIDTH - 1) - 1
_Y_MIN = -(2 ** (intref.PPU_WIDTH - 1))


def fixed_point_value(m, prod, add, shift):
    """``clamp(RNE(prod * 2**-shift) + add)`` to signed PPU_WIDTH bits, combinational: returns
    ``(value, saturated)``. ``add`` (bias + residual) has PPU_WIDTH + 1 bits.

    The whole part of the shifted product has 80 bits, but since ``|add| <= 2**32`` a whole
    part outside 34 signed bits saturates whatever is added: the sum needs 36 bits only (short
    carry chains), and the RNE decision and the clamp are bit reductions, not comparators.
    ``hw/test_ppu_blocks.py`` proves it equal to the full-width sum with a SAT solver."""
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
    ysum = Signal(signed(nb + 2))
    m.d.comb += ysum.eq(whole[:nb].as_signed() + up + add)
    top = ysum[width - 1:]                    # the bits a 32-bit value sign-extends
    neg = whole[-1]
    over = Mux(big, ~neg, ~ysum[-1] & top.any())
    under = Mux(big, neg, ysum[-1] & ~top.all())
    return Mux(over, _Y_MAX, Mux(under, _Y_MIN, ysum[:width].as_signed())), over | under


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
    Two registers (:data:`FIXED_LATENCY`) that move together, empty or not, in every cycle
    with ``o.ready``: the product register ``f1`` (``acc * k``; ``bias + residual``) and the
    fixed-point register ``f2`` (shift, round, add, clamp, ReLU), whose value is on ``o``
    (``|Y|`` and the sign are combinational after it). An element taken in cycle ``n`` is on
    ``o`` in cycle ``n + 2`` if ``o`` was ready in cycle ``n + 1``. ``i.ready = o.ready``;
    ``o.valid`` is a register.
    """

    def __init__(self, *, max_channels):
        with validating(self):
            self.max_channels = check_int("max_channels", max_channels, 1, 4096)
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
        go = self.o.ready  # both registers move together
        m.d.comb += self.i.ready.eq(go)

        # ---- f1: the product (registered)
        f1 = Signal(data.StructLayout({
            "valid": 1, "prod": signed(ACC_WIDTH + intref.SCALE_MANT_BITS),
            "add": signed(width + 1), "chan": range(self.max_channels), "last": 1}))
        with m.If(go):
            m.d.sync += [
                f1.valid.eq(self.i.valid), f1.prod.eq(p.acc * p.k), f1.chan.eq(p.chan),
                f1.last.eq(p.last),
                f1.add.eq(p.bias + Mux(self.res_en, p.residual, 0)),
            ]

        # ---- f2: shift, round, add, clamp, ReLU (registered)
        yclip, ysat = fixed_point_value(m, f1.prod, f1.add, self.shift)
        f2 = Signal(data.StructLayout({
            "valid": 1, "y": signed(width), "sat": 1, "chan": range(self.max_channels),
            "last": 1}))
        with m.If(go):
            m.d.sync += [
                f2.valid.eq(f1.valid), f2.sat.eq(ysat), f2.chan.eq(f1.chan),
                f2.last.eq(f1.last),
                f2.y.eq(Mux(self.relu & (yclip < 0), 0, yclip)),
            ]
        y = f2.y
        yabs = Signal(unsigned(width))
        m.d.comb += yabs.eq(Mux(y < 0, -y, y))
        out = self.o.payload
        m.d.comb += [self.o.valid.eq(f2.valid), out.mag.eq(yabs), out.neg.eq(y < 0),
                     out.sat.eq(f2.sat), out.chan.eq(f2.chan), out.last.eq(f2.last)]
        return m

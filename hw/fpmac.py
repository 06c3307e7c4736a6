"""FP16 multiply, FP32 accumulate: the FP16 dense baseline's multiply-accumulate.

Synthesized for its area by the evaluation; its cycles are modelled (this unit is never part of
the accelerator's top and never simulated as part of it).

Arithmetic (IEEE 754, round to nearest even, gradual underflow):

* ``a`` and ``b`` are binary16 bit patterns. Subnormal inputs take the effective exponent 1 and a
  hidden bit of 0; the 11 x 11-bit significand product (22 bits) is then normalised by its
  leading-zero count. Every finite product of two binary16 values is exact and normal in
  binary32 (``2**-48 <= |a*b| < 2**32``), so the product is packed into binary32 without rounding.
* ``acc + a*b`` is then one binary32 addition (:func:`fp32_add`): operands ordered by magnitude,
  the smaller one aligned with guard, round and sticky bits, added or subtracted, normalised by
  a leading-zero count (limited so that the exponent stays >= 1: subnormal results), rounded to
  nearest even and packed; a rounding carry may produce the next binade or infinity.
* Specials: infinities propagate; ``inf - inf``, ``0 * inf`` and NaN inputs give the canonical
  quiet NaN ``0x7FC00000``; an exact zero sum is ``+0`` unless both addends are ``-0``.

:func:`fp16_mac_reference` is the numpy model (bit-identical, NaNs canonicalised).
"""

import numpy as np
from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["FP16MAC", "fp32_add", "fp16_mac_reference", "QNAN32"]

#: The NaN every invalid operation produces.
QNAN32 = 0x7FC00000


def fp16_mac_reference(acc_bits, a_bits, b_bits):
    """``float32(acc) + float32(a) * float32(b)`` on bit patterns, NaN as :data:`QNAN32`."""
    a, b = (np.array(v, np.uint16).view(np.float16).astype(np.float32) for v in (a_bits, b_bits))
    acc = np.array(acc_bits, np.uint32).view(np.float32)
    with np.errstate(all="ignore"):
        r = np.float32(acc + a * b)
    return QNAN32 if np.isnan(r) else int(np.array(r, np.float32).view(np.uint32))


def _lzc(v):
    """Leading zeros of ``v`` (a power-of-two width): ``(all_zero, count)``, a binary tree."""
    if len(v) == 1:
        return ~v[0], Const(0, 0)
    half = len(v) // 2
    z_hi, c_hi = _lzc(v[half:])
    z_lo, c_lo = _lzc(v[:half])
    return z_hi & z_lo, Mux(z_hi, Cat(c_lo, Const(1, 1)), Cat(c_hi, Const(0, 1)))


def _leading_zeros(m, v, name):
    """Leading zeros of ``v`` (any width; meaningless when ``v == 0``: callers handle zero)."""
    pad = (1 << (len(v) - 1).bit_length()) - len(v)
    _, tree = _lzc(Cat(Const(0, pad), v))
    count = Signal(len(tree), name=name)
    m.d.comb += count.eq(tree)
    return count


def _unpack(m, bits, exp_width, name):
    """Sign, effective exponent (>= 1), significand with hidden bit, inf and NaN flags."""
    frac, exp, sign = bits[:-1 - exp_width], bits[-1 - exp_width:-1], bits[-1]
    eff_exp = Signal(exp_width, name=f"{name}_exp")
    sig = Signal(len(frac) + 1, name=f"{name}_sig")
    m.d.comb += [eff_exp.eq(Mux(exp == 0, 1, exp)), sig.eq(Cat(frac, exp != 0))]
    top = exp == (1 << exp_width) - 1
    return sign, eff_exp, sig, top & (frac == 0), top & (frac != 0)


def _fp16_product(m, a, b):
    """The exact binary32 pattern of ``a * b`` (binary16 patterns)."""
    sa, ea, ma, inf_a, nan_a = _unpack(m, a, 5, "a")
    sb, eb, mb, inf_b, nan_b = _unpack(m, b, 5, "b")
    sign = sa ^ sb
    prod = Signal(22)
    m.d.comb += prod.eq(ma * mb)
    lz = _leading_zeros(m, prod, "prod_lz")
    norm = Signal(22)                         # bit 21 set unless prod == 0
    exp = Signal(8)                           # ea + eb - 30 - 20 + 21 - lz + 127, in [79, 158]
    m.d.comb += [norm.eq((prod << lz)[:22]), exp.eq(ea + eb + 98 - lz)]
    zero = prod == 0
    out = Signal(32, name="prod_fp32")
    with m.If(nan_a | nan_b | ((inf_a | inf_b) & zero)):
        m.d.comb += out.eq(QNAN32)
    with m.Elif(inf_a | inf_b):
        m.d.comb += out.eq(Cat(Const(0, 23), Const(0xFF, 8), sign))
    with m.Elif(zero):
        m.d.comb += out.eq(Cat(Const(0, 31), sign))
    with m.Else():
        m.d.comb += out.eq(Cat(Const(0, 2), norm[:21], exp, sign))
    return out


def _align(m, sig, shift, width):
    """``sig`` (with 3 zero bits appended) shifted right by ``shift``; lost bits ORed into
    bit 0 (sticky). ``shift`` saturates at ``width``: beyond it everything is sticky."""
    ext = Cat(Const(0, 3), sig)
    dist = Signal(range(width + 1))
    m.d.comb += dist.eq(Mux(shift > width, width, shift))
    wide = Cat(Const(0, width), ext) >> dist
    out = Signal(width)
    m.d.comb += out.eq(Cat(wide[width] | (wide[:width] != 0), wide[width + 1:]))
    return out


def _round_pack(m, sign, exp, norm):
    """Round ``norm`` (27 bits: hidden bit 26, guard 2, round 1, sticky 0) to nearest even and
    pack with the effective exponent ``exp`` (>= 1; hidden bit 0 means subnormal)."""
    sig = norm[3:]
    up = norm[2] & (norm[1] | norm[0] | sig[0])
    rounded = Signal(25)
    m.d.comb += rounded.eq(sig + up)
    # (exp - 1) * 2**23 + significand: the hidden bit (or a rounding carry) bumps the exponent.
    packed = Signal(33)
    m.d.comb += packed.eq(((exp - 1) << 23) + rounded)
    return Mux(packed[23:] >= 0xFF, Cat(Const(0, 23), Const(0xFF, 8), sign),
               Cat(packed[:31], sign))


def fp32_add(m, x, y):
    """Build the combinational binary32 adder ``x + y`` (RNE) in ``m``; returns the sum."""
    swap = x[:31] < y[:31]                    # order by magnitude: |big| >= |small|
    big, small = Signal(32), Signal(32)
    m.d.comb += [big.eq(Mux(swap, y, x)), small.eq(Mux(swap, x, y))]
    s_big, e_big, m_big, inf_big, nan_big = _unpack(m, big, 8, "big")
    s_small, e_small, m_small, inf_small, nan_small = _unpack(m, small, 8, "small")
    subtract = s_big ^ s_small

    aligned = _align(m, m_small, e_big - e_small, 27)
    total = Signal(28)                        # never negative: |big| >= |small|
    m.d.comb += total.eq(Mux(subtract, Cat(Const(0, 3), m_big) - aligned,
                             Cat(Const(0, 3), m_big) + aligned))

    # Normalise: a carry shifts right (sticky kept); otherwise shift left by the leading zeros,
    # at most e_big - 1 (a left shift > 1 happens only when no bit went to sticky: exact).
    lz = _leading_zeros(m, total[:27], "sum_lz")
    limit = Signal(8)
    shift = Signal(8)
    norm = Signal(27)
    exp = Signal(9)
    m.d.comb += [limit.eq(e_big - 1), shift.eq(Mux(lz > limit, limit, lz))]
    with m.If(total[27]):
        m.d.comb += [norm.eq(Cat(total[0] | total[1], total[2:])), exp.eq(e_big + 1)]
    with m.Else():
        m.d.comb += [norm.eq((total[:27] << shift[:5])[:27]), exp.eq(e_big - shift)]

    out = Signal(32, name="sum_fp32")
    with m.If(nan_big | nan_small | (inf_big & inf_small & subtract)):
        m.d.comb += out.eq(QNAN32)
    with m.Elif(inf_big):
        m.d.comb += out.eq(Cat(Const(0, 23), Const(0xFF, 8), s_big))
    with m.Elif(total == 0):
        m.d.comb += out.eq(Cat(Const(0, 31), s_big & ~subtract))
    with m.Else():
        m.d.comb += out.eq(_round_pack(m, s_big, exp, norm))
    return out


class FP16MAC(wiring.Component):
    """``acc <= round_fp32(acc + a * b)`` when ``en``; ``acc <= +0.0`` when ``clear``.

    Members
    -------
    a, b : In(16)
        binary16 bit patterns.
    en : In(1)
        Accumulate this cycle.
    clear : In(1)
        Reset the accumulator to ``+0.0``; takes priority over ``en``.
    acc : Out(32)
        The binary32 accumulator register (``+0.0`` after reset).
    """

    def __init__(self):
        super().__init__({
            "a": In(16),
            "b": In(16),
            "en": In(1),
            "clear": In(1),
            "acc": Out(32),
        })

    def elaborate(self, platform):
        m = Module()
        total = fp32_add(m, self.acc, _fp16_product(m, self.a, self.b))
        with m.If(self.clear):
            m.d.sync += self.acc.eq(0)
        with m.Elif(self.en):
            m.d.sync += self.acc.eq(total)
        return m

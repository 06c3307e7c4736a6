"""FP16 x FP16 + FP32 MAC (hw.fpmac) against numpy float32 arithmetic, bit for bit."""

import random

import numpy as np
from amaranth.back import verilog
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.sim import Simulator

from .fpmac import QNAN32, FP16MAC, fp16_mac_reference, fp32_add


def _canon(bits):
    """Canonical NaN for any NaN pattern, else the pattern itself."""
    return QNAN32 if (bits >> 23) & 0xFF == 0xFF and bits & 0x7FFFFF else bits


def _add_reference(x, y):
    """numpy binary32 ``x + y`` on bit patterns (NaN canonical)."""
    xs, ys = (np.array(v, np.uint32).view(np.float32) for v in (x, y))
    with np.errstate(all="ignore"):
        r = np.float32(xs + ys)
    return _canon(int(np.array(r, np.float32).view(np.uint32)))


class _Adder(Elaboratable):
    """The bare combinational :func:`fp32_add`, for binary32 operands of any kind."""

    def __init__(self):
        self.x, self.y, self.out = Signal(32), Signal(32), Signal(32)

    def elaborate(self, platform):
        m = Module()
        m.d.comb += self.out.eq(fp32_add(m, self.x, self.y))
        return m


def _check_adder(pairs):
    dut = _Adder()
    got = []

    async def bench(ctx):
        for x, y in pairs:
            ctx.set(dut.x, x)
            ctx.set(dut.y, y)
            got.append(ctx.get(dut.out))

    sim = Simulator(dut)
    sim.add_testbench(bench)
    sim.run()
    bad = [f"{x:08x} + {y:08x}: got {g:08x}, expected {e:08x}"
           for (x, y), g in zip(pairs, got) if g != (e := _add_reference(x, y))]
    assert not bad, f"{len(bad)} of {len(pairs)} sums wrong:\n" + "\n".join(bad[:20])


def _run_mac(steps):
    """Drive ``(a, b, en, clear)`` per cycle; compare ``acc`` with the reference each cycle."""
    dut = FP16MAC()
    bad = []

    async def bench(ctx):
        model = 0
        for a, b, en, clear in steps:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.en, en)
            ctx.set(dut.clear, clear)
            await ctx.tick()
            prev = model
            model = 0 if clear else fp16_mac_reference(model, a, b) if en else model
            got = ctx.get(dut.acc)
            if got != model:
                bad.append(f"acc {prev:08x} + {a:04x} * {b:04x} (en={en} clear={clear}): "
                           f"got {got:08x}, expected {model:08x}")
                model = got                  # resynchronise to keep reporting single errors

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert not bad, f"{len(bad)} of {len(steps)} cycles wrong:\n" + "\n".join(bad[:20])


# ------------------------------------------------------------------------------- operands

def _f16(v):
    return int(np.array(v, np.float16).view(np.uint16))


def _random_fp16(rng, exp_lo=0, exp_hi=30):
    """A finite binary16 pattern: random sign and mantissa, exponent field in the range
    (0: subnormal or zero)."""
    return rng.getrandbits(1) << 15 | rng.randint(exp_lo, exp_hi) << 10 | rng.getrandbits(10)


def _random_fp32(rng, exp_lo=0, exp_hi=254, sign=None):
    sign = rng.getrandbits(1) if sign is None else sign
    return sign << 31 | rng.randint(exp_lo, exp_hi) << 23 | rng.getrandbits(23)


def _adder_pairs(rng):
    pairs = [(rng.getrandbits(32), rng.getrandbits(32)) for _ in range(300)]
    for _ in range(900):                     # close exponents: alignment, sticky, ties
        x = _random_fp32(rng)
        e = min(254, max(0, (x >> 23 & 0xFF) + rng.randint(-28, 28)))
        pairs.append((x, _random_fp32(rng, e, e)))
    for _ in range(600):                     # cancellation: y ~ -x
        x = _random_fp32(rng)
        pairs.append((x, ((x ^ 1 << 31) + rng.randint(-3, 3)) & 0xFFFFFFFF))
    for _ in range(600):                     # binary32 subnormal and smallest normal range
        pairs.append((_random_fp32(rng, 0, 2), _random_fp32(rng, 0, 3)))
    for _ in range(300):                     # overflow boundary
        s = rng.getrandbits(1)
        pairs.append((_random_fp32(rng, 250, 254, s), _random_fp32(rng, 225, 254, s)))
    for _ in range(300):                     # exact ties: y is half an ulp (or a quarter) of x
        x = _random_fp32(rng, 26, 254)
        e = (x >> 23 & 0xFF) - rng.choice([24, 25, 23])
        y = rng.getrandbits(1) << 31 | e << 23 | rng.choice([0, 0, 1 << 22, rng.getrandbits(23)])
        pairs.append((x, y) if rng.getrandbits(1) else (y, x))
    return pairs


# ---------------------------------------------------------------------------------- tests

def test_fp32_add_random():
    _check_adder(_adder_pairs(random.Random(2024)))


def test_fp32_add_special_cases():
    inf, ninf, nan, big, tiny = 0x7F800000, 0xFF800000, 0x7FC00000, 0x7F7FFFFF, 0x00000001
    one = 0x3F800000
    _check_adder([
        (0, 0), (0, 1 << 31), (1 << 31, 0), (1 << 31, 1 << 31),          # signed zeros
        (one, one | 1 << 31), (tiny, tiny | 1 << 31), (big | 1 << 31, big),  # x + (-x) = +0
        (inf, ninf), (ninf, inf), (inf, inf), (ninf, ninf), (inf, big | 1 << 31),
        (ninf, tiny), (nan, one), (one, 0x7F800001), (0xFFFFFFFF, inf), (0, nan),
        (big, big), (big | 1 << 31, big | 1 << 31),                       # overflow to inf
        (big, 0x73000000), (big, 0x72FFFFFF), (big, 0x73000001),          # max + half ulp
        (0x007FFFFF, tiny), (0x00800001, 0x80800000), (0x00800000, 0x807FFFFF),
        (tiny, tiny), (0x00400000, 0x00400000), (0x80000003, 0x00000001),
        (one, 0x33800000), (0x3F800001, 0x33800000),                      # ties to even
        (one, 0xB3800000), (one, 0xB3000000), (0x3F800001, 0xB3800000),
        (0x4B7FFFFF, 0x3F000000), (0x4B7FFFFE, 0x3F000000), (one, 0),
    ])


def test_mac_random_sequence():
    rng = random.Random(7)
    steps = []
    for _ in range(2500):
        r = rng.random()
        if r < 0.03:
            steps.append((_random_fp16(rng), _random_fp16(rng), rng.getrandbits(1), 1))
        elif r < 0.06:
            steps.append((_random_fp16(rng), _random_fp16(rng), 0, 0))
        elif r < 0.16 and steps:                  # undo the previous product: cancellation
            a, b = steps[-1][:2]
            steps.append((a ^ 0x8000, b, 1, 0))
        elif r < 0.30:                            # FP16 subnormal and tiny operands
            steps.append((_random_fp16(rng, 0, 3), _random_fp16(rng, 0, 12), 1, 0))
        elif r < 0.60:                            # similar magnitudes: sums near acc
            steps.append((_random_fp16(rng, 12, 18), _random_fp16(rng, 12, 18), 1, 0))
        else:
            steps.append((_random_fp16(rng), _random_fp16(rng), 1, 0))
    _run_mac(steps)


def test_mac_products_exact():
    """Clear, then one product: acc is exactly a * b (+0 for a -0 product)."""
    rng = random.Random(11)
    steps = []
    for _ in range(300):
        steps += [(0, 0, 0, 1), (_random_fp16(rng), _random_fp16(rng), 1, 0)]
    steps += [(0, 0, 0, 1), (0x0001, 0x0001, 1, 0), (0, 0, 0, 1), (0x7BFF, 0x7BFF, 1, 0),
              (0, 0, 0, 1), (0x83FF, 0x03FF, 1, 0), (0, 0, 0, 1), (0xFBFF, 0x0001, 1, 0)]
    _run_mac(steps)


def test_mac_special_cases():
    one, half, inf, ninf, nan = _f16(1.0), _f16(0.5), 0x7C00, 0xFC00, 0x7E00
    e12, e11 = _f16(2.0 ** -12), _f16(2.0 ** -11)
    clear = (0, 0, 0, 1)
    _run_mac([
        (0x8000, one, 1, 0), (0, 0x8000, 1, 0), (0x8000, 0x8000, 1, 0),    # signed zeros
        (_f16(1.5), _f16(3.0), 1, 0), (_f16(-1.5), _f16(3.0), 1, 0),       # exact cancel: +0
        (one, one, 1, 0), (e12, e12, 1, 0),          # 1 + 2**-24: tie, stays 1 (even)
        (e12, e11, 1, 0), (e12, e12, 1, 0),          # 1 + 2**-23 + 2**-24: tie, rounds up
        (half, inf, 1, 0), (one, one, 1, 0),         # inf propagates
        (ninf, one, 1, 0), (one, one, 1, 0), clear,  # inf - inf = NaN, NaN propagates
        (0, inf, 1, 0), clear, (nan, one, 1, 0), clear, (one, 0xFE01, 1, 0), clear,
        (ninf, ninf, 1, 0), (ninf, 0x0001, 1, 0), clear,
        (0x7BFF, 0x7BFF, 1, 0), (0xFBFF, 0x7BFF, 1, 0), (0x7BFF, 0x0001, 1, 0),
    ])


def test_mac_clear_priority_and_hold():
    two, three = _f16(2.0), _f16(3.0)
    dut = FP16MAC()
    seen = []

    async def bench(ctx):
        for a, b, en, clear in [(two, three, 1, 0), (two, three, 0, 0), (two, three, 1, 1),
                                (two, three, 1, 0), (two, three, 1, 0), (0, 0, 0, 1)]:
            ctx.set(dut.a, a)
            ctx.set(dut.b, b)
            ctx.set(dut.en, en)
            ctx.set(dut.clear, clear)
            await ctx.tick()
            seen.append(ctx.get(dut.acc))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    f32 = [int(np.array(v, np.float32).view(np.uint32)) for v in (6.0, 6.0, 0.0, 6.0, 12.0, 0.0)]
    assert seen == f32, [hex(v) for v in seen]


def test_reference_matches_numpy():
    assert fp16_mac_reference(0x3F800000, _f16(2.0), _f16(-0.25)) == 0x3F000000
    assert fp16_mac_reference(0, 0x7C00, 0) == QNAN32
    assert fp16_mac_reference(0x80000000, 0x8000, 0x3C00) == 0x80000000


def test_converts_to_verilog():
    text = verilog.convert(FP16MAC(), name="fp16_mac")
    assert "module fp16_mac" in text

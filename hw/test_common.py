"""Shared encodings and helpers of hw/common.py and hw/layout.py."""

import random

import pytest

from golden import intref

from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from .common import (Format, Mode, check_choice, check_int, popcount, shallow_popcount,
                     thermometer_count)
from .layout import pack_param, pack_vector, read_memh, unpack_vector, write_memh


def test_encodings_are_the_golden_ones():
    assert {m.name: m.value for m in Mode} == {m.name: m.value for m in intref.Mode}
    assert {f.name: f.value for f in Format} == {f.name: f.value for f in intref.Format}


def test_parameter_checks_name_value_and_range():
    with pytest.raises(ValueError, match=r"lanes must be in \[1, 4\], got 5"):
        check_int("lanes", 5, 1, 4)
    with pytest.raises(TypeError, match="lanes must be an int, got True"):
        check_int("lanes", True, 1, 4)
    with pytest.raises(ValueError, match=r"vector must be one of \(4, 8\), got 3"):
        check_choice("vector", 3, (4, 8))


def test_word_packing_round_trip(tmp_path):
    codes = [-127, 0, 15, -7, 127] + [0] * 27
    word = pack_vector(codes, 0x7E)
    assert unpack_vector(word) == (codes, 0x7E)
    assert pack_param(-1, -2) == 0xFFFF | (0xFFFFFFFE << 16)
    path = tmp_path / "m.hex"
    write_memh(path, [word, 1, 0], 264)
    assert path.read_text().splitlines()[1] == "0" * 65 + "1"
    assert read_memh(path, 264, 4) == [word, 1, 0, 0]
    path.write_text("// comment\n@2 ff\n")
    assert read_memh(path, 8, 4) == [0, 0, 0xFF, 0]
    with pytest.raises(ValueError, match="exceeds 8 bits"):
        path.write_text("1ff\n")
        read_memh(path, 8, 4)
    with pytest.raises(ValueError, match="code 200 at element 0 does not fit 8 bits"):
        pack_vector([200], 0)


def test_lut_product_is_exact_for_every_operand_pair():
    """The engines' 5 x 5-bit products (signed x signed, signed x unsigned low nibble) and an
    unsigned multiplicand (the rows' top bits are not its sign)."""
    from amaranth.hdl import Module, Signal, signed, unsigned
    from amaranth.sim import Simulator

    from .common import lut_product

    m = Module()
    a, b, bu, au = Signal(signed(5)), Signal(signed(5)), Signal(unsigned(4)), Signal(4)
    p, pu, pa = Signal(signed(12)), Signal(signed(12)), Signal(signed(12))
    m.d.comb += [p.eq(lut_product(m, a, b, "ss")), pu.eq(lut_product(m, a, bu, "su")),
                 pa.eq(lut_product(m, au, b, "us"))]
    bad = []

    async def bench(ctx):
        for x in range(-16, 16):
            for y in range(-16, 16):
                ctx.set(a, x)
                ctx.set(b, y)
                ctx.set(bu, y & 15)
                ctx.set(au, x & 15)
                if (ctx.get(p), ctx.get(pu), ctx.get(pa)) != (x * y, x * (y & 15),
                                                              (x & 15) * y):
                    bad.append((x, y, ctx.get(p), ctx.get(pu), ctx.get(pa)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert bad == []


def test_term_unit_rounds_and_clamps_as_the_reference():
    """The term unit (prescaled mantissa, coarse shift, rounding decision, clamp) against
    ``clamp(RNE(mant * 2**exp))`` for the mantissas at the edges of their range, +-2**k (the
    exact -2**52 term), +-(2**k + 1) and +-1.5 * 2**k (rounding ties) and random ones, at
    every exponent from below the underflow to above the saturation boundary."""
    import random

    from amaranth.hdl import Module, Signal, signed
    from amaranth.sim import Simulator

    from golden.intref import TERM_LIMIT, rne_shift

    from .common import MANT_WIDTH, TERM_STEP, term_prescale, term_shift, term_unit

    m = Module()
    mant_in, exp = Signal(signed(MANT_WIDTH)), Signal(signed(10))
    mant = Signal(signed(MANT_WIDTH + TERM_STEP - 1))
    shift = [Signal.like(v) for v in term_shift(m, MANT_WIDTH, exp)]
    m.d.comb += mant.eq(mant_in << term_prescale(exp))
    m.d.sync += [r.eq(v) for r, v in zip(shift, term_shift(m, MANT_WIDTH, exp, "ts2"))]
    mant_r = Signal.like(mant)
    m.d.sync += mant_r.eq(mant)
    term, sat = term_unit(m, mant_r, shift, go=1)
    top = 1 << (MANT_WIDTH - 1)
    mants = sorted({0, top - 1, -top, -top + 1,
                    *(v for k in range(MANT_WIDTH - 1)
                      for v in (1 << k, -(1 << k), (1 << k) + 1, -(1 << k) - 1, (3 << k) // 2,
                                -(3 << k) // 2))})
    rng = random.Random(7)
    mants += [rng.randrange(-top, top) for _ in range(12)]
    cases = [(x, e) for x in mants for e in range(-26, 58)]
    bad = []

    async def bench(ctx):
        for x, e in cases:
            ctx.set(mant_in, x)
            ctx.set(exp, e)
            await ctx.tick()
            await ctx.tick()  # the term unit's first half
            want = int(rne_shift(x, e))
            got = (ctx.get(term), ctx.get(sat))
            if got != (max(-TERM_LIMIT, min(TERM_LIMIT, want)), int(abs(want) > TERM_LIMIT)):
                bad.append((x, e, got, want))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert bad == []


@pytest.mark.parametrize("n", [1, 2, 5, 8, 127])
def test_thermometer_count_of_every_code(n):
    m = Module()
    bits = Signal(n)
    count = thermometer_count(m, bits, "k")
    got = {}

    async def bench(ctx):
        for k in range(n + 1):
            ctx.set(bits, (1 << k) - 1)
            got[k] = ctx.get(count)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == {k: k for k in range(n + 1)}


@pytest.mark.parametrize("count_fn", [popcount, shallow_popcount])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 9, 16, 32, 64])
def test_popcount_counts_every_bit(n, count_fn):
    """Every value for few bits, else each single bit, all bits and random values (the
    groups' tables and the adder tree's widths; the compression levels' columns and the
    sum's tables)."""
    m = Module()
    bits = Signal(n)
    count = count_fn(m, bits, "pc")
    rng = random.Random(n)
    values = (range(1 << n) if n <= 9 else
              [0, (1 << n) - 1, *(1 << k for k in range(n)),
               *(rng.getrandbits(n) for _ in range(200))])
    bad = []

    async def bench(ctx):
        for v in values:
            ctx.set(bits, v)
            if ctx.get(count) != bin(v).count("1"):
                bad.append((v, ctx.get(count)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert bad == []

"""JoinSerializer: the join of the two engine results and the channel serializer into the PPU,
with real param / residual memories, random stream gaps and the Python reference of
:func:`hw.simtest.serializer_case` (channel order, ``last`` flags, accumulator sums, param and
residual words); and the stream checker itself."""

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In

from golden import intref

from .layout import PARAM_WORD_BITS, RES_WORD_BITS
from .serializer import JoinSerializer
from .simtest import WithMemories, default_args, run_sim, serializer_case
from .simtest import stream_get_polled as get
from .simtest import stream_put_polled as put
from .streamcheck import stream_checker


def serializer_run(*, vector, tile, cout, out_format, res_en, pixels, seed, in_gap, out_gap,
                   spare_unit=False):
    """Random units through a JoinSerializer (:func:`hw.simtest.serializer_case`); checks every
    PPU element, the joins and the reads; returns the cycles of the output transfers and of the
    joins."""
    case = serializer_case(vector=vector, tile=tile, cout=cout, out_format=out_format,
                           res_en=res_en, pixels=pixels, seed=seed)
    units, want = case["units"], case["want"]
    ser = JoinSerializer(vector=vector, tile=tile, max_channels=64, spare_unit=spare_unit)
    dut = WithMemories(ser, [
        (PARAM_WORD_BITS, len(case["par_words"]), case["par_words"],
         [(ser.par_rd_en, ser.par_rd_addr, ser.par_rd_data)]),
        (RES_WORD_BITS, len(case["res_words"]), case["res_words"],
         [(ser.res_rd_en, ser.res_rd_addr, ser.res_rd_data)])])
    got, out_cycles, join_cycles = [], [], []
    stats = {"join": 0, "reads": 0}
    ready_to_go = []

    async def config(ctx):
        for name, value in case["config"].items():
            ctx.set(getattr(ser, name), value)
        ctx.set(ser.clear, 1)
        await ctx.tick()
        ctx.set(ser.clear, 0)
        await ctx.tick()  # tile_end follows the configuration one cycle later
        ready_to_go.append(True)

    def producer(port, which, prng):
        async def run(ctx):
            while not ready_to_go:
                await ctx.tick()
            for unit in units:
                await put(ctx, port, unit[which], prng, in_gap)
        return run

    async def consumer(ctx):
        crng = random.Random(seed + 2)
        for _ in range(len(want)):
            got.append(await get(ctx, ser.o, crng, out_gap))
        await ctx.tick()  # the monitor samples the last cycle

    async def monitor(ctx):
        cycle = 0
        async for _, _, join, reads, valid, ready in ctx.tick().sample(
                ser.joined, ser.reads, ser.o.valid, ser.o.ready):
            stats["join"] += join
            stats["reads"] += reads
            if join:
                join_cycles.append(cycle)
            if valid and ready:
                out_cycles.append(cycle)
            cycle += 1

    limit = 50 * (len(want) + len(units) + 10)

    async def watchdog(ctx):
        for _ in range(limit):
            await ctx.tick()
        raise AssertionError(f"{len(got)} of {len(want)} elements after {limit} cycles")

    checkers = [stream_checker(p, n) for n, p in (("d", ser.d), ("s", ser.s), ("o", ser.o))]
    # The producers run in the background: a unit the serializer never takes shows up in the
    # join count below, not as a hang.
    run_sim(dut, [config, consumer],
            [watchdog, monitor, producer(ser.d, 0, random.Random(seed)),
             producer(ser.s, 1, random.Random(seed + 1))] + checkers)
    case["check"](got)
    assert stats["join"] == len(units)
    assert stats["reads"] == case["reads"]
    return out_cycles, join_cycles


CASES = [  # vector, tile, cout, out_format, res_en
    (16, 4, 6, intref.Format.INT4, 1),
    (16, 4, 40, intref.Format.MXINT8, 1),
    (4, 4, 9, intref.Format.UINT4, 0),
    (8, 1, 5, intref.Format.INT4, 1),
    (16, 8, 8, intref.Format.MXINT8, 0),
    (4, 3, 7, intref.Format.INT4, 1),
    (4, 2, 1, intref.Format.UINT4, 1),
]


@pytest.mark.parametrize("spare_unit", [False, True])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("gaps", [(0.3, 0.3), (0.0, 0.7), (0.6, 0.0)])
def test_serializer_matches_reference(case, gaps, spare_unit):
    vector, tile, cout, fmt, res_en = case
    serializer_run(vector=vector, tile=tile, cout=cout, out_format=fmt, res_en=res_en,
                   pixels=3, seed=sum(case[:3]) + int(10 * gaps[0]), in_gap=gaps[0],
                   out_gap=gaps[1], spare_unit=spare_unit)


@pytest.mark.parametrize("case", CASES)
def test_serializer_back_to_back(case):
    """Results always valid, ``o`` always ready: one channel per cycle across unit and pixel
    boundaries (the next unit joins in the ``ser_done`` cycle; the cycle models rely on it)."""
    vector, tile, cout, fmt, res_en = case
    for spare_unit in (False, True):
        cycles, _ = serializer_run(vector=vector, tile=tile, cout=cout, out_format=fmt,
                                   res_en=res_en, pixels=3, seed=7, in_gap=0.0, out_gap=0.0,
                                   spare_unit=spare_unit)
        assert cycles == list(range(cycles[0], cycles[0] + len(cycles)))


@pytest.mark.parametrize("case", CASES)
def test_second_unit_register_joins_earlier(case):
    """With ``spare_unit``, results always valid: a unit joins one cycle after the one
    before moved into the unit register (into N, while that unit serializes) instead of when it
    finishes; the PPU sees the same channel stream in the same cycles."""
    vector, tile, cout, fmt, res_en = case
    runs = {spare: serializer_run(vector=vector, tile=tile, cout=cout, out_format=fmt,
                                  res_en=res_en, pixels=3, seed=7, in_gap=0.0, out_gap=0.0,
                                  spare_unit=spare) for spare in (False, True)}
    (out0, join0), (out1, join1) = runs[False], runs[True]
    assert out1 == out0
    assert all(j1 <= j0 for j0, j1 in zip(join0, join1))
    lens = [min(tile, cout - tc) for tc in range(0, cout, tile)] * 3
    # the producers offer the next result the cycle after a join (a = r + 1). Without N a unit
    # joins when the one before finishes serializing (r = l); with N as soon as N is empty, the
    # cycle after the unit before moved into U (r = max(a, l + 1))
    for joins, spare in ((join0, False), (join1, True)):
        r = load = joins[0]
        want = [r]
        for n_prev in lens[:-1]:
            a = r + 1
            r = max(a, load + 1) if spare else max(a, load + n_prev)
            load = max(a, load + n_prev)
            want.append(r)
        assert joins == want, spare


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"vector": 2}, ValueError, r"vector must be one of \(4, 8, 16\), got 2"),
    ({"tile": 0}, ValueError, r"tile must be in \[1, 256\], got 0"),
    ({"max_channels": 5000}, ValueError, r"max_channels must be in \[1, 4096\], got 5000"),
    ({"tile": 4.0}, TypeError, "tile must be an int"),
    ({"spare_unit": 2}, ValueError, r"spare_unit must be in \[0, 1\], got 2"),
    ({"spare_unit": 0.5}, TypeError, "spare_unit must be an int"),
])
def test_serializer_rejects_bad_parameters(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        JoinSerializer(**default_args("ser", **kwargs))


class _Src(wiring.Component):
    def __init__(self):
        super().__init__({"s": In(stream.Signature(8))})

    def elaborate(self, platform):
        m = Module()
        m.d.sync += Signal().eq(0)  # a sync domain for the clock
        return m


@pytest.mark.parametrize("fault", ["drop", "change"])
def test_stream_checker_catches_violations(fault):
    """A valid that drops before ready, or a payload that changes while waiting, fails the
    simulation with the stream's name and the cycle."""
    dut = _Src()

    async def bench(ctx):
        ctx.set(dut.s.valid, 1)
        ctx.set(dut.s.payload, 5)
        await ctx.tick()
        await ctx.tick()
        if fault == "drop":
            ctx.set(dut.s.valid, 0)
        else:
            ctx.set(dut.s.payload, 6)
        for _ in range(3):
            await ctx.tick()

    msg = "valid dropped before ready" if fault == "drop" else "payload changed"
    with pytest.raises(AssertionError, match=f"stream s: {msg} .*cycle 2"):
        run_sim(dut, [bench])

"""Skid buffer: every item once and in order, ``i.ready`` from a register, and no cycle added
for a source that stays valid (a walker)."""

from amaranth.hdl import unsigned

from .simtest import run_sim, seeded, stream_put
from .skid import SkidBuffer

WIDTH = 12


def _sink(dut, ready_pattern, got, cycles):
    """Takes items with the given per-cycle ``ready``; checks in every cycle that ``i.ready``
    does not follow ``o.ready`` within the cycle (it comes from a register)."""
    async def sink(ctx):
        for n, ready in enumerate(ready_pattern):
            ctx.set(dut.o.ready, not ready)
            other = ctx.get(dut.i.ready)
            ctx.set(dut.o.ready, ready)
            assert ctx.get(dut.i.ready) == other, n
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid and ready:
                got.append(payload)
                cycles.append(n)
    return sink


def test_skid_buffer_passes_every_item_in_order():
    rnd, _ = seeded(3)
    dut = SkidBuffer(unsigned(WIDTH))
    items = [rnd.randrange(1 << WIDTH) for _ in range(200)]
    got, cycles = [], []

    async def source(ctx):
        for it in items:
            await stream_put(ctx, dut.i, it, rnd, 0.3)

    pattern = [rnd.random() < 0.6 for _ in range(1000)]
    run_sim(dut, [source, _sink(dut, pattern, got, cycles)])  # with the streams' checkers
    assert got == items


def test_skid_buffer_adds_no_cycle_to_a_source_that_stays_valid():
    """A walker-like source (valid from its first item to its last): the items leave in the
    first cycles the consumer is ready, exactly as with ``i`` connected to ``o``."""
    rnd, _ = seeded(4)
    dut = SkidBuffer(unsigned(WIDTH))
    items = list(range(1, 101))
    got, cycles = [], []

    async def source(ctx):
        for it in items:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, it)
            await ctx.tick().until(dut.i.ready)
        ctx.set(dut.i.valid, 0)

    pattern = [rnd.random() < 0.5 for _ in range(600)]
    run_sim(dut, [source, _sink(dut, pattern, got, cycles)])
    assert got == items
    assert cycles == [n for n, ready in enumerate(pattern) if ready][:len(items)]

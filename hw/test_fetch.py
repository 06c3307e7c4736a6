"""OperandFetch: address items through real activation / weight memories into engine work items,
random stream gaps, compared field by field with the memory words
(:func:`hw.simtest.fetch_case`)."""

import random

import pytest
from amaranth.hdl import Elaboratable, Module, unsigned
from amaranth.lib import memory

from .fetch import FETCH_LATENCY, OperandFetch
from .layout import ACT_WORD_BITS, weight_word_bits
from .simtest import default_args, fetch_case, run_sim, stream_get_polled as get
from .simtest import stream_put_polled as put
from .streamcheck import stream_checker

DEPTH = 16


class _Harness(Elaboratable):
    """The fetch stage with an activation and a weight memory on its read ports."""

    def __init__(self, fe, act_words, w_words):
        self.fe = fe
        self.act = memory.Memory(shape=unsigned(ACT_WORD_BITS), depth=DEPTH, init=act_words)
        self.w = memory.Memory(shape=unsigned(weight_word_bits(fe.tile)), depth=DEPTH,
                               init=w_words)

    def elaborate(self, platform):
        m = Module()
        fe = m.submodules.fe = self.fe
        m.submodules.act = self.act
        m.submodules.w = self.w
        act_rp, w_rp = self.act.read_port(), self.w.read_port()
        m.d.comb += [act_rp.en.eq(fe.rd_en), act_rp.addr.eq(fe.act_addr),
                     fe.act_data.eq(act_rp.data),
                     w_rp.en.eq(fe.rd_en), w_rp.addr.eq(fe.w_addr), fe.w_data.eq(w_rp.data)]
        return m


def fetch_run(*, tile, items, seed, in_gap, out_gap):
    """Random address items through an OperandFetch (:func:`hw.simtest.fetch_case`); checks
    every work item and the read count; returns the cycles of the input and output
    transfers."""
    case = fetch_case(tile=tile, items=items, seed=seed, depth=DEPTH)
    addr_items = case["inputs"]
    fe = OperandFetch(tile=tile)
    dut = _Harness(fe, case["act_words"], case["w_words"])
    got, cycles = [], {"i": [], "o": []}
    stats = {"reads": 0}

    async def producer(ctx):
        prng = random.Random(seed + 1)
        for it in addr_items:
            await put(ctx, fe.i, it, prng, in_gap)

    async def consumer(ctx):
        crng = random.Random(seed + 2)
        for _ in addr_items:
            got.append(await get(ctx, fe.o, crng, out_gap))

    async def monitor(ctx):
        cycle = 0
        async for _, _, reads, *hs in ctx.tick().sample(fe.reads, fe.i.valid, fe.i.ready,
                                                        fe.o.valid, fe.o.ready):
            stats["reads"] += reads
            for name, (v, r) in zip(("i", "o"), (hs[:2], hs[2:])):
                if v and r:
                    cycles[name].append(cycle)
            cycle += 1

    limit = 20 * (items + 10)

    async def watchdog(ctx):
        for _ in range(limit):
            await ctx.tick()
        raise AssertionError(f"{len(got)} of {items} items after {limit} cycles")

    checkers = [stream_checker(fe.i, "i"), stream_checker(fe.o, "o")]
    run_sim(dut, [consumer], [watchdog, monitor, producer] + checkers)
    case["check"](got)
    assert stats["reads"] == case["reads"]
    return cycles


@pytest.mark.parametrize("tile", [1, 4])
@pytest.mark.parametrize("gaps", [(0.3, 0.3), (0.0, 0.7), (0.7, 0.0)])
def test_fetch_matches_memories(tile, gaps):
    fetch_run(tile=tile, items=40, seed=tile + int(10 * gaps[1]), in_gap=gaps[0],
              out_gap=gaps[1])


def test_fetch_back_to_back():
    """Items always valid, ``o`` always ready: one item per cycle, each on ``o``
    :data:`FETCH_LATENCY` cycles after it was taken."""
    cycles = fetch_run(tile=2, items=30, seed=3, in_gap=0.0, out_gap=0.0)
    first = cycles["i"][0]
    assert cycles["i"] == list(range(first, first + 30))
    assert cycles["o"] == [c + FETCH_LATENCY for c in cycles["i"]]


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"tile": 0}, ValueError, r"tile must be in \[1, 256\], got 0"),
    ({"tile": "4"}, TypeError, "tile must be an int"),
])
def test_fetch_rejects_bad_parameters(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        OperandFetch(**default_args("fetch_d", **kwargs))

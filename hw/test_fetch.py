"""OperandFetch: address items through real activation / weight memories into engine work items,
random stream gaps, compared field by field with the memory words
(:func:`hw.simtest.fetch_case`)."""

import random
from types import SimpleNamespace

import pytest

from .fetch import OperandFetch, fetch_latency
from .layout import ACT_WORD_BITS, weight_word_bits
from .simtest import WithMemories, default_args, fetch_case, run_sim, stream_get_polled as get
from .simtest import stream_put_polled as put
from .streamcheck import stream_checker

DEPTH = 16


def fetch_run(*, tile, items, seed, in_gap, out_gap, act_reg=False, w_late=False,
              counts_vector=None, free_read=False):
    """Random address items through an OperandFetch (:func:`hw.simtest.fetch_case`); checks
    every work item (with ``w_late`` its weight fields in the cycle after its handshake), with
    ``counts_vector`` the counts beside it, and the read count; returns the cycles of the
    input and output transfers."""
    case = fetch_case(tile=tile, items=items, seed=seed, depth=DEPTH,
                      sparse=counts_vector is not None)
    addr_items = case["inputs"]
    fe = OperandFetch(tile=tile, act_reg=act_reg, w_late=w_late, counts_vector=counts_vector,
                      free_read=free_read)
    dut = WithMemories(fe, [
        (ACT_WORD_BITS, DEPTH, case["act_words"], [(fe.act_rd_en, fe.act_addr, fe.act_data)]),
        (weight_word_bits(tile), DEPTH, case["w_words"],
         [(fe.w_rd_en, fe.w_addr, fe.w_data)])])
    got, cycles = [], {"i": [], "o": []}
    stats = {"reads": 0, "counted": 0}

    async def producer(ctx):
        prng = random.Random(seed + 1)
        for it in addr_items:
            await put(ctx, fe.i, it, prng, in_gap)

    async def consumer(ctx):
        crng = random.Random(seed + 2)
        for _ in addr_items:
            item = await get(ctx, fe.o, crng, out_gap)
            if w_late:  # read at the handshake: on the port from the next cycle
                fields = ("first", "last", "null", "x", "x_scale")
                item = SimpleNamespace(**{f: getattr(item, f) for f in fields},
                                       w=ctx.get(fe.o.payload.w),
                                       w_scale=ctx.get(fe.o.payload.w_scale))
            got.append(item)

    async def monitor(ctx):
        cycle = 0
        counts = (fe.counts, fe.o.payload.x) if counts_vector else ()
        async for _, _, reads, *hs in ctx.tick().sample(fe.reads, fe.i.valid, fe.i.ready,
                                                        fe.o.valid, fe.o.ready, *counts):
            stats["reads"] += reads
            for name, (v, r) in zip(("i", "o"), (hs[:2], hs[2:4])):
                if v and r:
                    cycles[name].append(cycle)
            if counts and hs[2] and hs[3]:
                got_counts, x = hs[4:]
                x = [int(e) & 0xFF for e in x]
                want = {"all": sum(e != 0 for e in x),
                        "vec": sum(e != 0 for e in x[:counts_vector]),
                        "hi": sum(e >> 4 != 0 for e in x), "lo": sum(e & 15 != 0 for e in x)}
                assert {n: int(getattr(got_counts, n)) for n in want} == want, cycle
                stats["counted"] += 1
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
    assert stats["counted"] == (items if counts_vector else 0)
    return cycles


@pytest.mark.parametrize("act_reg,w_late,counts_vector,free_read", [
    (False, False, None, False), (True, False, None, False), (False, True, None, False),
    (True, True, None, False), (True, False, 8, False), (True, True, 16, False),
    (True, False, None, True), (True, True, 16, True)])
@pytest.mark.parametrize("tile", [1, 4])
@pytest.mark.parametrize("gaps", [(0.3, 0.3), (0.0, 0.7), (0.7, 0.0)])
def test_fetch_matches_memories(tile, gaps, act_reg, w_late, counts_vector, free_read):
    fetch_run(tile=tile, items=40, seed=tile + int(10 * gaps[1]), in_gap=gaps[0],
              out_gap=gaps[1], act_reg=act_reg, w_late=w_late, counts_vector=counts_vector,
              free_read=free_read)


@pytest.mark.parametrize("act_reg,w_late,counts_vector,free_read", [
    (False, False, None, False), (True, False, None, False), (True, True, None, False),
    (True, True, 4, False), (True, True, 4, True)])
def test_fetch_back_to_back(act_reg, w_late, counts_vector, free_read):
    """Items always valid, ``o`` always ready: one item per cycle, each on ``o``
    :func:`fetch_latency` cycles after it was taken (``w_late`` changes no cycle)."""
    cycles = fetch_run(tile=2, items=30, seed=3, in_gap=0.0, out_gap=0.0, act_reg=act_reg,
                       w_late=w_late, counts_vector=counts_vector, free_read=free_read)
    first = cycles["i"][0]
    assert cycles["i"] == list(range(first, first + 30))
    latency = fetch_latency(act_reg, counts_vector is not None)
    assert latency == 1 + act_reg + (counts_vector is not None)
    assert cycles["o"] == [c + latency for c in cycles["i"]]


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"tile": 0}, ValueError, r"tile must be in \[1, 256\], got 0"),
    ({"tile": "4"}, TypeError, "tile must be an int"),
    ({"act_reg": 1}, TypeError, "act_reg must be a bool"),
    ({"w_late": "yes"}, TypeError, "w_late must be a bool"),
    ({"counts_vector": 32, "act_reg": True}, ValueError,
     r"counts_vector must be one of \(4, 8, 16\), got 32"),
    ({"counts_vector": 8}, ValueError, "counts_vector needs act_reg"),
    ({"free_read": True}, ValueError, "free_read needs act_reg"),
])
def test_fetch_rejects_bad_parameters(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        OperandFetch(**default_args("fetch_d", **kwargs))

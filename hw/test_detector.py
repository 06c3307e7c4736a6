"""Sparsity detector against golden.intref.ppu (zero counts) and golden.intref.channel_map."""

import random

import pytest
from amaranth.hdl import ClockDomain, Elaboratable, Module

from golden import intref

from .detector import SparsityDetector
from .simtest import default_args, detector_case, run_sim, stream_put


@pytest.mark.parametrize("out_format,channels,threshold", [
    (intref.Format.UINT4, 40, 30),
    (intref.Format.INT4, 16, 0),
    (intref.Format.MXINT8, 72, 65),
    (intref.Format.UINT4, 7, 100),
])
def test_detector_matches_reference(out_format, channels, threshold):
    seed = channels + threshold
    case = detector_case(out_format=out_format, channels=channels, threshold=threshold,
                         seed=seed)
    rnd = random.Random(seed)
    dut = SparsityDetector(vector=16, max_channels=80, max_pixels=16)
    counts, bits = [], []

    async def bench(ctx):
        for name, value in case["config"].items():
            ctx.set(getattr(dut, name), value)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        for payload in case["inputs"]:
            await stream_put(ctx, dut.i, payload, rnd, 0.3)
        await ctx.tick()
        for c in range(channels):
            ctx.set(dut.rd_chan, c)
            counts.append(ctx.get(dut.rd_count))
        bits.extend((ctx.get(dut.map) >> g) & 1 for g in range(dut.groups))

    run_sim(dut, [bench])
    assert counts == case["counts"]
    groups = len(case["map_bits"])
    assert bits[:groups] == case["map_bits"]
    assert not any(bits[groups:])


class WithReset(Elaboratable):
    """``dut`` in a ``sync`` domain whose reset the testbench drives (``cd.rst``)."""

    def __init__(self, dut):
        self.dut, self.cd = dut, ClockDomain("sync")

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = self.cd
        m.submodules.dut = self.dut
        return m


def test_detector_reset_clears_like_clear():
    """A reset in the middle of a layer sets every counter and group sum to 0, as ``clear``
    does, so the map after it is that of no zeros."""
    dut = SparsityDetector(vector=4, max_channels=8, max_pixels=4)
    top = WithReset(dut)
    reads = {}

    async def bench(ctx):
        ctx.set(dut.channels, 8)
        ctx.set(dut.pixels, 1)
        ctx.set(dut.threshold, 50)
        for _ in range(2):  # every channel counts two zeros
            await stream_put(ctx, dut.i, {"zeros": 0xFF, "base": 0})
        await ctx.tick().repeat(3)

        def read(tag):
            counts = []
            for c in range(8):
                ctx.set(dut.rd_chan, c)
                counts.append(ctx.get(dut.rd_count))
            reads[tag] = (counts, ctx.get(dut.map))
        read("before")
        ctx.set(top.cd.rst, 1)
        await ctx.tick()
        ctx.set(top.cd.rst, 0)
        await ctx.tick().repeat(3)
        read("after")

    run_sim(top, [bench], check_streams=False)
    assert reads["before"] == ([2] * 8, 0b11)
    assert reads["after"] == ([0] * 8, 0b00)


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"vector": 2}, ValueError, r"vector must be one of \(4, 8, 16\), got 2"),
    ({"max_channels": 8}, ValueError, r"max_channels must be in \[16, 4096\], got 8"),
    ({"max_pixels": 0}, ValueError, r"max_pixels must be in \[1, 16777216\], got 0"),
    ({"max_pixels": 1.0}, TypeError, "max_pixels must be an int"),
])
def test_detector_rejects_bad_parameters(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        SparsityDetector(**default_args("det", **kwargs))


def _model_map(counts, *, vector, channels, pixels, threshold, groups):
    """The map of the zero counters ``counts`` (every channel of a group, as the hardware sums
    them): the docstring's formula."""
    bits = 0
    for g in range(groups):
        real = min(max(channels - g * vector, 0), vector)
        zeros = sum(counts[g * vector:(g + 1) * vector])
        if real and 100 * (zeros + (vector - real) * pixels) >= threshold * vector * pixels:
            bits |= 1 << g
    return bits


@pytest.mark.parametrize("vector,max_channels,max_pixels", [
    (16, 80, 16), (8, 40, 8), (4, 18, 4), (16, 192, 256),
])
def test_detector_every_cycle(vector, max_channels, max_pixels):
    """Cycle by cycle against a model of the documented timing: every counter (``rd_count``,
    including the read mux's padding) and the map in the cycle after each transfer, with
    random valid cycles, clears and changes of the layer constants (the map checked from four
    cycles after a change): the detector's internal registers (the group sums' pending
    increment, ``bound - gzc - 1``) are invisible."""
    rnd = random.Random(vector * 1000 + max_channels)
    dut = SparsityDetector(vector=vector, max_channels=max_channels, max_pixels=max_pixels)
    counts = [0] * max_channels
    checked = {"map": 0, "count": 0}

    async def bench(ctx):
        consts, stable = {}, 0
        for cycle in range(600):
            if cycle == 0 or rnd.random() < 0.02:
                consts = {"channels": rnd.randint(0, max_channels),
                          "pixels": rnd.randint(0, max_pixels),
                          "threshold": rnd.choice([0, 100, rnd.randint(0, 100)])}
                for name, value in consts.items():
                    ctx.set(getattr(dut, name), value)
                stable = 0
            clear = rnd.random() < 0.02
            valid = rnd.random() < 0.7
            base = rnd.randrange(0, max_channels, vector)
            zeros = rnd.getrandbits(32) & rnd.getrandbits(32) if rnd.random() < 0.5 else \
                rnd.getrandbits(32)
            # at most max_pixels zeros per channel (a layer's pixels): no counter overflows
            zeros &= sum(1 << j for j in range(32)
                         if base + j >= max_channels or counts[base + j] < max_pixels)
            ctx.set(dut.clear, clear)
            ctx.set(dut.i.valid, valid)
            ctx.set(dut.i.payload, {"zeros": zeros, "base": base})
            chan = rnd.randrange(2 ** len(dut.rd_chan))
            ctx.set(dut.rd_chan, chan)
            want = counts[chan] if chan < max_channels else 0
            assert ctx.get(dut.rd_count) == want, (cycle, chan)
            checked["count"] += 1
            if stable >= 4:
                want = _model_map(counts, vector=vector, groups=dut.groups, **consts)
                assert ctx.get(dut.map) == want, (cycle, consts, counts)
                checked["map"] += 1
            await ctx.tick()
            stable += 1
            if clear:
                counts[:] = [0] * max_channels
            elif valid:
                for j in range(32):
                    if (zeros >> j) & 1 and base + j < max_channels:
                        counts[base + j] += 1

    run_sim(dut, [bench], check_streams=False)
    assert checked["map"] > 400 and checked["count"] == 600

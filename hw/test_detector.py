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

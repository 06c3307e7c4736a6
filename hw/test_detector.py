"""Sparsity detector against golden.intref.ppu (zero counts) and golden.intref.channel_map."""

import numpy as np
import pytest

from golden import intref

from .detector import SparsityDetector
from .ppu import block_channels
from .common import Format
from .simtest import run_sim, seeded, stream_put


def _layer_codes(nrng, *, pixels, channels, out_format):
    """Output codes of a random layer from the golden PPU; channel sparsity varies widely."""
    acc = nrng.integers(-2 ** 40, 2 ** 40, (1, pixels, channels))
    density = nrng.uniform(0, 1, channels)
    acc[nrng.random(acc.shape) > density] = 0
    relu = out_format == intref.Format.UINT4 or nrng.random() < 0.5
    return intref.ppu(acc.astype(np.int64), np.full(channels, 1 << 10, np.int32), 30,
                      np.zeros(channels, np.int32), relu=relu, out_format=out_format)


@pytest.mark.parametrize("out_format,channels,threshold", [
    (intref.Format.UINT4, 40, 30),
    (intref.Format.INT4, 16, 0),
    (intref.Format.MXINT8, 72, 65),
    (intref.Format.UINT4, 7, 100),
])
def test_detector_matches_reference(out_format, channels, threshold):
    rnd, nrng = seeded(channels + threshold)
    pixels = 9
    ref = _layer_codes(nrng, pixels=pixels, channels=channels, out_format=out_format)
    want_map = intref.channel_map(ref.zero_counts, pixels, threshold_pct=threshold)
    blk = block_channels(Format(out_format.value))
    dut = SparsityDetector(vector=16, max_channels=80, max_pixels=16)
    counts, bits = [], []

    async def bench(ctx):
        ctx.set(dut.channels, channels)
        ctx.set(dut.pixels, pixels)
        ctx.set(dut.threshold, threshold)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        for px in range(pixels):
            for base in range(0, channels, blk):
                codes = ref.codes[0, px, base:base + blk]
                mask = sum(1 << j for j, c in enumerate(codes) if c == 0)
                await stream_put(ctx, dut.i, {"zeros": mask, "base": base}, rnd, 0.3)
        await ctx.tick()
        for c in range(channels):
            ctx.set(dut.rd_chan, c)
            counts.append(ctx.get(dut.rd_count))
        bits.extend((ctx.get(dut.map) >> g) & 1 for g in range(dut.groups))

    run_sim(dut, [bench])
    assert counts == [int(z) for z in ref.zero_counts]
    groups = len(want_map)
    assert bits[:groups] == [int(b) for b in want_map]
    assert not any(bits[groups:])


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"vector": 2}, ValueError, r"vector must be one of \(4, 8, 16\), got 2"),
    ({"max_channels": 8}, ValueError, r"max_channels must be in \[16, 4096\], got 8"),
    ({"max_pixels": 0}, ValueError, r"max_pixels must be in \[1, 16777216\], got 0"),
    ({"max_pixels": 1.0}, TypeError, "max_pixels must be an int"),
])
def test_detector_rejects_bad_parameters(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        SparsityDetector(**kwargs)

"""PPU against golden.intref.ppu: random accumulators, parameters and stream gaps."""

import numpy as np
import pytest

from golden import intref

from .common import Format
from .ppu import PPU, block_channels
from .simtest import run_sim, seeded, stream_get, stream_put


def _random_layer(nrng, *, pixels, channels, shift, residual):
    mag = nrng.uniform(0, 62, (1, pixels, channels))
    acc = (np.sign(nrng.uniform(-1, 1, mag.shape)) * np.floor(2.0 ** mag)).astype(np.int64)
    acc[nrng.random(acc.shape) < 0.15] = 0
    k = nrng.integers(-32767, 32768, channels).astype(np.int32)
    k[: channels // 4] = nrng.integers(-3, 4, channels // 4)  # small mantissas: exact ties
    bias = nrng.integers(-2 ** 20, 2 ** 20, channels).astype(np.int32)
    res = None
    if residual:
        res = nrng.integers(-2 ** 31, 2 ** 31, acc.shape, dtype=np.int64).astype(np.int32)
        res[:, :, ::3] //= 2 ** 12
    return acc, k, bias, res


def ppu_check(*, out_format, relu, residual, seed, channels=40, pixels=3, in_gap=0.3,
              out_gap=0.3, vector=16):
    rnd, nrng = seeded(seed)
    shift = int(nrng.choice([0, 1, 2, int(nrng.integers(3, 64))]))
    acc, k, bias, res = _random_layer(nrng, pixels=pixels, channels=channels, shift=shift,
                                      residual=residual)
    if seed % 2:  # an all-zero output pixel: every block of it gets scale 0 and codes 0
        acc[0, 0, :] = 0
        bias[:] = 0
        if residual:
            res[0, 0, :] = 0
    ref = intref.ppu(acc, k, shift, bias, res, relu=relu, out_format=out_format, vector=vector)
    blk = block_channels(Format(out_format.value), vector)
    dut = PPU(vector=vector, max_channels=64)
    got = []

    async def producer(ctx):
        ctx.set(dut.shift, shift)
        ctx.set(dut.relu, relu)
        ctx.set(dut.res_en, residual)
        ctx.set(dut.out_format, Format(out_format.value))
        for px in range(pixels):
            for c in range(channels):
                last = (c % blk == blk - 1) or c == channels - 1
                r = int(res[0, px, c]) if residual else int(nrng.integers(-99, 99))
                await stream_put(ctx, dut.i, {"acc": int(acc[0, px, c]), "k": int(k[c]),
                                              "bias": int(bias[c]), "residual": r,
                                              "chan": c, "last": last}, rnd, in_gap)

    nblk = -(-channels // blk)

    async def consumer(ctx):
        for _ in range(pixels * nblk):
            got.append(await stream_get(ctx, dut.o, rnd, out_gap))

    run_sim(dut, [producer, consumer])
    sat = 0
    for n, res_blk in enumerate(got):
        px, b = divmod(n, nblk)
        count = min(blk, channels - b * blk)
        assert res_blk.base == b * blk and res_blk.count == count
        want = [int(c) for c in ref.codes[0, px, b * blk:b * blk + count]]
        assert [int(c) for c in res_blk.codes][:count] == want, (px, b)
        assert all(int(c) == 0 for c in res_blk.codes[count:])
        assert res_blk.scale == int(ref.scales[0, px, b]), (px, b)
        zeros = [(res_blk.zeros >> j) & 1 for j in range(count)]
        assert zeros == [int(c == 0) for c in want]
        sat += res_blk.sat
    assert sat == ref.saturated


@pytest.mark.parametrize("out_format,relu,residual", [
    (intref.Format.UINT4, True, False),
    (intref.Format.UINT4, True, True),
    (intref.Format.INT4, False, True),
    (intref.Format.INT4, True, False),
    (intref.Format.MXINT8, False, False),
    (intref.Format.MXINT8, True, True),
])
@pytest.mark.parametrize("seed", [1, 2])
def test_ppu_matches_reference(out_format, relu, residual, seed):
    ppu_check(out_format=out_format, relu=relu, residual=residual, seed=seed)


def test_ppu_vector_8_back_to_back():
    ppu_check(out_format=intref.Format.INT4, relu=False, residual=True, seed=5, vector=8,
              channels=20, in_gap=0.0, out_gap=0.0)


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"vector": 32}, ValueError, r"vector must be one of \(4, 8, 16\), got 32"),
    ({"max_channels": 0}, ValueError, r"max_channels must be in \[1, 4096\], got 0"),
    ({"max_channels": "8"}, TypeError, "max_channels must be an int"),
])
def test_ppu_rejects_bad_parameters(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        PPU(**kwargs)

"""OutputWriter: every block written at its address with its word, ``done`` with the last
word only, over random input gaps (the case builder is shared with the cocotb test)."""

import random

import pytest

from golden import intref

from .simtest import run_sim, stream_put_polled, writer_case
from .writer import OutputWriter


@pytest.mark.parametrize("out_format,channels,vector,seed", [
    (intref.Format.UINT4, 40, 16, 1),
    (intref.Format.MXINT8, 70, 16, 2),
    (intref.Format.INT4, 12, 8, 3),
])
def test_writer_writes_every_block(out_format, channels, vector, seed):
    case = writer_case(out_format=out_format, channels=channels, pixels=3, seed=seed,
                       vector=vector)
    dut = OutputWriter(max_channels=128)
    writes, dones = {}, []

    async def producer(ctx):
        for name, value in case["config"].items():
            ctx.set(getattr(dut, name), value)
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        rnd = random.Random(seed)
        for payload in case["inputs"]:
            await stream_put_polled(ctx, dut.i, payload, rnd, 0.4)
        await ctx.tick()

    async def monitor(ctx):
        async for _, _, en, addr, data, done in ctx.tick().sample(
                dut.wr_en, dut.wr_addr, dut.wr_data, dut.done):
            if en:
                assert addr not in writes, f"address {addr} written twice"
                writes[addr] = data
                dones.append(done)

    run_sim(dut, [producer], [monitor])
    assert writes == case["want"]
    assert dones == [0] * (len(dones) - 1) + [1]


def test_writer_rejects_bad_parameters():
    with pytest.raises(ValueError, match=r"max_channels must be in \[1, 4096\], got 0"):
        OutputWriter(max_channels=0)

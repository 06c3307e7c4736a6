"""PPU against golden.intref.ppu: random accumulators, parameters and stream gaps."""

import pytest

from golden import intref

from .ppu import PPU, ppu_block_out, ppu_latency
from .simtest import default_args, ppu_case, run_sim, run_stream_case


#: The PPU's options (``timing_regs`` sets both): none, both, and each alone.
OPTIONS = [{}, {"fixed_split": True, "running_scale": True}, {"fixed_split": True},
           {"running_scale": True}]


def ppu_check(*, out_format, relu, residual, seed, options=None, **kwargs):
    case = ppu_case(out_format=out_format, relu=relu, residual=residual, seed=seed, **kwargs)
    run_stream_case(PPU(vector=kwargs.get("vector", 16), max_channels=64, **(options or {})),
                    case)


@pytest.mark.parametrize("out_format,relu,residual", [
    (intref.Format.UINT4, True, False),
    (intref.Format.UINT4, True, True),
    (intref.Format.INT4, False, True),
    (intref.Format.INT4, True, False),
    (intref.Format.MXINT8, False, False),
    (intref.Format.MXINT8, True, True),
])
@pytest.mark.parametrize("seed,options", [(1, OPTIONS[0]), (2, OPTIONS[1])])
def test_ppu_matches_reference(out_format, relu, residual, seed, options):
    ppu_check(out_format=out_format, relu=relu, residual=residual, seed=seed, options=options)


def test_ppu_vector_8_back_to_back():
    ppu_check(out_format=intref.Format.INT4, relu=False, residual=True, seed=5, vector=8,
              channels=20, in_gap=0.0, out_gap=0.0)


@pytest.mark.parametrize("out_format,channels", [
    (intref.Format.MXINT8, 3),   # 3-element blocks: b1 fills long before the buffer does
    (intref.Format.INT4, 20),
])
@pytest.mark.parametrize("options", OPTIONS)
def test_ppu_heavy_backpressure(out_format, channels, options):
    """``o`` mostly not ready, inputs back to back: the queue fills up to b0 and the input
    stalls; nothing is lost or reordered."""
    ppu_check(out_format=out_format, relu=False, residual=True, seed=7, channels=channels,
              pixels=12, in_gap=0.0, out_gap=0.9, options=options)


@pytest.mark.parametrize("out_format,channels,vector", [
    (intref.Format.INT4, 20, 16),     # a full block then a short one, back to back
    (intref.Format.MXINT8, 40, 16),   # 32 + 8
    (intref.Format.MXINT8, 3, 16),    # every block short
    (intref.Format.UINT4, 37, 8),
])
@pytest.mark.parametrize("options", OPTIONS)
def test_ppu_block_timing(out_format, channels, vector, options):
    """Back-to-back elements, ``o`` always ready: the input never stalls and every block is on
    ``o`` in the cycle :func:`ppu_block_out` gives (the cycle models rely on both)."""
    case = ppu_case(out_format=out_format, relu=out_format == intref.Format.UINT4,
                    residual=False, seed=3, channels=channels, pixels=3, vector=vector)
    dut = PPU(vector=vector, max_channels=64, **options)
    latency = ppu_latency(options.get("fixed_split", False))
    last_cycles, out_cycles, got = [], [], []

    async def producer(ctx):
        for name, value in case.config.items():
            ctx.set(getattr(dut, name), value)
        ctx.set(dut.o.ready, 1)
        cycle = 0
        for payload in case.inputs:
            ctx.set(dut.i.valid, 1)
            ctx.set(dut.i.payload, payload)
            _, _, ready = await ctx.tick().sample(dut.i.ready)
            assert ready, f"input stalled in cycle {cycle}"
            if payload["last"]:
                last_cycles.append(cycle)
            cycle += 1
        ctx.set(dut.i.valid, 0)

    async def monitor(ctx):
        cycle = 0
        while len(got) < case.outputs:
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                out_cycles.append(cycle)
                got.append(payload)
            cycle += 1

    run_sim(dut, [producer, monitor])
    case.check(got)
    want, prev = [], None
    for c, first in zip(last_cycles, [0] + [c + 1 for c in last_cycles[:-1]]):
        prev = ppu_block_out(c, c - first + 1, prev, latency)  # inputs back to back: cycle = index
        want.append(prev)
    assert out_cycles == want, (last_cycles, out_cycles, want)


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"vector": 32}, ValueError, r"vector must be one of \(4, 8, 16\), got 32"),
    ({"max_channels": 0}, ValueError, r"max_channels must be in \[1, 4096\], got 0"),
    ({"max_channels": "8"}, TypeError, "max_channels must be an int"),
])
def test_ppu_rejects_bad_parameters(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        PPU(**default_args("ppu", **kwargs))

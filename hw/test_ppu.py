"""PPU against golden.intref.ppu: random accumulators, parameters and stream gaps."""

import pytest

from golden import intref

from .ppu import PPU
from .simtest import ppu_case, run_stream_case


def ppu_check(*, out_format, relu, residual, seed, **kwargs):
    case = ppu_case(out_format=out_format, relu=relu, residual=residual, seed=seed, **kwargs)
    run_stream_case(PPU(vector=kwargs.get("vector", 16), max_channels=64), case)


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

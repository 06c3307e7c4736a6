"""DPE against golden.intref.conv2d_acc: random units, random gaps, exact cycle counts."""

import pytest

from golden import intref

from .common import Mode
from .dpe import DPE, DPE_LATENCY, dpe_item_cycles
from .engine import ENGINE_STAGES
from .simtest import default_args, dpe_cycles, engine_check


@pytest.mark.parametrize("x_format", list(intref.Format))
@pytest.mark.parametrize("vector,cols,tile", [(16, 2, 4), (8, 1, 2), (16, 3, 3)])
def test_dpe_matches_reference(x_format, vector, cols, tile):
    dut = DPE(vector=vector, cols=cols, tile=tile)
    engine_check(dut, x_format=x_format, units=12, seed=100 + x_format.value * 7 + cols,
                 item_cycles=dpe_cycles(vector, cols, tile), vector=vector)


@pytest.mark.parametrize("x_format", list(intref.Format))
@pytest.mark.parametrize("vector,cols,tile", [(16, 2, 6), (8, 1, 3)])
def test_dpe_col_skip_matches_reference(x_format, vector, cols, tile):
    """col_skip: only the column groups holding the unit's ncols channels are issued (those
    channels exact; cycles per dpe_item_cycles(ncols=...))."""
    dut = DPE(vector=vector, cols=cols, tile=tile, col_skip=True)
    engine_check(dut, x_format=x_format, units=12, seed=150 + x_format.value * 7 + cols,
                 item_cycles=dpe_cycles(vector, cols, tile, col_skip=True), vector=vector,
                 real_cols=True)


def test_dpe_col_skip_cycle_model():
    kw = dict(null=False, vector=16, cols=8, tile=32)
    assert [dpe_item_cycles(mode=Mode.INT4, ncols=n, **kw) for n in (1, 8, 9, 32)] == [1, 1, 2, 4]
    assert dpe_item_cycles(mode=Mode.MXINT8, ncols=1, **kw) == 8
    assert dpe_item_cycles(mode=Mode.MXINT8, **kw) == 32


def test_dpe_default_size_int4():
    kw = default_args("dpe")
    engine_check(DPE(**kw), x_format=intref.Format.UINT4, units=3, seed=7,
                 item_cycles=dpe_cycles(kw["vector"], kw["cols"], kw["tile"], kw["col_skip"]),
                 max_vec=2, real_cols=kw["col_skip"])


def test_dpe_back_to_back_throughput():
    """Without gaps the engine is busy every cycle between its first and last item."""
    dut = DPE(vector=16, cols=2, tile=4)
    busy, cycles = engine_check(dut, x_format=intref.Format.UINT4, units=8, seed=3,
                                item_cycles=dpe_cycles(16, 2, 4), in_gap=0.0, out_gap=0.0)
    # the first handshake, the result pipeline and register, the final tick
    assert cycles - busy <= 3 + ENGINE_STAGES


@pytest.mark.parametrize("x_format", list(intref.Format))
def test_dpe_product_reg_matches_reference(x_format):
    """product_reg (timing_regs): the products registered before the column sums; exact."""
    dut = DPE(vector=16, cols=2, tile=4, col_skip=True, product_reg=True)
    assert dut.latency == DPE_LATENCY + 1
    engine_check(dut, x_format=x_format, units=10, seed=170 + x_format.value,
                 item_cycles=dpe_cycles(16, 2, 4, col_skip=True), vector=16, real_cols=True)


@pytest.mark.parametrize("regs,extra", [("product_reg", 1), ("mant_regs", 2)])
def test_dpe_registers_add_latency(regs, extra):
    """product_reg (mant_regs): without gaps the same busy cycles and exactly one (two) cycles
    more in all."""
    runs = [engine_check(DPE(vector=8, cols=1, tile=2, **{regs: on}),
                         x_format=intref.Format.MXINT8, units=4, seed=5, vector=8,
                         item_cycles=dpe_cycles(8, 1, 2), in_gap=0.0, out_gap=0.0)
            for on in (False, True)]
    assert runs[1] == (runs[0][0], runs[0][1] + extra)


@pytest.mark.parametrize("x_format", [intref.Format.INT4, intref.Format.MXINT8])
def test_dpe_mant_regs_match_reference(x_format):
    """mant_regs (dsp_regs): the mantissa multiplier's operand and product registers, with
    the other timing registers, under random gaps on both sides; exact."""
    dut = DPE(vector=16, cols=2, tile=4, col_skip=True, product_reg=True, result_queue=True,
              mant_regs=True)
    assert dut.latency == DPE_LATENCY + 3
    engine_check(dut, x_format=x_format, units=10, seed=230 + x_format.value,
                 item_cycles=dpe_cycles(16, 2, 4, col_skip=True), vector=16, real_cols=True,
                 in_gap=0.2, out_gap=0.5)


@pytest.mark.parametrize("x_format", [intref.Format.INT4, intref.Format.MXINT8])
def test_dpe_result_queue_matches_reference(x_format):
    """result_queue (timing_regs): a second result register behind ``o``; exact under random
    gaps on both sides, ``o`` often not ready."""
    dut = DPE(vector=16, cols=2, tile=4, product_reg=True, result_queue=True)
    engine_check(dut, x_format=x_format, units=14, seed=190 + x_format.value,
                 item_cycles=dpe_cycles(16, 2, 4), vector=16, in_gap=0.1, out_gap=0.7)


def test_dpe_result_queue_runs_a_result_ahead():
    """With ``o`` mostly not ready, the queue lets the engine finish a unit behind an untaken
    result: the same busy cycles, no more cycles in all; without gaps, no cycle changes."""
    def run(queue, out_gap):
        return engine_check(DPE(vector=8, cols=1, tile=2, result_queue=queue),
                            x_format=intref.Format.INT4, units=8, seed=6, vector=8,
                            item_cycles=dpe_cycles(8, 1, 2), in_gap=0.0, out_gap=out_gap)
    assert run(True, 0.0) == run(False, 0.0)
    plain, queued = run(False, 0.8), run(True, 0.8)
    assert queued[0] == plain[0] and queued[1] <= plain[1]


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"vector": 32}, ValueError, "vector must be one of"),
    ({"vector": "16"}, TypeError, "vector must be an int"),
    ({"cols": 0}, ValueError, r"cols must be in \[1, 64\], got 0"),
    ({"cols": 2.0}, TypeError, "cols must be an int"),
    ({"cols": 8, "tile": 4}, ValueError, r"tile must be in \[8, 256\], got 4"),
    ({"cols": 8, "tile": 12}, ValueError, "tile must be a multiple of cols=8, got 12"),
    ({"tile": True}, TypeError, "tile must be an int"),
    ({"product_reg": 1}, TypeError, "product_reg must be a bool"),
    ({"mant_regs": 1}, TypeError, "mant_regs must be a bool"),
    ({"result_queue": "no"}, TypeError, "result_queue must be a bool"),
])
def test_dpe_rejects_bad_parameters(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        DPE(**default_args("dpe", **kwargs))

"""SPE against golden.intref.conv2d_acc: random units, random gaps, exact cycle counts."""

import numpy as np
import pytest

from golden import intref

from .common import Mode
from .config import PRESETS
from .dpe import DPE, dpe_item_cycles
from .simtest import default_args, dpe_cycles, engine_check, spe_cycles
from .spe import SPE, spe_item_cycles, spe_item_macs


@pytest.mark.parametrize("x_format", list(intref.Format))
@pytest.mark.parametrize("vector,lanes,cols,sparsity", [(16, 4, 3, 0.65), (8, 3, 2, 0.3)])
@pytest.mark.parametrize("regs", [(False, False, False), (True, False, False),
                                  (True, True, True)])
def test_spe_matches_reference(x_format, vector, lanes, cols, sparsity, regs):
    """Exact results and cycles per item; the registered end-of-sweep flag, the product
    register, the registered handshake of the lane selection and the second result register
    change neither."""
    sweep_end_reg, product_reg, accept_reg = regs
    dut = SPE(vector=vector, lanes=lanes, cols=cols, sweep_end_reg=sweep_end_reg,
              product_reg=product_reg, accept_reg=accept_reg, result_queue=accept_reg)
    engine_check(dut, x_format=x_format, units=12, seed=200 + x_format.value * 5 + lanes,
                 item_cycles=spe_cycles(vector, lanes), vector=vector, sparsity=sparsity)


@pytest.mark.parametrize("x_format", list(intref.Format))
def test_spe_one_lane_registered_matches_reference(x_format):
    """One lane (the board's SPE) with the registered lane selection and nibble_skip: exact
    results and cycles per item."""
    dut = SPE(vector=8, lanes=1, cols=2, nibble_skip=True, sweep_end_reg=True,
              product_reg=True, accept_reg=True, result_queue=True)
    engine_check(dut, x_format=x_format, units=8, seed=310 + x_format.value,
                 item_cycles=spe_cycles(8, 1, nibble_skip=True), vector=8, sparsity=0.5)


@pytest.mark.parametrize("x_format", [intref.Format.MXINT8, intref.Format.UINT4])
def test_spe_all_lanes_registered_matches_reference(x_format):
    """32 lanes (at least the mask's bits: every sweep one cycle) with the registered lane
    selection: exact results and cycles per item."""
    dut = SPE(vector=16, lanes=32, cols=2, sweep_end_reg=True, product_reg=True,
              accept_reg=True, result_queue=True)
    engine_check(dut, x_format=x_format, units=6, seed=330 + x_format.value,
                 item_cycles=spe_cycles(16, 32), vector=16, sparsity=0.3)


@pytest.mark.parametrize("x_format", [intref.Format.MXINT8, intref.Format.UINT4])
@pytest.mark.parametrize("accept_reg", [False, True])
def test_spe_nibble_skip_matches_reference(x_format, accept_reg):
    """nibble_skip: MXINT8 sweeps the non-zero high nibbles, then the low ones (INT4 as
    before); exact results, cycles per spe_item_cycles(nibble_skip=True)."""
    dut = SPE(vector=16, lanes=3, cols=3, nibble_skip=True, sweep_end_reg=accept_reg,
              accept_reg=accept_reg)
    engine_check(dut, x_format=x_format, units=12, seed=71 + x_format.value,
                 item_cycles=spe_cycles(16, 3, nibble_skip=True), sparsity=0.4)


def test_spe_nibble_skip_cycle_model_examples():
    x = [0] * 32
    x[:6] = [1, 2, 3, 16, -16, -1]  # high nibbles non-zero: 16, -16, -1; low: 1, 2, 3, -1
    kw = dict(mode=Mode.MXINT8, null=False, vector=16, lanes=2)
    assert spe_item_cycles(x, **kw) == 4 * 3
    assert spe_item_cycles(x, nibble_skip=True, **kw) == 2 * 2 + 2 * 2
    assert spe_item_macs(x, nibble_skip=True, mode=Mode.MXINT8, vector=16, lanes=2) == 14
    assert spe_item_cycles([0] * 32, nibble_skip=True, **kw) == 4
    assert spe_item_cycles(x, nibble_skip=True, **{**kw, "mode": Mode.INT4}) == 3


def test_spe_default_size_int4():
    kw = default_args("spe")
    engine_check(SPE(**kw), x_format=intref.Format.UINT4, units=3, seed=9,
                 item_cycles=spe_cycles(kw["vector"], kw["lanes"]), sparsity=0.65, max_vec=2)


def test_spe_cycle_model_examples():
    x = [0] * 32
    assert spe_item_cycles(x, mode=Mode.INT4, null=False, vector=16, lanes=4) == 1
    assert spe_item_cycles(x, mode=Mode.MXINT8, null=False, vector=16, lanes=4) == 4
    x[:5] = [1, 2, 3, 4, 5]
    assert spe_item_cycles(x, mode=Mode.INT4, null=False, vector=16, lanes=4) == 2
    x[20] = 9  # beyond the 16 elements of an INT4 vector: ignored in INT4 mode
    assert spe_item_cycles(x, mode=Mode.INT4, null=False, vector=16, lanes=4) == 2
    assert spe_item_cycles(x, mode=Mode.MXINT8, null=False, vector=16, lanes=4) == 8
    assert spe_item_cycles(x, mode=Mode.MXINT8, null=True, vector=16, lanes=4) == 1


def test_spe_beats_dpe_per_multiplier_at_65_percent_sparsity():
    """Same work, same multiplier count (32 each): the SPE needs fewer cycles (measured)."""
    kw = dict(x_format=intref.Format.UINT4, units=10, seed=11, sparsity=0.65, in_gap=0.0,
              out_gap=0.0, null_rate=0.0, max_vec=4)
    dpe = DPE(vector=16, cols=2, tile=8)
    spe = SPE(vector=16, lanes=4, cols=8)
    dpe_busy, _ = engine_check(dpe, item_cycles=dpe_cycles(16, 2, 8), **kw)
    spe_busy, _ = engine_check(spe, item_cycles=spe_cycles(16, 4), **kw)
    assert spe_busy * 1.5 <= dpe_busy, (spe_busy, dpe_busy)
    # and at the default sizes (16 x 8 vs 4 x 32, 128 multipliers each) by the cycle models
    rng = np.random.default_rng(5)
    xs = np.where(rng.random((1000, 16)) < 0.65, 0, rng.integers(1, 16, (1000, 16)))
    cfg = PRESETS["default"]
    spe_total = sum(spe_item_cycles(list(v), mode=Mode.INT4, null=False, vector=cfg.vector,
                                    lanes=cfg.spe_lanes) for v in xs)
    dpe_total = 1000 * dpe_item_cycles(mode=Mode.INT4, null=False, vector=cfg.vector,
                                       cols=cfg.dpe_cols, tile=cfg.tile)
    assert spe_total < 0.6 * dpe_total


@pytest.mark.parametrize("regs,extra", [("product_reg", 1), ("mant_regs", 2)])
def test_spe_registers_add_latency(regs, extra):
    """product_reg (mant_regs, dsp_regs): exact, without gaps the same busy cycles and
    exactly one (two) cycles more in all."""
    runs = [engine_check(SPE(vector=16, lanes=2, cols=2, nibble_skip=True, **{regs: on}),
                         x_format=intref.Format.MXINT8, units=4, seed=6, sparsity=0.5,
                         item_cycles=spe_cycles(16, 2, nibble_skip=True), in_gap=0.0,
                         out_gap=0.0)
            for on in (False, True)]
    assert runs[1] == (runs[0][0], runs[0][1] + extra)


@pytest.mark.parametrize("kwargs,exc,msg", [
    ({"vector": 12}, ValueError, r"vector must be one of \(4, 8, 16\), got 12"),
    ({"lanes": 0}, ValueError, r"lanes must be in \[1, 32\], got 0"),
    ({"lanes": 33}, ValueError, r"lanes must be in \[1, 32\], got 33"),
    ({"lanes": None}, TypeError, "lanes must be an int"),
    ({"cols": 257}, ValueError, r"cols must be in \[1, 256\], got 257"),
    ({"cols": 1.5}, TypeError, "cols must be an int"),
    ({"sweep_end_reg": 1}, TypeError, "sweep_end_reg must be a bool"),
    ({"product_reg": None}, TypeError, "product_reg must be a bool"),
    ({"mant_regs": "yes"}, TypeError, "mant_regs must be a bool"),
    ({"accept_reg": True}, ValueError, "accept_reg needs sweep_end_reg"),
    ({"info_in": True, "sweep_end_reg": True}, ValueError, "info_in needs accept_reg"),
    ({"info_in": 1}, TypeError, "info_in must be a bool"),
])
def test_spe_rejects_bad_parameters(kwargs, exc, msg):
    with pytest.raises(exc, match=msg):
        SPE(**default_args("spe", **kwargs))

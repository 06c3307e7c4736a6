"""evaluation.fastmodel (closed form) equals hw.cyclemodel.predict_layer (cycle-stepped)."""
import numpy as np
import pytest

from golden import intref as ir
from hw.config import PRESETS, AcceleratorConfig
from hw.cyclemodel import predict_layer
from hw.layout import act_words
from hw.ppu_fixed import SPLIT_REGISTERS
from evaluation.fastmodel import layer_counters

CASES = [  # h, w, cin, cout, k, s, p, x_format, out_format, residual, (cols, lanes, tile)
    (1, 1, 16, 1, 1, 1, 0, ir.Format.UINT4, ir.Format.UINT4, False, (8, 4, 32)),
    (4, 4, 40, 33, 3, 1, 1, ir.Format.UINT4, ir.Format.UINT4, True, (8, 4, 32)),
    (5, 3, 64, 16, 3, 2, 1, ir.Format.UINT4, ir.Format.MXINT8, False, (4, 6, 32)),
    (4, 4, 48, 70, 3, 1, 2, ir.Format.MXINT8, ir.Format.MXINT8, False, (8, 4, 32)),
    (3, 5, 96, 40, 1, 1, 0, ir.Format.MXINT8, ir.Format.INT4, True, (12, 2, 48)),
    (6, 6, 32, 8, 3, 2, 0, ir.Format.INT4, ir.Format.UINT4, False, (16, 1, 32)),
    (4, 4, 1, 32, 3, 1, 1, ir.Format.MXINT8, ir.Format.UINT4, False, (2, 7, 32)),
    # the dense baselines' equal-area arrays (evaluation.area.equal_area_array)
    (4, 4, 40, 70, 3, 1, 1, ir.Format.INT4, ir.Format.INT4, True, (24, 1, 24)),
    (3, 3, 32, 33, 3, 1, 1, ir.Format.INT4, ir.Format.INT4, False, (2, 1, 32)),
    # dense tops (no SPE: the map is ignored, every group on the DPE)
    (4, 4, 40, 70, 3, 1, 1, ir.Format.UINT4, ir.Format.UINT4, True, (24, 0, 24)),
    (3, 5, 96, 40, 1, 1, 0, ir.Format.MXINT8, ir.Format.MXINT8, False, (16, 0, 32)),
]


MECHANISM_SETS = [{"col_skip": 1}, {"nibble_skip": 1}, {"col_skip": 1, "nibble_skip": 1},
                  {"balance": 1, "col_skip": 1, "nibble_skip": 1},
                  {"timing_regs": 1}, {"col_skip": 1, "timing_regs": 1},
                  {"balance": 1, "col_skip": 1, "nibble_skip": 1, "timing_regs": 1}]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_fast_model_equals_predict_layer(case):
    _check_case(case, {})


@pytest.mark.parametrize("mechanisms", range(len(MECHANISM_SETS)))
@pytest.mark.parametrize("case", [1, 3, 4, 6, 9])
def test_fast_model_with_v2_mechanisms(case, mechanisms):
    """The same with the architecture-v2 mechanisms and the join's second unit register (a
    dense top takes col_skip and timing_regs only)."""
    mech = MECHANISM_SETS[mechanisms]
    if CASES[case][-1][1] == 0:
        mech = {k: v for k, v in mech.items() if k in ("col_skip", "timing_regs")}
    _check_case(case, mech)


@pytest.mark.parametrize("case", range(len(CASES)))
def test_timing_regs_costs_at_most_its_pipeline_registers(case):
    """The fetch's second register delays the start by one cycle, the engines' product
    register the first result by one, the PPU's fixed-point registers the last block by
    SPLIT_REGISTERS (5); the join's second unit register releases the engines no later: a
    layer takes at most 2 + SPLIT_REGISTERS cycles more, the other counters are the same."""
    base = _check_case(case, {})
    spare = _check_case(case, {"timing_regs": 1})
    for a, b in zip(base, spare):
        assert b["cycles"] <= a["cycles"] + 2 + SPLIT_REGISTERS
        assert {k: v for k, v in a.items() if k != "cycles"} == \
            {k: v for k, v in b.items() if k != "cycles"}


def _check_case(case, mechanisms):
    h, w, cin, cout, k, s, p, xf, of, res, (cols, lanes, tile) = CASES[case]
    rng = np.random.default_rng(case)
    shape = ir.ConvShape(h, w, cin, cout, k, s, p)
    blk = ir.block_size(xf, 16)
    lo, hi = (0, 15) if xf == ir.Format.UINT4 else ((-7, 7) if xf == ir.Format.INT4 else (-127, 127))
    results = []
    for trial in range(3):
        x = rng.integers(lo, hi + 1, (h, w, cin))
        x[rng.random(x.shape) < rng.uniform(0.2, 0.9)] = 0
        route = [int(b) for b in rng.integers(0, 2, -(-cin // 16))]
        if trial == 1:
            route = [0] * len(route)
        scales = np.zeros((h, w, -(-cin // blk)), dtype=np.uint8)
        words = act_words(x, scales, x_format=xf)
        config = AcceleratorConfig(dpe_cols=cols, spe_lanes=lanes, tile=tile, **mechanisms)
        want = predict_layer(shape, route, x_format=xf, out_format=of, residual=res,
                             act_words=words, config=config)
        got = layer_counters(shape, route, x_codes=x, x_format=xf, out_format=of, residual=res,
                             config=config, details=True)
        assert {n: got[n] for n in want} == want, (case, trial, route)
        items = sum(got[n] for n in ("items_dense", "items_sparse", "null_dense", "null_sparse"))
        assert items >= 2 * got["units"]
        results.append(got)
    return results


def test_worked_example_of_the_hardware_doc():
    # docs/hardware.md 4.7 (the paper's organisation): 1x1 input, 1x1 kernel, cin 16, cout 1,
    # INT4: cycles = 25
    shape = ir.ConvShape(1, 1, 16, 1, 1, 1, 0)
    c = layer_counters(shape, [0], x_codes=np.ones((1, 1, 16), int), x_format=ir.Format.UINT4,
                       out_format=ir.Format.UINT4, residual=False, details=True,
                       config=PRESETS["paper"])
    assert c["cycles"] == 25 and c["dpe_busy"] == 4 and c["spe_busy"] == 1
    assert c["items_dense"] == 1 and c["null_sparse"] == 1
    # cout 16: 15 more channels through the serializer and the block's 16-element drain
    shape = ir.ConvShape(1, 1, 16, 16, 1, 1, 0)
    c = layer_counters(shape, [0], x_codes=np.ones((1, 1, 16), int), x_format=ir.Format.UINT4,
                       out_format=ir.Format.UINT4, residual=False, config=PRESETS["paper"])
    assert c["cycles"] == 25 + 15 + 15


def test_short_route_is_rejected():
    shape = ir.ConvShape(2, 2, 64, 16, 1, 1, 0)
    with pytest.raises(ValueError, match="route has 2 groups"):
        layer_counters(shape, [0, 0], x_codes=np.zeros((2, 2, 64), int),
                       x_format=ir.Format.UINT4, out_format=ir.Format.UINT4, residual=False,
                       config=PRESETS["default"])


def test_timing_regs_gains_where_engine_and_serializer_alternate():
    """A sparse 3x3 layer of 33 channels (units of 32 and 1 channels; the border pixels' units
    cost the SPE fewer cycles): the engines are released while the serializer still works, so
    the layer is shorter, and the closed form still equals the stepped model."""
    rng = np.random.default_rng(5)
    shape = ir.ConvShape(5, 5, 32, 33, 3, 1, 1)
    x = rng.integers(0, 16, (5, 5, 32))
    x[rng.random(x.shape) < 0.8] = 0
    words = act_words(x, np.zeros((5, 5, 2), dtype=np.uint8), x_format=ir.Format.UINT4)
    cycles = []
    for rr in (0, 1):
        config = AcceleratorConfig(dpe_cols=4, spe_lanes=4, tile=32, timing_regs=rr)
        args = dict(x_format=ir.Format.UINT4, out_format=ir.Format.UINT4, residual=False,
                    config=config)
        want = predict_layer(shape, [1, 1], act_words=words, **args)
        assert layer_counters(shape, [1, 1], x_codes=x, **args) == want
        cycles.append(want["cycles"])
    assert cycles[1] < cycles[0]

"""evaluation.area: the cited table, the scaling rules, the engines' arithmetic and the
equal-area array shapes."""
import numpy as np
import pytest

from golden import intref as ir
from evaluation import area as ar
from evaluation.baselines import DENSE_ARRAY, dense_counters, events_for
from traces.format import Descriptor


def test_cited_area_table():
    t = ar.AREA_45NM_UM2
    assert (t["add_int8"], t["add_int16"], t["add_int32"]) == (36, 67, 137)
    assert (t["add_fp16"], t["add_fp32"]) == (1360, 4184)
    assert (t["mult_int8"], t["mult_int32"]) == (282, 3495)
    assert (t["mult_fp16"], t["mult_fp32"]) == (1640, 7700)
    assert "Hennessy" in ar.SOURCE and "2302.14017" in ar.SOURCE and "45 nm" in ar.SOURCE


def test_multiplier_rule_is_the_operand_width_product():
    assert ar.int_mult_um2(8) == 282
    assert ar.int_mult_um2(5) == pytest.approx(282 * 25 / 64)          # 110.16 um^2
    assert ar.int_mult_um2(22, 8) == pytest.approx(282 * 176 / 64)
    # the rule over-estimates the table's 32b multiplier by 29 %
    assert ar.int_mult_um2(32) / 3495 == pytest.approx(4512 / 3495)
    for bad in (0, -3, 4.0, True):
        with pytest.raises(ValueError):
            ar.int_mult_um2(bad)


def test_adder_rule_hits_the_three_table_points():
    assert [ar.int_add_um2(b) for b in (8, 16, 32)] == [36, 67, 137]
    assert ar.int_add_um2(12) == pytest.approx(51.5)
    assert ar.int_add_um2(22) == pytest.approx(67 + 6 * 70 / 16)
    assert ar.int_add_um2(64) == pytest.approx(137 + 32 * 70 / 16)     # 277 um^2
    assert ar.int_add_um2(4) == pytest.approx(18)
    with pytest.raises(ValueError):
        ar.int_add_um2(0)


def test_adder_trees():
    a = ar.int_add_um2
    assert ar.adder_tree_um2(16, 10) == pytest.approx(8 * a(11) + 4 * a(12) + 2 * a(13) + a(14))
    assert ar.adder_tree_um2(4, 10) == pytest.approx(2 * a(11) + a(12))
    assert ar.adder_tree_um2(3, 10) == pytest.approx(a(11) + a(12))
    assert ar.adder_tree_um2(1, 10) == 0
    with pytest.raises(ValueError):
        ar.adder_tree_um2(0, 10)


def _int_column(lanes):
    a, m = ar.int_add_um2, ar.int_mult_um2
    return lanes * m(5) + ar.adder_tree_um2(lanes, 10) + a(22) + m(4) + m(22, 8) + a(64)


def test_engines_of_this_design_by_hand():
    s = ar.sqdm_um2()
    assert s["multipliers"] == 256
    dpe, spe = s["engines"]["dpe"], s["engines"]["spe"]
    assert dpe["total_um2"] == pytest.approx(8 * _int_column(16))
    assert spe["total_um2"] == pytest.approx(32 * _int_column(4))
    assert dpe["parts_um2"]["multipliers"] == spe["parts_um2"]["multipliers"] == \
        pytest.approx(128 * 282 * 25 / 64)
    # the SPE pays a term path per 4 multipliers, the DPE per 16
    assert spe["total_um2"] > 1.9 * dpe["total_um2"]
    assert s["total_um2"] == pytest.approx(dpe["total_um2"] + spe["total_um2"])
    fp = ar.fp16_array_um2(16, 16)
    assert fp["total_um2"] == pytest.approx(16 * (16 * 1640 + 15 * 1360 + 4184))
    assert ar.int_array_um2(16, 16)["total_um2"] == pytest.approx(16 * _int_column(16))
    with pytest.raises(ValueError):
        ar.int_array_um2(16, 0)


def test_equal_area_multiplier_counts():
    budget = ar.sqdm_um2()["total_um2"]
    fp = ar.equal_area_array("fp16_dense")
    assert fp["multipliers_exact"] == pytest.approx(16 * budget / (16 * 1640 + 15 * 1360 + 4184))
    assert 27 < fp["multipliers_exact"] < 28
    assert (fp["multipliers"], fp["dpe_cols"], fp["tile"], fp["vector"]) == (32, 2, 32, 16)
    vsq = ar.equal_area_array("int4_vsq_dense")
    assert vsq["multipliers_exact"] == pytest.approx(16 * budget / _int_column(16))
    assert 375 < vsq["multipliers_exact"] < 376
    assert (vsq["multipliers"], vsq["dpe_cols"], vsq["tile"]) == (384, 24, 24)
    for a in (fp, vsq):       # rounded up to whole columns: never less area than this design
        assert 1 <= a["area_ratio"] < 1 + a["column_um2"] / budget
        assert a["area_um2"] == pytest.approx(a["dpe_cols"] * a["column_um2"])
        assert a["tile"] % a["dpe_cols"] == 0
    # a budget of exactly the 16 x 16 array gives the 16 x 16 array back (no spurious round-up)
    same = ar.equal_area_array("int4_vsq_dense", ar.int_array_um2(16, 16)["total_um2"])
    assert (same["multipliers"], same["tile"], same["area_ratio"]) == (256, 32, 1.0)
    with pytest.raises(ValueError, match="no dense array area"):
        ar.equal_area_array("sqdm")
    with pytest.raises(ValueError, match="positive"):
        ar.equal_area_array("fp16_dense", 0)


def test_dense_events_follow_the_array_tile():
    d = Descriptor(height=4, width=4, cin=32, cout=64, kernel=3, stride=1, padding=1,
                   x_format=int(ir.Format.UINT4), out_format=int(ir.Format.UINT4), relu=True,
                   residual=False, scale_shift=20)
    x = np.zeros((4, 4, 32), np.uint8)
    base = dense_counters(d, x)
    assert dense_counters(d, x, DENSE_ARRAY) == base
    assert events_for("fp16_dense", d, base) == events_for("fp16_dense", d, base,
                                                           array=DENSE_ARRAY)
    arr = ar.equal_area_array("int4_vsq_dense")                 # 16 x 24, tile 24
    c = dense_counters(d, x, arr)
    # 100 valid taps x 2 vectors x 3 tiles of 24 channels (24 + 24 + 16), one pass each
    assert c["items_dense"] == 600 and c["dpe_busy"] == 600
    ev = events_for("int4_vsq_dense", d, c, array=arr)
    assert ev["mult_int5"] == 600 * 16 * 24 and ev["scale_term"] == 600 * 24
    narrow = ar.equal_area_array("fp16_dense")                  # 16 x 2, tile 32
    c2 = dense_counters(d, x, narrow)
    assert c2["items_dense"] == base["items_dense"] and c2["dpe_busy"] == 8 * base["dpe_busy"]
    assert events_for("fp16_dense", d, c2, array=narrow) == events_for("fp16_dense", d, base)
    with pytest.raises(ValueError, match="16-lane"):
        events_for("fp16_dense", d, base, array={**DENSE_ARRAY, "vector": 8})

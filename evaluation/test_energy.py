import math

import pytest

from evaluation import energy as en


def test_cited_table_values():
    t = en.HOROWITZ_45NM
    assert (t["add_int8"], t["add_int32"], t["mult_int8"], t["mult_int32"]) == (0.03, 0.1, 0.2, 3.1)
    assert (t["add_fp16"], t["mult_fp16"], t["add_fp32"], t["mult_fp32"]) == (0.4, 1.1, 0.9, 3.7)
    assert (t["sram_8kb_read_64b"], t["sram_32kb_read_64b"], t["sram_1mb_read_64b"]) == (10, 20, 100)
    assert (t["dram_64b_low"], t["dram_64b_high"]) == (1300, 2600)
    assert "Horowitz" in en.SOURCE and "ISSCC 2014" in en.SOURCE


def test_multiplier_scaling_rule():
    assert en.int_mult_pj(8) == pytest.approx(0.2)
    assert en.int_mult_pj(5, 5) == pytest.approx(0.2 * 25 / 64)
    assert en.int_mult_pj(4) == pytest.approx(0.05)
    # the rule reproduces the table's 32b point within 5 %
    assert en.int_mult_pj(32) == pytest.approx(3.1, rel=0.05)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            en.int_mult_pj(bad)


def test_adder_rule_hits_both_table_points():
    assert en.int_add_pj(8) == pytest.approx(0.03)
    assert en.int_add_pj(32) == pytest.approx(0.1)
    assert en.int_add_pj(64) == pytest.approx(0.03 + 56 * 0.07 / 24)
    assert en.int_add_pj(4) == pytest.approx(0.015)
    with pytest.raises(ValueError):
        en.int_add_pj(0)


def test_event_table_and_node_scaling():
    t45 = en.EnergyTable()
    assert t45.pj("mult_fp16") == 1.1
    assert t45.pj("sram_bit") == pytest.approx(20 / 64)
    assert t45.pj("dram_byte") == pytest.approx(1300 / 8)
    t28 = en.EnergyTable(node_nm=28)
    assert t28.pj("mult_fp16") == pytest.approx(1.1 * 28 / 45)
    assert t28.pj("dram_byte") == t45.pj("dram_byte")        # off-chip: not scaled
    with pytest.raises(KeyError, match="unknown energy event"):
        t45.pj("mult_fp64")
    with pytest.raises(ValueError):
        en.EnergyTable(node_nm=1)


def test_energy_of_sums_events():
    total, parts = en.energy_of({"mult_int5": 1000, "sram_bit": 64})
    assert parts["mult_int5"] == pytest.approx(78.125)
    assert parts["sram_bit"] == pytest.approx(20.0)
    assert math.isclose(total, 98.125)
    with pytest.raises(ValueError):
        en.energy_of({"mult_int5": -1})

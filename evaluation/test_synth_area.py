"""evaluation.synth_area: one small block synthesized for real, the sizing rules, errors."""
import json

import pytest

from hw.config import PRESETS
from hw.rtlcache import block_verilog
from evaluation import synth_area as sa


def test_small_block_synthesizes_to_counted_gates(tmp_path):
    """The output writer of the micro configuration: gates and flip-flops counted, no memory;
    the second call is a cache hit with the same figures."""
    path, _ = block_verilog("writer", PRESETS["micro"])
    logs = []
    first = sa.synth_file(path, "sqdm_writer", cache=tmp_path, log=logs.append)
    assert first["cells"] > 50 and first["flip_flops"] > 10
    assert first["transistors"] > 16 * first["flip_flops"] and first["sram_bits"] == 0
    assert set(first["cells_by_type"]) >= {"$_DFF_P_"}
    assert len(logs) == 1 and "sqdm_writer" in logs[0]
    again = sa.synth_file(path, "sqdm_writer", cache=tmp_path, log=logs.append)
    assert again == first and len(logs) == 1


def test_memories_stay_black_boxes_counted_by_bits(tmp_path):
    """The PPU's block buffer is not mapped to flip-flops: its bits are reported instead."""
    path, _ = block_verilog("ppu", PRESETS["micro"])
    r = sa.synth_file(path, "sqdm_ppu", cache=tmp_path)
    assert r["sram_bits"] > 0 and r["cells_by_type"].get("$mem_v2", 0) >= 1


def test_datapath_rules():
    assert sa.datapath_blocks(PRESETS["paper"])["fetch"] == 2
    v2 = sa.datapath_blocks(PRESETS["default"])  # balance: one fetch and the dispatcher
    assert v2["fetch"] == 1 and v2["dispatch"] == 1 and "dispatch" not in \
        sa.datapath_blocks(PRESETS["paper"])
    assert sa.datapath_blocks(PRESETS["dense"])["fetch"] == 1
    assert sa.dense_config(16).tile == 32 and sa.dense_config(24).tile == 24
    assert not sa.dense_config(24).has_spe and sa.dense_config(24).dpe_multipliers == 384
    bits = sa.memory_bits(PRESETS["default"])
    assert bits["weight"] == 512 * PRESETS["default"].widths["weight"]


def test_peer_params_and_errors(tmp_path, capsys):
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"configs": {"dense_equal_area": {
        "params": sa.dense_config(24).to_dict()}}}))
    assert sa.peer_params(report) == ("--param balance=0 --param dpe_cols=24 --param "
                                      "nibble_skip=0 --param spe_lanes=0 --param tile=24")
    assert sa.main(["--out", str(tmp_path / "none"), "--peer-params"]) == 2
    assert "run make area" in capsys.readouterr().err
    bad = tmp_path / "bad.v"
    bad.write_text("module broken(input a; endmodule\n")
    with pytest.raises(sa.AreaError, match="yosys failed on .*bad.v"):
        sa.synth_file(bad, "broken", cache=tmp_path / "c")


def test_peer_search_brackets_the_budget(monkeypatch, tmp_path):
    """size_dense_peer returns the fewest columns at or over the budget, measuring few sizes
    (a stand-in area: convex in the columns, a step where the tile stops being 32)."""
    def fake(config, **_):
        c = config.dpe_cols
        t = 1_000_000 + 90_000 * c + 2_000 * c * c + (150_000 if config.tile != 32 else 0)
        return {"datapath": {"transistors": t}, "params": config.to_dict()}
    monkeypatch.setattr(sa, "datapath_area", fake)
    area = lambda c: fake(sa.dense_config(c))["datapath"]["transistors"]   # noqa: E731
    for budget in (area(39) - 1, area(39), area(16) + 1, area(64)):
        config, got, tried = sa.size_dense_peer(budget, cache=tmp_path)
        c = config.dpe_cols
        assert got["datapath"]["transistors"] >= budget and area(c - 1) < budget
        assert len(tried) <= 6, tried
    with pytest.raises(sa.AreaError, match="no dense top up to 64 columns"):
        sa.size_dense_peer(area(64) + 1, cache=tmp_path)

"""Baseline formulas on a hand-computed layer; the report on a tiny synthetic sample; errors."""
import json
import re

import numpy as np
import pytest

from golden import intref as ir
from traces.format import Descriptor, write_trace
from traces.synth import random_execution
from evaluation import bench
from evaluation.baselines import (DENSE_ARRAY, array_config, dense_counters, dram_bytes,
                                  events_for, useful_macs)
from hw.cyclemodel import start_cycle
from hw.top import timing_registers


def _desc(**kw):
    base = dict(height=4, width=4, cin=32, cout=64, kernel=3, stride=1, padding=1,
                x_format=int(ir.Format.UINT4), out_format=int(ir.Format.UINT4), relu=True,
                residual=False, scale_shift=20)
    base.update(kw)
    return Descriptor(**base)


def test_dense_baseline_on_a_hand_computed_layer():
    d = _desc()
    # valid taps of a 4x4 map, 3x3 kernel, padding 1: 4 corners x 4 + 8 edges x 6 + 4 x 9 = 100
    assert useful_macs(d) == 100 * 32 * 64
    c = dense_counters(d, np.zeros((4, 4, 32), np.uint8))
    # items: 100 taps x 2 vectors x 2 tiles; 16 x 16 array: 32 / 16 = 2 passes per item
    assert c["items_dense"] == 400 and c["dpe_busy"] == 800
    # 32 units of 32 channels: the 1-channel-per-cycle serializer needs 1024 cycles, the array
    # 4 x taps per unit (corners 16, edges 24, interior 36); with one register of slack the
    # total lies between max(sums) and the sum of per-unit maxima plus fill and drain (the
    # engine pipeline, the join, the PPU's registers, the last block's 16-element drain)
    per_unit = [max(16, 32)] * 4 + [max(24, 32)] * 8 + [36] * 4
    config = array_config(DENSE_ARRAY)
    regs = timing_registers(config)
    fill = start_cycle(config) + regs["engine_stages"] + 1 + regs["ppu_latency"] + 16 + 1
    assert max(800, 32 * 32) <= c["cycles"] <= 2 * sum(per_unit) + fill
    ev = events_for("fp16_dense", d, c)
    assert ev["mult_fp16"] == 400 * 16 * 32 and ev["add_fp32"] == 400 * 32
    assert ev["ppu_fp16"] == 16 * 64
    assert ev["dram_byte"] == 2 * (16 * 32 + 64 * 9 * 32 + 16 * 64) + 4 * 64
    vsq = events_for("int4_vsq_dense", d, c)
    assert vsq["mult_int5"] == ev["mult_fp16"] and vsq["scale_term"] == 400 * 32
    # INT4 codes + one FP8 scale per 16 channels; K + bias per output channel
    want = (16 * 32 * 4 + 16 * 2 * 8 + 64 * 9 * 32 * 4 + 64 * 9 * 2 * 8 + 16 * 64 * 4
            + 16 * 4 * 8 + 48 * 64) / 8
    assert dram_bytes("int4_vsq_dense", d) == want
    with pytest.raises(ValueError, match="unknown configuration"):
        dram_bytes("fp8_dense", d)


def _tiny_trace(path, only=None):
    """Two layers over four evaluations; ``only``: every layer in that mode (an all-INT4
    trace of the same executions)."""
    exs = []
    for ev in range(4):
        step = 0 if ev < 2 else ev - 1
        for li, (cin, cout, mode) in enumerate(((32, 32, "int4"), (32, 16, "mxint8"))):
            mode = only or mode
            ex = random_execution(cin=cin, cout=cout, height=4, width=4, kernel=3, stride=1,
                                  sparsity=0.65 if mode == "int4" else 0.0, mode=mode,
                                  seed=10 * ev + li, channel_map="detect" if ev else "dense")
            ex.name = f"s{step:02d}.e{ev:02d}.l{li}"
            ex.meta = {"layer": f"l{li}", "step": step, "eval": ev, "image": 0,
                       "precision": mode}
            exs.append(ex)
    write_trace(path, exs, header={"source": "test"})
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return _tiny_trace(tmp_path_factory.mktemp("trace"))


def test_report_keys_sanity_and_determinism(tiny, tmp_path):
    out1, out2 = tmp_path / "a", tmp_path / "b"
    rep = bench.run(tiny, None, out1, plots=True, check_every=1, progress=lambda *_: None)
    bench.run(tiny, None, out2, plots=False, check_every=1, progress=lambda *_: None)
    assert (out1 / "report.json").read_bytes() == (out2 / "report.json").read_bytes()
    for png in ("speedup_energy", "threshold_sweep", "ratio_policy_sweep",
                "per_layer_utilisation"):
        assert (out1 / f"{png}.png").stat().st_size > 1000
    data = json.loads((out1 / "report.json").read_text())
    cfgs = data["configs"]
    assert set(cfgs) == {"fp16_dense", "int4_dense", "int4_vsq_dense", "int4_vsq_dense_plan",
                         "sqdm_paper", "sqdm"}
    for c in cfgs.values():
        assert {"cycles", "energy_pj", "speedup_vs_fp16", "energy_reduction_vs_fp16",
                "source"} <= set(c)
        assert c["source"] == "model"
    assert cfgs["fp16_dense"]["speedup_vs_fp16"] == 1.0
    # 4-bit arithmetic saves energy; the SPE beats the idle-SPE dense map on sparse inputs
    for c in ("int4_dense", "int4_vsq_dense", "int4_vsq_dense_plan", "sqdm"):
        assert cfgs[c]["energy_reduction_vs_fp16"] > 0.3
    # the dense peer runs the plan on 16 columns: faster than this design's 8 with a dense map
    assert cfgs["int4_vsq_dense_plan"]["cycles"] < cfgs["int4_dense"]["cycles"]
    assert data["equal_area_synth"] is None and cfgs["sqdm"]["area"] is None
    assert cfgs["sqdm"]["cycles"] < cfgs["int4_dense"]["cycles"]
    ea = data["equal_area"]
    assert set(ea["configs"]) == set(cfgs)
    assert {"multipliers", "cycles", "energy_pj", "speedup_vs_fp16", "energy_reduction_vs_fp16",
            "source", "area_ratio"} <= set(ea["configs"]["sqdm"])
    assert [ea["configs"][c]["multipliers"] for c in sorted(cfgs)] == [32, 256, 384, 384, 256,
                                                                         256]
    assert ea["configs"]["fp16_dense"]["speedup_vs_fp16"] == 1.0
    for c in ("sqdm", "int4_dense"):       # this design: the same figures at both budgets
        assert ea["configs"][c]["cycles"] == cfgs[c]["cycles"]
        assert ea["configs"][c]["energy_pj"] == cfgs[c]["energy_pj"]
    # 32 FP16 multipliers instead of 256: far slower (not 8x: the small-cout layers use one
    # column group either way, col_skip); the 16 x 24 4-bit array is not slower
    assert ea["configs"]["fp16_dense"]["cycles"] > 2 * cfgs["fp16_dense"]["cycles"]
    assert ea["configs"]["int4_vsq_dense"]["cycles"] <= cfgs["int4_vsq_dense"]["cycles"]
    assert ea["configs"]["sqdm"]["speedup_vs_fp16"] > cfgs["sqdm"]["speedup_vs_fp16"]
    assert data["fast_model_check"]["mismatches"] == 0
    assert data["fast_model_check"]["executions"] == 32   # 8 executions x 4 RTL tops
    sw = data["sweeps"]
    assert [t["threshold_pct"] for t in sw["threshold"]] == [10, 20, 30, 40, 50]
    assert sw["threshold"][2]["maps_equal_trace"] is True
    assert {t["policy"] for t in sw["map_policy"]} == set(bench.MAP_POLICIES)
    assert rep["timing_s"]["evaluate"] >= 0
    abl = data["v2_ablation"]
    assert abl["order"] == ["paper", "paper+balance", "paper+col_skip", "paper+nibble_skip",
                            "default"]
    assert abl["rows"]["paper"]["cycles"] == cfgs["sqdm_paper"]["cycles"]
    assert abl["rows"]["default"]["cycles"] == cfgs["sqdm"]["cycles"]
    assert abl["rows"]["paper"]["speedup_vs_paper"] == 1.0
    assert abl["v2_map"]["dense_map_source"] == "model"
    cpi = data["cycles_per_ideal"]["configs"]["sqdm"]
    assert all(L["work"] >= L["floor"] >= 1.0 for L in cpi["layers"].values())


def test_rtl_results_are_used_and_labelled(tiny, tmp_path):
    tr, execs = bench.load_trace(tiny, progress=None)
    from evaluation.baselines import sqdm_counters
    recs = []
    for e in execs:
        c = sqdm_counters(e.d, e.x, e.map)
        recs.append({"index": e.index, "name": e.name, "map": "trace", "bit_exact": True,
                     "counters_rtl": {k: c[k] for k in bench.RTL_COUNTERS}})
    path = tmp_path / "results.json"
    from evaluation.baselines import HW, PAPER
    # a replay of the paper's organisation is not v2's (a parameter missing from an older
    # results file had its default: 0, off)
    for params in (PAPER.to_dict(), {"tile": 32}):
        path.write_text(json.dumps({"summary": {"trace": str(tiny), "params": params},
                                    "executions": recs}))
        with pytest.raises(bench.BenchError, match="simulated with balance=0, the benchmark's "
                                                   "configuration has balance=1"):
            bench.run(tiny, path, tmp_path / "o", do_sweeps=False, plots=False,
                      progress=lambda *_: None)
    path.write_text(json.dumps({"summary": {"trace": str(tiny), "params": HW.to_dict()},
                                "executions": recs}))
    rep = bench.run(tiny, path, tmp_path / "o", do_sweeps=False, plots=False,
                    progress=lambda *_: None)
    assert rep["configs"]["sqdm"]["source"] == "rtl"
    assert rep["configs"]["int4_dense"]["source"] == "model"
    assert rep["rtl_vs_model"] == {"compared": 8, "mismatches": 0, "first": None}


def test_bad_inputs_give_clear_errors(tiny, tmp_path, capsys):
    with pytest.raises(bench.BenchError, match="does not exist"):
        bench.run(tmp_path / "nope", None, tmp_path / "o", progress=lambda *_: None)
    assert bench.main(["--traces", str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    assert "trace folder does not exist" in capsys.readouterr().err
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"summary": {"trace": "build/traces/default"}, "executions": [
        {"index": 0, "name": "s00.e00.emb.fc0", "map": "trace",
         "counters_rtl": {k: 1 for k in bench.RTL_COUNTERS}}]}))
    with pytest.raises(bench.BenchError, match="is not of trace"):
        bench.run(tiny, other, tmp_path / "o", progress=lambda *_: None)
    with pytest.raises(bench.BenchError, match="does not exist"):
        bench.run(tiny, tmp_path / "missing.json", tmp_path / "o", progress=lambda *_: None)
    failed = tmp_path / "failed.json"
    failed.write_text(json.dumps({"summary": {"executions": 0, "cocotb_failure": "boom"},
                                  "executions": []}))
    with pytest.raises(bench.BenchError, match="holds no executions.*boom"):
        bench.run(tiny, failed, tmp_path / "o", progress=lambda *_: None)
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"summary": {"params": {"spe_lanes": 8}}, "executions": []}))
    with pytest.raises(bench.BenchError, match="spe_lanes=8"):
        bench.run(tiny, params, tmp_path / "o", progress=lambda *_: None)


def _fake_results(path, execs, config, route_of, params):
    """A tb.cosim results file whose counters are the model's (as a replay's are)."""
    from evaluation.baselines import sqdm_counters
    recs = []
    for e in execs:
        c = sqdm_counters(e.d, e.x, route_of(e), config)
        recs.append({"index": e.index, "name": e.name, "map": "dense", "bit_exact": True,
                     "counters_rtl": {k: c[k] for k in bench.RTL_COUNTERS}})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"summary": {"params": params}, "executions": recs}))


def _fake_area(peer):
    part = lambda t: {"transistors": t, "cells": t // 8, "flip_flops": t // 40}   # noqa: E731
    return {"budget_transistors": 3_000_000,
            "configs": {"sqdm": {"datapath": part(3_000_000), "sram_bits": 10, "sram_um2": 3.5},
                        "dense16": {"datapath": part(2_000_000), "sram_bits": 10,
                                    "sram_um2": 3.5},
                        "dense_equal_area": {"params": peer.to_dict(),
                                             "datapath": part(3_100_000)}},
            "fp16_equal_area": {"common_transistors": 500_000, "unit_transistors": 40_000,
                                "multipliers_exact": 62.5}}


def test_dense_peers_from_rtl_synthesized_area_and_quality(tiny, tmp_path):
    """The dense peers' replays (plan and all-INT4 traces, at 256 multipliers and at the
    synthesized equal area), the area report and the golden report all reach the report."""
    from evaluation.baselines import DENSE
    from evaluation.synth_area import dense_config
    int4 = _tiny_trace(tmp_path / "int4", only="int4")
    tr, execs = bench.load_trace(tiny, progress=None)
    _, execs4 = bench.load_trace(int4, progress=None)
    peer = dense_config(24)
    zeros = lambda e: np.zeros_like(e.map)   # noqa: E731
    root = tmp_path / "sim"
    for folder, config in (("dense", DENSE), ("dense-area", peer)):
        _fake_results(root / f"{folder}-plan" / "results.json", execs, config, zeros,
                      config.to_dict())
        _fake_results(root / f"{folder}-int4" / "results.json", execs4, config, zeros,
                      config.to_dict())
    area = tmp_path / "area.json"
    area.write_text(json.dumps(_fake_area(peer)))
    golden = tmp_path / "golden.json"
    golden.write_text(json.dumps({"sqnr_db": {"int4": {"mean": 24.0}, "plan": {"mean": 32.0}}}))
    rep = bench.run(tiny, None, tmp_path / "o", int4_traces=int4, peer_root=root,
                    area_report=area, golden_report=golden, do_sweeps=False, plots=False,
                    progress=lambda *_: None)
    cfgs = rep["configs"]
    for c in ("int4_vsq_dense", "int4_vsq_dense_plan"):
        assert cfgs[c]["source"] == "rtl" and cfgs[c]["spe_busy"] == 0
    assert rep["rtl_vs_model"]["mismatches"] == 0
    assert [cfgs[c]["sqnr_db"] for c in bench.CONFIGS] == [None, 32.0, 24.0, 32.0, 32.0, 32.0]
    assert cfgs["sqdm"]["area"]["transistors"] == 3_000_000
    assert cfgs["int4_vsq_dense"]["area"]["transistors"] == 2_000_000
    assert cfgs["fp16_dense"]["area"]["transistors"] == 500_000 + 256 * 40_000
    eas = rep["equal_area_synth"]
    assert set(eas["configs"]) == set(cfgs) and eas["budget_transistors"] == 3_000_000
    for c in ("int4_vsq_dense", "int4_vsq_dense_plan"):
        t = eas["configs"][c]
        assert t["source"] == "rtl" and t["multipliers"] == 16 * 24
        assert eas["speedup_vs"][c] == t["cycles"] / eas["configs"]["sqdm"]["cycles"]
    assert eas["configs"]["fp16_dense"]["multipliers"] == 64   # 62.5 up to whole columns
    assert eas["configs"]["fp16_dense"]["speedup_vs_fp16"] == 1.0
    ebw = rep["equal_bitwidth"]
    assert ebw["fp16_dense"]["multipliers"] == 64 and set(ebw["speedup_vs_fp16"]) == \
        set(bench.CONFIGS) - {"fp16_dense"}
    # an all-INT4 trace of other executions is refused
    other = tmp_path / "other"
    write_trace(other, [random_execution(cin=16, cout=16, height=2, width=2, kernel=1,
                                         stride=1, sparsity=0.5, mode="int4", seed=1)],
                header={"source": "test"})
    with pytest.raises(bench.BenchError, match="does not hold the executions"):
        bench.run(tiny, None, tmp_path / "o2", int4_traces=other, do_sweeps=False,
                  plots=False, progress=lambda *_: None)


@pytest.mark.parametrize("args,msg", [
    (["--bandwidth", "0"], "--bandwidth must be >= 1"),
    (["--check-every", "-1"], "--check-every must be >= 0"),
    (["--results", "{tmp}"], "--results .* is not a file"),
    (["--area", "{tmp}/none.json"], "--area .*none.json is not a file"),
    (["--golden", "{tmp}"], "--golden .* is not a file"),
    (["--int4-traces", "{tmp}/none"], "--int4-traces .*none is not a folder"),
    (["--peer-root", "{tmp}/none"], "--peer-root .*none is not a folder"),
    (["--out", "{tmp}/file/sub"], "--out .*sub is not a folder"),
])
def test_bad_options_fail_before_any_work(args, msg, tmp_path, capsys):
    (tmp_path / "file").write_text("mine\n")
    argv = ["--traces", str(tmp_path / "no_trace")] + [a.format(tmp=tmp_path) for a in args]
    with pytest.raises(SystemExit) as exc:
        bench.main(argv)
    assert exc.value.code == 2
    assert re.search(msg, capsys.readouterr().err)
    assert (tmp_path / "file").read_text() == "mine\n"


def test_malformed_area_and_golden_reports(tiny, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"configs": {}}))
    with pytest.raises(bench.BenchError, match="not make area's report"):
        bench.run(tiny, None, tmp_path / "o", area_report=bad, do_sweeps=False, plots=False,
                  progress=lambda *_: None)
    with pytest.raises(bench.BenchError, match="golden report .* has no sqnr_db"):
        bench.run(tiny, None, tmp_path / "o", golden_report=bad, do_sweeps=False, plots=False,
                  progress=lambda *_: None)


def test_workload_memories_and_default_paths(tiny, tmp_path, capsys):
    """A replay of the mnist workload runs on tops with that workload's memories
    (hw.config.for_workload): its results are used with model="mnist" and refused for digits;
    --model picks the workload's default locations."""
    from evaluation.baselines import HW, sqdm_counters
    from hw.config import for_workload
    _, execs = bench.load_trace(tiny, progress=None)
    recs = [{"index": e.index, "name": e.name, "map": "trace", "bit_exact": True,
             "counters_rtl": {k: v for k, v in sqdm_counters(e.d, e.x, e.map).items()
                              if k in bench.RTL_COUNTERS}} for e in execs]
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"summary": {"params": for_workload(HW, "mnist").to_dict()},
                                "executions": recs}))
    with pytest.raises(bench.BenchError, match="simulated with max_cout=288, the benchmark's "
                                               "configuration has max_cout=256"):
        bench.run(tiny, path, tmp_path / "o", do_sweeps=False, plots=False,
                  progress=lambda *_: None)
    rep = bench.run(tiny, path, tmp_path / "o", do_sweeps=False, plots=False, model="mnist",
                    progress=lambda *_: None)
    assert rep["model"] == "mnist" and rep["configs"]["sqdm"]["source"] == "rtl"
    paths = bench.default_paths("mnist")
    assert paths["traces"].name == "all-mnist" and paths["int4_traces"].name == "all-int4-mnist"
    assert paths["results"] == paths["peer_root"] / "all" / "results.json"
    assert paths["golden"].parent.name == "mnist" and paths["out"].name == "mnist"
    assert bench.default_paths()["traces"] == bench.DEFAULT_TRACES
    with pytest.raises(bench.BenchError, match="model must be one of"):
        bench.default_paths("cifar")
    with pytest.raises(SystemExit):
        bench.main(["--model", "cifar"])
    assert "invalid choice: 'cifar'" in capsys.readouterr().err


def test_processes_give_the_same_report(tiny, tmp_path):
    """--jobs N: the per-execution models in N processes, the totals summed in execution
    order, so the report is byte-identical to one process's."""
    for jobs, out in ((1, tmp_path / "one"), (2, tmp_path / "two")):
        bench.run(tiny, None, out, plots=False, check_every=1, jobs=jobs,
                  progress=lambda *_: None)
    for name in ("report.json", "executions.json"):
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()
    with pytest.raises(SystemExit):
        bench.main(["--jobs", "0", "--traces", str(tiny), "--out", str(tmp_path / "o")])

"""Co-simulation of the accelerator top: trace replay through cocotb (tb/replay.py, driven by
tb/cosim.py), bit-exact against the golden integer reference and cycle-exact against
hw/cyclemodel.py. A fixed-seed fuzz slice of random layers on Verilator, one small replay on
Icarus, channel-map independence, and the error paths (mismatch report, bad trace folder).

All tests share one Verilog emission (hw/rtlcache.py) and one simulator build per simulator
(tb/simulator.py caches both), see docs/cosim.md.
"""

import json
import shutil

import pytest

from tb.cosim import CosimError, main, replay, summary_table
from hw.config import PRESETS, preset
from traces.replay import compare, expected_saturation, ideal_cycles, kind_selection, prepare
from traces.format import write_trace
from traces.synth import random_execution

HEADER = {"source": "tb/test_cosim.py"}

#: The fuzz slice (fixed seeds): shapes with cin/cout off multiples of 16, kernels 1/3,
#: strides 1/2, sparsities, INT4/MXINT8 inputs, all output formats, residual on/off and
#: random, detected, all-dense and all-sparse channel maps, one layer that saturates both
#: accumulator terms and PPU values, and layers of 1 and 3 output channels.
FUZZ = [
    dict(height=6, width=5, cin=20, cout=17, kernel=3, stride=1, sparsity=0.7, mode="int4",
         residual=True, channel_map="random"),
    dict(height=7, width=7, cin=48, cout=40, kernel=3, stride=2, sparsity=0.5, mode="int4",
         channel_map="detect"),
    dict(height=4, width=4, cin=40, cout=33, kernel=1, stride=1, sparsity=0.3, mode="mxint8",
         residual=True, channel_map="random"),
    dict(height=5, width=3, cin=24, cout=8, kernel=3, stride=2, sparsity=0.6, mode="mxint8",
         out_format="uint4", channel_map="sparse"),
    dict(height=3, width=4, cin=9, cout=70, kernel=1, stride=2, sparsity=0.8, mode="int4",
         out_format="int4", channel_map="random"),
    dict(height=4, width=4, cin=64, cout=32, kernel=3, stride=1, sparsity=0.65, mode="int4",
         out_format="mxint8", channel_map="random"),
    dict(height=2, width=3, cin=70, cout=5, kernel=3, stride=1, sparsity=0.4, mode="mxint8",
         out_format="int4", residual=True, channel_map="random"),
    dict(height=1, width=1, cin=33, cout=100, kernel=1, stride=1, sparsity=0.9, mode="int4",
         channel_map="dense"),
    dict(height=3, width=3, cin=40, cout=20, kernel=3, stride=1, sparsity=0.5, mode="mxint8",
         out_format="int4", residual=True, channel_map="random", saturate=True),
    # the small-cout shapes of col_skip (conv_out-like: 1 to 3 output channels)
    dict(height=5, width=5, cin=32, cout=1, kernel=3, stride=1, sparsity=0.6, mode="mxint8",
         channel_map="random"),
    dict(height=5, width=4, cin=17, cout=3, kernel=3, stride=2, sparsity=0.5, mode="int4",
         out_format="int4", channel_map="detect"),
]
FUZZ_SEED = 7100


def write_fuzz_trace(folder, cases, seed):
    executions = [random_execution(**case, seed=seed + i) for i, case in enumerate(cases)]
    write_trace(folder, executions, header=HEADER)
    return executions


@pytest.fixture(scope="module")
def fuzz_trace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz_trace")
    write_fuzz_trace(folder, FUZZ, FUZZ_SEED)
    return folder


# --------------------------------------------------------------------------- no simulator

def test_fuzz_slice_covers_the_corners(fuzz_trace):
    from traces.format import open_trace
    trace = open_trace(fuzz_trace)
    ds = [trace.load(i).descriptor for i in range(len(trace))]
    assert {d.kernel for d in ds} == {1, 3} and {d.stride for d in ds} == {1, 2}
    assert any(d.cin % 16 for d in ds) and any(d.cout % 16 for d in ds)
    assert {d.x_format for d in ds} == {0, 2} and {d.residual for d in ds} == {False, True}
    assert {d.out_format for d in ds} == {0, 1, 2}
    assert {1, 3} <= {d.cout for d in ds}
    assert all(not d.fit_problems(PRESETS["default"]) for d in ds)


def test_ideal_cycles_and_requirements():
    ex = random_execution(cin=32, cout=32, height=4, width=4, kernel=3, stride=1,
                          sparsity=0.5, mode="int4", seed=1, channel_map="dense")
    dense = ideal_cycles(prepare(ex, 0, config=PRESETS["paper"], variant="dense"))
    sparse = ideal_cycles(prepare(ex, 0, config=PRESETS["paper"], variant="sparse"))
    # 4x4 output, 3x3 taps with padding 1: 36 + 2*4*... valid (pixel, tap) pairs = 100
    assert dense["dense_macs"] == 100 * 32 * 32 and dense["nonzero_macs"] == 0
    nnz_work = sparse["nonzero_macs"]
    assert sparse["dense_macs"] == 0 and 0 < nnz_work < 100 * 32 * 32
    assert dense["ideal_cycles"] == 100 * 32 * 32 / 128
    # a balance top (default): every channel's non-zero MACs on all 256 multipliers
    either = ideal_cycles(prepare(ex, 0, config=PRESETS["default"], variant="dense"))
    assert either["ideal_cycles"] == nnz_work / 256
    need = ex.descriptor.requirements(32)
    assert need["act_depth"] == 4 * 4 * 2 and need["weight_depth"] == 9 * 2
    problems = ex.descriptor.fit_problems(preset("default", act_depth=16))
    assert problems == ["needs act_depth >= 32 (the top has 16)"]


def test_kind_selection_takes_the_cheapest_of_each_kind(tmp_path):
    """Icarus' default selection: one execution per datapath kind, the fewest cycles."""
    small = dict(cin=16, cout=16, height=2, width=2, kernel=3, stride=1, sparsity=0.5,
                 mode="int4")
    cases = [dict(small, height=4), dict(small), dict(small, mode="mxint8"),
             dict(small, kernel=1), dict(small, height=3)]
    exs = [random_execution(**c, seed=i) for i, c in enumerate(cases)]
    for ex in exs:
        ex.meta["cycles"] = {"cycles": int(ex.descriptor.height) * 100}
    write_trace(tmp_path / "t", exs, header=HEADER)
    from traces.format import open_trace
    assert kind_selection(open_trace(tmp_path / "t").records) == [1, 2, 3]


def test_saturation_counters_are_compared_with_the_reference():
    ex = random_execution(cin=40, cout=20, height=3, width=3, kernel=3, stride=1,
                          sparsity=0.5, mode="mxint8", residual=True, saturate=True, seed=11)
    job = prepare(ex, 0, config=PRESETS["default"])
    want = expected_saturation(ex)
    assert want["sat_terms"] > 0 and want["sat_ppu"] > 0
    actual = {"out_words": job.images["out_expected"],
              "zero_counts": ex.arrays["zero_counts"], "next_map": ex.arrays["next_map"],
              "counters": {"sat_terms": want["sat_terms"], "sat_ppu": want["sat_ppu"] - 1}}
    found = compare(job, actual, {}, saturation=want)
    assert [m.text() for m in found] == [
        f"sat_ppu at counter cnt_sat_ppu, expected from golden/intref.py: expected "
        f"{want['sat_ppu']}, actual {want['sat_ppu'] - 1}"]


def test_recorded_counters_only_for_the_configuration_they_were_recorded_for():
    """A trace's recorded counters are expected only from a top of the configuration its
    header names; another configuration (or a trace that names none) uses the cycle model of
    the configuration actually simulated."""
    from traces.hexfiles import cycle_model_header, predicted_counters
    from traces.replay import recorded_counters
    ex = random_execution(cin=24, cout=20, height=3, width=3, kernel=3, stride=1,
                          sparsity=0.5, mode="int4", seed=5)
    ex.meta["cycles"] = predicted_counters(ex)  # the default configuration's
    header = cycle_model_header()
    default = prepare(ex, 0, config=PRESETS["default"])
    assert recorded_counters(default, header) == ex.meta["cycles"]
    assert recorded_counters(default, None) is None
    icarus = prepare(ex, 0, config=PRESETS["icarus"])
    assert recorded_counters(icarus, header) is None
    assert predicted_counters(ex, config=PRESETS["icarus"]) == \
        icarus.job.predicted_counters() != ex.meta["cycles"]
    # the same array in the paper's organisation is another configuration: v2's recorded
    # counters do not apply to it, nor to v2 a header that predates the mechanisms (its
    # counters were the paper's organisation's)
    assert recorded_counters(prepare(ex, 0, config=PRESETS["paper"]), header) is None
    old = {k: v for k, v in header.items() if k not in ("balance", "col_skip", "nibble_skip")}
    assert recorded_counters(default, old) is None
    assert recorded_counters(prepare(ex, 0, config=PRESETS["paper"]), old) == ex.meta["cycles"]


def test_missing_trace_folder_is_a_clear_error(tmp_path, capsys):
    missing = tmp_path / "no_such_trace"
    assert main(["--traces", str(missing), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "error: cannot replay trace" in err and str(missing) in err
    assert "trace folder does not exist" in err
    with pytest.raises(CosimError, match="trace folder does not exist"):
        replay(missing, out_dir=tmp_path / "out")


def _make_dry_run(*args):
    """``make -n`` of the repository's Makefile: what it would run, without running it."""
    import subprocess
    from pathlib import Path
    repo = Path(__file__).resolve().parent.parent
    return subprocess.run(["make", "-n", "-C", str(repo), *args], capture_output=True,
                          text=True, check=False)


def test_make_sim_never_exports_into_the_folder_it_reads(tmp_path):
    """`make sim TRACES=DIR` replays DIR or fails naming it; only the default trace is
    exported, and an unknown SIM is refused before anything runs."""
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "keep.txt").write_text("user data\n")
    run = _make_dry_run("sim", f"TRACES={folder}")
    assert run.returncode == 0, run.stderr
    assert "traces export" not in run.stdout and f"--traces {folder}" in run.stdout
    run = _make_dry_run("sim", "SIM=bogus")
    assert run.returncode != 0 and "SIM must be verilator or icarus, got 'bogus'" in run.stderr
    # MODEL selects the workload's trace, its plan and the top it replays on
    run = _make_dry_run("sim", "MODEL=mnist")
    assert run.returncode == 0, run.stderr
    assert "--traces build/traces/mnist" in run.stdout and "--config mnist" in run.stdout
    run = _make_dry_run("-B", "build/traces/mnist/manifest.json", "MODEL=mnist")  # if stale
    assert "--plan golden/plans/mnist_plan.json --out build/traces/mnist" in run.stdout
    run = _make_dry_run("sim", "MODEL=cifar")
    assert run.returncode != 0 and "MODEL must be digits or mnist, got 'cifar'" in run.stderr
    assert main(["--traces", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert sorted(p.name for p in folder.iterdir()) == ["keep.txt"]


def test_bad_trace_folder_is_a_clear_error(tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    assert main(["--traces", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert "manifest.json: manifest is missing" in capsys.readouterr().err
    (folder / "manifest.json").write_text("{not json")
    assert main(["--traces", str(folder), "--out", str(tmp_path / "out")]) == 2
    assert "is not valid JSON" in capsys.readouterr().err
    # A valid trace whose data file was modified after export: the hash check names it.
    write_trace(folder, [random_execution(cin=16, cout=16, height=2, width=2, kernel=1,
                                          stride=1, sparsity=0.5, mode="int4", seed=3)],
                header=HEADER)
    with open(folder / "exec0000" / "arrays.npz", "ab") as f:
        f.write(b"\0")
    assert main(["--traces", str(folder), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "exec0000/arrays.npz" in err and "corrupt or modified" in err


def test_execution_that_does_not_fit_is_a_clear_error(tmp_path, capsys):
    write_trace(tmp_path / "t", [random_execution(cin=16, cout=16, height=8, width=8,
                                                  kernel=1, stride=1, sparsity=0.5,
                                                  mode="int4", seed=4)], header=HEADER)
    code = main(["--traces", str(tmp_path / "t"), "--param", "act_depth=32",
                 "--out", str(tmp_path / "out")])
    assert code == 2
    assert "needs act_depth >= 64 (the top has 32)" in capsys.readouterr().err


# --------------------------------------------------------------------------- Verilator

def test_fuzz_slice_is_bit_and_cycle_exact(fuzz_trace, tmp_path):
    results = replay(fuzz_trace, simulator="verilator", out_dir=tmp_path, log=lambda *_: None)
    s = results["summary"]
    assert s["executions"] == len(FUZZ), s
    assert s["bit_exact"] and s["cycle_exact"] and s["passed"], s["first_mismatch"]
    for r in results["executions"]:
        assert r["cycles_rtl"] == r["cycles_model"] == r["cycles_start_to_done"]
        assert r["counters_rtl"]["mem_writes"] == r["mem_writes"] > 0
        assert r["cycles_per_ideal"] >= 1.0
    # the saturation counters are compared with the golden reference; one case exercises both
    assert any(r["sat_terms"] > 0 and r["sat_ppu"] > 0 for r in results["executions"])
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"]["executions"] == len(FUZZ)
    assert saved["summary"]["cycles_per_second"] > 0
    # the printed summary says where the wall time went
    last = summary_table(results).splitlines()[-1]
    for part in ("Verilog", "build", "memory loads", "compute", "read-back", "total"):
        assert part in last, last


def test_channel_map_does_not_change_results(tmp_path, monkeypatch):
    """One random layer with the maps all dense, all sparse and random: identical outputs
    (all equal to the golden result), cycle counts each equal to the model. On the default
    (balance) top the map only breaks the dispatcher's ties, so the cycles hardly move (the
    paper's organisation, where the map routes, is hw/test_top.py's). Trace and output folders
    given relative to the working directory."""
    ex = random_execution(cin=40, cout=24, height=5, width=5, kernel=3, stride=1,
                          sparsity=0.65, mode="int4", seed=4242, channel_map="detect")
    write_trace(tmp_path / "t", [ex], header=HEADER)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("tb.cosim.PROGRESS_SECONDS", 0.05)
    lines = []
    results = replay("t", maps=("dense", "sparse", "random"), out_dir="out",
                     log=lambda *_: None, progress=lines.append)
    assert (tmp_path / "out" / "results.json").exists()
    assert lines and all(line.startswith("  replayed ") and "/3 execution(s)" in line
                         for line in lines)
    runs = {r["map"]: r for r in results["executions"]}
    assert set(runs) == {"dense", "sparse", "random"}
    assert results["summary"]["passed"], results["summary"]["first_mismatch"]
    assert len({r["out_sha256"] for r in runs.values()}) == 1
    assert runs["dense"]["sparse_groups"] == "0/3" and runs["sparse"]["sparse_groups"] == "3/3"
    cycles = {m: r["cycles_rtl"] for m, r in runs.items()}
    assert max(cycles.values()) <= 1.05 * min(cycles.values()), cycles
    assert all(r["zeros_skipped"] > 0 for r in runs.values())  # the SPE works in every run


def test_corrupted_expected_value_is_reported(tmp_path, capsys):
    ex = random_execution(cin=20, cout=18, height=3, width=4, kernel=3, stride=1,
                          sparsity=0.5, mode="int4", seed=99)
    good = random_execution(cin=16, cout=16, height=2, width=2, kernel=1, stride=1,
                            sparsity=0.5, mode="int4", seed=98)
    codes = ex.arrays["out_codes"]
    y, x, c = 1, 2, 5
    codes[y, x, c] = (int(codes[y, x, c]) + 3) % 16        # still a legal UINT4 code
    want = int(codes[y, x, c])
    ex.arrays["zero_counts"][7] += 1
    write_trace(tmp_path / "t", [good, ex], header=HEADER)
    code = main(["--traces", str(tmp_path / "t"), "--out", str(tmp_path / "out"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 1
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    s = results["summary"]
    assert not s["bit_exact"] and s["cycle_exact"] and not s["passed"]
    assert s["mismatching_executions"] == 1 and s["mismatches"] == 2
    first = s["first_mismatch"]
    assert f"execution #1 {ex.name}" in first
    assert "out_codes at pixel (y, x) (1, 2), channel 5" in first
    assert f"expected {want}, actual {(want - 3) % 16}" in first
    assert first in out
    assert results["executions"][0]["bit_exact"] and not results["executions"][1]["bit_exact"]
    assert "2 mismatch(es) in 1 of 2 replayed execution(s)" in s["cocotb_failure"]
    shutil.rmtree(s["run_dir"])  # kept by tb/simulator.py after a failing run


# --------------------------------------------------------------------------- Icarus

#: Icarus replays these on the ``icarus`` configuration. An MXINT8 layer comes first: right after
#: reset is where 4-state simulation once found X values (combinational blocks that had never
#: been evaluated, see hw.toolchain.ICARUS_GENERATION).
ICARUS_CASES = [
    FUZZ[2],
    dict(height=3, width=2, cin=40, cout=12, kernel=3, stride=1, sparsity=0.5, mode="mxint8",
         out_format="int4", residual=True, channel_map="random", saturate=True),
    dict(height=2, width=1, cin=20, cout=6, kernel=3, stride=1, sparsity=0.6, mode="int4",
         residual=True, channel_map="random"),
]


def test_small_replay_on_icarus(tmp_path):
    """Icarus (4-state, X-checked) on the small configuration: MXINT8 right after reset, a
    saturating layer, an INT4 layer with both engines busy; bit- and cycle-exact."""
    write_fuzz_trace(tmp_path / "t", ICARUS_CASES, seed=5)
    results = replay(tmp_path / "t", simulator="icarus", config=PRESETS["icarus"],
                     out_dir=tmp_path, log=lambda *_: None)
    s = results["summary"]
    assert s["simulator"] == "icarus" and s["executions"] == len(ICARUS_CASES)
    assert s["passed"], s["first_mismatch"]
    for rec in results["executions"]:
        assert rec["cycles_rtl"] == rec["cycles_model"] == rec["cycles_start_to_done"]
    assert results["executions"][1]["sat_terms"] > 0
    # the tb.loader wrapper's $readmemh loads and Python's word-by-word host-port writes leave
    # the top in the same state: the same outputs, counters and cycles
    assert s["memory_loads"] == "readmemh"
    by_port = replay(tmp_path / "t", simulator="icarus", config=PRESETS["icarus"],
                     out_dir=tmp_path / "port", log=lambda *_: None, loader=False)
    assert by_port["summary"]["memory_loads"] == "host port" and by_port["summary"]["passed"]
    keys = ("out_sha256", "counters_rtl", "cycles_start_to_done", "zeros_skipped")
    assert [{k: r[k] for k in keys} for r in by_port["executions"]] == \
        [{k: r[k] for k in keys} for r in results["executions"]]


def test_dense_top_replays_only_the_dense_map(tmp_path, capsys):
    """A top without an SPE (spe_lanes=0) ignores the channel map, so replaying it with the
    trace's map would record a map it did not run: refused before any work."""
    assert main(["--config", "paper", "--param", "spe_lanes=0", "--maps", "trace,dense",
                 "--out", str(tmp_path / "out")]) == 2
    assert "dense top (spe_lanes=0)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_model_gives_every_top_the_workloads_memories(tmp_path, capsys):
    """--model picks the workload whose memories the top gets (hw.config.for_workload, tested
    in hw/test_top.py); the shard processes of --jobs repeat it."""
    from tb.cosim import _shard_args, parser
    args = parser().parse_args(["--config", "paper", "--model", "mnist", "--param", "tile=16"])
    assert _shard_args(args)[-6:] == ["--config", "paper", "--model", "mnist", "--param",
                                      "tile=16"]
    with pytest.raises(SystemExit):
        parser().parse_args(["--model", "cifar"])
    assert "invalid choice: 'cifar'" in capsys.readouterr().err

"""Command lines of tb.e2e and tb.bench_sim: a bad argument is one ``error:`` line and exit
code 2 before any Verilog is emitted or simulator started, and nothing named by --out is
written."""

from pathlib import Path

import pytest

from golden.clitest import Started, refuse, usage_error
from tb import bench_sim, e2e
from traces.format import write_trace
from traces.synth import random_execution


@pytest.fixture
def trace_dir(tmp_path):
    folder = tmp_path / "trace"
    write_trace(folder, [random_execution(cin=16, cout=16, height=2, width=2, kernel=1,
                                          stride=1, sparsity=0.5, mode="int4", seed=3)],
                header={"source": "tb/test_cli_args.py"})
    return folder


# --------------------------------------------------------------------------- tb.e2e

@pytest.fixture
def no_simulation(monkeypatch):
    monkeypatch.setattr(e2e, "top_verilog", refuse)
    monkeypatch.setattr(e2e, "run_cocotb", refuse)


@pytest.mark.parametrize("steps", ["1", "0", "-4"])
def test_e2e_rejects_too_few_steps(tmp_path, capsys, no_simulation, steps):
    out = tmp_path / "out"
    usage_error(capsys, lambda: e2e.main(["--steps", steps, "--out", str(out)]),
                 f"--steps must be >= 2 (the Heun sampler's minimum), got {steps}")
    assert not out.exists()


def test_e2e_out_must_not_be_a_file(tmp_path, capsys, no_simulation):
    out = tmp_path / "out"
    out.write_text("keep\n")
    usage_error(capsys, lambda: e2e.main(["--out", str(out)]), f"--out {out} is not a directory")
    assert out.read_text() == "keep\n"


def test_e2e_out_below_a_file(tmp_path, capsys, no_simulation):
    parent = tmp_path / "file"
    parent.write_text("keep\n")
    usage_error(capsys, lambda: e2e.main(["--out", str(parent / "out")]),
                 f"--out {parent / 'out'}: cannot create the folder (Not a directory)")
    assert parent.read_text() == "keep\n"


def test_e2e_good_arguments_pass(tmp_path, no_simulation):
    with pytest.raises(Started):
        e2e.main(["--steps", "2", "--out", str(tmp_path / "out")])


def test_e2e_model_picks_the_workloads_top(tmp_path, capsys, monkeypatch):
    from hw.config import PRESETS
    seen = []

    def top(config, **_):
        seen.append(config)
        raise Started
    monkeypatch.setattr(e2e, "top_verilog", top)
    monkeypatch.setattr(e2e, "run_cocotb", refuse)
    with pytest.raises(Started):
        e2e.main(["--model", "mnist", "--steps", "2", "--out", str(tmp_path / "out")])
    assert seen == [PRESETS["mnist"]]
    usage_error(capsys, lambda: e2e.main(["--model", "cifar", "--out", str(tmp_path / "o2")]),
                "argument --model: invalid choice: 'cifar'")
    assert not (tmp_path / "o2").exists()


def test_e2e_relative_out_reaches_the_simulator_absolute(tmp_path, monkeypatch):
    """The simulation runs in its own folder, so a relative --out (make sim-e2e MODEL=mnist
    passes build/sim/mnist) reaches it as absolute paths."""
    seen = {}

    def run(*args, extra_env, **kwargs):
        seen.update(extra_env)
        raise Started
    monkeypatch.setattr(e2e, "top_verilog", lambda config, **_: ("top.v", None))
    monkeypatch.setattr(e2e, "write_loader", lambda top, config, name: "sqdm_tb.v")
    monkeypatch.setattr(e2e, "run_cocotb", run)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(Started):
        e2e.main(["--steps", "2", "--out", "rel/out"])
    for key in ("SQDM_E2E_OUT", "SQDM_E2E_PROGRESS", "SQDM_E2E_PLAN"):
        assert Path(seen[key]).is_absolute(), key
    assert Path(seen["SQDM_E2E_OUT"]).parent.parent == tmp_path / "rel" / "out"


# --------------------------------------------------------------------------- tb.bench_sim

@pytest.fixture
def no_bench(monkeypatch, tmp_path):
    monkeypatch.setattr(bench_sim, "top_verilog", refuse)
    monkeypatch.setattr(bench_sim, "WORK_ROOT", tmp_path / "work")


@pytest.mark.parametrize("argv, message", [
    (["--limit", "-1"], "--limit must be >= 0 (0 = all), got -1"),
    (["--select", "1,-2"], "argument --select: expected a comma list of non-negative execution "
                           "indices (e.g. 0,5), got '1,-2'"),
    (["--select", "0,x"], "argument --select: expected a comma list"),
    (["--select", "0;1"], "argument --select: expected a comma list"),
    (["--select", ""], "argument --select: expected a comma list"),
    (["--select", "1,"], "argument --select: expected a comma list"),
])
def test_bench_sim_rejects_bad_limit_and_select(tmp_path, capsys, no_bench, trace_dir,
                                               argv, message):
    out = tmp_path / "out"
    usage_error(capsys, lambda: bench_sim.main(argv + ["--traces", str(trace_dir),
                                                        "--out", str(out)]), message)
    assert not out.exists() and not (tmp_path / "work").exists()


def test_bench_sim_select_beyond_the_trace(tmp_path, capsys, no_bench, trace_dir):
    out = tmp_path / "out"
    assert bench_sim.main(["--traces", str(trace_dir), "--select", "0,5",
                           "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: trace {trace_dir}: no execution #5 (it holds 1)\n"
    assert not out.exists() and not (tmp_path / "work").exists()


def test_bench_sim_out_must_not_be_a_file(tmp_path, capsys, no_bench, trace_dir):
    out = tmp_path / "out"
    out.write_text("keep\n")
    usage_error(capsys, lambda: bench_sim.main(["--traces", str(trace_dir), "--out", str(out)]),
                 f"--out {out} is not a directory")
    assert out.read_text() == "keep\n"


def test_bench_sim_good_arguments_pass(tmp_path, monkeypatch, no_bench, trace_dir):
    seen = {}

    def write_job(trace, indices, folder, config):
        seen.update(trace=trace.root, indices=indices)
        raise Started

    monkeypatch.setattr(bench_sim, "top_verilog", lambda config, log: ("top.v", None))
    monkeypatch.setattr(bench_sim, "write_job", write_job)
    with pytest.raises(Started):
        bench_sim.main(["--traces", str(trace_dir), "--select", "0,0", "--limit", "1",
                        "--out", str(tmp_path / "out")])
    assert seen == {"trace": trace_dir, "indices": [0]}

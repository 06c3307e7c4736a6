"""A replay split into shards (``tb.cosim --shard K/N``), merged (``--merge``), or run in local
processes (``--jobs N``): the merged results equal a single run's, execution by execution, and
a merge refuses shards that do not belong together."""

import json
import shutil

import pytest

from tb.cosim import main
from tb.results import merge_shards, shard_file
from tb.test_cosim import FUZZ, FUZZ_SEED, HEADER, write_fuzz_trace
from traces.format import write_trace
from traces.replay import ReplayError, parse_shard, shard_of
from traces.synth import random_execution

CASES = FUZZ[:5]


def _records(results):
    """The execution records without their wall times (which differ run to run)."""
    return [{k: v for k, v in r.items() if k != "timing"} for r in results["executions"]]


def _load(path):
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def trace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shard_trace")
    write_fuzz_trace(folder, CASES, FUZZ_SEED)
    return folder


@pytest.fixture(scope="module")
def single(trace, tmp_path_factory):
    out = tmp_path_factory.mktemp("single")
    assert main(["--traces", str(trace), "--out", str(out), "--quiet"]) == 0
    return _load(out / "results.json")


@pytest.fixture(scope="module")
def shards(trace, tmp_path_factory):
    """Shards 1/3 .. 3/3 replayed one by one into one folder (as a batch array would)."""
    out = tmp_path_factory.mktemp("shards")
    for k in (1, 2, 3):
        assert main(["--traces", str(trace), "--out", str(out), "--shard", f"{k}/3",
                     "--quiet"]) == 0
    return out


# --------------------------------------------------------------------------- no simulator

def test_shards_partition_the_selection():
    selected = [3, 9, 4, 0, 7, 12, 5]
    for n in range(1, 9):
        parts = [shard_of(selected, k, n) for k in range(1, n + 1)]
        assert sorted(i for p in parts for i in p) == sorted(selected)
        assert max(map(len, parts)) - min(map(len, parts)) <= 1
    assert shard_of(selected, 2, 3) == [9, 7]
    assert parse_shard("2/4") == (2, 4) and parse_shard("1/1") == (1, 1)
    for bad in ("0/4", "5/4", "2", "a/b", "2/0", "-1/3", ""):
        with pytest.raises(ValueError, match="--shard must be K/N"):
            parse_shard(bad)


def test_bad_shard_options_are_clear_errors(trace, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["--traces", str(trace), "--out", out, "--shard", "4/3"]) == 2
    assert "--shard must be K/N with 1 <= K <= N" in capsys.readouterr().err
    assert main(["--traces", str(trace), "--out", out, "--shard", "1/2", "--jobs", "2"]) == 2
    assert "give one of the two" in capsys.readouterr().err
    assert main(["--traces", str(trace), "--out", out, "--jobs", "0"]) == 2
    assert "--jobs must be at least 1" in capsys.readouterr().err
    assert main(["--merge", "--traces", str(trace)]) == 2
    assert "--merge needs --out" in capsys.readouterr().err
    assert main(["--merge", "--out", out]) == 2
    assert "no shard results" in capsys.readouterr().err


# --------------------------------------------------------------------------- Verilator

def test_merged_shards_equal_the_single_run(single, shards, capsys):
    for k in (1, 2, 3):
        part = _load(shards / shard_file(k, 3))
        assert part["summary"]["shard"] == {"index": k, "count": 3,
                                            "selected": list(range(len(CASES)))}
        assert [r["index"] for r in part["executions"]] == shard_of(range(len(CASES)), k, 3)
    assert main(["--merge", "--out", str(shards)]) == 0
    assert "5/5 execution(s) on verilator: bit-exact True" in capsys.readouterr().out
    merged = _load(shards / "results.json")
    assert _records(merged) == _records(single)
    s, one = merged["summary"], single["summary"]
    for key in ("executions", "executions_expected", "bit_exact", "cycle_exact", "passed",
                "simulated_cycles", "host_port_cycles", "mismatches", "params", "trace",
                "manifest_sha256", "maps", "memory_loads"):
        assert s[key] == one[key], key
    assert s["memory_loads"] == "readmemh"
    assert s["shards"]["count"] == 3 and s["shards"]["executions"] == [2, 2, 1]


def test_local_processes_equal_the_single_run(trace, single, tmp_path, capsys):
    out = tmp_path / "jobs"
    assert main(["--traces", str(trace), "--out", str(out), "--jobs", "2"]) == 0
    assert "in 2 local processes" in capsys.readouterr().err
    merged = _load(out / "results.json")
    assert _records(merged) == _records(single) and merged["summary"]["passed"]
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]  # shards merged away
    # more processes than executions: one per execution
    assert main(["--traces", str(trace), "--out", str(out), "--jobs", "9", "--limit", "2"]) == 0
    merged = _load(out / "results.json")
    assert merged["summary"]["shards"]["count"] == 2
    assert _records(merged) == _records(single)[:2]


def test_a_shard_beyond_the_executions_is_empty_and_merges(trace, tmp_path):
    out = tmp_path / "wide"
    for k in range(1, 4):
        assert main(["--traces", str(trace), "--out", str(out), "--select", "1,3",
                     "--shard", f"{k}/3", "--quiet"]) == 0
    empty = _load(out / shard_file(3, 3))["summary"]
    assert empty["executions"] == 0 and empty["passed"]
    merged = merge_shards(out)
    assert [r["index"] for r in merged["executions"]] == [1, 3]
    assert merged["summary"]["passed"]


def _copy(shards, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(shards, dst)
    (dst / "results.json").unlink(missing_ok=True)
    return dst


def test_merge_refuses_shards_that_do_not_belong_together(shards, tmp_path):
    missing = _copy(shards, tmp_path, "missing")
    (missing / shard_file(2, 3)).unlink()
    with pytest.raises(ReplayError, match=r"shard\(s\) 2/3 missing"):
        merge_shards(missing)

    other = _copy(shards, tmp_path, "other_trace")
    data = _load(other / shard_file(3, 3))
    data["summary"]["manifest_sha256"] = "0" * 64     # a shard of another export
    (other / shard_file(3, 3)).write_text(json.dumps(data))
    with pytest.raises(ReplayError, match="shards 1/3 and 3/3 differ in 'manifest_sha256'"):
        merge_shards(other)

    moved = _copy(shards, tmp_path, "moved")   # the same export, elsewhere on another machine
    data = _load(moved / shard_file(2, 3))
    data["summary"]["trace"] = "/elsewhere/build/traces/x"
    (moved / shard_file(2, 3)).write_text(json.dumps(data))
    assert merge_shards(moved)["summary"]["passed"]

    config = _copy(shards, tmp_path, "other_config")
    data = _load(config / shard_file(2, 3))
    data["summary"]["params"]["dpe_cols"] = 4
    (config / shard_file(2, 3)).write_text(json.dumps(data))
    with pytest.raises(ReplayError, match="differ in 'params'"):
        merge_shards(config)

    twice = _copy(shards, tmp_path, "twice")
    a, b = _load(twice / shard_file(1, 3)), _load(twice / shard_file(2, 3))
    b["executions"].append(a["executions"][0])
    (twice / shard_file(2, 3)).write_text(json.dumps(b))
    with pytest.raises(ReplayError, match=r"execution #0 \[trace\] is in two shards"):
        merge_shards(twice)

    renamed = _copy(shards, tmp_path, "renamed")
    shutil.copy(renamed / shard_file(1, 3), renamed / shard_file(2, 3))
    with pytest.raises(ReplayError, match="holds shard 1/3, not 2/3"):
        merge_shards(renamed)

    corrupt = _copy(shards, tmp_path, "corrupt")
    (corrupt / shard_file(1, 3)).write_text("{")
    with pytest.raises(ReplayError, match="not valid JSON"):
        merge_shards(corrupt)

    mixed = _copy(shards, tmp_path, "mixed")
    shutil.copy(mixed / shard_file(1, 3), mixed / shard_file(1, 2))
    with pytest.raises(ReplayError, match="shards of 2 splits"):
        merge_shards(mixed)
    assert merge_shards(mixed, 3)["summary"]["passed"]


def test_a_mismatch_in_one_process_fails_the_merged_run(tmp_path, capsys):
    good = [random_execution(cin=16, cout=16, height=2, width=2, kernel=1, stride=1,
                             sparsity=0.5, mode="int4", seed=s) for s in (90, 91)]
    bad = random_execution(cin=20, cout=18, height=3, width=4, kernel=3, stride=1,
                           sparsity=0.5, mode="int4", seed=99)
    codes = bad.arrays["out_codes"]
    codes[1, 2, 5] = (int(codes[1, 2, 5]) + 3) % 16
    write_trace(tmp_path / "t", [good[0], bad, good[1]], header=HEADER)
    out = tmp_path / "out"
    assert main(["--traces", str(tmp_path / "t"), "--out", str(out), "--jobs", "2"]) == 1
    s = _load(out / "results.json")["summary"]
    assert not s["passed"] and s["mismatching_executions"] == 1
    assert f"execution #1 {bad.name}" in s["first_mismatch"]
    assert "out_codes at pixel (y, x) (1, 2), channel 5" in s["first_mismatch"]
    assert s["first_mismatch"] in capsys.readouterr().out
    assert s["cocotb_failure"].startswith("shard 2/2: ")
    assert (out / shard_file(2, 2)).exists()   # kept for a look when the run failed
    shutil.rmtree(s["run_dir"], ignore_errors=True)

"""The side-by-side table of both workloads, from two bench reports (tiny synthetic samples)."""
import json

import pytest

from evaluation import bench, workloads
from evaluation.test_bench import _tiny_trace


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """A bench report per workload: digits on the tiny trace, mnist on its all-INT4 twin."""
    root = tmp_path_factory.mktemp("bench")
    out = {}
    for model, only in (("digits", None), ("mnist", "int4")):
        trace = _tiny_trace(root / f"trace-{model}", only=only)
        bench.run(trace, None, root / model, do_sweeps=False, plots=False,
                  progress=lambda *_: None)
        out[model] = root / model
    return out


def test_side_by_side_figures_come_from_the_reports(reports, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(workloads, "default_paths", lambda m: {"out": reports[m]})
    doc = workloads.run(out_dir=tmp_path)
    assert json.loads((tmp_path / "workloads.json").read_text()) == json.loads(
        json.dumps(bench._round(doc)))
    for model, folder in reports.items():
        rep = json.loads((folder / "report.json").read_text())
        recs = json.loads((folder / "executions.json").read_text())
        f = doc["workloads"][model]
        assert f["executions"] == len(recs) == 8
        assert f["speedup_vs_fp16"]["sqdm"] == rep["configs"]["sqdm"]["speedup_vs_fp16"]
        assert f["sqdm_dpe_busy"] == (rep["configs"]["sqdm"]["dpe_busy"]
                                      / rep["configs"]["sqdm"]["cycles_compute"])
        want = sum(r["sparse_groups"] for r in recs) / sum(r["groups"] for r in recs)
        assert f["sparse_group_fraction"] == want
    # the all-INT4 twin has sparser inputs (no MXINT8 layer with dense inputs)
    assert (doc["workloads"]["mnist"]["input_zero_fraction_mac_weighted"]
            > doc["workloads"]["digits"]["input_zero_fraction_mac_weighted"])
    table = capsys.readouterr().out
    assert "| | digits | mnist |" in table and "sparse channel groups" in table


def test_a_missing_or_broken_report_names_the_command(reports, tmp_path, capsys):
    (tmp_path / "mnist").mkdir()
    paths = {"digits": reports["digits"], "mnist": tmp_path / "mnist"}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(workloads, "default_paths", lambda m: {"out": paths[m]})
        assert workloads.main(["--out", str(tmp_path / "o")]) == 2
        assert "make bench MODEL=mnist writes it" in capsys.readouterr().err
        (tmp_path / "mnist" / "report.json").write_text("{")
        with pytest.raises(bench.BenchError, match="not valid JSON"):
            workloads.run(out_dir=tmp_path / "o", progress=lambda *_: None)
        (tmp_path / "mnist" / "report.json").write_text("{}")
        (tmp_path / "mnist" / "executions.json").write_text("[]")
        with pytest.raises(bench.BenchError, match="lacks 'configs'"):
            workloads.run(out_dir=tmp_path / "o", progress=lambda *_: None)
    assert not (tmp_path / "o" / "workloads.json").exists()

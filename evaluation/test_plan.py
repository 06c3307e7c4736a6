"""The hardware-aware plan search: its rule on made-up points, and one tiny real run."""

import json

import numpy as np
import pytest

from evaluation import plan as ps
from golden.clitest import Started, refuse, usage_error
from golden.model import load_checkpoint
from golden.quant import load_plan_model, uniform_plan


def point(name, cycles, sqnr, share=0.95, kind="candidate"):
    return {"kind": kind, "name": name, "cycles": cycles, "sqnr_db": sqnr,
            "int4_mac_share": share}


def test_pareto_keeps_the_undominated_points():
    pts = [point("a", 10, 30), point("b", 12, 29), point("c", 12, 35), point("d", 8, 20),
           point("e", 10, 30)]
    assert [pts[i]["name"] for i in ps.pareto(pts)] == ["a", "c", "d", "e"]


def test_rule_takes_the_fewest_cycles_at_the_bar_with_enough_int4():
    pts = [point("slow", 20, 40), point("fast", 10, 33), point("faster", 9, 31.9),
           point("cheap_but_8bit", 5, 45, share=0.5), point("ref", 1, 50, kind="reference")]
    assert ps.choose(pts, 32.0)["name"] == "fast"
    assert ps.choose(pts, 41.0) is None
    assert ps.choose(pts, 30.0, min_share=0.4)["name"] == "cheap_but_8bit"


def test_demotion_order_is_noise_per_cycle_saved():
    sens = {"groups": {"a": {"added_noise_ratio": [1e-4, 3e-4]},      # 2e-4 / 100 cycles
                       "b": {"added_noise_ratio": [1e-4]},            # 1e-4 / 10 cycles
                       "c": {"added_noise_ratio": [1e-5]},            # saves nothing
                       "d": {"added_noise_ratio": [-1e-6]}}}          # noise-free
    tables = {"mxint8": {"a": {"cycles": 200}, "b": {"cycles": 20}, "c": {"cycles": 5},
                         "d": {"cycles": 50}},
              "int4": {"a": {"cycles": 100}, "b": {"cycles": 10}, "c": {"cycles": 5},
                       "d": {"cycles": 40}}}
    assert ps.demotion_order(sens, tables) == ["d", "a", "b", "c"]


def test_predicted_cost_sums_each_layer_in_its_precision():
    tables = {p: {n: {"cycles": c, "cycles_compute": c, "energy_pj": 2.0 * c}
                  for n, c in zip("ab", cs)}
              for p, cs in (("int4", (1, 2)), ("mxint8", (10, 20)))}
    assert ps.predict_cost(tables, {"a": "int4", "b": "mxint8"}) == \
        {"cycles": 21, "cycles_compute": 21, "energy_pj": 42.0}


def test_candidates_are_prefixes_of_the_order():
    model, _ = load_checkpoint("relu")
    order = [li.name for li in model.layers()][::-1]
    cands = ps.candidates(model, order)
    assert len(cands) == len(order) + 1
    assert cands[0]["plan"] == uniform_plan(model, "mxint8")
    assert cands[-1]["plan"] == uniform_plan(model, "int4")
    assert [n for n, p in cands[2]["plan"].items() if p == "int4"] == sorted(
        order[:2], key=[li.name for li in model.layers()].index)


def test_tiny_search_writes_a_runnable_plan_and_a_report(tmp_path):
    out = tmp_path / "plan.json"
    # the paper's organisation: its closed-form costs keep the test short
    r = ps.run(out_dir=tmp_path / "report", plan_out=out, images=1, num_steps=2, jobs=1,
               config=ps.PAPER, progress=lambda m: None)
    doc = json.loads((tmp_path / "report" / "report.json").read_text())
    assert doc["chosen"]["name"] == r["chosen"]["name"]
    assert set(doc) >= {"chosen", "exact", "points", "pareto", "sensitivity", "outliers",
                        "error_split_db", "cycle_reduction_vs_previous", "figures"}
    assert len(doc["sensitivity"]["layers"]["groups"]) == 34
    assert doc["chosen"]["sqnr_db"] >= doc["previous"]["sqnr_db"]
    assert doc["chosen"]["int4_mac_share"] >= ps.MIN_INT4_MAC_SHARE
    for f in doc["figures"]:
        assert f.endswith(".png")
    pm = load_plan_model(out)
    assert pm.weight_scales == "mse" and pm.checkpoint == "unet_relu.pt"
    assert [n for n, p in pm.plan.items() if p == "mxint8"] == doc["chosen"]["mxint8_layers"] \
        or sorted(n for n, p in pm.plan.items() if p == "mxint8") == \
        doc["chosen"]["mxint8_layers"]
    # the exact cycles of the chosen plan are near the additive prediction
    assert abs(doc["exact"]["chosen"]["cycles"] / doc["chosen"]["cycles"] - 1) < 0.05
    assert np.isfinite(doc["gap_to_mxint8_db"])
    # the costs are cached: a second run reuses them (same key)
    key = json.loads((tmp_path / "report" / "costs.json").read_text())["key"]
    assert len(key) == 64


@pytest.fixture
def no_search(monkeypatch):
    monkeypatch.setattr(ps.torch, "set_num_threads", refuse)


@pytest.mark.parametrize("argv, message", [
    (["--images", "0"], "--images must be >= 1, got 0"),
    (["--num-steps", "1"], "--num-steps must be >= 2"),
    (["--jobs", "0"], "--jobs must be >= 1, got 0"),
])
def test_plan_rejects_bad_arguments(tmp_path, capsys, no_search, argv, message):
    out = tmp_path / "plan.json"
    usage_error(capsys, lambda: ps.main(argv + ["--out", str(out)]), message)
    assert not out.exists()


def test_plan_out_and_report_dir_are_checked(tmp_path, capsys, no_search):
    usage_error(capsys, lambda: ps.main(["--out", str(tmp_path)]),
                f"--out {tmp_path} is a directory")
    f = tmp_path / "file"
    f.write_text("x")
    usage_error(capsys, lambda: ps.main(["--out", str(tmp_path / "p.json"), "--report-dir",
                                         str(f)]), f"--report-dir {f} is a file")
    with pytest.raises(Started):
        ps.main(["--out", str(tmp_path / "p.json")])


def test_each_workload_has_a_search_whose_bar_fits_its_model():
    from golden.quant import default_plan, load_plan
    from golden.workloads import WORKLOADS
    assert set(ps.SEARCHES) == set(WORKLOADS)
    model, _ = load_checkpoint(WORKLOADS["mnist"].checkpoint("relu"))
    search = ps.SEARCHES["mnist"]
    # MNIST's bar is the role plan it shipped with, kept beside the plan the search writes
    assert load_plan(search.previous, model) == default_plan(model)
    assert WORKLOADS["mnist"].plan_path != search.previous
    assert WORKLOADS["digits"].plan_path == ps.PLAN_OUT
    assert search.out_dir != ps.SEARCHES["digits"].out_dir


@pytest.mark.parametrize("model, plan, report", [
    ("digits", "golden/plans/sqdm_plan.json", "build/plan"),
    ("mnist", "golden/plans/mnist_plan.json", "build/plan/mnist"),
])
def test_model_selects_the_plan_file_and_report_folder(monkeypatch, model, plan, report):
    seen = {}
    monkeypatch.setattr(ps.torch, "set_num_threads", lambda n: None)
    monkeypatch.setattr(ps, "run", lambda **kw: seen.update(kw))
    assert ps.main(["--model", model]) == 0
    assert seen["model_name"] == model
    assert seen["plan_out"] == ps.REPO / plan and seen["out_dir"] == ps.REPO / report


def test_plan_rejects_an_unknown_model(capsys, no_search):
    usage_error(capsys, lambda: ps.main(["--model", "cifar"]), "argument --model: invalid choice: 'cifar'")

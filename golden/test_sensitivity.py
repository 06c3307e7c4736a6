"""Sensitivity analysis, plan choice and the report's metrics."""

import numpy as np
import pytest
import torch

from golden.model import build_model, load_checkpoint
from golden.quant import load_plan
from golden.report import flip_rate, frechet_distance, relu_sparsity
from golden.sensitivity import PLAN_PATH, blocks, block_of, choose_plan, rank, sqnr_db

torch.set_num_threads(1)


def test_block_of_groups_layers():
    assert block_of("enc8.conv_a") == "enc8"
    assert block_of("enc8.mod") == "embedding" and block_of("emb.fc0") == "embedding"
    assert block_of("conv_in") == "conv_in"
    model = build_model({"act": "relu"})
    groups = blocks(model)
    assert sum(len(v) for v in groups.values()) == len(model.layers())
    assert groups["attn4"] == ["attn4.qkv", "attn4.proj"]


def fake_analysis(model, sqnr: dict):
    macs = {li.name: li.macs() for li in model.layers()}
    total = sum(macs.values())
    return {b: {"layers": ls, "mac_share": sum(macs[x] for x in ls) / total,
                "denoiser_sqnr_db": {"mean": sqnr.get(b, 50.0)}, "sample_sqnr_db": 0.0}
            for b, ls in blocks(model).items()}


def test_choose_plan_keeps_sensitive_layers_and_respects_the_budget():
    model = build_model({"act": "relu"})
    analysis = fake_analysis(model, {"enc16": 10.0, "down8": 20.0, "mid4": 30.0})
    plan = choose_plan(model, analysis, budget=0.11)
    infos = {li.name: li for li in model.layers()}
    assert all(plan[n] == "mxint8" for n, li in infos.items() if li.role == "sensitive")
    assert plan["enc16.conv_a"] == "int4"          # 14 % of the MACs: does not fit
    assert plan["down8"] == "mxint8" and plan["mid4.conv_a"] == "mxint8"
    share = sum(li.macs() for n, li in infos.items() if plan[n] == "mxint8") / \
        sum(li.macs() for li in infos.values())
    assert share <= 0.11
    assert rank(analysis, "denoiser")[:3] == ["enc16", "down8", "mid4"]


def test_committed_plan_loads_and_runs_most_macs_in_int4():
    model, _ = load_checkpoint("relu")
    plan = load_plan(PLAN_PATH, model)
    macs = {li.name: li.macs() for li in model.layers()}
    int4 = sum(m for n, m in macs.items() if plan[n] == "int4") / sum(macs.values())
    assert int4 >= 0.90
    assert plan["conv_in"] == plan["conv_out"] == plan["attn4.qkv"] == "mxint8"


def test_metrics():
    a = torch.ones(4, 4)
    assert sqnr_db(a, a) == float("inf")
    assert sqnr_db(a, a * 1.1) == pytest.approx(20.0)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 3))
    assert frechet_distance(x, x) == pytest.approx(0.0, abs=1e-9)
    assert frechet_distance(x, x + 1.0) == pytest.approx(3.0, rel=1e-6)
    per_layer = {"l": np.array([[0.1, 0.5], [0.4, 0.5], [0.4, 0.1]])}
    assert flip_rate(per_layer, 0.3) == pytest.approx(2 / 4)


def test_relu_sparsity_of_the_checkpoint_is_substantial():
    model, _ = load_checkpoint("relu")
    per_layer = relu_sparsity(model, torch.randn(2, 1, 16, 16,
                                                 generator=torch.Generator().manual_seed(0)), 3)
    assert per_layer["enc8.conv_a"].shape == (3, 64)
    assert 0.4 < np.mean([v.mean() for v in per_layer.values()]) < 0.95


def test_calibration_study_compares_three_scale_choices():
    from golden.report import calibration_study
    model, _ = load_checkpoint("relu")
    r = calibration_study(model, torch.randn(1, 1, 16, 16,
                                             generator=torch.Generator().manual_seed(1)), 3)
    assert set(r) >= {"dynamic_per_vector", "static_one_step", "static_all_steps"}
    assert len(r["static_one_step"]["per_step"]) == 3 and r["calibration_step"] == 1
    assert r["dynamic_per_vector"]["mean"] > r["static_all_steps"]["mean"]

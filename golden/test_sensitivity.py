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


def test_smoothquant_migration_keeps_the_fp32_model():
    from golden import edm
    from golden.sensitivity import Reference
    from golden.smooth import conv_b_input_max, migrate, resblocks
    model, _ = load_checkpoint("relu")
    ref = Reference(model, images=1, num_steps=3, seed=0)
    act = conv_b_input_max(model, ref)
    assert set(act) == set(resblocks(model)) and len(act) == 7
    for alpha in (0.0, 0.5, 1.0):
        m = migrate(model, alpha, act)
        assert not torch.equal(m.enc8.conv_b.weight, model.enc8.conv_b.weight)
        for _, sigma, x in ref.inputs:
            with torch.no_grad():
                a, b = edm.EDMDenoiser(m)(x, sigma), edm.EDMDenoiser(model)(x, sigma)
            assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_op_types_cover_the_model_by_structure():
    from golden.sensitivity import OP_TYPES, op_type
    model = build_model({"act": "relu"})
    types = {li.name: op_type(li) for li in model.layers()}
    assert set(types.values()) == set(OP_TYPES)
    assert types["conv_in"] == "first conv" and types["conv_out"] == "last conv"
    assert types["skip8"] == "skip 1x1" and types["down16"] == "downsample 3x3"
    assert types["up8"] == "upsample 3x3" and types["enc4.conv_b"] == "resblock 3x3"
    assert types["attn4.qkv"] == "attention" and types["enc8.mod"] == "embedding"


def test_noise_ratios_add_up_to_the_predicted_sqnr():
    from golden.sensitivity import noise_ratio, predict_sqnr, ratio_db
    assert ratio_db(noise_ratio([30.0]))[0] == pytest.approx(30.0)
    base = [40.0, 40.0]
    sens = {"base_mxint8": {"per_step": base},
            "groups": {"a": {"added_noise_ratio": [1e-4, 1e-4]},
                       "b": {"added_noise_ratio": [2e-4, 0.0]}}}
    assert predict_sqnr(sens, []) == pytest.approx(40.0)
    # step 0: 1e-4 + 1e-4 + 2e-4 = 4e-4 -> 33.98 dB; step 1: 2e-4 -> 36.99 dB
    assert predict_sqnr(sens, ["a", "b"]) == pytest.approx(
        (-10 * np.log10(4e-4) - 10 * np.log10(2e-4)) / 2)


def test_committed_classifier_recognises_held_out_digits_and_gives_a_distance():
    from golden.classifier import ClassifierFD, accuracy, split
    from golden.data import load_digits16
    cfd = ClassifierFD()
    x, y = load_digits16()
    _, held_out = split(len(x), cfd.meta["holdout"], cfd.meta["seed"])
    assert accuracy(cfd.model, x[held_out], y[held_out]) == pytest.approx(
        cfd.meta["test_accuracy"]) and cfd.meta["test_accuracy"] > 0.95
    assert cfd(x) == pytest.approx(0.0, abs=1e-3)          # the data against itself
    noise = torch.rand(300, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert cfd(noise) > 10 * cfd(x[:300], x[300:600]) > 0   # noise is far from digits


def test_committed_mnist_classifier_recognises_the_validation_images():
    from golden.classifier import ClassifierFD, accuracy
    from golden.data import load_mnist32
    cfd = ClassifierFD(model="mnist")
    assert cfd.model.resolution == 32 and cfd.meta["train_images"] == 50_000
    xv, yv = load_mnist32("valid")
    assert accuracy(cfd.model, xv, yv) == pytest.approx(cfd.meta["test_accuracy"])
    assert cfd.meta["test_accuracy"] > 0.97
    xt = load_mnist32("test")[0]
    assert cfd(xt) == pytest.approx(0.0, abs=1e-3)         # the reference is the test set
    noise = torch.rand(500, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert cfd(noise) > 10 * cfd(xv[:2000]) > 0


def test_sample_grid_rows_are_labelled(tmp_path):
    from PIL import Image
    from golden.report import save_grid
    rows = [("a\n1 dB", torch.zeros(8, 1, 16, 16)), ("b", torch.ones(16, 1, 16, 16))]
    save_grid(rows, tmp_path / "g.png")
    img = np.asarray(Image.open(tmp_path / "g.png"))
    assert img.shape[0] == (17 + 1) * 3 + 6 + (2 * 17 + 1) * 3 + 6
    assert (img[:, :200] < 128).any()                      # the labels' text is drawn


def test_mnist_report_runs_on_the_committed_checkpoints(tmp_path):
    """``make golden-report MODEL=mnist`` in miniature: every configuration, the classifier FD,
    the sparsity and the grid, from the committed MNIST checkpoints and plan."""
    import json
    from golden.report import build_workload_report
    r = build_workload_report("mnist", tmp_path, images=2, fd_images=4, num_steps=2,
                              progress=False)
    assert json.loads((tmp_path / "report.json").read_text())["model"] == "mnist"
    assert set(r["sqnr_db"]) == {"mxint8", "int4", "plan"}
    assert r["sqnr_db"]["mxint8"]["mean"] > r["sqnr_db"]["int4"]["mean"]
    assert set(r["classifier_fd"]["to_data"]) == {"fp32_relu", "mxint8", "int4", "plan"}
    assert 0.9 < r["int4_mac_share"] < 1 and 0 < r["relu_sparsity_mean"] < 1
    assert (tmp_path / "samples.png").stat().st_size > 0

"""Quantization-aware fine-tuning: the fake quantizers match the numerics library, the student
runs the plan's exact weights, and a short run keeps the plan runnable."""

import numpy as np
import pytest
import torch

from golden import numerics as nx
from golden import qat
from golden.clitest import Started, refuse, usage_error
from golden.model import load_checkpoint
from golden.quant import QuantUNet, default_plan

torch.set_num_threads(1)


def test_fake_vsq_equals_the_uint4_and_int4_quantizers():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 40, 3, 5, generator=g) * torch.exp2(torch.randint(-6, 6, (2, 40, 3, 5),
                                                                           generator=g).float())
    for qmax, quant, deq, xs in ((15, nx.uint4_quantize, nx.uint4_dequantize, x.abs()),
                                 (7, nx.int4_quantize, nx.int4_dequantize, x)):
        got = qat.fake_vsq(xs, qmax).permute(0, 2, 3, 1).double().numpy()
        ref = deq(*quant(xs.permute(0, 2, 3, 1).double().numpy()))
        assert np.allclose(got, ref, rtol=1e-6, atol=0), qmax


def test_fake_mxint8_equals_the_mxint8_quantizer():
    x = torch.randn(2, 70, 2, 2, generator=torch.Generator().manual_seed(1)) * 3
    x[0, :32] = 0   # an all-zero block
    got = qat.fake_mxint8(x).permute(0, 2, 3, 1).double().numpy()
    ref = nx.mxint8_dequantize(*nx.mxint8_quantize(x.permute(0, 2, 3, 1).double().numpy()))
    assert np.allclose(got, ref, rtol=1e-6, atol=0)


def test_fake_quantizers_pass_gradients_straight_through():
    x = torch.rand(1, 16, 2, 2, requires_grad=True)
    (qat.fake_vsq(x, 15) * 3).sum().backward()
    assert torch.equal(x.grad, torch.full_like(x, 3.0))


def test_student_runs_the_weights_the_quantized_model_runs():
    model, _ = load_checkpoint("relu")
    plan = default_plan(model)
    net = QuantUNet(model, plan, executor="fake")
    fq = qat.FakeQuant(model, plan)
    try:
        fq.refresh_weights()
        for name, conv in fq.convs.items():
            layer = net.layers[name]
            hw = layer.hardware_weight() * torch.from_numpy(layer.w_scale2)[:, None, None, None]
            assert torch.allclose(conv.weight_override.double(), hw, rtol=1e-6, atol=0), name
    finally:
        fq.remove()
    assert all(c.weight_override is None for c in fq.convs.values())
    assert not any(c._forward_pre_hooks for c in fq.convs.values())


def test_short_finetune_returns_a_runnable_student():
    teacher, _ = load_checkpoint("relu")
    plan = default_plan(teacher)
    student, log = qat.finetune(teacher, plan, steps=2, lr=1e-5, batch=2, seed=0, eval_every=1,
                                progress=lambda m: None)
    assert [s for s, _ in log["validation_sqnr_db"]] == [0, 1, 2]
    assert log["best_validation_sqnr_db"] == max(v for _, v in log["validation_sqnr_db"])
    p = next(student.parameters())
    assert torch.equal(p, p.half().float())          # stored as a checkpoint stores it
    assert not any(c._forward_pre_hooks for _, c in student.named_pconvs())


def test_run_writes_the_student_only_when_it_is_better(tmp_path, monkeypatch):
    import json
    import shutil

    from golden import quant
    from golden.model import CHECKPOINT_DIR
    from golden.quant import load_plan_model, save_plan
    shutil.copy(CHECKPOINT_DIR / "unet_relu.pt", tmp_path / "unet_relu.pt")
    monkeypatch.setattr(quant, "CHECKPOINT_DIR", tmp_path)
    model, _ = load_checkpoint("relu")
    path = save_plan(tmp_path / "plan.json", default_plan(model))
    r = qat.run(path, steps=2, lr=1e-5, batch=2, seed=0, eval_every=1, ref_images=1,
                progress=lambda m: None)
    doc = json.loads(path.read_text())
    if r["sqnr_db_after"] > r["sqnr_db_before"]:
        assert doc["checkpoint"] == qat.QAT_CHECKPOINT and doc["qat"]["steps"] == 2
        pm = load_plan_model(path)
        assert pm.checkpoint == qat.QAT_CHECKPOINT
        assert qat.denoiser_sqnr(pm.model, pm.plan, qat.Reference(
            load_checkpoint("relu")[0], images=1, num_steps=18, seed=1), pm.weight_scales) == \
            pytest.approx(r["sqnr_db_after"], abs=1e-9)
    else:
        assert "checkpoint" not in doc and not (tmp_path / qat.QAT_CHECKPOINT).exists()


@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr(qat.torch, "set_num_threads", refuse)


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--batch", "0"], "--batch must be >= 1, got 0"),
    (["--eval-every", "0"], "--eval-every must be >= 1, got 0"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--lr", "0"], "--lr must be > 0, got 0.0"),
    (["--lr", "nan"], "--lr must be > 0, got nan"),
    (["--plan", "/nonexistent/plan.json"], "--plan /nonexistent/plan.json is not a file"),
])
def test_qat_rejects_bad_arguments(capsys, no_training, argv, message):
    usage_error(capsys, lambda: qat.main(argv), message)


def test_qat_good_arguments_pass(no_training):
    with pytest.raises(Started):
        qat.main(["--steps", "1"])

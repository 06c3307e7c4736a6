"""Command lines of golden.train, golden.sensitivity and golden.report: a bad argument is one
``error:`` line and exit code 2 before any data, checkpoint or training is touched, and
nothing named by --out is written."""

import json

import pytest

from golden import report, sensitivity, train
from golden.model import build_model
from golden.quant import PLAN_SCHEMA, PLAN_VERSION
from golden.clitest import Started, refuse, usage_error


# --------------------------------------------------------------------------- golden.train

@pytest.fixture
def no_training(monkeypatch):
    # torch.set_num_threads is main's first step after the checks (and keeps main from
    # switching on deterministic algorithms for the rest of the test session)
    monkeypatch.setattr(train.torch, "set_num_threads", refuse)
    monkeypatch.setattr(train.Workload, "training_data", refuse)
    monkeypatch.setattr(train, "check", refuse)


@pytest.mark.parametrize("argv, message", [
    (["--steps", "0"], "--steps must be >= 1, got 0"),
    (["--steps", "-5", "--quick"], "--steps must be >= 1, got -5"),
    (["--batch", "0"], "--batch must be >= 1, got 0"),
    (["--relu-frac", "0"], "--relu-frac must be in (0, 0.10] (a fraction of --steps), got 0.0"),
    (["--relu-frac", "-0.1"], "--relu-frac must be in (0, 0.10]"),
    (["--relu-frac", "0.5"], "--relu-frac must be in (0, 0.10]"),
    (["--relu-frac", "nan"], "--relu-frac must be in (0, 0.10]"),
    (["--threads", "0"], "--threads must be >= 1, got 0"),
    (["--threads", "0", "--check"], "--threads must be >= 1, got 0"),
])
def test_train_rejects_bad_numbers(tmp_path, capsys, no_training, argv, message):
    out = tmp_path / "ckpt"
    usage_error(capsys, lambda: train.main(argv + ["--out", str(out)]), message)
    assert not out.exists()


@pytest.mark.parametrize("extra", [[], ["--check"], ["--quick"]])
def test_train_out_must_not_be_a_file(tmp_path, capsys, no_training, extra):
    out = tmp_path / "ckpt"
    out.write_text("keep\n")
    usage_error(capsys, lambda: train.main(["--out", str(out)] + extra),
                 f"--out {out} is not a directory")
    assert out.read_text() == "keep\n"


def test_train_check_needs_the_checkpoints(tmp_path, capsys, no_training):
    usage_error(capsys, lambda: train.main(["--check", "--out", str(tmp_path)]),
                 f"--out {tmp_path} has no unet_silu.pt / unet_relu.pt")
    usage_error(capsys, lambda: train.main(["--check", "--model", "mnist", "--out",
                                            str(tmp_path)]),
                 f"--out {tmp_path} has no mnist_unet_silu.pt / mnist_unet_relu.pt")
    assert list(tmp_path.iterdir()) == []


def test_train_unknown_model_is_refused(tmp_path, capsys, no_training):
    usage_error(capsys, lambda: train.main(["--model", "cifar", "--out", str(tmp_path)]),
                 "argument --model: invalid choice: 'cifar'")


def test_train_good_arguments_pass(tmp_path, no_training):
    with pytest.raises(Started):
        train.main(["--out", str(tmp_path / "ckpt")])
    with pytest.raises(Started):
        train.main(["--quick", "--steps", "1", "--batch", "1", "--relu-frac", "0.1"])
    with pytest.raises(Started):
        train.main(["--check"])      # the committed checkpoints


# --------------------------------------------------------------------------- golden.sensitivity

@pytest.fixture
def no_analysis(monkeypatch):
    monkeypatch.setattr(sensitivity, "load_checkpoint", refuse)


@pytest.mark.parametrize("argv, message", [
    (["--images", "0"], "--images must be >= 1, got 0"),
    (["--num-steps", "1"], "--num-steps must be >= 2 (the Heun sampler's minimum), got 1"),
    (["--num-steps", "-3"], "--num-steps must be >= 2"),
    (["--budget", "-0.1"], "--budget is the MXINT8 share of the conv MACs, a fraction in [0, 1]; "
                           "got -0.1"),
    (["--budget", "1.5"], "--budget is the MXINT8 share of the conv MACs"),
    (["--budget", "nan"], "--budget is the MXINT8 share of the conv MACs"),
])
def test_sensitivity_rejects_bad_numbers(tmp_path, capsys, no_analysis, argv, message):
    out = tmp_path / "plan.json"
    usage_error(capsys, lambda: sensitivity.main(argv + ["--out", str(out)]), message)
    assert not out.exists()


def test_sensitivity_out_must_not_be_a_directory(tmp_path, capsys, no_analysis):
    usage_error(capsys, lambda: sensitivity.main(["--out", str(tmp_path)]),
                 f"--out {tmp_path} is a directory")
    assert list(tmp_path.iterdir()) == []


def test_sensitivity_good_arguments_pass(tmp_path, no_analysis):
    with pytest.raises(Started):
        sensitivity.main(["--out", str(tmp_path / "plan.json"), "--images", "1",
                          "--num-steps", "2", "--budget", "0"])


# --------------------------------------------------------------------------- golden.report

@pytest.fixture
def no_report(monkeypatch):
    monkeypatch.setattr(report, "build_report", refuse)
    monkeypatch.setattr(report, "build_workload_report", refuse)
    monkeypatch.setattr(report, "load_checkpoint", refuse)


@pytest.mark.parametrize("argv, message", [
    (["--images", "1"], "--images must be >= 2 (FD-PCA fits a covariance to the samples), got 1"),
    (["--images", "0"], "--images must be >= 2"),
    (["--num-steps", "1"], "--num-steps must be >= 2 (the Heun sampler's minimum), got 1"),
    (["--num-steps", "0"], "--num-steps must be >= 2"),
    (["--fd-images", "1"], "--fd-images must be >= 2 (the Fréchet distance fits a covariance), "
                           "got 1"),
    (["--model", "mnist", "--fd-images", "0"], "--fd-images must be >= 2"),
    (["--model", "mnist", "--num-steps", "1"], "--num-steps must be >= 2"),
    (["--model", "cifar"], "argument --model: invalid choice: 'cifar'"),
])
def test_report_rejects_bad_numbers(tmp_path, capsys, no_report, argv, message):
    out = tmp_path / "report"
    usage_error(capsys, lambda: report.main(argv + ["--out", str(out)]), message)
    assert not out.exists()


def test_report_out_must_not_be_a_file(tmp_path, capsys, no_report):
    out = tmp_path / "report"
    out.write_text("keep\n")
    usage_error(capsys, lambda: report.main(["--out", str(out)]),
                 f"--out {out} is not a directory")
    assert out.read_text() == "keep\n"


@pytest.mark.parametrize("content, message", [
    (None, "precision plan not found"),
    ("{not json", "not valid JSON (Expecting property name"),
    ("", "not valid JSON"),
    (b"\xff\xfe", "cannot read the precision plan"),
])
def test_report_plan_file_is_checked_before_any_checkpoint(tmp_path, capsys, no_report,
                                                           content, message):
    plan = tmp_path / "plan.json"
    if isinstance(content, bytes):
        plan.write_bytes(content)
    elif content is not None:
        plan.write_text(content)
    out = tmp_path / "report"
    assert report.main(["--plan", str(plan), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {plan}: {message}") and err.count("\n") == 1
    assert not out.exists()


def test_report_plan_naming_a_directory(tmp_path, capsys, no_report):
    assert report.main(["--plan", str(tmp_path), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {tmp_path}: cannot read the precision plan")
    assert err.count("\n") == 1 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("doc, message", [
    ({"schema": "other", "version": PLAN_VERSION, "layers": {}}, "expected schema 'sqdm-plan'"),
    ({"schema": PLAN_SCHEMA, "version": PLAN_VERSION, "layers": []}, "'layers' must map"),
])
def test_report_plan_of_the_wrong_kind_is_load_plans_message(tmp_path, capsys, monkeypatch,
                                                              no_report, doc, message):
    # an untrained model of the checkpoint's shape: load_plan rejects these before its layer
    # check, so neither the checkpoint nor a forward pass is needed
    monkeypatch.setattr(report, "load_checkpoint",
                        lambda which: (build_model({"act": "relu"}), {}))
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(doc))
    assert report.main(["--plan", str(plan), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {plan}: {message}") and err.count("\n") == 1
    assert not (tmp_path / "report").exists()

"""Export from the committed checkpoint: deterministic, valid, consistent with the reference."""

import numpy as np
import pytest

from traces.export import export_sample, select_steps
from traces.format import open_trace, recompute


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    for name in ("a", "b"):
        export_sample(root / name, steps="all", num_steps=2, seed=5, progress=False)
    return root


def test_export_twice_gives_identical_files(exported):
    a, b = open_trace(exported / "a"), open_trace(exported / "b")
    assert a.manifest == b.manifest
    assert (exported / "a" / "manifest.json").read_bytes() == \
        (exported / "b" / "manifest.json").read_bytes()


def test_exported_executions_match_the_reference(exported):
    trace = open_trace(exported / "a")
    evals = {rec["meta"]["eval"] for rec in trace.records}
    assert evals == {0, 1, 2}                          # 2 Heun steps = 3 evaluations
    layers = {rec["meta"]["layer"] for rec in trace.records}
    assert {"enc16.conv_a", "attn4.qkv", "conv_out", "skip16"} <= layers
    for i in range(0, len(trace), 7):
        ex = trace.load(i)
        for name, want in recompute(ex).items():
            assert np.array_equal(want, ex.arrays[name]), (ex.name, name)


def test_channel_maps_follow_the_previous_evaluation(exported):
    trace = open_trace(exported / "a")
    by_key = {(r["meta"]["eval"], r["meta"]["layer"]): i for i, r in enumerate(trace.records)}
    first = trace.load(by_key[(0, "enc8.conv_a")])
    second = trace.load(by_key[(1, "enc8.conv_a")])
    assert not first.arrays["channel_map"].any()
    zeros = (first.arrays["x_codes"] == 0).sum(axis=(0, 1))
    from golden.intref import channel_map
    assert np.array_equal(second.arrays["channel_map"], channel_map(zeros, 64))


def test_step_selection():
    assert select_steps("default", 18) == [0, 9, 17]
    assert select_steps("all", 3) == [0, 1, 2]
    assert select_steps("2,0", 5) == [0, 2]
    with pytest.raises(ValueError, match="outside"):
        select_steps("7", 5)
    with pytest.raises(ValueError, match="comma list"):
        select_steps("x", 5)


def test_uniform_plans_run_on_the_chosen_workload():
    """``--plan int4 --model mnist``: the all-INT4 reference on the MNIST checkpoint (a plan
    JSON names its own checkpoint); the command line offers exactly the known workloads."""
    from golden.workloads import WORKLOADS
    from traces.__main__ import parser
    from traces.export import resolve_plan
    pm, name, _ = resolve_plan("int4", "mnist")
    assert (pm.checkpoint, name) == ("mnist_unet_relu.pt", "uniform:int4:mnist")
    assert set(pm.plan.values()) == {"int4"} and pm.model.config["resolution"] == 32
    assert resolve_plan("int4")[1] == "uniform:int4"
    with pytest.raises(ValueError, match="unknown model 'cifar'"):
        resolve_plan("int4", "cifar")
    export = parser()._subparsers._group_actions[0].choices["export"]
    model = next(a for a in export._actions if a.dest == "model")
    assert sorted(model.choices) == sorted(WORKLOADS)

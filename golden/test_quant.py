"""The quantized network: plans, tensors, PPU folding, and integer path == fake-quant path."""

import json

import numpy as np
import pytest
import torch

from golden import intref as ir
from golden import numerics as nx
from golden.model import build_model
from golden.quant import (QTensor, QuantUNet, concat, default_plan, fold_ppu, golden_backend,
                          load_plan, load_plan_model, plan_layers_sha256, save_plan,
                          uniform_plan)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def relu_model():
    torch.manual_seed(0)
    m = build_model({"act": "relu"}).eval()
    with torch.no_grad():   # break the zero inits so every layer carries signal
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return m


def test_default_plan_splits_by_role(relu_model):
    plan = default_plan(relu_model)
    for li in relu_model.layers():
        assert plan[li.name] == ("int4" if li.role == "conv_relu" else "mxint8")


def test_plan_file_round_trip_and_errors(relu_model, tmp_path):
    plan = default_plan(relu_model)
    path = save_plan(tmp_path / "plan.json", plan, source="test")
    assert load_plan(path, relu_model) == plan
    with pytest.raises(FileNotFoundError, match="not found"):
        load_plan(tmp_path / "none.json", relu_model)
    doc = json.loads(path.read_text())
    del doc["layers"]["down16"]
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match=r"missing \['down16'\]"):
        load_plan(path, relu_model)
    doc["layers"]["down16"] = "int2"
    path.write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="int2"):
        load_plan(path, relu_model)
    path.write_text("{")
    with pytest.raises(ValueError, match="not valid JSON"):
        load_plan(path, relu_model)
    path.write_text(json.dumps({"schema": "other", "version": 1, "layers": {}}))
    with pytest.raises(ValueError, match="expected schema"):
        load_plan(path, relu_model)


def test_upsample_and_aligned_concat_are_exact():
    rng = np.random.default_rng(0)
    a = QTensor.quantize(np.abs(rng.standard_normal((2, 3, 3, 32))), ir.Format.UINT4)
    up = a.upsample2()
    assert np.array_equal(up.dequantize()[:, ::2, 1::2], a.dequantize())
    b = QTensor.quantize(np.abs(rng.standard_normal((2, 3, 3, 20))), ir.Format.UINT4)
    c = concat([a, b], ir.Format.UINT4)
    assert np.array_equal(c.dequantize(), np.concatenate([a.dequantize(), b.dequantize()], -1))
    m = concat([b, a], ir.Format.MXINT8)      # misaligned and another format: re-quantized
    assert m.fmt == ir.Format.MXINT8 and m.codes.shape == (2, 3, 3, 52)


def test_fold_ppu_represents_the_multiplier():
    rng = np.random.default_rng(1)
    k = rng.uniform(-3, 3, 64) * 2.0 ** rng.integers(-20, 5)
    K, shift, B = fold_ppu(k, rng.standard_normal(64))
    assert np.abs(K).max() >= 2 ** 14 and np.abs(K).max() < 2 ** 15
    assert np.allclose(K * 2.0 ** (8 - shift), k, rtol=0, atol=2.0 ** (7 - shift))
    assert B.dtype == np.int32


@pytest.mark.parametrize("rule, lowest", [("max", 0x70), ("mse", 0x70 - 7)])
def test_int4_weights_use_normal_fp8_scales(relu_model, rule, lowest):
    q = QuantUNet(relu_model, default_plan(relu_model), weight_scales=rule)
    for name, layer in q.layers.items():
        if layer.precision == "int4":
            nonzero = layer.w_scales[layer.w_scales > 0]
            # largest vector scale in [128, 256] (no clipping), or up to 7 codes below it (MSE)
            assert lowest <= nonzero.max() <= 0x78, name
            w = q.convs[name].weight.detach().double()
            w_hw = layer.hardware_weight() * torch.from_numpy(layer.w_scale2)[:, None, None, None]
            assert torch.allclose(w_hw, w,
                                  atol=float(w.abs().max()) / 8), name


@pytest.mark.parametrize("plan_kind", ["plan", "int4"])
def test_integer_path_equals_fake_quant_on_conv_relu_layers(relu_model, plan_kind):
    """Same input codes into every Conv+ReLU (INT4) layer: the integer accumulation and the
    float64 convolution of the dequantized operands give identical output codes."""
    plan = default_plan(relu_model) if plan_kind == "plan" else uniform_plan(relu_model, "int4")
    calls = []
    q_int = QuantUNet(relu_model, plan, recorder=calls.append)
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    q_int(x, torch.tensor([0.2]))
    q_fake = QuantUNet(relu_model, plan, executor="fake")
    checked = 0
    for call in calls:
        layer = q_int.layers[call.name]
        if layer.precision != "int4":
            continue
        kw = call.kwargs
        xt = QTensor(kw["x_format"], kw["x_codes"][None], kw["x_scales"][None])
        fake = q_fake._run_fake(layer, xt, *_affine_from(kw, layer),
                                None if kw["residual"] is None else kw["residual"][None],
                                "relu" if kw["relu"] else None, kw["out_format"])
        assert np.array_equal(fake.codes[0], call.result[0]), call.name
        assert np.array_equal(fake.scales[0], call.result[1]), call.name
        checked += 1
    assert checked >= 10


def _affine_from(kw, layer):
    """Recover (scale, bias) arrays whose folding reproduces the call's (K, shift, B)."""
    k = kw["scale_mant"].astype(np.float64) * 2.0 ** (8 - kw["scale_shift"]) / layer.w_scale2
    bias = np.ldexp(kw["bias"].astype(np.float64), -ir.PPU_FRAC_BITS)
    K, shift, B = layer.ppu_params(k, bias)
    assert np.array_equal(K, kw["scale_mant"]) and shift == kw["scale_shift"]
    assert np.array_equal(B, kw["bias"])
    return k[None], bias[None]


def test_recorded_calls_replay_through_the_reference(relu_model):
    calls = []
    q = QuantUNet(relu_model, default_plan(relu_model), recorder=calls.append)
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(4))
    q(x, torch.tensor([0.5]))
    q(x, torch.tensor([0.4]))
    names = [li.name for li in relu_model.layers()]
    assert sorted({c.name for c in calls}) == sorted(names)
    assert {c.eval_index for c in calls} == {0, 1}
    for c in calls:
        r = ir.run_layer(**c.kwargs)
        assert np.array_equal(r.out.codes, c.result[0])
        if c.eval_index == 0:
            assert not c.in_map.any()          # no measurement yet: all dense


def test_backend_receives_the_layer_site(relu_model):
    """A backend (e.g. the simulated RTL) is told which layer, evaluation and image it runs and
    the input channel map to route by: the map the recorder sees."""
    calls, sites = [], []

    def backend(kwargs, site):
        sites.append(site)
        return golden_backend(kwargs, site)

    q = QuantUNet(relu_model, default_plan(relu_model), backend=backend,
                  recorder=calls.append)
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(5))
    for sigma in (0.5, 0.4):
        q(x, torch.tensor([sigma, sigma]))
    assert len(sites) == len(calls) > 0
    for site, call in zip(sites, calls):
        assert (site.name, site.eval_index, site.image) == (call.name, call.eval_index,
                                                             call.image)
        assert np.array_equal(site.in_map, call.in_map)
    assert any(s.in_map.any() for s in sites if s.eval_index == 1)


def test_integer_executor_rejects_silu(relu_model):
    silu = build_model({"act": "silu"})
    with pytest.raises(ValueError, match="ReLU"):
        QuantUNet(silu, default_plan(silu))
    q = QuantUNet(silu, default_plan(silu), executor="fake")
    assert q.layers["down16"].x_format == ir.Format.INT4     # SiLU outputs are signed
    out = q(torch.zeros(1, 1, 16, 16), torch.tensor([0.1]))
    assert out.shape == (1, 1, 16, 16)
    assert nx.INT4_MAX == 7


def test_weight_scale_rule_is_checked(relu_model):
    with pytest.raises(ValueError, match="weight_scales must be one of"):
        QuantUNet(relu_model, default_plan(relu_model), weight_scales="amax")


def test_mse_weights_are_closer_than_no_clip_weights(relu_model):
    plan = uniform_plan(relu_model, "int4")
    errs = {}
    for rule in ("max", "mse"):
        q = QuantUNet(relu_model, plan, executor="fake", weight_scales=rule)
        errs[rule] = sum(float(((q.layers[n].hardware_weight() * torch.from_numpy(
            q.layers[n].w_scale2)[:, None, None, None] - c.weight.detach().double()) ** 2).sum())
            for n, c in q.convs.items())
    assert errs["mse"] < errs["max"]


def test_plan_model_names_its_checkpoint_and_rule(tmp_path):
    from golden.model import load_checkpoint
    relu, _ = load_checkpoint("relu")
    plan = default_plan(relu)
    path = save_plan(tmp_path / "p.json", plan, weight_scales="max")
    pm = load_plan_model(path)
    assert pm.checkpoint == "unet_relu.pt" and pm.weight_scales == "max" and pm.plan == plan
    assert pm.quant_unet(executor="fake").layers["enc16.conv_a"].w_codes.dtype == np.int8
    for bad, message in [({"checkpoint": "../unet_relu.pt"}, "must name a .pt file"),
                         ({"checkpoint": "/etc/passwd"}, "must name a .pt file"),
                         ({"checkpoint": 3}, "must name a .pt file"),
                         ({"weight_scales": "amax"}, "'weight_scales' must be one of")]:
        save_plan(path, plan, **bad)
        with pytest.raises(ValueError, match=message):
            load_plan_model(path)
    save_plan(path, plan, checkpoint="missing.pt")
    with pytest.raises(FileNotFoundError, match="missing.pt does not exist"):
        load_plan_model(path)
    path.write_text("[1, 2]")
    with pytest.raises(ValueError, match="a plan file is a JSON object"):
        load_plan_model(path)


def test_fine_tuned_checkpoint_is_refused_for_another_plan(tmp_path, monkeypatch):
    from golden import quant
    from golden.model import load_checkpoint
    from golden.train import save
    relu, _ = load_checkpoint("relu")
    plan = default_plan(relu)
    monkeypatch.setattr(quant, "CHECKPOINT_DIR", tmp_path)
    save(relu, tmp_path / "tuned.pt", {"plan_layers_sha256": plan_layers_sha256(plan)})
    path = save_plan(tmp_path / "p.json", plan, checkpoint="tuned.pt")
    assert load_plan_model(path).checkpoint == "tuned.pt"
    other = dict(plan, conv_out="int4")
    save_plan(path, other, checkpoint="tuned.pt")
    with pytest.raises(ValueError, match="fine-tuned for another plan"):
        load_plan_model(path)


def test_a_wider_topology_runs_through_the_integer_path():
    """The quantized forward executes the model's program: a 4-level, 2-block U-Net with
    attention at 8x8 runs every layer once per evaluation, in the program's order, each
    recorded call reproducible by the reference, close to the float network."""
    torch.manual_seed(2)
    m = build_model({"channels": [16, 16, 32, 32], "resolution": 32, "blocks": 2,
                     "attn_res": [8], "emb_ch": 32, "act": "relu"}).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    calls = []
    q = QuantUNet(m, default_plan(m), recorder=calls.append)
    x = torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(6))
    y = q(x, torch.tensor([0.5]))
    assert y.shape == (1, 1, 32, 32)
    trunk = [c.name for c in calls if not (c.name.startswith("emb.") or c.name.endswith(".mod"))]
    assert trunk == [li.name for li in m.layers()
                     if not (li.name.startswith("emb.") or li.name.endswith(".mod"))]
    for c in calls[::7]:
        assert np.array_equal(ir.run_layer(**c.kwargs).out.codes, c.result[0])
    with torch.no_grad():
        ref = m(x, torch.tensor([0.5]))
    sqnr = 10 * torch.log10(ref.pow(2).mean() / (ref - y).pow(2).mean())
    assert sqnr > 10, float(sqnr)

"""Tests of the U-Net: shapes, the accelerator layer registry, the per-channel affine folding,
activation swapping, the checkpoints and the ReLU model's post-activation sparsity."""
import time

import pytest
import torch
import torch.nn.functional as F

from golden import edm
from golden.data import load_digits16
from golden.model import (CHECKPOINT_DIR, ZeroCounter, apply_act, build_model, count_params,
                          load_checkpoint)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = build_model({"act": "silu"}).eval()
    # the zero-initialised layers would make some tests trivial: give them random weights
    with torch.no_grad():
        for _, p in m.named_parameters():
            if p.abs().sum() == 0:
                p.normal_(0, 0.05)
    return m


def test_data():
    x, y = load_digits16()
    assert x.shape == (1797, 1, 16, 16) and x.dtype == torch.float32 and y.shape == (1797,)
    assert x.min() >= -1 and x.max() <= 1 and x.min() == -1
    # bilinear 2x (align_corners=False): interior output pixel 1 = 0.75 * in[0] + 0.25 * in[1]
    from sklearn.datasets import load_digits
    im = torch.tensor(load_digits().images[5], dtype=torch.float64) / 16
    exp = 2 * (0.75 * (0.75 * im[0, 0] + 0.25 * im[0, 1]) + 0.25 * (0.75 * im[1, 0] + 0.25 * im[1, 1])) - 1
    assert float(x[5, 0, 1, 1]) == pytest.approx(float(exp), abs=1e-6)
    x2, _ = load_digits16()
    assert torch.equal(x, x2)


def test_shapes_and_speed(model):
    den = edm.EDMDenoiser(model)
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        assert model(x, torch.zeros(3)).shape == (3, 1, 16, 16)
        assert den(x, 2.5).shape == (3, 1, 16, 16)
        assert den(x, torch.tensor([0.1, 1.0, 10.0])).shape == (3, 1, 16, 16)
        x1 = x[:1]
        den(x1, 1.0)
        t0 = time.perf_counter()
        for _ in range(10):
            den(x1, 1.0)
        dt = (time.perf_counter() - t0) / 10
    assert dt < 0.05, f"one denoiser evaluation took {dt * 1e3:.1f} ms"
    assert 200_000 < count_params(model) < 1_000_000


def test_registry(model):
    reg = model.layers()
    names = [li.name for li in reg]
    pconvs = [n for n, _ in model.named_pconvs()]
    assert len(names) == len(set(names)) == len(pconvs) and set(names) == set(pconvs)
    # nothing but PConvs carries weights (no hidden nn.Conv2d / nn.Linear / norm layers)
    for n, m in model.named_modules():
        assert not isinstance(m, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.GroupNorm,
                                  torch.nn.BatchNorm2d, torch.nn.LayerNorm)), n
    by = {li.name: li for li in reg}
    sensitive = {"conv_in", "conv_out", "skip4", "skip8", "skip16", "attn4.qkv", "attn4.proj",
                 "emb.fc0", "emb.fc1"} | {n for n in names if n.endswith(".mod")}
    assert {n for n in names if by[n].role == "sensitive"} == sensitive
    assert all(by[n].role == "conv_relu" for n in set(names) - sensitive)
    for li in reg:
        assert li.role in ("conv_relu", "sensitive")
        assert li.kernel in (1, 3) and li.padding == li.kernel // 2 and li.stride in (1, 2)
        if li.role == "conv_relu":
            assert li.kernel == 3 and li.act_after and li.input_post_act
        assert li.out_hw == (li.in_hw[0] // li.stride, li.in_hw[1] // li.stride)
    assert [n for n in names if not by[n].input_post_act] == ["emb.fc0", "conv_in", "attn4.proj"]
    assert by["down16"].stride == 2 and by["down8"].stride == 2
    assert by["conv_in"].in_ch == 1 and by["conv_out"].out_ch == 1 and not by["conv_out"].act_after
    assert by["up8"].upsample_before and by["up16"].upsample_before and by["up16"].in_hw == (16, 16)
    assert {n for n in names if by[n].residual_add} == {n for n in names if n.endswith("conv_b")} | {"attn4.proj"}
    assert {n for n in names if by[n].modulated} == {n for n in names if n.endswith("conv_a")}
    assert {by[n].in_hw for n in names if by[n].group != "embedding"} == {(16, 16), (8, 8), (4, 4)}
    assert {li.out_ch for li in reg if li.role == "conv_relu"} <= {32, 64}
    macs = model.macs_per_eval()
    assert macs["conv_relu"] / macs["total_conv"] > 0.9
    assert names[:3] == ["emb.fc0", "emb.fc1", "conv_in"] and names[-1] == "conv_out"


def test_layer_affine_reproduces_forward(model):
    """act(conv2d(x, W) * scale + bias (+ residual)) with layer_affine(sigma) == the module output."""
    sigma = 0.7
    aff = model.layer_affine(sigma)
    assert set(aff) == {n for n, _ in model.named_pconvs()}
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, n=n: [seen.setdefault(n, (i[0], o)), None][1])
             for n, m in model.named_pconvs()]
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        edm.EDMDenoiser(model)(x, sigma)
    for h in hooks:
        h.remove()
    n_checked = 0
    for li in model.layers():
        if li.residual_add:
            continue            # the residual input is not visible to the hook; covered below
        m = model.get_submodule(li.name)
        xin, out = seen[li.name]
        scale, bias = aff[li.name]
        y = F.conv2d(xin, m.weight, None, li.stride, li.padding) * scale.reshape(1, -1, 1, 1) \
            + bias.reshape(1, -1, 1, 1)
        if li.act_after:
            y = apply_act(y, model.act)
        torch.testing.assert_close(y, out, atol=1e-5, rtol=1e-5)
        n_checked += 1
    assert n_checked >= 20
    # residual layers: out = act(conv(a) * 1 + b + x_block_in)
    blk = model.enc8
    xin = seen["enc8.conv_a"][0]
    a, out = seen["enc8.conv_b"]
    s, b = aff["enc8.conv_b"]
    assert torch.equal(s, torch.ones_like(s))
    y = apply_act(F.conv2d(a, blk.conv_b.weight, None, 1, 1) + b.reshape(1, -1, 1, 1) + xin, model.act)
    torch.testing.assert_close(y, out, atol=1e-5, rtol=1e-5)


def test_activation_swap(model):
    x = torch.randn(2, 1, 16, 16)
    cn = torch.full((2,), 0.1)
    with torch.no_grad():
        y_silu = model(x, cn)
        model.set_activation("relu")
        try:
            assert all(m.act == "relu" for _, m in model.named_pconvs())
            with ZeroCounter(model) as zc:
                y_relu = model(x, cn)
            assert zc.overall_fraction() > 0.1
            post = {}
            hooks = [m.register_forward_pre_hook(lambda mod, i, n=n: [post.setdefault(n, i[0]), None][1])
                     for n, m in model.named_pconvs()]
            model(x, cn)
            for h in hooks:
                h.remove()
            for li in model.layers():
                if li.input_post_act:
                    assert post[li.name].min() >= 0, li.name
        finally:
            model.set_activation("silu")
    assert not torch.allclose(y_silu, y_relu)
    with pytest.raises(ValueError):
        model.set_activation("gelu")


def test_weight_override(model):
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        y0 = model(x, torch.zeros(1))
        m = model.enc16.conv_a
        m.weight_override = m.weight * 0
        try:
            y1 = model(x, torch.zeros(1))
        finally:
            m.weight_override = None
        y2 = model(x, torch.zeros(1))
    assert not torch.allclose(y0, y1) and torch.equal(y0, y2)


def _ckpt(which):
    p = CHECKPOINT_DIR / f"unet_{which}.pt"
    if not p.exists():
        pytest.skip(f"{p} not trained yet (python -m golden.train)")
    return p


@pytest.mark.parametrize("which", ["silu", "relu"])
def test_checkpoint_loads(which):
    p = _ckpt(which)
    assert p.stat().st_size < 2_000_000
    model, ck = load_checkpoint(which)
    assert model.act == which and ck["config"]["act"] == which
    meta = ck["meta"]
    for k in ("steps", "seed", "wall_time_s", "final_loss_avg100", "eval_loss"):
        assert k in meta
    assert all(v.dtype == torch.float16 for k, v in ck["state_dict"].items() if k != "freqs")
    if which == "relu":
        silu_meta = load_checkpoint("silu")[1]["meta"]
        assert meta["steps"] <= 0.10 * silu_meta["steps"] + 1e-9
        assert meta["eval_loss"] < 0.2


def test_relu_sample_is_sparse():
    _ckpt("relu")
    model, _ = load_checkpoint("relu")
    den = edm.EDMDenoiser(model)
    z = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    with ZeroCounter(model) as zc:
        x = edm.heun_sampler(den, z, num_steps=8)
    assert torch.isfinite(x).all() and x.abs().max() < 3
    assert len(zc.fractions()) == sum(li.role == "conv_relu" for li in model.layers())
    assert 0.3 < zc.mean_fraction() < 0.95


# --------------------------------------------------------------------------- topologies

DIGITS_PROGRAM = (
    ("conv", "conv_in"), ("res", "enc16"), ("push", None), ("conv", "down16"), ("res", "enc8"),
    ("push", None), ("conv", "down8"), ("res", "enc4"), ("push", None), ("attn", "attn4"),
    ("res", "mid4"), ("cat", "skip4"), ("res", "dec4"), ("up", "up8"), ("cat", "skip8"),
    ("res", "dec8"), ("up", "up16"), ("cat", "skip16"), ("res", "dec16"), ("conv", "conv_out"))


def test_digits_program_and_names_are_fixed(model):
    """The committed checkpoints, plans and traces name these modules: the default topology
    must keep them (and its config has no new keys)."""
    assert model.program == DIGITS_PROGRAM
    assert set(model.config) == {"channels", "emb_ch", "n_freq", "img_ch", "resolution", "act"}
    assert model.entry_layer(1) == "enc16.conv_a" and model.entry_layer(8) == "attn4.qkv"
    assert model.entry_layer(2) == "down16" and model.entry_layer(len(DIGITS_PROGRAM)) is None


def test_wider_topology_with_two_blocks_and_attention_at_8():
    torch.manual_seed(1)
    cfg = {"channels": [16, 32, 32, 48], "resolution": 32, "blocks": 2, "attn_res": [8],
           "emb_ch": 32, "act": "relu"}
    m = build_model(cfg).eval()
    names = [n for _, n in m.program if n]
    assert names[:4] == ["conv_in", "enc32_0", "enc32_1", "down32"]
    assert "attn8" in names and "attn4" not in names and names.count("mid4") == 1
    assert names[-4:] == ["skip32", "dec32_0", "dec32_1", "conv_out"]
    # every level has its skip: pushes and cats pair up (4 each)
    kinds = [k for k, _ in m.program]
    assert kinds.count("push") == kinds.count("cat") == 4 and kinds.count("up") == 3
    reg = {li.name: li for li in m.layers()}
    assert reg["attn8.qkv"].in_hw == (8, 8) and reg["skip4"].in_ch == 96
    assert reg["up16"].in_ch == 32 and reg["up16"].out_ch == 32 and reg["up16"].in_hw == (16, 16)
    assert reg["dec32_1.conv_b"].out_hw == (32, 32)
    assert m.macs_per_eval()["attention_host"] == 2 * 64 ** 2 * 32
    # the config round-trips through a checkpoint's build_model
    m2 = build_model(m.config)
    assert m2.program == m.program and m2.config == m.config
    m2.load_state_dict(m.state_dict())
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x, torch.tensor([0.1, 1.0])), m2(x, torch.tensor([0.1, 1.0])))
        assert m(x, torch.tensor([0.1, 1.0])).shape == (2, 1, 32, 32)


def test_bad_topologies_are_refused():
    with pytest.raises(ValueError, match="divisible by 2"):
        build_model({"channels": [8, 8, 8, 8], "resolution": 12})
    with pytest.raises(ValueError, match=">= 2 levels"):
        build_model({"channels": [8]})
    with pytest.raises(ValueError, match=">= 1 block"):
        build_model({"blocks": 0})
    with pytest.raises(ValueError, match="attn_res"):
        build_model({"attn_res": [5]})


def test_mnist_workload_fits_its_checkpoint_budget():
    from golden.workloads import WORKLOADS, workload
    w = workload("mnist")
    m = build_model(w.config)
    assert count_params(m) * 2 < 5_000_000          # the committed fp16 checkpoint < 5 MB
    assert w.resolution == 32 and w.checkpoint("relu").name == "mnist_unet_relu.pt"
    assert workload("digits").checkpoint("silu") == CHECKPOINT_DIR / "unet_silu.pt"
    assert set(WORKLOADS) == {"digits", "mnist"}
    with pytest.raises(ValueError, match="unknown model 'cifar'"):
        workload("cifar")

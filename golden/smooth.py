"""SmoothQuant-style per-channel migration between the two convs of each residual block.

In a residual block, conv_a's output feeds conv_b only, through a ReLU. For positive factors
``s`` (one per channel), ``relu(y) / s = relu(y / s)``, so dividing conv_a's output channels by
``s`` -- its weights and bias, and the modulation's shift ``t`` for those channels -- and
multiplying conv_b's input channels by ``s`` leaves the FP32 model unchanged while moving range
between conv_b's input activations and its weights. On the accelerator the division folds into
conv_a's PPU scale and bias (the per-channel ``K`` and ``B`` it already has), so it costs no
hardware; only the quantized numbers change.

SmoothQuant's factor ``s_c = max|x_c|^alpha / max|w_c|^(1 - alpha)`` (activation maxima along
the FP32 sampler run, weight maxima over conv_b's input channel ``c``), normalised to a geometric
mean of 1 per block (channels that never fire keep factor 1). :func:`alpha_sweep` measures the denoiser SQNR of a plan for several alphas.
"""

from __future__ import annotations

import copy

import numpy as np
import torch

from golden import edm
from golden.model import UNet

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)


def resblocks(model: UNet) -> list[str]:
    return [name for name, m in model.named_modules() if hasattr(m, "conv_a")
            and hasattr(m, "conv_b")]


def conv_b_input_max(model: UNet, ref) -> dict[str, torch.Tensor]:
    """Per residual block, the largest |activation| of each conv_b input channel along the FP32
    sampler run of ``ref`` (a ``golden.sensitivity.Reference`` of ``model``)."""
    amax: dict[str, torch.Tensor] = {}
    hooks = []
    for block in resblocks(model):
        def pre(mod, args, block=block):
            x = args[0].detach().abs().amax(dim=(0, 2, 3))
            amax[block] = torch.maximum(amax.get(block, torch.zeros_like(x)), x)
        hooks.append(model.get_submodule(block).conv_b.register_forward_pre_hook(pre))
    ref.replay_fp32(hooks)
    return amax


def migrate(model: UNet, alpha: float, act_max: dict[str, torch.Tensor]) -> UNet:
    """A copy of ``model`` with every residual block's conv_a -> conv_b channels rescaled by
    SmoothQuant's factor for ``alpha`` (equal to ``model`` in exact arithmetic)."""
    out = copy.deepcopy(model)
    with torch.no_grad():
        for block in resblocks(out):
            rb = out.get_submodule(block)
            ch = rb.ch
            w_max = rb.conv_b.weight.abs().amax(dim=(0, 2, 3))
            a_max = act_max[block]
            live = (a_max > 0) & (w_max > 0)   # a dead channel carries nothing: factor 1
            s = torch.ones_like(a_max)
            s[live] = a_max[live] ** alpha / w_max[live] ** (1 - alpha)
            s[live] = s[live] / torch.exp(torch.log(s[live]).mean())
            rb.conv_a.weight /= s[:, None, None, None]
            rb.conv_a.bias /= s
            rb.mod.weight[ch:] /= s[:, None, None, None]   # the shift t of conv_a's channels
            rb.mod.bias[ch:] /= s
            rb.conv_b.weight *= s[None, :, None, None]
    return out


def alpha_sweep(ref, model: UNet, plan: dict, *, alphas=ALPHAS, weight_scales="mse") -> dict:
    """Denoiser SQNR (mean over steps) of ``plan`` without migration and for each alpha, and the
    largest FP32 output difference the migration causes (rounding only)."""
    from golden.quant import QuantUNet
    act_max = conv_b_input_max(model, ref)

    def sqnr(m):
        return float(np.mean(ref.step_sqnr(QuantUNet(m, plan, executor="fake",
                                                     weight_scales=weight_scales))))
    out = {"none": sqnr(model), "alpha": {}}
    worst = 0.0
    for a in alphas:
        m = migrate(model, a, act_max)
        out["alpha"][f"{a:g}"] = sqnr(m)
        _, sigma, x = ref.inputs[len(ref.inputs) // 2]
        with torch.no_grad():
            worst = max(worst, float((edm.EDMDenoiser(m)(x, sigma)
                                      - edm.EDMDenoiser(model)(x, sigma)).abs().max()))
    out["fp32_max_abs_difference"] = worst
    out["best_alpha"] = max(out["alpha"], key=out["alpha"].get)
    return out

"""Sensitivity analysis that decides the precision plan.

Two measurements, both with one block at INT4 and every other layer at MXINT8 (the paper's
block-wise profiling), on the inputs the FP32 sampler visits:

(a) block-wise sample quality: the final samples of the quantized model against the FP32
    samples from the same noise (SQNR of the images, dB);
(b) the denoiser's output SQNR against FP32, averaged over the sampler's steps (dB).

Both rank the blocks (lowest SQNR = most sensitive). The plan keeps the paper's sensitive
layers (role "sensitive": first and last conv, skip convs, embedding, attention) at MXINT8, then
adds whole blocks in the order of (b) while the MXINT8 share of the conv MACs stays within
``budget`` (10 %: the paper runs >90 % of the compute in 4 bits); everything else runs INT4.
This block-wise MAC-budget rule made the first committed plan (``golden/plans/v1_plan.json``);
``python -m golden.sensitivity`` still applies it (to ``build/golden/block_plan.json``), while
``make plan`` runs the hardware-aware search of ``evaluation.plan``, which uses the per-layer,
per-type and outlier analyses below ("sensitivity explained").
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from golden import edm
from golden import numerics as nx
from golden.model import UNet, load_checkpoint
from golden.quant import (VECTOR, Fmt, QuantUNet, int4_weights, save_plan, uniform_plan,
                          weight_scale2)

PLAN_PATH = Path(__file__).resolve().parent / "plans" / "sqdm_plan.json"
MXINT8_MAC_BUDGET = 0.10


def block_of(layer: str) -> str:
    """The block a layer belongs to: the embedding MLP and every modulation layer form one
    "embedding" block; otherwise the first component of the name."""
    if layer.startswith("emb.") or layer.endswith(".mod"):
        return "embedding"
    return layer.split(".")[0]


def blocks(model: UNet) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for li in model.layers():
        out.setdefault(block_of(li.name), []).append(li.name)
    return out


def sqnr_db(ref: torch.Tensor, test: torch.Tensor) -> float:
    """10 log10(E[ref^2] / E[(ref - test)^2]) over the whole tensor."""
    noise = float(((ref.double() - test.double()) ** 2).mean())
    signal = float((ref.double() ** 2).mean())
    return float("inf") if noise == 0 else 10.0 * np.log10(signal / noise)


class Reference:
    """FP32 sampler run whose inputs every quantized configuration is evaluated on."""

    def __init__(self, model: UNet, *, images: int = 8, num_steps: int = 18, seed: int = 1):
        self.model, self.num_steps = model, num_steps
        r = model.config["resolution"]
        self.latents = torch.randn(images, 1, r, r,
                                   generator=torch.Generator().manual_seed(seed))
        self.inputs: list[tuple[int, float, torch.Tensor]] = []
        self.outputs: list[torch.Tensor] = []

        def hook(k, i, sigma, x, den):
            self.inputs.append((i, sigma, x.clone()))
            self.outputs.append(den.clone())

        with torch.no_grad():
            self.samples = edm.heun_sampler(edm.EDMDenoiser(model), self.latents,
                                            num_steps=num_steps, hook=hook)

    def replay_fp32(self, handles=()) -> None:
        """Run the FP32 denoiser again on every recorded input (for forward hooks), then remove
        the hook ``handles``."""
        den = edm.EDMDenoiser(self.model)
        try:
            with torch.no_grad():
                for _, sigma, x in self.inputs:
                    den(x, sigma)
        finally:
            for h in handles:
                h.remove()

    def step_sqnr(self, net, evals=None) -> list[float]:
        """Denoiser-output SQNR per sampler step (first evaluation of each step)."""
        den = edm.EDMDenoiser(net)
        per_step = {}
        for k, (step, sigma, x) in enumerate(self.inputs):
            if step in per_step or (evals is not None and step not in evals):
                continue
            with torch.no_grad():
                per_step[step] = sqnr_db(self.outputs[k], den(x, sigma))
        return [per_step[s] for s in sorted(per_step)]

    def sample_sqnr(self, net) -> tuple[float, torch.Tensor]:
        with torch.no_grad():
            samples = edm.heun_sampler(edm.EDMDenoiser(net), self.latents,
                                       num_steps=self.num_steps)
        return sqnr_db(self.samples, samples), samples


# --------------------------------------------------------------------------- explained

#: Operation types of the U-Net's layers (Qua2SeDiMo's view: sensitivity differs by type).
OP_TYPES = ("first conv", "resblock 3x3", "downsample 3x3", "upsample 3x3", "skip 1x1",
            "attention", "embedding", "last conv")


def op_type(info) -> str:
    """The operation type (:data:`OP_TYPES`) of a ``LayerInfo``, from its structure alone."""
    if info.group in ("embedding", "attention"):
        return info.group
    if not info.input_post_act:
        return "first conv"
    if not info.act_after:
        return "last conv"
    if info.concat_input:
        return "skip 1x1"
    if info.stride > 1:
        return "downsample 3x3"
    if info.upsample_before:
        return "upsample 3x3"
    return "resblock 3x3"


def noise_ratio(sqnr) -> np.ndarray:
    """Noise-to-signal power ratio of SQNR values in dB (what adds up across layers)."""
    return 10.0 ** (-np.asarray(sqnr, dtype=np.float64) / 10.0)


def ratio_db(nsr) -> np.ndarray:
    return -10.0 * np.log10(np.asarray(nsr, dtype=np.float64))


def plan_sqnr(ref: "Reference", model: UNet, plan: dict, *, weight_scales: str = "mse",
              sample: bool = False) -> dict:
    """Denoiser SQNR per sampler step and its mean (and the sample SQNR when ``sample``) of
    ``plan`` on the fake-quant executor."""
    net = QuantUNet(model, plan, executor="fake", weight_scales=weight_scales)
    per_step = ref.step_sqnr(net)
    out = {"per_step": per_step, "mean": float(np.mean(per_step))}
    if sample:
        out["sample_sqnr_db"] = ref.sample_sqnr(net)[0]
    return out


def group_sensitivity(ref: "Reference", model: UNet, groups: dict[str, list[str]], *,
                      weight_scales: str = "mse", progress=None) -> dict:
    """For each group of layers: the denoiser SQNR per step when only that group runs INT4 and
    every other layer MXINT8, the group's MAC share and its added noise-to-signal ratio over
    all-MXINT8 (mean over steps; noise ratios of independent errors add, so these predict a
    plan's SQNR, see :func:`predict_sqnr`)."""
    macs = {li.name: li.macs() for li in model.layers()}
    total = sum(macs.values())
    base = plan_sqnr(ref, model, uniform_plan(model, "mxint8"), weight_scales=weight_scales)
    out = {}
    started = time.time()
    for n, (group, layers) in enumerate(groups.items()):
        plan = uniform_plan(model, "mxint8")
        plan.update({name: "int4" for name in layers})
        r = plan_sqnr(ref, model, plan, weight_scales=weight_scales)
        added = noise_ratio(r["per_step"]) - noise_ratio(base["per_step"])
        out[group] = {"layers": layers, "mac_share": sum(macs[x] for x in layers) / total,
                      "denoiser_sqnr_db": r, "added_noise_ratio": added.tolist()}
        if progress:
            progress(f"  [{n + 1}/{len(groups)}] {group:<16} {r['mean']:6.2f} dB "
                     f"({time.time() - started:.0f} s)")
    return {"base_mxint8": base, "groups": out}


def predict_sqnr(sens: dict, int4_layers) -> float:
    """Mean-over-steps denoiser SQNR predicted for a plan running ``int4_layers`` in INT4 (the
    rest MXINT8) from per-layer :func:`group_sensitivity`: all-MXINT8's noise ratio plus each
    INT4 layer's added noise ratio, per step."""
    nsr = noise_ratio(sens["base_mxint8"]["per_step"]).copy()
    for name in int4_layers:
        nsr = nsr + np.maximum(np.asarray(sens["groups"][name]["added_noise_ratio"]), 0.0)
    return float(np.mean(ratio_db(nsr)))


def error_split(ref: "Reference", model: UNet, plan: dict, *, weight_scales="mse") -> dict:
    """Where a plan's 4-bit error comes from: its denoiser SQNR as is, with the INT4 layers'
    weights unquantized (float64), and with their activations in MXINT8 instead of 4 bits
    (a diagnostic of the fake-quant executor; nothing the hardware runs)."""
    def measure(patch):
        net = QuantUNet(model, plan, executor="fake", weight_scales=weight_scales)
        for name, layer in net.layers.items():
            if layer.precision == "int4":
                patch(net, name, layer)
        return float(np.mean(ref.step_sqnr(net)))

    def exact_weights(net, name, layer):
        w = net.convs[name].effective_weight().detach().to(torch.float64)
        s2 = torch.from_numpy(layer.w_scale2)[:, None, None, None]
        layer.hardware_weight = lambda: w / s2

    def mx_activations(net, name, layer):
        layer.x_format = Fmt.MXINT8

    return {"plan": measure(lambda *a: None), "weights_unquantized": measure(exact_weights),
            "activations_mxint8": measure(mx_activations)}


def outlier_stats(model: UNet, ref: "Reference") -> dict:
    """Per layer, on the FP32 model (``ref.model``) along the reference sampler run: weight and input-activation
    magnitudes per channel (max, median of the channel maxima, their ratio: a channel outlier
    ratio), the mean crest factor (max / RMS) of 16-element vectors along the input channels
    (what a per-vector scale pays), and the INT4 weight quantization SQNR of both scale rules."""
    stats: dict[str, dict] = {}
    acts: dict[str, list] = {}
    hooks = []
    for name, conv in model.named_pconvs():
        def pre(mod, args, name=name):
            x = args[0].detach().to(torch.float64)
            acts.setdefault(name, []).append(
                (x.abs().amax(dim=(0, 2, 3)), _crest(x.permute(0, 2, 3, 1).numpy())))
        hooks.append(conv.register_forward_pre_hook(pre))
    ref.replay_fp32(hooks)
    for li in model.layers():
        conv = dict(model.named_pconvs())[li.name]
        w = conv.effective_weight().detach().to(torch.float64).permute(0, 2, 3, 1).numpy()
        w_in = np.abs(w).reshape(-1, w.shape[-1]).max(axis=0)
        w_out = np.abs(w).reshape(w.shape[0], -1).max(axis=1)
        x_max = torch.stack([a for a, _ in acts[li.name]]).amax(dim=0).numpy()
        stats[li.name] = {
            "op_type": op_type(li),
            "weight_absmax": float(np.abs(w).max()),
            "weight_in_channel_outlier_ratio": _outlier_ratio(w_in),
            "weight_out_channel_outlier_ratio": _outlier_ratio(w_out),
            "weight_int4_sqnr_db": {rule: _weight_sqnr(w, rule) for rule in ("max", "mse")},
            "act_absmax": float(x_max.max()),
            "act_channel_outlier_ratio": _outlier_ratio(x_max),
            "act_vector_crest": float(np.mean([c for _, c in acts[li.name]])),
        }
    return stats


def _outlier_ratio(channel_max: np.ndarray) -> float:
    med = float(np.median(channel_max))
    return float(channel_max.max() / med) if med > 0 else float("inf")


def _crest(x: np.ndarray, vector: int = VECTOR) -> float:
    """Mean over non-zero 16-element vectors (last axis) of max|v| / RMS(v)."""
    c = x.shape[-1]
    pad = (-c) % vector
    v = np.concatenate([x, np.zeros(x.shape[:-1] + (pad,))], -1).reshape(-1, vector) \
        if pad else x.reshape(-1, vector)
    rms = np.sqrt((v ** 2).mean(axis=1))
    keep = rms > 0
    return float((np.abs(v[keep]).max(axis=1) / rms[keep]).mean()) if keep.any() else 1.0


def _weight_sqnr(w: np.ndarray, rule: str) -> float:
    s2 = weight_scale2(w)
    codes, scales = int4_weights(w, s2, rule)
    deq = nx.int4_dequantize(codes, scales, axis=-1, vector=VECTOR, scale2=s2[:, None, None, None])
    return sqnr_db(torch.from_numpy(w), torch.from_numpy(deq))


def analyse(model: UNet, *, images: int = 8, num_steps: int = 18, seed: int = 1,
            progress=True) -> dict:
    """Both block-wise measurements for every block (fake-quant executor)."""
    ref = Reference(model, images=images, num_steps=num_steps, seed=seed)
    macs = {li.name: li.macs() for li in model.layers()}
    total = sum(macs.values())
    result = {}
    started = time.time()
    groups = blocks(model)
    for n, (block, layers) in enumerate(groups.items()):
        plan = uniform_plan(model, "mxint8")
        plan.update({name: "int4" for name in layers})
        net = QuantUNet(model, plan, executor="fake")
        per_step = ref.step_sqnr(net)
        sample, _ = ref.sample_sqnr(net)
        result[block] = {"layers": layers, "mac_share": sum(macs[x] for x in layers) / total,
                         "denoiser_sqnr_db": {"per_step": per_step,
                                              "mean": float(np.mean(per_step))},
                         "sample_sqnr_db": sample}
        if progress:
            print(f"  [{n + 1}/{len(groups)}] {block:<10} denoiser {np.mean(per_step):6.2f} dB"
                  f"  sample {sample:6.2f} dB  ({time.time() - started:.0f} s)",
                  file=sys.stderr, flush=True)
    return result


def rank(analysis: dict, key: str) -> list[str]:
    """Blocks from most to least sensitive by ``key`` ("denoiser" or "sample")."""
    metric = (lambda b: analysis[b]["denoiser_sqnr_db"]["mean"]) if key == "denoiser" \
        else (lambda b: analysis[b]["sample_sqnr_db"])
    return sorted(analysis, key=lambda b: (metric(b), b))


def choose_plan(model: UNet, analysis: dict, budget: float = MXINT8_MAC_BUDGET) -> dict:
    """MXINT8 for the "sensitive" layers, then for the most sensitive blocks (by the
    time-averaged denoiser SQNR) while the MXINT8 MAC share fits ``budget``; a block that does
    not fit is skipped and smaller ones may follow."""
    infos = model.layers()
    total = sum(li.macs() for li in infos)
    plan = {li.name: ("mxint8" if li.role == "sensitive" else "int4") for li in infos}
    used = sum(li.macs() for li in infos if li.role == "sensitive") / total
    for block in rank(analysis, "denoiser"):
        layers = analysis[block]["layers"]
        extra = sum(li.macs() for li in infos if li.name in layers and plan[li.name] == "int4")
        if extra and used + extra / total <= budget:
            used += extra / total
            plan.update({name: "mxint8" for name in layers})
    return plan


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse bad arguments (``p.error``: one line, exit 2) before the checkpoint is loaded."""
    if args.images < 1:
        p.error(f"--images must be >= 1, got {args.images}")
    if args.num_steps < 2:
        p.error(f"--num-steps must be >= 2 (the Heun sampler's minimum), got {args.num_steps}")
    if not 0 <= args.budget <= 1:
        p.error(f"--budget is the MXINT8 share of the conv MACs, a fraction in [0, 1]; "
                f"got {args.budget}")
    if Path(args.out).is_dir():
        p.error(f"--out {args.out} is a directory (it names the plan file to write)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m golden.sensitivity", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="build/golden/block_plan.json")
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--num-steps", type=int, default=18)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--budget", type=float, default=MXINT8_MAC_BUDGET)
    p.add_argument("--reuse", action="store_true",
                   help="reuse build/golden/sensitivity.json instead of measuring again")
    args = p.parse_args(argv)
    check_args(p, args)
    torch.set_num_threads(1)
    model, _ = load_checkpoint("relu")
    started = time.time()
    cache = Path("build/golden/sensitivity.json")
    if args.reuse and cache.exists():
        analysis = json.loads(cache.read_text())
    else:
        analysis = analyse(model, images=args.images, num_steps=args.num_steps, seed=args.seed)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(analysis, indent=1, sort_keys=True) + "\n")
    plan = choose_plan(model, analysis, args.budget)
    mx = sorted({block_of(n) for n, p in plan.items() if p == "mxint8"})
    save_plan(args.out, plan, source="golden.sensitivity", checkpoint="unet_relu.pt",
              rule=f"MXINT8 for the 'sensitive' layers (first/last conv, skip, embedding, "
                   f"attention), then for the blocks with the lowest time-averaged denoiser "
                   f"SQNR (one block INT4, rest MXINT8) within {args.budget:.0%} of the MACs",
              settings={"images": args.images, "num_steps": args.num_steps, "seed": args.seed,
                        "budget": args.budget},
              ranking={"denoiser": rank(analysis, "denoiser"),
                       "sample": rank(analysis, "sample")},
              analysis=analysis)
    print(f"MXINT8 blocks: {', '.join(mx)}; wrote {args.out} ({time.time() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make qat``: quantization-aware fine-tuning of the ReLU model at a plan's precision.

Distillation with straight-through gradients: the student (a copy of the FP32 ReLU model) runs
with every layer's weights quantized exactly as ``golden.quant`` quantizes them for that plan
(INT4: power-of-two second-level scale and the plan's per-vector scale rule; MXINT8) and every
layer's input (and residual) quantized per vector in its precision (UINT4 / INT4 with an FP8
scale per 16 channels, or MXINT8 blocks of 32); the loss is the EDM-weighted squared difference
between its denoiser output and the FP32 teacher's, on noisy training images at the sampler's
noise levels. Scales are searched, not learned: each step quantizes the current weights with the
plan's rule, so every scale is FP8- (or E8M0-) representable by construction, and the integer
path (intref, traces, RTL) runs the result unchanged.

Every ``--eval-every`` steps the student is scored on a validation reference (FP32 sampler
inputs of other latents than the report's); the best one is kept. It is written (float16, like
every checkpoint) only if its denoiser SQNR against the FP32 teacher on the plan's own reference
(``golden.sensitivity.Reference``, seed 1) beats the model the plan runs now; the plan file then
names it under ``"checkpoint"`` and records the fine-tuning under ``"qat"``. Deterministic for a
given ``--seed`` and ``--threads``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from golden import edm
from golden import numerics as nx
from golden import quant
from golden.data import load_digits16
from golden.model import UNet, load_checkpoint
from golden.quant import load_plan_model, plan_layers_sha256
from golden.sensitivity import PLAN_PATH, Reference
from golden.train import save

QAT_CHECKPOINT = "unet_relu_qat.pt"
REPORT = Path("build/plan/qat.json")
DEFAULTS = dict(steps=1500, lr=5e-5, batch=48, seed=0, eval_every=250, threads=2)


# --------------------------------------------------------------------------- fake quantization

def _ste(x: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """``q`` forward, identity gradient (straight-through estimator)."""
    return x + (q - x).detach()


def _fp8_ceil(s: torch.Tensor) -> torch.Tensor:
    """The smallest FP8 E4M3 value >= ``s`` (s > 0, no saturation: activations stay far below)."""
    e = torch.floor(torch.log2(s.clamp_min(nx.FP8_MIN_SUBNORMAL))).clamp(
        min=nx.FP8_MIN_NORMAL_EXP)
    step = torch.exp2(e - 3)
    return torch.ceil(s / step) * step


def _blocks(x: torch.Tensor, size: int) -> tuple[torch.Tensor, int]:
    b, c, h, w = x.shape
    pad = (-c) % size
    return F.pad(x, (0, 0, 0, 0, 0, pad)).reshape(b, (c + pad) // size, size, h, w), c


def fake_vsq(x: torch.Tensor, qmax: int, vector: int = 16) -> torch.Tensor:
    """Per-pixel vectors of ``vector`` channels, FP8 scale = smallest with qmax * s >= max|v|,
    codes RNE (torch.round is half-to-even): the PPU's quantizer, in float32."""
    xb, c = _blocks(x, vector)
    amax = xb.abs().amax(dim=2, keepdim=True)
    s = _fp8_ceil(amax / qmax)
    q = torch.where(amax > 0, torch.clamp(torch.round(xb / s), -qmax, qmax) * s,
                    torch.zeros_like(xb))
    return _ste(x, q.flatten(1, 2)[:, :c])


def fake_mxint8(x: torch.Tensor) -> torch.Tensor:
    """MXINT8 blocks of 32 channels per pixel: shared exponent floor(log2 max|v|), codes
    RNE(v * 2**(6 - e)) clamped to +-127."""
    xb, c = _blocks(x, nx.MX_BLOCK)
    amax = xb.abs().amax(dim=2, keepdim=True)
    e = torch.floor(torch.log2(amax.clamp_min(2.0 ** -100)))
    q = torch.clamp(torch.round(xb * torch.exp2(nx.MX_ELEMENT_FRAC_BITS - e)),
                    -nx.MX_ELEMENT_MAX, nx.MX_ELEMENT_MAX) * torch.exp2(e - nx.MX_ELEMENT_FRAC_BITS)
    return _ste(x, q.flatten(1, 2)[:, :c])


class FakeQuant:
    """Fake quantization of ``model`` (in place) in ``plan``'s precisions: forward pre-hooks on
    every layer's input and residual, and straight-through quantized weights (refreshed by
    :meth:`refresh_weights` before each forward)."""

    def __init__(self, model: UNet, plan: dict, weight_scales: str = "mse"):
        self.model, self.plan, self.rule = model, plan, weight_scales
        self.convs = dict(model.named_pconvs())
        self.infos = {li.name: li for li in model.layers()}
        self.handles = []
        self.attach()

    def attach(self) -> None:
        """Install the input / residual hooks (after :meth:`remove`: again)."""
        self.handles = [conv.register_forward_pre_hook(self._hook(name), with_kwargs=True)
                        for name, conv in self.convs.items()]

    def _quantize(self, name: str, conv, x: torch.Tensor) -> torch.Tensor:
        if self.plan[name] == "mxint8":
            return fake_mxint8(x)
        unsigned = conv.input_post_act and bool((x >= 0).all())
        return fake_vsq(x, nx.UINT4_MAX if unsigned else nx.INT4_MAX)

    def _hook(self, name):
        def hook(conv, args, kwargs):
            args = (self._quantize(name, conv, args[0]),) + tuple(args[1:])
            if kwargs.get("residual") is not None:
                kwargs = dict(kwargs, residual=self._quantize(name, conv, kwargs["residual"]))
            return args, kwargs
        return hook

    def refresh_weights(self) -> None:
        """Each layer's weight override: the values ``golden.quant.QuantLayer`` quantizes the
        current weights to (second-level scale included), with straight-through gradients."""
        for name, conv in self.convs.items():
            conv.weight_override = None
            layer = quant.QuantLayer(self.infos[name], conv, self.plan[name], self.model.act,
                                     self.rule)
            w = layer.hardware_weight() * torch.from_numpy(layer.w_scale2)[:, None, None, None]
            conv.weight_override = _ste(conv.weight, w.to(torch.float32))

    def remove(self) -> None:
        """The plain float model again: hooks removed, weight overrides cleared."""
        for h in self.handles:
            h.remove()
        self.handles = []
        for conv in self.convs.values():
            conv.weight_override = None


# --------------------------------------------------------------------------- training

def denoiser_sqnr(model: UNet, plan: dict, ref: Reference, weight_scales: str) -> float:
    """Mean denoiser SQNR of ``model`` quantized by ``plan`` (fake-quant executor) against the
    FP32 outputs of ``ref`` (the teacher's)."""
    return float(np.mean(ref.step_sqnr(quant.QuantUNet(model, plan, executor="fake",
                                                       weight_scales=weight_scales))))


def fp16_copy(model: UNet) -> UNet:
    """The model as a checkpoint stores it (parameters rounded to float16)."""
    m = copy.deepcopy(model).eval()
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(p.to(torch.float16).to(torch.float32))
    return m


def finetune(teacher: UNet, plan: dict, *, steps: int, lr: float, batch: int, seed: int,
             eval_every: int, weight_scales: str = "mse", progress=print) -> tuple[UNet, dict]:
    """Distil ``teacher`` (frozen: its parameters stop requiring gradients) into a
    fake-quantized student; returns the best student (by the validation SQNR, float16-rounded)
    and a log."""
    torch.manual_seed(seed)
    data, _ = load_digits16()
    val = Reference(teacher, images=4, num_steps=18, seed=seed + 100)
    student = copy.deepcopy(teacher).train()
    for p in teacher.parameters():
        p.requires_grad_(False)
    fq = FakeQuant(student, plan, weight_scales)
    teacher_den, student_den = edm.EDMDenoiser(teacher), edm.EDMDenoiser(student)
    sigmas = torch.tensor(edm.sigma_schedule(18)[:-1], dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(student.parameters(), lr=lr)

    def validate():
        fq.remove()
        m = fp16_copy(student)
        score = denoiser_sqnr(m, plan, val, weight_scales)
        fq.attach()
        return score, m

    best_score, best = validate()
    log = {"validation_sqnr_db": [[0, best_score]]}
    started = time.time()
    for step in range(steps):
        for g in opt.param_groups:  # cosine decay to 0
            g["lr"] = lr * 0.5 * (1 + np.cos(np.pi * step / steps))
        y = data[torch.randint(0, len(data), (batch,), generator=gen)]
        sigma = sigmas[torch.randint(0, len(sigmas), (batch,), generator=gen)]
        x = y + torch.randn(y.shape, generator=gen) * sigma.reshape(-1, 1, 1, 1)
        with torch.no_grad():
            target = teacher_den(x, sigma)
        fq.refresh_weights()
        out = student_den(x, sigma)
        loss = (edm.loss_weight(sigma).reshape(-1, 1, 1, 1) * (out - target) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            score, m = validate()
            log["validation_sqnr_db"].append([step + 1, score])
            if score > best_score:
                best_score, best = score, m
            progress(f"  step {step + 1}/{steps}: loss {float(loss.detach()):.4f}, validation "
                     f"{score:.2f} dB (best {best_score:.2f}), {time.time() - started:.0f} s")
    fq.remove()
    log.update(best_validation_sqnr_db=best_score, wall_time_s=round(time.time() - started, 1))
    return best, log


# --------------------------------------------------------------------------- command line

def run(plan_path: Path = PLAN_PATH, *, steps: int, lr: float, batch: int, seed: int,
        eval_every: int, ref_images: int = 8, progress=print) -> dict:
    """Fine-tune for the plan file ``plan_path``; when the result beats the plan's current
    model, write ``golden/checkpoints/unet_relu_qat.pt`` and point the plan file at it."""
    doc = json.loads(plan_path.read_text())
    pm = load_plan_model(plan_path)
    teacher, _ = load_checkpoint("relu")
    plan, rule = pm.plan, pm.weight_scales
    ref = Reference(teacher, images=ref_images, num_steps=18, seed=1)
    before = denoiser_sqnr(pm.model, plan, ref, rule)
    base = denoiser_sqnr(teacher, plan, ref, rule)
    progress(f"plan {plan_path.name}: {before:.2f} dB with {pm.checkpoint}, {base:.2f} dB with "
             f"the FP32 ReLU weights; fine-tuning {steps} steps")
    student, log = finetune(teacher, plan, steps=steps, lr=lr, batch=batch, seed=seed,
                            eval_every=eval_every, weight_scales=rule, progress=progress)
    after = denoiser_sqnr(student, plan, ref, rule)
    result = {"steps": steps, "lr": lr, "batch": batch, "seed": seed, "eval_every": eval_every,
              "threads": torch.get_num_threads(), "sqnr_db_fp32_weights": base,
              "sqnr_db_before": before, "sqnr_db_after": after, **log,
              "plan_layers_sha256": plan_layers_sha256(plan)}
    if after > before:
        path = quant.CHECKPOINT_DIR / QAT_CHECKPOINT
        save(student, path, {"phase": "qat", "init_from": "unet_relu.pt", **result})
        doc.update(checkpoint=QAT_CHECKPOINT, qat=result)
        plan_path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
        progress(f"{after:.2f} dB > {before:.2f} dB: wrote {path.name}; {plan_path.name} now "
                 f"runs it")
    else:
        progress(f"{after:.2f} dB <= {before:.2f} dB: the plan keeps its checkpoint")
    return result


def check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    for name in ("steps", "batch", "eval_every", "threads"):
        if getattr(a, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(a, name)}")
    if not a.lr > 0:
        p.error(f"--lr must be > 0, got {a.lr}")
    if not Path(a.plan).is_file():
        p.error(f"--plan {a.plan} is not a file (make plan writes it)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m golden.qat", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--plan", default=str(PLAN_PATH))
    p.add_argument("--steps", type=int, default=DEFAULTS["steps"])
    p.add_argument("--lr", type=float, default=DEFAULTS["lr"])
    p.add_argument("--batch", type=int, default=DEFAULTS["batch"])
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--eval-every", type=int, default=DEFAULTS["eval_every"])
    p.add_argument("--threads", type=int, default=DEFAULTS["threads"])
    a = p.parse_args(argv)
    check_args(p, a)
    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True)
    result = run(Path(a.plan), steps=a.steps, lr=a.lr, batch=a.batch, seed=a.seed,
                 eval_every=a.eval_every,
                 progress=lambda m: print(m, file=sys.stderr, flush=True))
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make golden-report``: quality and sparsity of the quantized golden model.

Writes ``build/golden/report.json`` (keys documented in the README), ``sparsity.npz`` and PNG
figures. Uses only the committed checkpoints and plan; about a minute or two on one core.
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
from golden.data import image_grid, load_digits16
from golden.intref import THRESHOLD_DEFAULT_PCT
from golden.classifier import ClassifierFD, frechet_distance
from golden.model import UNet, load_checkpoint
from golden.quant import (WEIGHT_SCALE_RULES, QuantUNet, int4_mac_share, load_plan,
                          load_plan_model, uniform_plan)
from golden.smooth import alpha_sweep
from golden.sensitivity import PLAN_PATH, Reference
from golden.workloads import DEFAULT_WORKLOAD, WORKLOADS, workload

PREVIOUS_PLAN = PLAN_PATH.parent / "v1_plan.json"
REPO = PLAN_PATH.parents[2]


def _shown(path: Path) -> str:
    """A path as the report shows it: relative to the repository when inside it (so reports do
    not depend on where the clone is)."""
    path = Path(path).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)

OUT = Path("build/golden")


# --------------------------------------------------------------------------- quality

def pca_features(x: torch.Tensor, basis: np.ndarray, mean: np.ndarray) -> np.ndarray:
    return (x.reshape(x.shape[0], -1).double().numpy() - mean) @ basis


class PcaFD:
    """FD-PCA: Fréchet distance in the 8-dimensional PCA space of the training images, a
    sample-quality figure computed without downloaded networks."""

    def __init__(self, dims: int = 8):
        data, _ = load_digits16()
        flat = data.reshape(data.shape[0], -1).double().numpy()
        self.mean = flat.mean(0)
        _, _, vt = np.linalg.svd(flat - self.mean, full_matrices=False)
        self.basis = vt[:dims].T
        self.real = pca_features(data, self.basis, self.mean)

    def __call__(self, samples: torch.Tensor) -> float:
        return frechet_distance(self.real, pca_features(samples.clamp(-1, 1), self.basis,
                                                        self.mean))


# --------------------------------------------------------------------------- sparsity

def probe_sampler(model: UNet, latents: torch.Tensor, num_steps: int, probes: dict, *,
                  inputs: bool) -> None:
    """Run the FP32 sampler; at the first evaluation of every step call ``probes[name]`` with
    the input (``inputs=True``) or the output of layer ``name``."""
    state = {"eval": 0}
    modules = dict(model.named_pconvs())

    def call(name, tensor):
        if state["eval"] % 2 == 0:     # evaluation 2i is the first one of step i
            probes[name](tensor)

    handles = [modules[n].register_forward_pre_hook(lambda m, i, n=n: call(n, i[0]))
               if inputs else
               modules[n].register_forward_hook(lambda m, i, o, n=n: call(n, o))
               for n in probes]
    den = edm.EDMDenoiser(model)

    def counted(x, sigma):
        y = den(x, sigma)
        state["eval"] += 1
        return y

    try:
        with torch.no_grad():
            edm.heun_sampler(counted, latents, num_steps=num_steps)
    finally:
        for h in handles:
            h.remove()


def relu_sparsity(model: UNet, latents: torch.Tensor, num_steps: int) -> dict:
    """Zero fraction of every Conv+ReLU layer's post-ReLU output (FP32 model), per channel
    and per sampler step (first evaluation of each step)."""
    names = [li.name for li in model.layers() if li.role == "conv_relu" and li.act_after]
    record: dict[str, list[np.ndarray]] = {n: [] for n in names}
    probe_sampler(model, latents, num_steps, inputs=False, probes={
        n: lambda out, n=n: record[n].append((out == 0).double().mean(dim=(0, 2, 3)).numpy())
        for n in names})
    return {n: np.stack(v) for n, v in record.items()}   # [steps, channels]


def calibration_study(model: UNet, latents: torch.Tensor, num_steps: int,
                      calib_step: int | None = None) -> dict:
    """Activation quantization SQNR of the Conv+ReLU layers' inputs (FP32 model) per step for
    three ways of choosing UINT4 scales: ours (dynamic FP8 scale per 16-channel vector, chosen
    by the PPU at run time), static per-tensor calibrated on one sampling step (the LDM
    method), and static per-tensor calibrated on all steps."""
    from golden import numerics as nx
    names = [li.name for li in model.layers()
             if li.role == "conv_relu" and li.input_post_act]
    captured: dict[str, list[np.ndarray]] = {n: [] for n in names}
    probe_sampler(model, latents, num_steps, inputs=True, probes={
        n: lambda x, n=n: captured[n].append(x.double().permute(0, 2, 3, 1).numpy())
        for n in names})
    calib_step = num_steps // 2 if calib_step is None else calib_step

    def sqnr(x, q):
        noise = ((x - q) ** 2).mean()
        return 10 * np.log10((x ** 2).mean() / noise) if noise > 0 else float("inf")

    per_scheme: dict[str, list[list[float]]] = {"dynamic_per_vector": [], "static_one_step": [],
                                               "static_all_steps": []}
    for n in names:
        acts = captured[n]
        s_one = acts[calib_step].max() / nx.UINT4_MAX
        s_all = max(a.max() for a in acts) / nx.UINT4_MAX
        rows = {k: [] for k in per_scheme}
        for a in acts:
            codes, scales = nx.uint4_quantize(a, axis=-1)
            rows["dynamic_per_vector"].append(sqnr(a, nx.uint4_dequantize(codes, scales)))
            for key, s in (("static_one_step", s_one), ("static_all_steps", s_all)):
                rows[key].append(sqnr(a, np.clip(np.rint(a / s), 0, 15) * s))
        for k in per_scheme:
            per_scheme[k].append(rows[k])
    return {k: {"per_step": np.mean(v, axis=0).tolist(), "mean": float(np.mean(v))}
            for k, v in per_scheme.items()} | {"calibration_step": calib_step,
                                                 "layers": len(names)}


def flip_rate(per_layer: dict, threshold: float) -> float:
    flips = total = 0
    for zf in per_layer.values():
        labels = zf >= threshold
        flips += int((labels[1:] != labels[:-1]).sum())
        total += labels[1:].size
    return flips / max(total, 1)


def heatmaps(per_layer: dict, layers: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(layers), figsize=(4 * len(layers), 4), squeeze=False)
    for ax, name in zip(axes[0], layers):
        im = ax.imshow(per_layer[name].T, aspect="auto", cmap="viridis", vmin=0, vmax=1,
                       interpolation="nearest")
        ax.set_title(name)
        ax.set_xlabel("sampler step")
        ax.set_ylabel("channel")
    fig.colorbar(im, ax=axes[0].tolist(), label="zero fraction")
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_grid(rows: list[tuple[str, torch.Tensor]], path: Path) -> None:
    """Rows of samples, each labelled on its left (configuration and SQNR)."""
    from PIL import Image, ImageDraw
    scale, label_w = 3, 260
    grids = [image_grid(r, nrow=8) for _, r in rows]
    h, w = grids[0].shape
    canvas = Image.new("L", (label_w + w * scale, sum(g.shape[0] * scale + 6 for g in grids)),
                       255)
    draw = ImageDraw.Draw(canvas)
    y = 0
    for (label, _), g in zip(rows, grids):
        canvas.paste(Image.fromarray(g).resize((w * scale, g.shape[0] * scale), Image.NEAREST),
                     (label_w, y))
        draw.multiline_text((6, y + 6), label, fill=0)
        y += g.shape[0] * scale + 6
    canvas.save(path)


# --------------------------------------------------------------------------- the report

def _reporter(out: Path, progress: bool):
    """Set up a report run (one thread, the folder) and return its progress printer."""
    torch.set_num_threads(1)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    def say(msg):
        if progress:
            print(f"  {msg} ({time.time() - started:.0f} s)", file=sys.stderr, flush=True)
    return say


def quality(configs: dict, say) -> tuple[dict, dict, dict]:
    """``(denoiser SQNR {"per_step", "mean"}, sample SQNR, samples)`` of every configuration
    ``name -> (model, plan, weight rule, FP32 reference)`` (fake-quant executor)."""
    sqnr, sample_sqnr, samples = {}, {}, {}
    for name, (model, p, rule, ref) in configs.items():
        net = QuantUNet(model, p, executor="fake", weight_scales=rule)
        per_step = ref.step_sqnr(net)
        sqnr[name] = {"per_step": per_step, "mean": float(np.mean(per_step))}
        sample_sqnr[name], samples[name] = ref.sample_sqnr(net)
        say(f"{name}: denoiser {sqnr[name]['mean']:.2f} dB, samples {sample_sqnr[name]:.2f} dB")
    return sqnr, sample_sqnr, samples


def build_report(out: Path = OUT, *, images: int = 32, fd_images: int = 256,
                 num_steps: int = 18, seed: int = 2, plan_path: Path = PLAN_PATH,
                 previous_path: Path = PREVIOUS_PLAN, progress=True) -> dict:
    say = _reporter(out, progress)

    relu, _ = load_checkpoint("relu")
    silu, _ = load_checkpoint("silu")
    pm = load_plan_model(plan_path)
    prev = load_plan_model(previous_path)
    fd = PcaFD()
    ref_relu = Reference(relu, images=images, num_steps=num_steps, seed=seed)
    ref_silu = Reference(silu, images=images, num_steps=num_steps, seed=seed)
    say("FP32 references")
    # name -> (model, plan, weight rule, FP32 reference)
    configs = {"mxint8": (relu, uniform_plan(relu, "mxint8"), "mse", ref_relu),
               "int4": (relu, uniform_plan(relu, "int4"), "mse", ref_relu),
               "plan": (pm.model, pm.plan, pm.weight_scales, ref_relu),
               "previous_plan": (prev.model, prev.plan, prev.weight_scales, ref_relu),
               "plan_silu": (silu, load_plan(plan_path, silu), pm.weight_scales, ref_silu)}
    if pm.checkpoint != "unet_relu.pt":
        configs["plan_fp32_weights"] = (relu, pm.plan, pm.weight_scales, ref_relu)
    sqnr, sample_sqnr, samples = quality(configs, say)
    fd_pca = {name: fd(x) for name, x in samples.items()}
    fd_pca["fp32_relu"] = fd(ref_relu.samples)
    fd_pca["fp32_silu"] = fd(ref_silu.samples)
    classifier = classifier_fd(configs, relu, fd_images, num_steps, seed, say)
    remedies = {"plan": _shown(previous_path),
                "weight_scales": {rule: float(np.mean(ref_relu.step_sqnr(QuantUNet(
                    relu, prev.plan, executor="fake", weight_scales=rule))))
                    for rule in WEIGHT_SCALE_RULES},
                "smoothquant": alpha_sweep(ref_relu, relu, prev.plan, weight_scales="mse")}
    say("remedies (weight-scale rules, SmoothQuant alpha sweep) on the previous plan")

    per_layer = relu_sparsity(relu, ref_relu.latents, num_steps)
    say("sparsity")
    calibration = calibration_study(relu, ref_relu.latents[:8], num_steps)
    say("calibration study")
    means = {n: float(v.mean()) for n, v in per_layer.items()}
    np.savez(out / "sparsity.npz", **{n: v for n, v in per_layer.items()})
    heat_layers = [n for n in ("enc16.conv_a", "enc8.conv_b", "mid4.conv_a", "dec16.conv_a")
                   if n in per_layer]
    heatmaps(per_layer, heat_layers, out / "sparsity_heatmap.png")

    def label(name, title):
        return f"{title}\ndenoiser {sqnr[name]['mean']:.1f} dB\nsamples {sample_sqnr[name]:.1f} dB"
    save_grid([("FP32 ReLU (reference)", ref_relu.samples),
               (label("plan", f"plan ({pm.checkpoint})"), samples["plan"]),
               (label("previous_plan", "previous plan"), samples["previous_plan"]),
               (label("int4", "all INT4"), samples["int4"]),
               (label("mxint8", "all MXINT8"), samples["mxint8"]),
               ("FP32 SiLU (reference)", ref_silu.samples),
               (label("plan_silu", "plan, SiLU model"), samples["plan_silu"])],
              out / "samples.png")

    report = {
        "plan": _shown(plan_path),
        "plan_checkpoint": pm.checkpoint,
        "plan_weight_scales": pm.weight_scales,
        "previous_plan": _shown(previous_path),
        "settings": {"images": images, "fd_images": fd_images, "num_steps": num_steps,
                     "seed": seed,
                     "executor": "fake (float64 conv of the quantized operands + integer PPU; "
                                 "equal to the integer path on INT4 layers)"},
        "sqnr_db": sqnr,
        "sample_sqnr_db": sample_sqnr,
        "fd_pca": fd_pca,
        "classifier_fd": classifier,
        "remedies": remedies,
        "relu_sparsity_mean": float(np.mean(list(means.values()))),
        "relu_sparsity_per_layer": means,
        "relu_sparsity_per_layer_step": {n: v.mean(axis=1).tolist() for n, v in per_layer.items()},
        "label_threshold": THRESHOLD_DEFAULT_PCT / 100,
        "label_flip_rate": flip_rate(per_layer, THRESHOLD_DEFAULT_PCT / 100),
        "figures": {"samples": str(out / "samples.png"),
                    "sparsity_heatmap": str(out / "sparsity_heatmap.png"),
                    "sparsity_per_channel": str(out / "sparsity.npz")},
        "int4_mac_share": int4_mac_share(relu, pm.plan),
        "activation_calibration_sqnr_db": calibration,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    say(f"wrote {out / 'report.json'}")
    return report


def classifier_fd(configs: dict, relu: UNet, n: int, num_steps: int, seed: int, say,
                  model_name: str = DEFAULT_WORKLOAD) -> dict:
    """Fréchet distances in the committed digit classifier's features (``golden.classifier``)
    of ``n`` samples per ReLU configuration (same noise, seed ``seed + 1000``): to the FP32
    samples of that noise and to the data, with the check that FP32 is nearest the data and
    all-INT4 farthest among FP32, all-MXINT8, the plan and all-INT4."""
    cfd = ClassifierFD(model=model_name)
    r = relu.config["resolution"]
    latents = torch.randn(n, 1, r, r, generator=torch.Generator().manual_seed(seed + 1000))
    with torch.no_grad():
        fp32 = edm.heun_sampler(edm.EDMDenoiser(relu), latents, num_steps=num_steps)
    to_data = {"fp32_relu": cfd(fp32)}
    to_fp32 = {}
    for name, (model, p, rule, _) in configs.items():
        if name == "plan_silu":
            continue
        net = QuantUNet(model, p, executor="fake", weight_scales=rule)
        with torch.no_grad():
            x = edm.heun_sampler(edm.EDMDenoiser(net), latents, num_steps=num_steps)
        to_data[name], to_fp32[name] = cfd(x), cfd(x, fp32)
        say(f"classifier FD ({n} samples) {name}: to FP32 {to_fp32[name]:.3f}, "
            f"to data {to_data[name]:.3f}")
    ranked = [k for k in ("fp32_relu", "mxint8", "plan", "int4")]
    return {"samples": n, "classifier_test_accuracy": cfd.meta["test_accuracy"],
            "to_fp32": to_fp32, "to_data": to_data,
            "fp32_best_int4_worst": min(ranked, key=to_data.get) == "fp32_relu"
            and max(ranked, key=to_data.get) == "int4"}


def build_workload_report(model_name: str, out: Path, *, images: int = 32,
                          fd_images: int = 128, num_steps: int = 18, seed: int = 2,
                          progress=True) -> dict:
    """The report of a workload other than digits (``--model mnist``): its plan against
    all-MXINT8 and all-INT4 (denoiser and sample SQNR against the FP32 ReLU model, classifier
    FD to the FP32 samples and to the data), the ReLU sparsity and a sample grid. The digits
    report's plan history, remedies and calibration study are not repeated here."""
    say = _reporter(out, progress)
    started = time.time()

    work = workload(model_name)
    relu, _ = load_checkpoint(work.checkpoint("relu"))
    silu, _ = load_checkpoint(work.checkpoint("silu"))
    plan_path = work.plan_path
    pm = load_plan_model(plan_path)
    ref_relu = Reference(relu, images=images, num_steps=num_steps, seed=seed)
    ref_silu = Reference(silu, images=images, num_steps=num_steps, seed=seed)
    say("FP32 references")
    configs = {"mxint8": (relu, uniform_plan(relu, "mxint8"), "mse", ref_relu),
               "int4": (relu, uniform_plan(relu, "int4"), "mse", ref_relu),
               "plan": (pm.model, pm.plan, pm.weight_scales, ref_relu)}
    sqnr, sample_sqnr, samples = quality(configs, say)
    classifier = classifier_fd(configs, relu, fd_images, num_steps, seed, say, model_name)
    per_layer = relu_sparsity(relu, ref_relu.latents, num_steps)
    say("sparsity")
    means = {n: float(v.mean()) for n, v in per_layer.items()}

    def label(name, title):
        return f"{title}\ndenoiser {sqnr[name]['mean']:.1f} dB\nsamples {sample_sqnr[name]:.1f} dB"
    save_grid([("FP32 ReLU (reference)", ref_relu.samples),
               (label("plan", "plan (by role)"), samples["plan"]),
               (label("int4", "all INT4"), samples["int4"]),
               (label("mxint8", "all MXINT8"), samples["mxint8"]),
               ("FP32 SiLU", ref_silu.samples)], out / "samples.png")
    report = {
        "model": model_name,
        "checkpoints": {w: work.checkpoint(w).name for w in ("silu", "relu")},
        "plan": _shown(plan_path),
        "plan_checkpoint": pm.checkpoint,
        "settings": {"images": images, "fd_images": fd_images, "num_steps": num_steps,
                     "seed": seed, "executor": "fake (float64 conv of the quantized operands "
                                               "+ integer PPU)"},
        "sqnr_db": sqnr,
        "sample_sqnr_db": sample_sqnr,
        "classifier_fd": classifier,
        "relu_sparsity_mean": float(np.mean(list(means.values()))),
        "relu_sparsity_per_layer": means,
        "int4_mac_share": int4_mac_share(relu, pm.plan),
        "macs_per_eval": relu.macs_per_eval(),
        "figures": {"samples": str(out / "samples.png")},
        "wall_time_s": round(time.time() - started, 1),
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    say(f"wrote {out / 'report.json'}")
    return report


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse bad arguments (``p.error``: one line, exit 2) before any checkpoint is loaded."""
    if args.images < 2:
        p.error(f"--images must be >= 2 (FD-PCA fits a covariance to the samples), "
                f"got {args.images}")
    if args.fd_images < 2:
        p.error(f"--fd-images must be >= 2 (the Fréchet distance fits a covariance), "
                f"got {args.fd_images}")
    if args.num_steps < 2:
        p.error(f"--num-steps must be >= 2 (the Heun sampler's minimum), got {args.num_steps}")
    if Path(args.out).exists() and not Path(args.out).is_dir():
        p.error(f"--out {args.out} is not a directory (it names the report folder)")


def plan_error(path: Path) -> str | None:
    """What is wrong with the plan file ``path`` (None: usable). A missing, unreadable or
    non-JSON file is reported before the ReLU checkpoint is loaded for ``load_plan``'s
    layer check."""
    try:
        json.loads(path.read_text())
    except FileNotFoundError:
        return f"{path}: precision plan not found"
    except json.JSONDecodeError as e:
        return f"{path}: not valid JSON ({e})"
    except (OSError, UnicodeDecodeError) as e:
        return f"{path}: cannot read the precision plan ({e})"
    try:
        load_plan_model(path)
    except (FileNotFoundError, ValueError) as e:
        return str(e)
    return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m golden.report", description=__doc__)
    p.add_argument("--model", choices=sorted(WORKLOADS), default=DEFAULT_WORKLOAD,
                   help="the workload (digits: the full report; mnist: plan against "
                        "all-MXINT8 / all-INT4, classifier FD, sparsity, samples)")
    p.add_argument("--out", default=None, help="report folder (default build/golden, "
                   "build/golden/<model> for another model)")
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--fd-images", type=int, default=None,
                   help="samples per configuration for the classifier FD (default 256; "
                        "mnist 128)")
    p.add_argument("--num-steps", type=int, default=18)
    p.add_argument("--plan", default=str(PLAN_PATH))
    args = p.parse_args(argv)
    digits = args.model == DEFAULT_WORKLOAD
    args.out = args.out or str(OUT if digits else OUT / args.model)
    if args.fd_images is None:
        args.fd_images = 256 if digits else 128
    check_args(p, args)
    if not digits:
        r = build_workload_report(args.model, Path(args.out), images=args.images,
                                  fd_images=args.fd_images, num_steps=args.num_steps)
        for name, v in r["sqnr_db"].items():
            print(f"{name:<8} denoiser {v['mean']:6.2f} dB, samples "
                  f"{r['sample_sqnr_db'][name]:6.2f} dB, classifier FD to FP32 "
                  f"{r['classifier_fd']['to_fp32'][name]:.3f}")
        print("classifier FD to the data: " + ", ".join(
            f"{k} {v:.3f}" for k, v in r["classifier_fd"]["to_data"].items()))
        print(f"ReLU sparsity {r['relu_sparsity_mean']:.1%}, INT4 share of MACs "
              f"{r['int4_mac_share']:.1%}; {r['figures']['samples']}")
        return 0
    problem = plan_error(Path(args.plan))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    r = build_report(Path(args.out), images=args.images, fd_images=args.fd_images,
                     num_steps=args.num_steps, plan_path=Path(args.plan))
    cfd = r["classifier_fd"]
    print(f"{'config':<18} {'denoiser SQNR':>14} {'sample SQNR':>12} {'FD-PCA':>8} "
          f"{'cls-FD to FP32':>15}")
    for name, v in r["sqnr_db"].items():
        to32 = cfd["to_fp32"].get(name)
        print(f"{name:<18} {v['mean']:>11.2f} dB {r['sample_sqnr_db'][name]:>9.2f} dB "
              f"{r['fd_pca'][name]:>8.3f} {'' if to32 is None else f'{to32:15.3f}'}")
    print("classifier FD to the data: " + ", ".join(f"{k} {v:.3f}"
                                                   for k, v in cfd["to_data"].items())
          + f" (ranks FP32 best and all-INT4 worst: {cfd['fp32_best_int4_worst']})")
    print(f"FP32 FD-PCA: relu {r['fd_pca']['fp32_relu']:.3f}, silu {r['fd_pca']['fp32_silu']:.3f}")
    cal = r["activation_calibration_sqnr_db"]
    print("activation UINT4 SQNR: " + ", ".join(
        f"{k} {cal[k]['mean']:.2f} dB" for k in ("dynamic_per_vector", "static_one_step",
                                                 "static_all_steps")))
    print(f"ReLU sparsity {r['relu_sparsity_mean']:.1%}, label flip rate "
          f"{r['label_flip_rate']:.1%}, INT4 share of MACs {r['int4_mac_share']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

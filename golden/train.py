"""Train the golden U-Net: SiLU from scratch, then ReLU fine-tuning (<= 10 % of the steps).

    python -m golden.train            # full run (writes golden/checkpoints/unet_{silu,relu}.pt)
    python -m golden.train --model mnist   # the MNIST workload (mnist_unet_{silu,relu}.pt)
    python -m golden.train --quick    # a few steps into build/golden/quick/ (for tests / smoke)

Deterministic given --seed on one CPU thread: model init from torch.manual_seed(seed); data
order from a torch.Generator seeded with seed + 1 (one random permutation per epoch, batches
taken consecutively across epoch boundaries); noise / sigma draws from a generator seeded with
seed + 2 (ReLU phase: seed + 3 and seed + 4).  Optimiser Adam(betas 0.9/0.999, eps 1e-8), linear
warm-up, then constant LR; gradient norm clipped at 1.0.  The saved weights are an EMA of the
training weights (decay min(ema, (1 + step) / (10 + step))) rounded to float16; the ReLU phase
starts from the saved (fp16-rounded) SiLU checkpoint with the activation swapped.
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import torch

from .edm import EDMDenoiser, edm_loss
from .model import (CHECKPOINT_DIR, CHECKPOINT_FORMAT, UNet, build_model, count_params,
                    load_checkpoint, state_dict_for_save)
from .workloads import DEFAULT_WORKLOAD, WORKLOADS, Workload, workload

DEFAULTS = dict(seed=0, relu_frac=0.10, lr=1e-3, relu_lr=5e-4,
                warmup=100, ema=0.999, relu_ema=0.99, grad_clip=1.0)


class BatchStream:
    def __init__(self, data: torch.Tensor, batch: int, seed: int):
        self.data, self.batch = data, batch
        self.gen = torch.Generator().manual_seed(seed)
        self.perm = torch.randperm(len(data), generator=self.gen)
        self.pos = 0

    def next(self) -> torch.Tensor:
        idx, n = [], 0
        while n < self.batch:
            if self.pos == len(self.perm):
                self.perm = torch.randperm(len(self.data), generator=self.gen)
                self.pos = 0
            take = min(self.batch - n, len(self.perm) - self.pos)
            idx.append(self.perm[self.pos:self.pos + take])
            self.pos += take
            n += take
        return self.data[torch.cat(idx)]


@torch.no_grad()
def eval_loss(model: UNet, data: torch.Tensor, seed: int = 1234, repeats: int = 2) -> float:
    """EDM loss over the whole data set, fixed noise (seeded), batch 256; comparable across runs."""
    den = EDMDenoiser(model).eval()
    gen = torch.Generator().manual_seed(seed)
    tot, n = 0.0, 0
    for _ in range(repeats):
        for i in range(0, len(data), 256):
            y = data[i:i + 256]
            tot += float(edm_loss(den, y, gen)) * len(y)
            n += len(y)
    return tot / n


def train_phase(model: UNet, data: torch.Tensor, steps: int, lr: float, warmup: int, ema_decay: float,
                batch: int, data_seed: int, noise_seed: int, grad_clip: float, tag: str,
                log_every_s: float = 30.0) -> tuple[UNet, dict]:
    model.train()
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    den = EDMDenoiser(model)
    opt = torch.optim.Adam(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8)
    stream = BatchStream(data, batch, data_seed)
    gen = torch.Generator().manual_seed(noise_seed)
    t0 = time.time()
    last_log = t0
    recent: list[float] = []
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / max(1, warmup))
        y = stream.next()
        loss = edm_loss(den, y, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        opt.step()
        d = min(ema_decay, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, pm in zip(ema.parameters(), model.parameters()):
                pe.lerp_(pm, 1.0 - d)
        recent.append(float(loss.detach()))
        recent = recent[-100:]
        now = time.time()
        if now - last_log >= log_every_s or step == steps - 1 or step == 0:
            print(f"[{tag}] step {step + 1:5d}/{steps}  loss {recent[-1]:.4f}  "
                  f"avg100 {sum(recent) / len(recent):.4f}  elapsed {now - t0:7.1f} s", flush=True)
            last_log = now
    wall = time.time() - t0
    return ema, dict(steps=steps, wall_time_s=round(wall, 1), final_loss_avg100=sum(recent) / len(recent),
                     lr=lr, warmup=warmup, ema=ema_decay, batch=batch)


def save(model: UNet, path: Path, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": CHECKPOINT_FORMAT, "config": dict(model.config),
                "state_dict": state_dict_for_save(model), "meta": meta}, path)


@torch.no_grad()
def check(ckpt_dir: Path, seed: int = 0, n: int = 16, steps: int = 18,
          png: Path = Path("build/golden/samples_check.png"),
          work: Workload = WORKLOADS[DEFAULT_WORKLOAD]) -> dict:
    """Sample n images (same latents) from the SiLU and the ReLU checkpoints, save a PNG grid
    (top: SiLU, bottom: ReLU) and report the conv_relu post-activation zero fractions."""
    import time as _t

    from .data import image_grid
    from .edm import heun_sampler
    from .model import ZeroCounter
    r = work.resolution
    z = torch.randn(n, 1, r, r, generator=torch.Generator().manual_seed(seed))
    grids, res = [], {}
    for which in ("silu", "relu"):
        model, ck = load_checkpoint(work.checkpoint(which, ckpt_dir))
        den = EDMDenoiser(model)
        t0 = _t.time()
        with ZeroCounter(model) as zc:
            x = heun_sampler(den, z, num_steps=steps)
        dt = _t.time() - t0
        grids.append(image_grid(x.clamp(-1, 1), nrow=n // 2 if n >= 8 else n))
        res[which] = dict(mean_zero_fraction=zc.mean_fraction(), overall_zero_fraction=zc.overall_fraction(),
                          per_layer=zc.fractions(), sample_time_s=dt, meta=ck["meta"])
        print(f"{which}: {n} samples x {2 * steps - 1} evals in {dt:.2f} s; conv_relu post-act zero fraction "
              f"mean over layers {zc.mean_fraction():.3f}, overall {zc.overall_fraction():.3f}")
        if which == "relu":
            for k, v in zc.fractions().items():
                print(f"    {k:14s} {v:.3f}")
    import numpy as np
    sep = np.full((2, grids[0].shape[1]), 255, np.uint8)
    img = np.concatenate([grids[0], sep, grids[1]], 0)
    png.parent.mkdir(parents=True, exist_ok=True)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    plt.imsave(png, np.kron(img, np.ones((8, 8), np.uint8)), cmap="gray", vmin=0, vmax=255)
    print(f"wrote {png} (top two rows: SiLU, bottom two rows: ReLU, same latents)")
    return res


def check_args(ap: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Refuse bad arguments (``ap.error``: one line, exit 2) before any data or model is loaded."""
    if a.steps < 1:
        ap.error(f"--steps must be >= 1, got {a.steps}")
    if a.batch < 1:
        ap.error(f"--batch must be >= 1, got {a.batch}")
    if not 0 < a.relu_frac <= 0.10 + 1e-12:
        ap.error(f"--relu-frac must be in (0, 0.10] (a fraction of --steps), got {a.relu_frac}")
    if a.threads < 1:
        ap.error(f"--threads must be >= 1, got {a.threads}")
    if a.out.exists() and not a.out.is_dir():
        ap.error(f"--out {a.out} is not a directory (it names the checkpoint folder)")
    if a.check:
        work = workload(a.model)
        missing = [work.checkpoint(w, a.out).name for w in ("silu", "relu")
                   if not work.checkpoint(w, a.out).is_file()]
        if missing:
            ap.error(f"--out {a.out} has no {' / '.join(missing)} (train first, or point --out "
                     f"at a checkpoint folder)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(WORKLOADS), default=DEFAULT_WORKLOAD,
                    help="the workload (golden/workloads.py): data set and U-Net")
    ap.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    ap.add_argument("--batch", type=int, default=None,
                    help="batch size (default: the workload's, 64)")
    ap.add_argument("--steps", type=int, default=None,
                    help="SiLU steps (default: the workload's; digits 3500, mnist 3000)")
    ap.add_argument("--relu-frac", type=float, default=DEFAULTS["relu_frac"],
                    help="ReLU fine-tune steps as a fraction of the SiLU steps (<= 0.10)")
    ap.add_argument("--out", type=Path, default=CHECKPOINT_DIR)
    ap.add_argument("--quick", action="store_true", help="20 + 2 steps, batch 16, into build/golden/quick")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--check", action="store_true",
                    help="no training: sample 16 images from both checkpoints into "
                         "build/golden/samples_check.png and print the ReLU model's sparsity")
    a = ap.parse_args(argv)
    work = workload(a.model)
    a.steps = work.silu_steps if a.steps is None else a.steps
    a.batch = work.batch if a.batch is None else a.batch
    check_args(ap, a)
    if a.check:
        torch.set_num_threads(a.threads)
        check(a.out, a.seed, work=work,
              png=Path(f"build/golden/samples_check{'' if a.model == 'digits' else '_' + a.model}.png"))
        return
    if a.quick:
        a.steps, a.batch = 20, 16
        if a.out == CHECKPOINT_DIR:
            a.out = Path("build/golden/quick")
    torch.set_num_threads(a.threads)
    torch.use_deterministic_algorithms(True)
    data = work.training_data()
    eval_data = data[:work.eval_images]
    relu_steps = max(1, int(a.steps * a.relu_frac))
    warmup = min(DEFAULTS["warmup"], max(1, a.steps // 10))

    torch.manual_seed(a.seed)
    model = build_model({**work.config, "act": "silu"})
    print(f"UNet params {count_params(model)}  MACs/eval {model.macs_per_eval()}  data {tuple(data.shape)}"
          f"  batch {a.batch}  silu steps {a.steps}  relu steps {relu_steps}  threads {a.threads}"
          f"  model {a.model}", flush=True)
    ema, m1 = train_phase(model, data, a.steps, DEFAULTS["lr"], warmup, DEFAULTS["ema"], a.batch,
                          a.seed + 1, a.seed + 2, DEFAULTS["grad_clip"], "silu")
    silu_path = work.checkpoint("silu", a.out)
    m1.update(model=a.model, seed=a.seed, phase="silu", torch=str(torch.__version__), threads=a.threads)
    save(ema, silu_path, m1)
    silu, _ = load_checkpoint(silu_path)
    m1["eval_loss"] = eval_loss(silu, eval_data)
    save(ema, silu_path, m1)   # same weights, metadata now with the eval loss
    print(f"[silu] done: {m1['wall_time_s']} s, final avg100 loss {m1['final_loss_avg100']:.4f}, "
          f"eval loss (EMA, fp16 weights) {m1['eval_loss']:.4f} -> {silu_path}", flush=True)

    relu = silu.set_activation("relu")
    print(f"[relu] eval loss right after swapping SiLU->ReLU: {eval_loss(relu, eval_data):.4f}", flush=True)
    ema2, m2 = train_phase(relu, data, relu_steps, DEFAULTS["relu_lr"], min(20, warmup), DEFAULTS["relu_ema"],
                           a.batch, a.seed + 3, a.seed + 4, DEFAULTS["grad_clip"], "relu")
    relu_path = work.checkpoint("relu", a.out)
    m2.update(model=a.model, seed=a.seed, phase="relu_finetune", init_from=silu_path.name, silu_steps=a.steps,
              torch=str(torch.__version__), threads=a.threads)
    save(ema2, relu_path, m2)
    relu_loaded, _ = load_checkpoint(relu_path)
    m2["eval_loss"] = eval_loss(relu_loaded, eval_data)
    save(ema2, relu_path, m2)
    print(f"[relu] done: {m2['wall_time_s']} s, final avg100 loss {m2['final_loss_avg100']:.4f}, "
          f"eval loss {m2['eval_loss']:.4f} -> {relu_path}", flush=True)
    print(f"total training wall time {m1['wall_time_s'] + m2['wall_time_s']:.1f} s", flush=True)


if __name__ == "__main__":
    main()

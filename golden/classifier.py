"""A small digit classifier trained here, whose features give a Fréchet distance closer to FID.

FID compares samples in the feature space of a network trained to recognise real images; no such
network can be downloaded here, so this module trains one per workload on the same data as the
U-Net (``golden.workloads``): two 3x3 conv + ReLU + 2x2 max-pool stages (16, 32 channels), a
64-unit ReLU layer (the features) and a 10-way linear head. Seeded, one thread. digits: an 80/20
split of the 1797 images by a seeded permutation, 30 epochs, ``digits_classifier.pt`` (float32,
~0.2 MB); mnist: trained on the 50,000 training images, held out on the 10,000 validation images,
5 epochs, ``mnist_classifier.pt`` (~0.6 MB); its FD reference is the 10,000 test images. Each
checkpoint records its held-out accuracy.

    python -m golden.classifier [--model digits|mnist]   # retrain, overwrite the committed one

``ClassifierFD`` gives the Fréchet distance (FID's formula) between the features of two image
sets, e.g. quantized samples against the FP32 samples of the same noise, or against the data.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from golden.data import load_digits16, load_mnist32
from golden.model import CHECKPOINT_DIR
from golden.workloads import DEFAULT_WORKLOAD, WORKLOADS, workload

CLASSIFIER_FORMAT = "sqdm-digits-classifier-v1"
DEFAULTS = dict(seed=0, batch=64, lr=2e-3, holdout=0.2)
#: Training epochs per workload.
EPOCHS = {"digits": 30, "mnist": 5}


def classifier_path(model: str = DEFAULT_WORKLOAD) -> Path:
    """The committed classifier checkpoint of workload ``model``."""
    return CHECKPOINT_DIR / f"{workload(model).name}_classifier.pt"


CLASSIFIER_PATH = classifier_path()


def classifier_data(model: str, holdout: float = DEFAULTS["holdout"], seed: int = 0):
    """``(train x, train y, held-out x, held-out y, FD reference images)`` of workload
    ``model``."""
    if workload(model).name == "mnist":
        x, y = load_mnist32("train")
        xv, yv = load_mnist32("valid")
        return x, y, xv, yv, load_mnist32("test")[0]
    x, y = load_digits16()
    tr, te = split(len(x), holdout, seed)
    return x[tr], y[tr], x[te], y[te], x


class DigitClassifier(nn.Module):
    def __init__(self, resolution: int = 16):
        super().__init__()
        if resolution % 4:
            raise ValueError(f"resolution must be a multiple of 4, got {resolution}")
        self.resolution = resolution
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * (resolution // 4) ** 2, 64)
        self.head = nn.Linear(64, 10)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The 64 post-ReLU features of images in [-1, 1] (clamped to it)."""
        x = F.max_pool2d(F.relu(self.conv1(x.clamp(-1, 1))), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return F.relu(self.fc(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (FID's formula)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    ca, cb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    vals, vecs = np.linalg.eigh(ca)
    sqrt_a = (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T
    cross = np.linalg.eigvalsh(sqrt_a @ cb @ sqrt_a)
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(ca) + np.trace(cb)
                 - 2 * np.sqrt(np.clip(cross, 0, None)).sum())


def split(n: int, holdout: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    k = int(round(n * holdout))
    return perm[k:], perm[:k]


def train(*, seed: int, epochs: int, batch: int, lr: float, holdout: float,
          model_name: str = DEFAULT_WORKLOAD, progress=print) -> tuple[DigitClassifier, dict]:
    torch.manual_seed(seed)
    x, y, xt, yt, _ = classifier_data(model_name, holdout, seed)
    model = DigitClassifier(workload(model_name).resolution)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed + 1)
    started = time.time()
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        for i in range(0, len(perm), batch):
            idx = perm[i:i + batch]
            loss = F.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if (epoch + 1) % 10 == 0 or epoch + 1 == epochs or len(x) > 10_000:
            progress(f"  epoch {epoch + 1}/{epochs}: held-out accuracy "
                     f"{accuracy(model, xt, yt):.3f} ({time.time() - started:.0f} s)")
    model.eval()
    meta = {"model": model_name, "resolution": model.resolution, "seed": seed,
            "epochs": epochs, "batch": batch, "lr": lr, "holdout": holdout,
            "train_images": len(x), "test_images": len(xt),
            "test_accuracy": accuracy(model, xt, yt),
            "wall_time_s": round(time.time() - started, 1)}
    return model, meta


@torch.no_grad()
def accuracy(model: DigitClassifier, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return float((model(x).argmax(1) == y).double().mean())


def save_classifier(model: DigitClassifier, meta: dict, path: Path = CLASSIFIER_PATH) -> None:
    torch.save({"format": CLASSIFIER_FORMAT, "state_dict": model.state_dict(), "meta": meta}, path)


def load_classifier(path: Path = CLASSIFIER_PATH) -> tuple[DigitClassifier, dict]:
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt.get("format") != CLASSIFIER_FORMAT:
        raise ValueError(f"{path}: unknown classifier format {ckpt.get('format')!r}")
    model = DigitClassifier(ckpt["meta"].get("resolution", 16))
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt["meta"]


class ClassifierFD:
    """Fréchet distance in the committed classifier's feature space (of workload
    ``model``; its reference images: digits all 1797, mnist the 10,000 test images)."""

    def __init__(self, path: Path | None = None, model: str = DEFAULT_WORKLOAD):
        self.model, self.meta = load_classifier(classifier_path(model) if path is None
                                                else path)
        self.data = self.features(classifier_data(model)[4])

    @torch.no_grad()
    def features(self, x: torch.Tensor) -> np.ndarray:
        return self.model.features(x.float()).double().numpy()

    def __call__(self, a: torch.Tensor, b: torch.Tensor | None = None) -> float:
        """FD between the features of image sets ``a`` and ``b`` (default: the data)."""
        fb = self.data if b is None else self.features(b)
        return frechet_distance(self.features(a), fb)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m golden.classifier", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(WORKLOADS), default=DEFAULT_WORKLOAD)
    p.add_argument("--seed", type=int, default=DEFAULTS["seed"])
    p.add_argument("--epochs", type=int, default=None,
                   help=f"training epochs (default {EPOCHS})")
    p.add_argument("--out", default=None,
                   help="checkpoint file (default golden/checkpoints/<model>_classifier.pt)")
    a = p.parse_args(argv)
    a.epochs = EPOCHS[a.model] if a.epochs is None else a.epochs
    a.out = str(classifier_path(a.model)) if a.out is None else a.out
    if a.epochs < 1:
        p.error(f"--epochs must be >= 1, got {a.epochs}")
    if Path(a.out).is_dir():
        p.error(f"--out {a.out} is a directory (it names the checkpoint file)")
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    model, meta = train(seed=a.seed, epochs=a.epochs, batch=DEFAULTS["batch"], lr=DEFAULTS["lr"],
                        holdout=DEFAULTS["holdout"], model_name=a.model)
    save_classifier(model, meta, Path(a.out))
    print(f"held-out accuracy {meta['test_accuracy']:.3f}; wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

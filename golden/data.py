"""The training data set: scikit-learn's bundled hand-written digits, upsampled to 16x16.

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
"""
from __future__ import annotations

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

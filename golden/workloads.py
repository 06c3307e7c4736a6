"""The workloads: a data set and the U-Net trained on it (``make ... MODEL=digits|mnist``).

``digits`` (the default): scikit-learn's 1797 digits at 16x16, the (32, 64, 64) U-Net of
``golden/model.py`` (609 k parameters), checkpoints ``unet_{silu,relu}.pt``.
``mnist``: the 50,000 MNIST training images at 32x32 (``golden.data.load_mnist32``; valid and
test are held out), a 4-level U-Net (32, 64, 96, 96) at 32/16/8/4 with two residual blocks per
level and attention at 8x8 (2.43 M parameters: 4.6 MiB in float16, the widest of this shape
whose checkpoint stays under 5 MB), checkpoints ``mnist_unet_{silu,relu}.pt``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from .model import CHECKPOINT_DIR

PLANS_DIR = Path(__file__).resolve().parent / "plans"

__all__ = ["Workload", "WORKLOADS", "DEFAULT_WORKLOAD", "workload"]


@dataclass(frozen=True)
class Workload:
    name: str
    #: ``golden.model.build_model`` configuration (the activation is set per phase)
    config: dict = field(default_factory=dict)
    checkpoint_prefix: str = "unet"
    #: SiLU training steps of ``make train`` (ReLU fine-tuning: 10 % more)
    silu_steps: int = 3500
    batch: int = 64
    #: images of the training data the reported eval loss runs on (the first N; None: all)
    eval_images: int | None = None
    #: its precision plan, a file of ``golden/plans/`` (traces, replays, reports run it)
    plan: str = "sqdm_plan.json"

    @property
    def resolution(self) -> int:
        return int(self.config.get("resolution", 16))

    def checkpoint(self, which: str, folder: Path = CHECKPOINT_DIR) -> Path:
        """The checkpoint of phase ``which`` (``silu`` or ``relu``) in ``folder``."""
        return Path(folder) / f"{self.checkpoint_prefix}_{which}.pt"

    @property
    def plan_path(self) -> Path:
        return PLANS_DIR / self.plan

    def training_data(self) -> torch.Tensor:
        """The training images [N, 1, R, R] in [-1, 1]."""
        from . import data
        if self.name == "mnist":
            return data.load_mnist32("train")[0]
        return data.load_digits16()[0]


WORKLOADS = {
    "digits": Workload("digits"),
    "mnist": Workload("mnist", config={"channels": [32, 64, 96, 96], "resolution": 32,
                                       "blocks": 2, "attn_res": [8], "emb_ch": 64},
                      checkpoint_prefix="mnist_unet", silu_steps=3000, batch=64,
                      eval_images=2048, plan="mnist_plan.json"),
}
DEFAULT_WORKLOAD = "digits"


def workload(name: str) -> Workload:
    try:
        return WORKLOADS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}: one of {sorted(WORKLOADS)}") from None

"""EDM (Karras et al., 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models") preconditioning, training loss and the deterministic Heun sampler.

Preconditioning (Table 1, "EDM" column), with sigma_data = 0.5:
    c_skip  = sigma_data^2 / (sigma^2 + sigma_data^2)
    c_out   = sigma * sigma_data / sqrt(sigma^2 + sigma_data^2)
    c_in    = 1 / sqrt(sigma^2 + sigma_data^2)
    c_noise = ln(sigma) / 4
    D(x; sigma) = c_skip * x + c_out * F(c_in * x; c_noise)
Training: ln(sigma) ~ N(P_mean = -1.2, P_std = 1.2), loss weight
    lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma * sigma_data)^2,
    loss = lambda * (D(y + n; sigma) - y)^2,  n ~ N(0, sigma^2).
Sampler: Algorithm 1 of the paper (deterministic Heun, S_churn = 0):
    t_i = (s_max^(1/rho) + i/(N-1) * (s_min^(1/rho) - s_max^(1/rho)))^rho, i < N;  t_N = 0,
    rho = 7, s_min = 0.002, s_max = 80.  2N - 1 denoiser evaluations (no correction at the last
    step, which goes to sigma = 0).

The sampler takes any denoiser callable ``D(x, sigma) -> x0_hat`` (sigma a Python float, the same
for the whole batch), so the FP32 model, a fake-quantized model or a hardware-in-the-loop model
plug in the same way.
"""
from __future__ import annotations

import math
from typing import Callable, Optional

import torch

SIGMA_DATA = 0.5
P_MEAN = -1.2
P_STD = 1.2
SIGMA_MIN = 0.002
SIGMA_MAX = 80.0
RHO = 7.0


def _as_tensor(sigma, like: Optional[torch.Tensor] = None) -> torch.Tensor:
    if isinstance(sigma, torch.Tensor):
        return sigma
    return torch.tensor(float(sigma), dtype=torch.float64 if like is None else like.dtype)


def c_skip(sigma, sigma_data: float = SIGMA_DATA):
    return sigma_data ** 2 / (sigma ** 2 + sigma_data ** 2)


def c_out(sigma, sigma_data: float = SIGMA_DATA):
    if isinstance(sigma, torch.Tensor):
        return sigma * sigma_data / torch.sqrt(sigma ** 2 + sigma_data ** 2)
    return sigma * sigma_data / math.sqrt(sigma ** 2 + sigma_data ** 2)


def c_in(sigma, sigma_data: float = SIGMA_DATA):
    if isinstance(sigma, torch.Tensor):
        return 1.0 / torch.sqrt(sigma ** 2 + sigma_data ** 2)
    return 1.0 / math.sqrt(sigma ** 2 + sigma_data ** 2)


def c_noise(sigma):
    if isinstance(sigma, torch.Tensor):
        return torch.log(sigma) / 4.0
    return math.log(sigma) / 4.0


def loss_weight(sigma, sigma_data: float = SIGMA_DATA):
    return (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2


class EDMDenoiser(torch.nn.Module):
    """D(x; sigma) = c_skip x + c_out F(c_in x; c_noise) around a raw network F(x, c_noise).

    ``sigma`` may be a Python float / 0-d tensor (same for the whole batch) or a tensor [B].
    The preconditioning arithmetic is done in the dtype of ``x`` (float32).
    """

    def __init__(self, net: torch.nn.Module, sigma_data: float = SIGMA_DATA):
        super().__init__()
        self.net = net
        self.sigma_data = sigma_data

    def forward(self, x: torch.Tensor, sigma) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=x.dtype)
        if s.ndim == 0:
            s = s.expand(x.shape[0])
        s4 = s.reshape(-1, 1, 1, 1)
        f = self.net(c_in(s4, self.sigma_data) * x, c_noise(s))
        return c_skip(s4, self.sigma_data) * x + c_out(s4, self.sigma_data) * f


def edm_loss(denoiser: Callable, y: torch.Tensor, generator: Optional[torch.Generator] = None,
             p_mean: float = P_MEAN, p_std: float = P_STD, sigma_data: float = SIGMA_DATA) -> torch.Tensor:
    """Mean EDM loss over a batch of clean images y (one sigma per image)."""
    b = y.shape[0]
    rnd = torch.randn(b, generator=generator, dtype=y.dtype)
    sigma = torch.exp(rnd * p_std + p_mean)
    n = torch.randn(y.shape, generator=generator, dtype=y.dtype) * sigma.reshape(-1, 1, 1, 1)
    d = denoiser(y + n, sigma)
    w = loss_weight(sigma, sigma_data).reshape(-1, 1, 1, 1)
    return (w * (d - y) ** 2).mean()


def sigma_schedule(num_steps: int = 18, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                   rho: float = RHO) -> list[float]:
    """The N + 1 noise levels t_0 = sigma_max > ... > t_{N-1} = sigma_min > t_N = 0 (float64)."""
    if num_steps < 2:
        raise ValueError("num_steps must be >= 2")
    a, b = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    ts = [(a + i / (num_steps - 1) * (b - a)) ** rho for i in range(num_steps)]
    ts[0], ts[-1] = float(sigma_max), float(sigma_min)  # exact end points (no pow round-off)
    return ts + [0.0]


# hook(eval_index, step_index, sigma, x_in, denoised); called after every denoiser evaluation.
EvalHook = Callable[[int, int, float, torch.Tensor, torch.Tensor], None]


@torch.no_grad()
def heun_sampler(denoiser: Callable[[torch.Tensor, float], torch.Tensor], latents: torch.Tensor,
                 num_steps: int = 18, sigma_min: float = SIGMA_MIN, sigma_max: float = SIGMA_MAX,
                 rho: float = RHO, hook: Optional[EvalHook] = None,
                 return_trajectory: bool = False):
    """Deterministic EDM Heun sampler (Algorithm 1, S_churn = 0).

    ``latents`` ~ N(0, I) of the output shape; the start point is latents * sigma_max.
    ``denoiser(x, sigma)`` gets sigma as a Python float. Evaluation order: step i evaluates
    D(x_i, t_i) and, if t_{i+1} > 0, D(x'_{i+1}, t_{i+1}); eval_index counts 0 .. 2N-2.
    Returns x_N (and the list [x_0, ..., x_N] if return_trajectory).
    """
    ts = sigma_schedule(num_steps, sigma_min, sigma_max, rho)
    x = latents * ts[0]
    traj = [x]
    k = 0
    for i in range(num_steps):
        t_cur, t_next = ts[i], ts[i + 1]
        den = denoiser(x, t_cur)
        if hook is not None:
            hook(k, i, t_cur, x, den)
        k += 1
        d_cur = (x - den) / t_cur
        x_next = x + (t_next - t_cur) * d_cur
        if t_next > 0:
            den2 = denoiser(x_next, t_next)
            if hook is not None:
                hook(k, i, t_next, x_next, den2)
            k += 1
            d_prime = (x_next - den2) / t_next
            x_next = x + (t_next - t_cur) * (0.5 * d_cur + 0.5 * d_prime)
        x = x_next
        traj.append(x)
    return (x, traj) if return_trajectory else x

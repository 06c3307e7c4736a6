"""Tests of the EDM preconditioning, loss weighting, sigma schedule and Heun sampler."""
import math

import numpy as np
import pytest
import torch

from golden import edm

torch.set_num_threads(1)


@pytest.mark.parametrize("sigma, cs, co, ci, cn", [
    # hand-computed with sigma_data = 0.5
    (0.5, 0.5, 0.25 / math.sqrt(0.5), 1 / math.sqrt(0.5), math.log(0.5) / 4),
    (1.0, 0.2, 0.5 / math.sqrt(1.25), 1 / math.sqrt(1.25), 0.0),
    (80.0, 0.25 / 6400.25, 40 / math.sqrt(6400.25), 1 / math.sqrt(6400.25), math.log(80) / 4),
    (0.002, 0.25 / 0.250004, 0.001 / math.sqrt(0.250004), 1 / math.sqrt(0.250004), math.log(0.002) / 4),
])
def test_preconditioning_values(sigma, cs, co, ci, cn):
    assert edm.c_skip(sigma) == pytest.approx(cs, rel=1e-12)
    assert edm.c_out(sigma) == pytest.approx(co, rel=1e-12)
    assert edm.c_in(sigma) == pytest.approx(ci, rel=1e-12)
    assert edm.c_noise(sigma) == pytest.approx(cn, rel=1e-12, abs=1e-15)
    t = torch.tensor([sigma], dtype=torch.float64)
    for f, v in ((edm.c_skip, cs), (edm.c_out, co), (edm.c_in, ci), (edm.c_noise, cn)):
        assert float(f(t)[0]) == pytest.approx(v, rel=1e-12, abs=1e-15)


def test_preconditioning_identities():
    s = torch.logspace(-3, 2, 50, dtype=torch.float64)
    sd = edm.SIGMA_DATA
    # c_skip^2 sd^2 + c_out^2 ... : the target has unit variance: c_out^2 = sd^2 (1 - c_skip)
    assert torch.allclose(edm.c_out(s) ** 2, sd ** 2 * (1 - edm.c_skip(s)))
    # loss weight = 1 / c_out^2
    assert torch.allclose(edm.loss_weight(s), 1 / edm.c_out(s) ** 2)
    assert edm.loss_weight(0.5) == pytest.approx(8.0)


def test_sigma_schedule():
    n = 18
    ts = edm.sigma_schedule(n)
    assert len(ts) == n + 1
    assert ts[0] == 80.0 and ts[n - 1] == 0.002 and ts[n] == 0.0
    assert all(a > b for a, b in zip(ts, ts[1:]))
    i = np.arange(n)
    ref = (80 ** (1 / 7) + i / (n - 1) * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
    np.testing.assert_allclose(ts[:n], ref, rtol=1e-12)
    with pytest.raises(ValueError):
        edm.sigma_schedule(1)


def test_heun_point_mass_lands_exactly():
    mu = torch.tensor([0.3, -0.7, 0.1]).reshape(1, 3, 1, 1)

    def den(x, sigma):
        return mu.expand_as(x)

    z = torch.randn(5, 3, 1, 1, generator=torch.Generator().manual_seed(0))
    out = edm.heun_sampler(den, z, num_steps=10)
    torch.testing.assert_close(out, mu.expand_as(out), atol=1e-5, rtol=0)


def _gaussian_factor_error(n):
    # data ~ N(mu, s^2) per element: optimal denoiser D(x, sig) = mu + s^2/(s^2+sig^2) (x - mu);
    # the probability-flow ODE maps x_T to mu + s/sqrt(s^2 + T^2) (x_T - mu) exactly.
    mu, s = 0.25, 0.5
    den = lambda x, sig: mu + s ** 2 / (s ** 2 + sig ** 2) * (x - mu)  # noqa: E731
    z = torch.randn(4096, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    out = edm.heun_sampler(den, z, num_steps=n)
    factor = ((out - mu) / (z * 80.0 - mu))
    exact = s / math.sqrt(s ** 2 + 80.0 ** 2)
    return (factor / exact - 1).abs().max().item(), out


def test_heun_gaussian_matches_ode_solution():
    e18, out = _gaussian_factor_error(18)
    e40, _ = _gaussian_factor_error(40)
    e100, _ = _gaussian_factor_error(100)
    assert e18 < 0.06 and e40 < 0.011 and e100 < 0.002     # measured 0.055, 0.0098, 0.0015
    # second-order method: error ratio ~ (n2/n1)^2
    assert math.log(e18 / e40) / math.log(40 / 18) > 1.8
    assert math.log(e40 / e100) / math.log(100 / 40) > 1.8
    assert abs(out.mean().item() - 0.25) < 0.03 and abs(out.std().item() - 0.5) < 0.05


def test_heun_hook_order_and_count():
    n = 6
    calls, seen = [], []

    def den(x, sigma):
        seen.append(sigma)
        return torch.zeros_like(x)

    edm.heun_sampler(den, torch.zeros(1, 1, 2, 2), num_steps=n,
                     hook=lambda k, i, sig, x, d: calls.append((k, i, sig)))
    ts = edm.sigma_schedule(n)
    assert len(calls) == 2 * n - 1 and [c[0] for c in calls] == list(range(2 * n - 1))
    exp = []
    for i in range(n):
        exp.append((i, ts[i]))
        if ts[i + 1] > 0:
            exp.append((i, ts[i + 1]))
    assert [(c[1], c[2]) for c in calls] == exp
    assert seen == [c[2] for c in calls]
    assert all(isinstance(s, float) for s in seen)


def test_edm_denoiser_wrapper_and_loss():
    class Lin(torch.nn.Module):
        def forward(self, x, cn):
            self.cn = cn
            return torch.zeros_like(x)

    net = Lin()
    d = edm.EDMDenoiser(net)
    x = torch.ones(2, 1, 2, 2)
    out = d(x, 1.0)
    torch.testing.assert_close(out, 0.2 * x)
    torch.testing.assert_close(net.cn, torch.zeros(2))
    # EDM loss with the zero network: weight * (c_skip - 1)^2 y^2 style quantity is finite & positive
    y = torch.zeros(8, 1, 2, 2)
    loss = edm.edm_loss(d, y, torch.Generator().manual_seed(0))
    assert torch.isfinite(loss) and loss.item() > 0

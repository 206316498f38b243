"""Time grids for few-step samplers: where the network is evaluated, from t_start down to eps.

Every SDE here perturbs x_t = alpha(t) x_0 + std(t) z, i.e. a variance-exploding noise level
sigma(t) = std(t) / alpha(t) (increasing in t). A grid of `steps` times is chosen in sigma and
mapped back to t, so the same schedule means the same noise levels for VE, VP and sub-VP:

    geometric   sigma_i = sigma_0 (sigma_end / sigma_0)^(i / (n - 1))                      (log-uniform)
    edm         sigma_i = (sigma_0^(1/rho) + i / (n - 1) (sigma_end^(1/rho) - sigma_0^(1/rho)))^rho,  rho = 7
    linear      t_i = t_0 + i / (n - 1) (eps - t_0)                                       (uniform in t)

with sigma_0 = sigma(t_start), sigma_end = sigma(eps), i = 0 .. n - 1. The grid does not depend on
the batch. For VE, "geometric" and "linear" coincide (sigma(t) is exponential in t).
"""
from __future__ import annotations

import torch

SCHEDULES = ("geometric", "edm", "linear")


def sigma_of_t(sde, t: torch.Tensor) -> torch.Tensor:
    """sigma(t) = std(t) / alpha(t), the VE-equivalent noise level; t (n,) -> (n,)."""
    alpha, std = sde.scale_std(t)
    return std / alpha


def t_of_sigma(sde, sigma: torch.Tensor, lo: float, hi: float, iters: int = 80) -> torch.Tensor:
    """Invert sigma(t) on [lo, hi] by bisection (sigma is increasing in t for every SDE here);
    written for any SDE with `scale_std`, so no SDE needs a closed-form inverse. sigma (n,) -> t (n,)."""
    a = torch.full_like(sigma, lo)
    b = torch.full_like(sigma, hi)
    for _ in range(iters):
        mid = 0.5 * (a + b)
        above = sigma_of_t(sde, mid) > sigma
        a, b = torch.where(above, a, mid), torch.where(above, mid, b)
    return 0.5 * (a + b)


def schedule_times(sde, steps: int, schedule: str = "geometric", t_start: float | None = None,
                   rho: float = 7.0) -> torch.Tensor:
    """`steps` times (float64, CPU), strictly decreasing from t_start (default sde.T) to sde.eps.

    A sampler evaluates its network once per time (steps = 1 gives [t_start]); the step after the
    last time returns the final estimate of x_0.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {SCHEDULES}")
    t0 = float(sde.T if t_start is None else t_start)
    if not sde.eps < t0 <= sde.T:
        raise ValueError(f"t_start must be in (eps, T] = ({sde.eps}, {sde.T}], got {t0}")
    if steps == 1:
        return torch.tensor([t0], dtype=torch.float64)
    frac = torch.linspace(0.0, 1.0, steps, dtype=torch.float64)
    if schedule == "linear":
        t = t0 + frac * (sde.eps - t0)
    else:
        s0, s1 = (float(s) for s in sigma_of_t(sde, torch.tensor([t0, sde.eps], dtype=torch.float64)))
        if schedule == "geometric":
            sigma = s0 * (s1 / s0) ** frac
        else:
            sigma = (s0 ** (1 / rho) + frac * (s1 ** (1 / rho) - s0 ** (1 / rho))) ** rho
        t = t_of_sigma(sde, sigma, sde.eps, t0)
    t[0], t[-1] = t0, sde.eps   # exact endpoints (bisection leaves ~1e-16)
    return t

"""Probability-flow ODE sampling: dx/dt = f(x, t) - 1/2 g(t)^2 s(x, t), integrated from T to eps.

Fixed-step Heun (2 NFE per step) when `steps` is given, adaptive Dormand-Prince RK45 otherwise.
The solvers are plain torch so they batch and run on any device.
"""
from __future__ import annotations

import torch

from ..score import tweedie_denoise
from .hooks import CountingScore

# Dormand-Prince 5(4) tableau.
_A = [[], [1 / 5], [3 / 40, 9 / 40], [44 / 45, -56 / 15, 32 / 9],
      [19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729],
      [9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656],
      [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84]]
_C = [0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1, 1]
_B5 = [35 / 384, 0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0]
_B4 = [5179 / 57600, 0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40]


def heun(f, x, t0: float, t1: float, steps: int):
    ts = torch.linspace(t0, t1, steps + 1, dtype=torch.float64)
    for i in range(steps):
        h = float(ts[i + 1] - ts[i])
        d = f(x, float(ts[i]))
        x_e = x + h * d
        x = x + 0.5 * h * (d + f(x_e, float(ts[i + 1])))
    return x


def dopri5(f, x, t0: float, t1: float, rtol: float, atol: float, max_steps: int = 10000):
    """Adaptive RK45 with an FSAL stage; the error norm is the RMS over the whole batch."""
    t, h = t0, (t1 - t0) / 100
    k1 = f(x, t)
    for _ in range(max_steps):
        if (t1 - t) / (t1 - t0) <= 1e-12:
            return x
        h = max(h, t1 - t) if t1 < t0 else min(h, t1 - t)
        ks = [k1]
        for i in range(1, 7):
            xi = x + h * sum(a * k for a, k in zip(_A[i], ks) if a)
            ks.append(f(xi, t + _C[i] * h))
        x5 = x + h * sum(b * k for b, k in zip(_B5, ks) if b)
        err = h * sum((b5 - b4) * k for b5, b4, k in zip(_B5, _B4, ks) if b5 != b4)
        scale = atol + rtol * torch.maximum(x.abs(), x5.abs())
        e = float((err / scale).pow(2).mean().sqrt())
        if e <= 1.0:
            t, x, k1 = t + h, x5, ks[-1]
        h = h * min(5.0, max(0.2, 0.9 * (e + 1e-16) ** -0.2))
    raise RuntimeError(f"dopri5 did not reach t={t1} in {max_steps} steps (at t={t})")


def ode_sample(score_model, shape, *, steps: int | None = None, rtol: float = 1e-5, atol: float = 1e-5,
               generator: torch.Generator | None = None, denoise: bool = True, x_init=None,
               device=None, dtype=torch.float32, info: dict | None = None) -> torch.Tensor:
    """Samples (B, ...) by integrating the probability-flow ODE; NFE goes to `info["nfe"]`.

    Starts like `pc_sample`: `x_init`, or the prior at the model's `prior_mean` (0 when it has none)."""
    counter = CountingScore(score_model)
    sde = score_model.sde
    rsde = sde.reverse(counter, probability_flow=True)
    if x_init is None:
        device = device if device is not None else (generator.device if generator is not None else None)
        x = sde.prior_sampling(shape, generator=generator, device=device, dtype=dtype,
                               mean=getattr(score_model, "prior_mean", None))
    else:
        x = x_init

    def f(x, t: float):
        return rsde.sde(x, torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype))[0]

    with torch.no_grad():
        if steps is None:
            x = dopri5(f, x, sde.T, sde.eps, rtol, atol)
        else:
            x = heun(f, x, sde.T, sde.eps, steps)
        if denoise:
            t = torch.full((x.shape[0],), sde.eps, device=x.device, dtype=x.dtype)
            x = tweedie_denoise(score_model, x, t, counter(x, t))
    if info is not None:
        info["nfe"] = counter.nfe
    return x

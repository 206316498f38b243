"""Predictor-Corrector sampling of the reverse SDE (Song et al., ICLR 2021, Algorithm 1)."""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..score import tweedie_denoise
from .correctors import CORRECTORS
from .hooks import Conditioner, CountingScore, lookup
from .predictors import PREDICTORS


def time_grid(sde, steps: int, device=None, dtype=torch.float64, t_start: float | None = None) -> torch.Tensor:
    """steps + 1 times from t_start (default T) down to eps; step i goes from grid[i] to grid[i + 1]."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    return torch.linspace(sde.T if t_start is None else float(t_start), sde.eps, steps + 1, device=device, dtype=dtype)


def pc_sample(score_model, shape, *, steps: int = 1000, predictor="reverse_diffusion", corrector="langevin",
              corrector_steps: int = 1, snr: float = 0.16, denoise: bool = True,
              generator: torch.Generator | None = None, progress: bool = True, callback=None,
              conditioner: Conditioner | None = None, x_init: torch.Tensor | None = None,
              device=None, dtype=torch.float32, info: dict | None = None, t_start: float | None = None) -> torch.Tensor:
    """Draw samples of shape (B, ...) by alternating corrector and predictor updates from t = T to eps.

    Starts at `x_init` or x_T ~ N(alpha(T) m, std(T)^2 I), m = `score_model.prior_mean` where the model carries
    its training-data mean (else 0; see `SDE.prior_sampling`). t_start (with x_init, the state at t_start:
    a warm start, `samplers.warm_start`) runs the steps from t_start instead of T.
    NFE = steps * (1 + corrector_steps) + [denoise]; written to `info["nfe"]` when `info` is a dict.
    `conditioner` plugs a measurement in (see `hooks.Conditioner`); `callback(i, t, x, x_mean)` sees every step.
    """
    with torch.no_grad():  # conditioners that need gradients enable them locally
        return _pc_loop(score_model, shape, steps, lookup(PREDICTORS, predictor, "predictor"),
                        lookup(CORRECTORS, corrector, "corrector"), corrector_steps, snr, denoise, generator,
                        progress, callback, conditioner, x_init, device, dtype, info, t_start)


def _pc_loop(score_model, shape, steps, predictor, corrector, corrector_steps, snr, denoise, generator,
             progress, callback, conditioner, x_init, device, dtype, info, t_start=None):
    cond = conditioner or Conditioner()
    counter = CountingScore(score_model)
    score_fn, sde = cond.score(counter), score_model.sde
    if x_init is None:
        device = device if device is not None else (generator.device if generator is not None else None)
        x = sde.prior_sampling(shape, generator=generator, device=device, dtype=dtype,
                               mean=getattr(score_model, "prior_mean", None))
    else:
        x = x_init
    grid = time_grid(sde, steps, device=x.device, t_start=t_start)
    n_corr = 0 if corrector is CORRECTORS["none"] else corrector_steps
    for i in tqdm(range(steps), disable=not progress, desc="sampling", leave=False):
        t = grid[i].to(x.dtype).expand(x.shape[0])
        dt = float(grid[i] - grid[i + 1])
        for _ in range(n_corr):
            x = cond.before(x, t, generator)                       # e.g. project onto the noised data
            x, x_mean = corrector(sde, score_fn, x, t, dt, snr, generator)
            x = cond.after(x, t, generator)                        # e.g. DPS gradient step
        x = cond.before(x, t, generator)
        x, x_mean = predictor(sde, score_fn, x, t, dt, generator)
        x = cond.after(x, t, generator)
        if callback is not None:
            callback(i, t, x, x_mean)
    if denoise:
        # One Tweedie step at t = eps removes the residual noise std(eps).
        t = grid[-1].to(x.dtype).expand(x.shape[0])
        x = tweedie_denoise(score_model, x, t, score_fn(x, t))
    x = cond.final(x, generator)
    if info is not None:
        info["nfe"] = counter.nfe
    return x

"""Warm start (CCDF, Chung, Sim, Ye, CVPR 2022) and the driver of the Tweedie-estimate samplers.

A cheap reconstruction x_init (FBP, zero-filled IFFT, FISTA-TV; `sgm_inverse.baselines`) is noised to
an intermediate time t0 < T and the reverse process runs only from there:

    x_t0 = alpha(t0) x_init + std(t0) z,   z ~ N(0, I)

The error of x_init contracts while the sampler runs from t0 to eps, and no evaluation is spent above
t0. Used by every sampler: `pc_sample(x_init=x_t0, t_start=t0)` and `tweedie_sample(x_init=..., t_start=...)`.
"""
from __future__ import annotations

import inspect

import torch

from ..utils import append_dims
from .hooks import CountingScore, lookup
from .predictors import randn_like
from .schedules import schedule_times
from .tweedie_samplers import TWEEDIE_SAMPLERS


def warm_start(sde, x_init: torch.Tensor, t_start: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """x_t0 = alpha(t0) x_init + std(t0) z, shape of x_init (B, ...); eps < t0 <= T."""
    if not sde.eps < float(t_start) <= sde.T:
        raise ValueError(f"t_start must be in (eps, T] = ({sde.eps}, {sde.T}], got {t_start}")
    t = torch.full((x_init.shape[0],), float(t_start), dtype=torch.float64, device=x_init.device)
    alpha, std = (v.to(x_init.dtype) for v in sde.scale_std(t))
    return append_dims(alpha, x_init.ndim) * x_init + append_dims(std, x_init.ndim) * randn_like(x_init, generator)


def sampler_option_names(sampler) -> list:
    """The keywords of solve() that belong to the sampler rather than to the conditioning method: x_init and
    t_start (every sampler), and for a Tweedie sampler `schedule` and its own keyword options (eta, ...)."""
    names = {"x_init", "t_start"}
    if sampler in TWEEDIE_SAMPLERS:
        params = inspect.signature(TWEEDIE_SAMPLERS[sampler]).parameters.values()
        own = {p.name for p in params if p.kind is p.KEYWORD_ONLY} - {"generator", "callback", "progress"}
        names |= {"schedule"} | own
    return sorted(names)


def split_sampler_options(sampler, options: dict) -> dict:
    """Pop the `sampler_option_names` out of `options` (solve's **method_options) and return them."""
    names = sampler_option_names(sampler)
    return {k: options.pop(k) for k in list(options) if k in names}


def expand_x_init(x_init, t_start, n_samples: int, batch: int, image_shape, device,
                  dtype=torch.float32) -> torch.Tensor | None:
    """Check a warm-start estimate (B, C, H, W) or (C, H, W) and repeat it sample-major to (n_samples B, C, H, W)."""
    if (x_init is None) != (t_start is None):
        raise ValueError("a warm start needs both x_init (an estimate of the image) and t_start (the time to "
                         "start at); got only " + ("x_init" if x_init is not None else "t_start"))
    if x_init is None:
        return None
    x_init = torch.as_tensor(x_init)
    if tuple(x_init.shape) == tuple(image_shape):
        x_init = x_init.unsqueeze(0)
    if tuple(x_init.shape) != (batch, *image_shape):
        raise ValueError(f"x_init has shape {tuple(x_init.shape)}; expected ({batch}, "
                         f"{', '.join(map(str, image_shape))}) like the measurement batch")
    if not torch.isfinite(x_init).all():
        raise ValueError(f"x_init contains NaN or Inf (shape {tuple(x_init.shape)})")
    return x_init.to(device=device, dtype=dtype).repeat(n_samples, *([1] * len(image_shape)))


def tweedie_sample(sampler, score_model, forward_model, y: torch.Tensor, shape, *, steps: int,
                   schedule: str = "geometric", t_start: float | None = None, x_init: torch.Tensor | None = None,
                   generator: torch.Generator | None = None, progress: bool = False, callback=None,
                   device=None, dtype=torch.float32, info: dict | None = None, **options) -> torch.Tensor:
    """Run a Tweedie-estimate sampler (name in TWEEDIE_SAMPLERS or a function with their signature).

    shape (B, C, H, W) with B = y.shape[0]. Starts from x_init warm-started at t_start (both or neither),
    else from the prior x_T ~ N(alpha(T) m, std(T)^2 I) (m = score_model.prior_mean where it has one).
    `steps` network evaluations on `schedule` (schedules.py) from t_start (default T) to eps; NFE goes to
    info["nfe"], backward passes through the network (PiGDM) to info["backward_passes"].
    """
    fn = lookup(TWEEDIE_SAMPLERS, sampler, "sampler")
    sde = score_model.sde
    if (x_init is None) != (t_start is None):
        raise ValueError("a warm start needs both x_init (an estimate of the image) and t_start (the time to "
                         "start at); got only " + ("x_init" if x_init is not None else "t_start"))
    times = schedule_times(sde, steps, schedule, t_start)
    if x_init is not None:
        if tuple(x_init.shape) != tuple(shape):
            raise ValueError(f"x_init has shape {tuple(x_init.shape)}; expected {tuple(shape)}")
        x = warm_start(sde, x_init.to(dtype), float(times[0]), generator)
    else:
        device = device if device is not None else (generator.device if generator is not None else None)
        x = sde.prior_sampling(shape, generator=generator, device=device, dtype=dtype,
                               mean=getattr(score_model, "prior_mean", None))
    counter = CountingScore(score_model)
    out = fn(counter, forward_model, y, x, times, generator=generator, callback=callback, progress=progress,
             **options)
    if info is not None:
        info["nfe"] = counter.nfe
        info["backward_passes"] = counter.nfe if fn is TWEEDIE_SAMPLERS["pigdm"] else 0
    return out.detach()

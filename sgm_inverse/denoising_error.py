"""Denoising error by noise level: where in the noise schedule a score model is right or wrong.

The training loss mixes every noise level, with weights that favour the low ones (Song et al.'s
lambda = std^2 weights the denoiser's error by 1 / sigma~^2), so a falling loss can hide a model that is
wrong at the high noise levels, where a sample's brightness and layout are decided. This splits it:
for times t_k, held-out images x_0 (B, C, H, W) are noised to x_t = alpha x_0 + std z and

    mse(t)       = mean over images and pixels of (D(x_t, t) - x_0)^2,   D = E[x_0 | x_t] (Tweedie, from the score)
    mse_mean     = mean of (xbar - x_0)^2, xbar the pixelwise mean of the images: what predicting the mean scores
    mean_bias(t) = mean(D) - mean(x_0)

The MMSE falls from mse_mean (sigma~ -> inf, where E[x_0 | x_t] -> E[x_0]) to 0 (sigma~ -> 0); a model
whose mse rises above mse_mean at high noise, or whose mean_bias is far from 0 there, draws samples of
the wrong brightness or composition however low its loss. sigma~ = std / alpha is the noise level in
the variance-exploding view (VE: sigma(t); VP: sqrt(1 - alpha^2) / alpha).
"""
from __future__ import annotations

import torch

from .score import tweedie_denoise


def noise_times(sde, n: int = 8) -> torch.Tensor:
    """n times (n,) spread evenly over [eps, T] (for a VE SDE: noise levels evenly spaced in log sigma)."""
    if n < 1:
        raise ValueError(f"need at least one noise level, got n = {n}")
    return torch.linspace(sde.eps, sde.T, n, dtype=torch.float64)


@torch.no_grad()
def denoising_error(score_model, x0: torch.Tensor, times, *, generator: torch.Generator | None = None,
                    batch_size: int = 64) -> list[dict]:
    """Per time t in `times`: {"t", "sigma", "mse", "mse_mean", "mean_bias", "ratio" (= mse / mse_mean)}.

    score_model: any object with `.sde` and `__call__(x, t)` (a trained ScoreModel or an analytic score);
    x0 (N, ...) clean images on the model's device; the noise z is drawn from `generator` (on x0's device)
    once per level, so a seed reproduces the table. Images are processed batch_size at a time.
    """
    if x0.ndim < 2 or x0.shape[0] < 2:
        raise ValueError(f"expected at least two images (N, ...), got shape {tuple(x0.shape)}")
    if not torch.isfinite(x0).all():
        raise ValueError("the images contain NaN or Inf")
    times = torch.as_tensor(times, dtype=torch.float64).reshape(-1)
    x0 = x0.to(torch.float32)
    mse_mean = float((x0 - x0.mean(0, keepdim=True)).pow(2).mean())
    x0_mean = float(x0.double().mean())
    rows = []
    for t in times.tolist():
        tt = torch.tensor([t], dtype=torch.float64)
        alpha, std = (float(v) for v in score_model.sde.scale_std(tt))
        sq_err, total = 0.0, 0.0
        for start in range(0, x0.shape[0], batch_size):
            x = x0[start:start + batch_size]
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            d = tweedie_denoise(score_model, alpha * x + std * z, torch.full((x.shape[0],), t, device=x.device))
            sq_err += float((d - x).double().pow(2).sum())
            total += float(d.double().sum())
        mse = sq_err / x0.numel()
        rows.append({"t": t, "sigma": std / alpha, "mse": mse, "mse_mean": mse_mean,
                     "mean_bias": total / x0.numel() - x0_mean,
                     "ratio": mse / mse_mean if mse_mean > 0 else float("inf")})
    return rows

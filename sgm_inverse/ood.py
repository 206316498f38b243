"""Does a measurement look like the prior's training data? A measured statistic and a one-line warning.

The statistic is the prior's *denoising gain over a blur*: from a cheap estimate x̂ of the image behind
the measurement (regularised least squares, forward and adjoint only), at noise levels σ in `SIGMAS`

    r(x̂) = mean_σ  E||D_θ(x̂ + σz, σ) − x̂||²  /  min_w E||G_w * (x̂ + σz) − x̂||²

with D_θ the prior's Tweedie denoiser and G_w the best of a few Gaussian blurs. A prior that knows
images like x̂ denoises them far better than a blur (r ≈ 0.4 on clean brain slices for brain64, about 1
on their 8-view CT estimates, whose streaks it does not know); on an image of another kind it does no
better than the blur, or worse (brain64: r ≈ 2.5–3 on pydicom's MR_small and CT_small). Dividing by the
blur's error removes most of the dependence on how textured the image is.

A checkpoint is calibrated once (`calibrate`, run by data_scripts/calibrate_ood.py): r on the estimates
of its validation images under CT (8 / 23 views) and MRI (4× / 8×) measurements. Its config then holds
`"ood": {"max": ..., "threshold": THRESHOLD_FACTOR * max, ...}` and `solve()` warns above the threshold.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

SIGMAS = (0.1, 0.2, 0.4)
BLUR_WIDTHS = (0.5, 0.8, 1.2, 1.8, 2.5, 3.5)
THRESHOLD_FACTOR = 1.5


def time_for_sigma(sde, sigma: float, iters: int = 60) -> float:
    """The t in [eps, T] with std(t) / alpha(t) = sigma (bisection; sigma~ increases with t for every SDE here)."""
    lo, hi = float(sde.eps), float(sde.T)

    def level(t: float) -> float:
        alpha, std = sde.scale_std(torch.tensor([t], dtype=torch.float64))
        return float(std / alpha)

    if sigma <= level(lo):
        return lo
    if sigma >= level(hi):
        return hi
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if level(mid) < sigma else (lo, mid)
    return 0.5 * (lo + hi)


def least_squares_estimate(forward_model, y: torch.Tensor, mean: float = 0.2, mu: float = 0.05,
                           n_iter: int = 30) -> torch.Tensor:
    """x̂ = argmin ||A x − y||² + mu ||x − mean||², by CG with forward / adjoint only; (B, C, H, W), clamped to [0, 1]."""
    from forward_models.base import batched_cg
    aty = forward_model.adjoint(y)
    aty = aty.real if aty.is_complex() else aty

    def normal(x):
        out = forward_model.adjoint(forward_model(x))
        return (out.real if out.is_complex() else out) + mu * x

    x = batched_cg(normal, aty + mu * mean, n_iter=n_iter)
    return x.clamp(0, 1)


def _blur(x: torch.Tensor, width: float) -> torch.Tensor:
    r = int(3 * width) + 1
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) / width) ** 2)
    k = (k / k.sum()).view(1, 1, 1, -1).repeat(x.shape[1], 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.transpose(-1, -2), groups=x.shape[1])


@torch.no_grad()
def denoising_gain_ratio(score_model, x: torch.Tensor, sigmas=SIGMAS, repeats: int = 3,
                         generator: torch.Generator | None = None) -> torch.Tensor:
    """r(x) of the module docstring, (B,), for images x (B, C, H, W) in [0, 1]. 3 * len(sigmas) network calls."""
    from .score import tweedie_denoise
    generator = generator or torch.Generator(device=x.device).manual_seed(0)
    ratios = []
    for sigma in sigmas:
        t = time_for_sigma(score_model.sde, sigma)
        alpha = float(score_model.sde.scale_std(torch.tensor([t], dtype=torch.float64))[0])
        err_model = err_blur = 0.0
        for _ in range(repeats):
            z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            noisy = x + sigma * z
            tt = torch.full((x.shape[0],), t, device=x.device, dtype=x.dtype)
            den = tweedie_denoise(score_model, alpha * noisy, tt)
            err_model = err_model + (den - x).pow(2).flatten(1).mean(1)
            err_blur = err_blur + torch.stack([(_blur(noisy, w) - x).pow(2).flatten(1).mean(1)
                                               for w in BLUR_WIDTHS]).min(0).values
        ratios.append(err_model / err_blur)
    return torch.stack(ratios).mean(0)


def measurement_ood_ratio(score_model, forward_model, y: torch.Tensor) -> torch.Tensor | None:
    """r of the least-squares estimate behind each measurement (B,); None for models without an adjoint
    (nonlinear or time-dependent ones: a classifier's label has no image behind it)."""
    if getattr(forward_model, "time_dependent", False) or not hasattr(forward_model, "adjoint"):
        return None
    mean = getattr(score_model, "prior_mean", None)
    m = 0.2 if mean is None else float(mean.mean())
    return denoising_gain_ratio(score_model, least_squares_estimate(forward_model, y, mean=m))


def ood_warning(score_model, ratio: torch.Tensor | None) -> str | None:
    """One line starting with "warning:" when any measurement's r exceeds the checkpoint's calibrated
    threshold; None when it does not or when the checkpoint carries no calibration."""
    calib = getattr(score_model, "config", {}).get("ood") if hasattr(score_model, "config") else None
    if ratio is None or not calib:
        return None
    worst = float(ratio.max())
    if worst <= calib["threshold"]:
        return None
    return (f"warning: the measurement looks unlike this prior's training data (denoising-gain ratio "
            f"{worst:.2f}, above {calib['threshold']:.2f}; its validation images reach {calib['max']:.2f}); "
            f"the reconstruction may show the prior's texture instead of the scan: compare with FISTA-TV or "
            f"use a prior of this kind of image")


def calibrate(score_model, images: torch.Tensor, forward_models) -> dict:
    """The "ood" block of a checkpoint config from validation images (N, C, H, W) measured by each of
    `forward_models` (noise-free): the largest r seen, its median, and the warning threshold."""
    values = []
    for fm in forward_models:
        values.append(denoising_gain_ratio(score_model, least_squares_estimate(
            fm, fm(images), mean=float(images.mean()))))
    r = torch.cat(values)
    return {"statistic": "denoising gain over the best blur of the least-squares estimate (sgm_inverse.ood)",
            "sigmas": list(SIGMAS), "n": int(r.numel()), "median": round(float(r.median()), 4),
            "max": round(float(r.max()), 4), "threshold": round(THRESHOLD_FACTOR * float(r.max()), 4)}


__all__ = ["denoising_gain_ratio", "least_squares_estimate", "measurement_ood_ratio", "ood_warning",
           "calibrate", "time_for_sigma"]

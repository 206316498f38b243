"""Data steps and the DDIM re-noising shared by the Tweedie-estimate samplers (tweedie_samplers.py).

Each sampler turns the denoised estimate x0_hat (B, C, H, W) into x0' with the measurement y
(B, *measurement_shape), real or complex, through one of two corrections of r = y - A x0_hat:

    proximal_correction   dx = (A^T A + rho I)^-1 A^T r   by n CG steps in image space, from dx = 0
    pinv_correction       dx = A^T (A A^T + mu I)^-1 r    exactly (A A^T = c I: dx = A^T r / (c + mu)),
                                                          else by CG in measurement space, from 0

Both equal A^T (A A^T + rho I)^-1 r once converged (push-through identity); with rho = mu = 0 this is
the minimum-norm correction A^+ r, so x0' = A^+ y + (I - A^+ A) x0_hat (the projection onto {Ax = y}).
CG from 0 stays in range(A^T), so singular A A^T (real images under MRI) is no problem. The image-space
form with few iterations is DDS's early-stopped solver; the measurement-space form is the pseudo-inverse.

Re-noising to the next time s (DDIM in the parameterisation of DDS, variance preserving in the noise):

    x_s = alpha_s x0' + std_s (eta z + sqrt(1 - eta^2) eps),   z ~ N(0, I) fresh

eta = 1: fresh noise only; eta = 0: deterministic DDIM; eta = "ddpm": eta^2 = 1 - sigma_s^2 / sigma_t^2
(sigma = std / alpha), which makes the step the DDPM ancestral step q(x_s | x_t, x_0 = x0').
"""
from __future__ import annotations

import torch

from forward_models.base import batched_cg

from ..conditioning import min_norm_correction
from ..utils import append_dims
from .predictors import randn_like


def cg_rtol(x: torch.Tensor) -> float:
    """The CG stopping tolerance for x's precision: 1e-4 in float32 (and below), where running on towards 1e-6
    blew up after convergence (real-image MRI at 128 x 128: DDNM at 3.6 dB); 1e-10 in float64, where the
    Gaussian-prior exactness tests need the converged step."""
    return 1e-10 if x.real.dtype == torch.float64 else 1e-4


def proximal_correction(forward_model, r: torch.Tensor, rho, n_iter: int, rtol: float | None = None) -> torch.Tensor:
    """dx (B, C, H, W) from n_iter CG steps on (A^T A + rho I) dx = A^T r started at 0; rho float or (B,).

    A sample stops once its residual is below rtol times the initial one: CG run on past convergence
    divides rounding noise by rounding noise (real-image MRI, whose A^T A has two eigenvalues, converges
    in 2 steps and then diverges in float32 with rtol = 0)."""
    A, At = forward_model.forward, forward_model.adjoint
    b = At(r)
    rho = append_dims(torch.as_tensor(rho, dtype=b.dtype, device=b.device), b.ndim)
    return batched_cg(lambda v: At(A(v)) + rho * v, b, n_iter=n_iter, rtol=cg_rtol(b) if rtol is None else rtol)


def pinv_correction(forward_model, r: torch.Tensor, mu=0.0, n_iter: int = 20, rtol: float | None = None) -> torch.Tensor:
    """dx = A^T (A A^T + mu I)^-1 r (B, C, H, W); mu float or (B,). Closed form where the operator
    reports A A^T = c I (`normal_scale`: inpainting, grayscale, MRI of complex images), else CG."""
    c = getattr(forward_model, "normal_scale", None)
    if c is not None:
        dx = forward_model.adjoint(r)
        return dx / append_dims(c + torch.as_tensor(mu, dtype=dx.dtype, device=dx.device), dx.ndim)
    if isinstance(mu, (int, float)) and mu == 0:
        mu = None
    return min_norm_correction(forward_model, r, n_iter=n_iter, rtol=cg_rtol(r) if rtol is None else rtol, damping=mu)


def noise_variance(forward_model) -> float:
    """sigma_y^2 per real coordinate of y (0 for a noiseless model)."""
    sigma = float(getattr(forward_model, "noise_std", 0.0) or 0.0)
    return float(getattr(forward_model, "noise_variance", sigma ** 2)) if sigma > 0 else 0.0


def renoise(sde, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, s: torch.Tensor, eta,
            generator=None) -> torch.Tensor:
    """x_s = alpha_s x0 + std_s (eta z + sqrt(1 - eta^2) eps); t, s (B,) with s < t; eta float or "ddpm"."""
    alpha_s, std_s = sde.scale_std(s)
    if eta == "ddpm":
        alpha_t, std_t = sde.scale_std(t)
        eta = (1 - (std_s * alpha_t / (alpha_s * std_t)) ** 2).clamp(min=0).sqrt()
    eta = append_dims(torch.as_tensor(eta, dtype=x0.dtype, device=x0.device), x0.ndim)
    noise = eta * randn_like(x0, generator) + (1 - eta ** 2).sqrt() * eps
    return append_dims(alpha_s, x0.ndim) * x0 + append_dims(std_s, x0.ndim) * noise

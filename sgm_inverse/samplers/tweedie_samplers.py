"""Posterior samplers built on the Tweedie estimate x0_hat = E[x_0 | x_t]: DDS, DiffPIR, DDNM, PiGDM.

Shared signature (k-diffusion style; the measurement enters through the data step, not a hook):

    sampler(model, forward_model, y, x, times, *, generator=None, callback=None, progress=False, **options)
        -> x0 (B, C, H, W)

model: ScoreModel protocol (`.sde`, `model(x, t)`); forward_model: linear (`forward`, `adjoint`);
y (B, *measurement_shape); x (B, C, H, W) the state at times[0]; times (n,) decreasing (see
`schedules.schedule_times`). Each step at t = times[i]:

    x0_hat = (x_t + std^2 s(x_t, t)) / alpha,  eps_hat = (x_t - alpha x0_hat) / std     (1 NFE)
    x0'    = data step(x0_hat, y)                                                        (method)
    x_s    = alpha_s x0' + std_s (eta z + sqrt(1 - eta^2) eps)  to s = times[i + 1]      (data_steps.renoise)

and after the last time the sampler returns x0'. NFE = n = len(times) for every method; PiGDM adds
one backward pass through the network per step (a vector-Jacobian product, counted as 1 NFE).
alpha, std come from `sde.scale_std`, so VE (alpha = 1) and VP / sub-VP run the same code.

Exactness for a Gaussian prior N(mu, Sigma) with exact scores (tests/test_fast_samplers.py):
  * every step is affine in x_t, so the output is Gaussian; its mean is what the tests check.
  * DDNM (noiseless y; DDS / DiffPIR with converged CG are the same step): the posterior mean is
    the fixed point of the step at t -> 0, reached as steps grow (not at a fixed small step count,
    unless Sigma commutes with A^+ A, e.g. inpainting of independent pixels). eta = 1 shrinks the
    covariance (~1/2 in the tests); eta = "ddpm" gives the posterior's (up to the ancestral step's
    ~1/steps bias) where A^+ A commutes with Sigma; elsewhere it is not established.
  * PiGDM: its p(y | x_t) is exact when p(x_0 | x_t) = N(x0_hat, r_t^2 I), i.e. for an isotropic
    prior N(mu, v I) with data_var = v; then its score is the exact posterior score and the sampler
    is DDIM on the posterior: posterior mean at any step count, posterior covariance as steps grow
    with eta = "ddpm". For other priors it is an approximation.
  * DDS with few CG steps, DiffPIR with noisy y (rho_t uses sigma_t^2 / lam for Cov[x_0 | x_t]) and
    DDNM's noisy variant are approximations for any prior.
"""
from __future__ import annotations

import torch
from tqdm.auto import tqdm

from ..score import tweedie_denoise
from ..utils import append_dims
from .data_steps import noise_variance, pinv_correction, proximal_correction, renoise


def _estimate(model, x, t):
    """(x0_hat, eps_hat, alpha, std) at t (B,): one NFE."""
    alpha, std = model.sde.scale_std(t)
    x0 = tweedie_denoise(model, x, t, model(x, t))
    return x0, (x - append_dims(alpha, x.ndim) * x0) / append_dims(std, x.ndim), alpha, std


def _steps(times, x, progress):
    """(i, t (B,), s (B,) or None) for each time; s is the next time (None after the last)."""
    n = len(times)
    for i in tqdm(range(n), disable=not progress, desc="sampling", leave=False):
        t = times[i].to(x).expand(x.shape[0])
        yield i, t, (times[i + 1].to(x).expand(x.shape[0]) if i + 1 < n else None)


@torch.no_grad()
def dds(model, forward_model, y, x, times, *, generator=None, callback=None, progress=False,
        eta: float = 0.85, cg_iterations: int = 5, gamma: float | None = None):
    """Decomposed Diffusion Sampler (Chung, Lee, Ye, ICLR 2024).

    x0' = M = cg_iterations CG steps on the data term started at x0_hat:
        gamma None:  A^T A x = A^T y                         (the early stop regularises)
        gamma > 0:   (I + gamma A^T A) x = x0_hat + gamma A^T y   (noisy y; the paper's gamma ~ 1)
    then x_s = alpha_s x0' + std_s (eta z + sqrt(1 - eta^2) eps_hat), eps_hat from the network's x0_hat
    (as in the paper). gamma is scale-dependent: it weighs ||A x - y||^2 against ||x - x0_hat||^2.
    Defaults: M = 5, eta = 0.85 (paper); 1 NFE per step, no backward pass.
    """
    rho = 0.0 if gamma is None else 1.0 / gamma
    for i, t, s in _steps(times, x, progress):
        x0, eps, _, _ = _estimate(model, x, t)
        x0c = x0 + proximal_correction(forward_model, y - forward_model(x0), rho, cg_iterations)
        if callback is not None:
            callback(i, t, x, x0c)
        if s is None:
            return x0c
        x = renoise(model.sde, x0c, eps, t, s, eta, generator)


@torch.no_grad()
def diffpir(model, forward_model, y, x, times, *, generator=None, callback=None, progress=False,
            lam: float = 7.0, zeta: float = 0.3, cg_iterations: int = 20, sigma_y: float | None = None):
    """DiffPIR (Zhu et al., CVPR 2023): a proximal data step, then re-noising with the corrected eps.

    x0' = argmin_x ||y - A x||^2 / (2 sigma_y^2) + ||x - x0_hat||^2 / (2 sigma_t^2 / lam)
        i.e. (A^T A + rho_t I) x0' = A^T y + rho_t x0_hat,  rho_t = lam sigma_y^2 / sigma_t^2,
    sigma_t = std / alpha, sigma_y^2 per real coordinate of y (default from the forward model; a
    noiseless model gives rho_t = 0: the projection, as DDNM); solved by CG (cg_iterations).
    x_s = alpha_s x0' + std_s (sqrt(zeta) z + sqrt(1 - zeta) eps'),  eps' = (x_t - alpha x0') / std.
    Defaults lam = 7, zeta = 0.3; 1 NFE per step.
    """
    var_y = noise_variance(forward_model) if sigma_y is None else float(sigma_y) ** 2
    for i, t, s in _steps(times, x, progress):
        x0, _, alpha, std = _estimate(model, x, t)
        rho = lam * var_y * (alpha / std) ** 2
        x0c = x0 + proximal_correction(forward_model, y - forward_model(x0), rho, cg_iterations)
        if callback is not None:
            callback(i, t, x, x0c)
        if s is None:
            return x0c
        eps = (x - append_dims(alpha, x.ndim) * x0c) / append_dims(std, x.ndim)
        x = renoise(model.sde, x0c, eps, t, s, zeta ** 0.5, generator)


def posterior_var(alpha, std, data_var: float = 1.0):
    """r_t^2 = data_var sigma_t^2 / (data_var + sigma_t^2), sigma_t = std / alpha: Var[x_0 | x_t] per
    pixel for a prior N(mu, data_var I) (VP with data_var = 1: std^2; VE: sigma^2 / (1 + sigma^2))."""
    sigma2 = (std / alpha) ** 2
    return data_var * sigma2 / (data_var + sigma2)


@torch.no_grad()
def ddnm(model, forward_model, y, x, times, *, generator=None, callback=None, progress=False,
         eta: float = 0.85, cg_iterations: int = 20, noise_aware: bool = True, data_var: float = 1.0):
    """DDNM (Wang, Yu, Zhang, ICLR 2023): range-null-space decomposition.

    x0' = A^+ y + (I - A^+ A) x0_hat = x0_hat + A^+ (y - A x0_hat), with the operator's exact
    pseudo-inverse where A A^T = c I (inpainting, MRI of complex images) and CG for A^T (A A^T)^-1
    otherwise (CT, MRI of real images). Noisy y (noise_aware): x0_hat + A^T (A A^T + mu_t I)^-1 r with
    mu_t = sigma_y^2 / r_t^2 (`posterior_var`): E[x_0 | x_t, y] if x_0 | x_t ~ N(x0_hat, r_t^2 I); not
    the paper's SVD-domain DDNM+ rule. Then x_s as in DDS with the network's eps_hat. Defaults eta = 0.85.
    """
    var_y = noise_variance(forward_model) if noise_aware else 0.0
    for i, t, s in _steps(times, x, progress):
        x0, eps, alpha, std = _estimate(model, x, t)
        mu = var_y / posterior_var(alpha, std, data_var) if var_y > 0 else 0.0
        x0c = x0 + pinv_correction(forward_model, y - forward_model(x0), mu, cg_iterations)
        if callback is not None:
            callback(i, t, x, x0c)
        if s is None:
            return x0c
        x = renoise(model.sde, x0c, eps, t, s, eta, generator)


def pigdm(model, forward_model, y, x, times, *, generator=None, callback=None, progress=False,
          eta: float = 1.0, scale: float = 1.0, cg_iterations: int = 20, data_var: float = 1.0):
    """PiGDM (Song, Vahdat, Mardani, Kautz, ICLR 2023): pseudo-inverse guidance.

    g = (d x0_hat / d x_t)^T A^T (r_t^2 A A^T + sigma_y^2 I)^-1 (y - A x0_hat)   ~ grad log p_t(y | x_t),
    r_t^2 = `posterior_var(alpha, std, data_var)`; the solve is `pinv_correction` (closed form or CG),
    the Jacobian transpose one vector-Jacobian product (a backward pass through the network).
    g enters the score, s_y = s + scale g, so by Tweedie x0_y = x0_hat + scale std^2 g / alpha and
    eps_y = eps_hat - scale std g; then x_s = alpha_s x0_y + std_s (eta z + sqrt(1 - eta^2) eps_y).
    After the last time: x0_y. Exact posterior score for a prior N(mu, data_var I) (see module doc).
    Defaults scale = 1, eta = 1; 1 NFE + 1 backward pass per step.
    """
    var_y = noise_variance(forward_model)
    for i, t, s in _steps(times, x, progress):
        alpha, std = model.sde.scale_std(t)
        r2 = posterior_var(alpha, std, data_var)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            x0 = tweedie_denoise(model, xg, t, model(xg, t))
            with torch.no_grad():
                r = y - forward_model(x0)
                mu = var_y / r2 if var_y > 0 else 0.0
                u = pinv_correction(forward_model, r, mu, cg_iterations) / append_dims(r2, x.ndim)
            (g,) = torch.autograd.grad(x0, xg, grad_outputs=u)
        with torch.no_grad():
            x0 = x0.detach() + scale * append_dims(std ** 2 / alpha, x.ndim) * g
            if callback is not None:
                callback(i, t, x, x0)
            if s is None:
                return x0
            eps = (x - append_dims(alpha, x.ndim) * x0) / append_dims(std, x.ndim)
            x = renoise(model.sde, x0, eps, t, s, eta, generator)


TWEEDIE_SAMPLERS = {"dds": dds, "diffpir": diffpir, "ddnm": ddnm, "pigdm": pigdm}

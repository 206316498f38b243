"""Predictors: one reverse-time step x_t -> x_{t - dt}.

Shared signature:  predictor(sde, score_fn, x, t, dt, generator) -> (x, x_mean)
x (B, ...), t (B,), dt > 0 a float; x_mean is the update without the fresh noise.
"""
from __future__ import annotations

import math

import torch

from ..utils import append_dims


def randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def euler_maruyama(sde, score_fn, x, t, dt, generator=None):
    """x <- x - [f - g^2 s] dt + g sqrt(dt) z."""
    drift, g = sde.reverse(score_fn).sde(x, t)
    x_mean = x - drift * dt
    return x_mean + append_dims(g, x.ndim) * math.sqrt(dt) * randn_like(x, generator), x_mean


def reverse_diffusion(sde, score_fn, x, t, dt, generator=None):
    """Discretised reverse chain: x <- x - f_i + G_i^2 s + G_i z (VE: G_i^2 = sigma_i^2 - sigma_{i-1}^2)."""
    f, G = sde.reverse(score_fn).discretize(x, t, dt)
    x_mean = x - f
    return x_mean + append_dims(G, x.ndim) * randn_like(x, generator), x_mean


def ancestral(sde, score_fn, x, t, dt, generator=None):
    """Ancestral sampling from the Gaussian posterior q(x_s | x_t, x0_hat), s = t - dt.

    With kernels x_t = a_t x_0 + s_t z: a_ts = a_t / a_s, v_ts = s_t^2 - a_ts^2 s_s^2,
    mean = (a_ts s_s^2 / s_t^2) x_t + (a_s v_ts / s_t^2) x0_hat,  var = v_ts s_s^2 / s_t^2,
    x0_hat = (x_t + s_t^2 s) / a_t. For VE this is Song et al.'s ancestral step exactly; written
    once for all SDEs because it only needs the marginals.
    """
    a_t, s_t = sde.scale_std(t)
    a_s, s_s = sde.scale_std((t - dt).clamp(min=0))
    a_ts = a_t / a_s
    v_ts = (s_t ** 2 - a_ts ** 2 * s_s ** 2).clamp(min=0)
    x0 = (x + append_dims(s_t ** 2, x.ndim) * score_fn(x, t)) / append_dims(a_t, x.ndim)
    c_x, c_0 = a_ts * s_s ** 2 / s_t ** 2, a_s * v_ts / s_t ** 2
    x_mean = append_dims(c_x, x.ndim) * x + append_dims(c_0, x.ndim) * x0
    std = (v_ts * s_s ** 2 / s_t ** 2).sqrt()
    return x_mean + append_dims(std, x.ndim) * randn_like(x, generator), x_mean


def no_predictor(sde, score_fn, x, t, dt, generator=None):
    """Identity (corrector-only sampling, as in NCSN's annealed Langevin dynamics)."""
    return x, x


PREDICTORS = {"euler_maruyama": euler_maruyama, "reverse_diffusion": reverse_diffusion,
              "ancestral": ancestral, "none": no_predictor}

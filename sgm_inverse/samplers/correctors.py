"""Correctors: MCMC steps that leave p_t invariant at a fixed t.

Shared signature:  corrector(sde, score_fn, x, t, dt, snr, generator) -> (x, x_mean)
"""
from __future__ import annotations


from ..utils import append_dims, batch_norm
from .predictors import randn_like


def langevin(sde, score_fn, x, t, dt, snr, generator=None):
    """Langevin step with the snr rule of Song et al. (2021):

    eps = 2 alpha (snr ||z|| / ||s||)^2 (norms averaged over the batch), x <- x + eps s + sqrt(2 eps) z.
    """
    s = score_fn(x, t)
    z = randn_like(x, generator)
    step = 2 * sde.corrector_alpha(t, dt) * (snr * batch_norm(z).mean() / batch_norm(s).mean()) ** 2
    x_mean = x + append_dims(step, x.ndim) * s
    return x_mean + append_dims((2 * step).sqrt(), x.ndim) * z, x_mean


def ald(sde, score_fn, x, t, dt, snr, generator=None):
    """Annealed Langevin dynamics (NCSN): eps = 2 alpha (snr std(t))^2."""
    s = score_fn(x, t)
    z = randn_like(x, generator)
    _, std = sde.scale_std(t)
    step = 2 * sde.corrector_alpha(t, dt) * (snr * std) ** 2
    x_mean = x + append_dims(step, x.ndim) * s
    return x_mean + append_dims((2 * step).sqrt(), x.ndim) * z, x_mean


def no_corrector(sde, score_fn, x, t, dt, snr, generator=None):
    return x, x


CORRECTORS = {"langevin": langevin, "ald": ald, "none": no_corrector}

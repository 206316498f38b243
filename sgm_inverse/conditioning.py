"""How a measurement y conditions the sampler: three rules, each a `Conditioner` (samplers/hooks.py).

    Bayes       s(x_t, t) + grad_x log p_t(y | x_t)                        (exact for time-dependent models)
    Projection  x <- x + T^-1[ lam Lambda (y_t - T x) ],  y_t ~ p_t(y_t | y)  (Song, Shen, Xing, Ermon 2022)
    DPS         x <- x - zeta grad_{x_t} || y - A(x0_hat(x_t)) ||            (Chung et al. 2023)

x is (N, C, H, W) with N = n_samples * B; y is repeated to the same leading size by solve().
"""
from __future__ import annotations

import torch

from .samplers.hooks import Conditioner
from .samplers.predictors import randn_like
from .score import tweedie_denoise
from .utils import append_dims


class Bayes(Conditioner):
    """Adds grad_x log p_t(y | x_t) by autograd of `forward_model.log_likelihood`.

    For a time-dependent model (a noise-conditional classifier) the likelihood is p_t itself and
    the rule is exact; otherwise log p(y | x_0 = x_t) stands in for it (an approximation that
    ignores the noise in x_t, usable only late in sampling).
    """

    def __init__(self, forward_model, y: torch.Tensor):
        self.forward_model, self.y = forward_model, y

    def likelihood_grad(self, x, t):
        fm = self.forward_model
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            ll = fm.log_likelihood(xg, self.y, t if fm.time_dependent else None)
            (grad,) = torch.autograd.grad(ll.sum(), xg)
        return grad

    def score(self, score_fn):
        return lambda x, t: score_fn(x, t) + self.likelihood_grad(x, t)


class Projection(Conditioner):
    """Consistency step in the transform domain of a linear model A = P(Lambda) T.

    Before each predictor and corrector update: draw y_t = alpha(t) y + std(t) A z (fresh z) and set
    x' = T^-1[lam Lambda y_t + (1 - lam) Lambda T x + (I - Lambda) T x], written as the correction
    x + T^-1[lam Lambda (y_t - T x)] so an inexact T^-1 (CT) only touches the correction.
    After the loop: the same with lam = 1 and the clean y.
    """

    def __init__(self, forward_model, y: torch.Tensor, sde, lam: float = 1.0):
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        self.forward_model, self.y, self.sde, self.lam = forward_model, y, sde, float(lam)

    def _consistency(self, x, y_t, lam):
        fm = self.forward_model
        tx = fm.transform(x)
        return x + fm.inverse_transform(lam * fm.mask * (fm.embed(y_t) - tx))

    def before(self, x, t, generator=None):
        alpha, std = self.sde.scale_std(t)
        noise = self.forward_model.forward(randn_like(x, generator))
        y_t = append_dims(alpha, self.y.ndim) * self.y + append_dims(std, self.y.ndim) * noise
        return self._consistency(x, y_t, self.lam)

    def final(self, x, generator=None):
        return self._consistency(x, self.y, 1.0)


class DPS(Conditioner):
    """Diffusion posterior sampling: after each update, x <- x - zeta grad_{x_t} ||y - A(x0_hat(x_t))||.

    The gradient is taken at the state x_t the update started from (the score evaluation of that
    update is reused), through the Tweedie denoiser x0_hat = (x_t + std^2 s) / alpha; ||.|| is the
    per-sample Euclidean norm (complex-safe). This equals Chung et al.'s step zeta'/||r|| * grad||r||^2
    with zeta = 2 zeta'. Because the step is normalised it does not shrink as the residual does:
    the final relative residual is roughly proportional to zeta (measured on 16x16 problems:
    ||Ax - y|| / ||y|| ~ 0.7 zeta for 8-view CT, 0.1 zeta for 40% inpainting), so zeta trades
    data fit against prior and is tuned per task on validation data.
    """

    def __init__(self, forward_model, y: torch.Tensor, score_model, zeta: float = 1.0):
        self.forward_model, self.y, self.score_model, self.zeta = forward_model, y, score_model, float(zeta)
        self._grad = None

    def score(self, score_fn):
        def dps_score(x, t):
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                s = score_fn(xg, t)
                x0 = tweedie_denoise(self.score_model, xg, t, s)
                r = (self.y - self.forward_model(x0)).abs().pow(2).flatten(1).sum(1).sqrt()
                (self._grad,) = torch.autograd.grad(r.sum(), xg)
            return s.detach()
        return dps_score

    def after(self, x, t, generator=None):
        if self._grad is None:
            return x
        x, self._grad = x - self.zeta * self._grad, None
        return x


"""How a measurement y conditions the sampler: three rules, each a `Conditioner` (samplers/hooks.py).

    Bayes       s(x_t, t) + grad_x log p_t(y | x_t)                        (exact for time-dependent models)
    Projection  x <- x + T^-1[ lam Lambda (y_t - T x) ],  y_t ~ p_t(y_t | y)  (Song, Shen, Xing, Ermon 2022)
                or, with consistency="cg", x <- x + lam A^T (A A^T)^-1 (y_t - A x)  (needs only A, A^T)
    DPS         x <- x - zeta grad_{x_t} || y - A(x0_hat(x_t)) ||            (Chung et al. 2023)

x is (N, C, H, W) with N = n_samples * B; y is repeated to the same leading size by solve().
"""
from __future__ import annotations

import torch

from forward_models.base import batched_cg

from .samplers.hooks import Conditioner
from .samplers.predictors import randn_like
from .score import tweedie_denoise
from .utils import append_dims


def min_norm_correction(forward_model, r: torch.Tensor, n_iter: int = 20, rtol: float = 1e-4,
                        damping: torch.Tensor | float | None = None) -> torch.Tensor:
    """The smallest image dx with A dx = r: dx = A^T v, A A^T v = r solved by batched CG from v = 0.

    r: (B, *measurement_shape) in the range of A (y_t - A x is); returns dx (B, C, H, W). From v = 0,
    CG stays in range(A A^T), so it converges to the minimum-norm solution even when A A^T is
    singular (real images under MRI: k-space entries come in conjugate pairs). A sample stops
    updating once its residual is below rtol * ||r||.

    damping mu (float or (B,)): dx = A^T (A A^T + mu I)^-1 r instead, the posterior-mean update of
    dx ~ N(0, c I) given r = A dx + e, e ~ N(0, mu c I): it fits the singular directions of A with
    singular value s by the factor s^2 / (s^2 + mu) instead of fitting the noise in r exactly.
    """
    A, At = forward_model.forward, forward_model.adjoint
    if damping is None:
        normal = lambda v: A(At(v))  # noqa: E731
    else:
        mu = append_dims(torch.as_tensor(damping, dtype=r.real.dtype, device=r.device), r.ndim)
        normal = lambda v: A(At(v)) + mu * v  # noqa: E731
    return At(batched_cg(normal, r, n_iter=n_iter, rtol=rtol))


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

    consistency="cg" replaces the transform-domain step by the smallest correction that fits y_t,
    x + lam A^T (A A^T)^-1 (y_t - A x) (`min_norm_correction`, `cg_iterations` CG steps). It needs
    only forward and adjoint, so it serves operators without a decomposition, and it is an exact
    projection where T^-1 is not: for sparse-view CT the transform-domain step with the FBP inverse
    moves x only part of the way to the measured views in each step.

    noise_aware (forward model with noise_std > 0): an exact fit of y_t would fit the measurement
    noise in it, so the correction is damped, x + lam A^T (A A^T + mu_t I)^-1 (y_t - A x) with
    mu_t = alpha(t)^2 v / std(t)^2, v = forward_model.noise_variance (per real coordinate: sigma_y^2,
    sigma_y^2 / 2 for complex y): the Gaussian posterior-mean update when x_t is off by std(t) per
    pixel and y_t carries alpha(t) times the measurement noise. Early (std >> sigma_y) it is the exact
    projection; late it fits only the directions A measures well (Wiener / Tikhonov). The final step
    uses std(eps). The cg step damps by CG on A A^T + mu_t I. The transform step damps only where it
    is itself the exact projection, i.e. T orthonormal with A A^T = c I (forward_model.normal_scale = c:
    inpainting, grayscale, MRI of complex images); there (A A^T + mu I)^-1 = 1 / (c + mu), so the
    spliced residual is scaled by c / (c + mu_t). Elsewhere (CT, MRI of real images) the transform step
    stays an exact fit. With noise_std = 0 (or noise_aware=False) mu = 0: exact fits.
    """

    CONSISTENCY = ("transform", "cg")

    def __init__(self, forward_model, y: torch.Tensor, sde, lam: float = 1.0, consistency: str = "transform",
                 cg_iterations: int = 20, noise_aware: bool = True):
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"lam must be in [0, 1], got {lam}")
        if consistency not in self.CONSISTENCY:
            raise ValueError(f"consistency must be one of {self.CONSISTENCY}, got {consistency!r}")
        if consistency == "transform" and not getattr(forward_model, "has_decomposition", False):
            raise ValueError("consistency='transform' needs a linear forward model with a decomposition "
                             "A = P(Lambda) T (transform / inverse_transform / mask); use consistency='cg'")
        if int(cg_iterations) < 1:
            raise ValueError(f"cg_iterations must be >= 1, got {cg_iterations}")
        self.forward_model, self.y, self.sde, self.lam = forward_model, y, sde, float(lam)
        self.consistency, self.cg_iterations = consistency, int(cg_iterations)
        sigma = float(getattr(forward_model, "noise_std", 0.0) or 0.0)
        # a model outside the ForwardModel hierarchy may lack noise_variance: take real measurements
        variance = float(getattr(forward_model, "noise_variance", sigma ** 2)) if sigma > 0 else 0.0
        self.noise_variance = variance if noise_aware else 0.0
        # c of A A^T = c I with T orthonormal, where the transform step is the exact projection
        self.normal_scale = getattr(forward_model, "normal_scale", None) if consistency == "transform" else None

    @property
    def damped(self) -> bool:
        """Whether the consistency step is noise-aware (damped) rather than an exact fit."""
        return self.noise_variance > 0 and (self.consistency == "cg" or self.normal_scale is not None)

    def _damping(self, alpha, std):
        """mu_t = alpha^2 v / std^2 (B,) of the noise-aware step, or None for an exact fit."""
        if not self.damped:
            return None
        return alpha ** 2 * self.noise_variance / std.clamp_min(1e-12) ** 2

    def _consistency(self, x, y_t, lam, damping=None):
        fm = self.forward_model
        if self.consistency == "cg":
            return x + lam * min_norm_correction(fm, y_t - fm(x), self.cg_iterations, damping=damping)
        tx = fm.transform(x)
        gain = lam * fm.mask
        if damping is not None:  # (A A^T + mu I)^-1 = 1 / (c + mu) on the measured entries
            c = self.normal_scale
            gain = gain * append_dims(c / (c + damping.to(tx.real.dtype)), tx.ndim)
        return x + fm.inverse_transform(gain * (fm.embed(y_t) - tx))

    def before(self, x, t, generator=None):
        alpha, std = self.sde.scale_std(t)
        noise = self.forward_model.forward(randn_like(x, generator))
        y_t = append_dims(alpha, self.y.ndim) * self.y + append_dims(std, self.y.ndim) * noise
        return self._consistency(x, y_t, self.lam, self._damping(alpha, std))

    def final(self, x, generator=None):
        t = torch.full((x.shape[0],), self.sde.eps, device=x.device)
        alpha, std = self.sde.scale_std(t)
        return self._consistency(x, self.y, 1.0, self._damping(alpha, std))


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


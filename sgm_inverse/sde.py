"""Forward SDEs dx = f(x, t) dt + g(t) dw of Song et al. (ICLR 2021) and their reverses.

Each SDE has Gaussian perturbation kernels  x_t | x_0 ~ N(alpha(t) x_0, std(t)^2 I):

    VE      alpha = 1,                    std = sigma_min (sigma_max / sigma_min)^t
    VP      alpha = exp(-B(t) / 2),       std = sqrt(1 - exp(-B(t)))
    sub-VP  alpha = exp(-B(t) / 2),       std = 1 - exp(-B(t))
    with B(t) = int_0^t beta(s) ds = beta_min t + (beta_max - beta_min) t^2 / 2.

Tensors: x is (B, ...), t is (B,) in [eps, T]; per-sample scalars are broadcast with
`append_dims`. Samplers only use the methods below, never the concrete type, so an
analytic model and a trained one are interchangeable.
"""
from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Callable

import torch

from .utils import append_dims

ScoreFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class SDE(abc.ABC):
    """Abstract forward SDE on [0, T] with Gaussian marginals."""

    T: float = 1.0
    eps: float = 1e-5

    @abc.abstractmethod
    def sde(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift f(x, t) (B, ...) and diffusion g(t) (B,)."""

    @abc.abstractmethod
    def scale_std(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Perturbation kernel coefficients alpha(t), std(t), each (B,)."""

    @abc.abstractmethod
    def config(self) -> dict:
        """JSON-serialisable constructor arguments plus the class name."""

    def marginal_prob(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean alpha(t) x0 (B, ...) and std (B,) of p_t(x_t | x_0)."""
        alpha, std = self.scale_std(t)
        return append_dims(alpha, x0.ndim) * x0, std

    def prior_std(self) -> float:
        return float(self.scale_std(torch.tensor([self.T], dtype=torch.float64))[1])

    def prior_sampling(self, shape, generator: torch.Generator | None = None, device=None,
                       dtype=torch.float32, mean: torch.Tensor | None = None) -> torch.Tensor:
        """Draw x_T ~ N(alpha(T) mean, std(T)^2 I), shape (B, ...); mean (...) is the data mean E[x_0].

        p_T = p_data * N(0, std(T)^2 I) has mean alpha(T) E[x_0]; without `mean` this is the
        data-independent N(0, std(T)^2 I), which is off by |E[x_0]| / std(T) standard deviations
        (negligible for VP / sub-VP, where alpha(T) ~ 0; not for a VE sigma_max near |E[x_0]|).
        """
        z = torch.randn(shape, generator=generator, device=device, dtype=dtype)
        x = z * self.prior_std()
        if mean is not None:
            alpha = float(self.scale_std(torch.tensor([self.T], dtype=torch.float64))[0])
            x = x + alpha * mean.to(device=x.device, dtype=dtype)
        return x

    def prior_logp(self, z: torch.Tensor) -> torch.Tensor:
        s2 = self.prior_std() ** 2
        n = z[0].numel()
        return -0.5 * n * math.log(2 * math.pi * s2) - z.flatten(1).pow(2).sum(1) / (2 * s2)

    def discretize(self, x: torch.Tensor, t: torch.Tensor, dt: float) -> tuple[torch.Tensor, torch.Tensor]:
        """One step x_{t} -> x_{t+dt} of the forward chain: x + f_i + G_i z.

        Default is Euler-Maruyama: f_i = f dt, G_i = g sqrt(dt). Returns (f_i, G_i (B,)).
        """
        drift, diffusion = self.sde(x, t)
        return drift * dt, diffusion * math.sqrt(dt)

    def corrector_alpha(self, t: torch.Tensor, dt: float) -> torch.Tensor:
        """alpha_i in the Langevin step size 2 alpha (snr ||z|| / ||s||)^2 (1 for VE)."""
        return torch.ones_like(t)

    def reverse(self, score_fn: ScoreFn, probability_flow: bool = False) -> "ReverseSDE":
        return ReverseSDE(self, score_fn, probability_flow)


@dataclass
class ReverseSDE:
    """dx = [f - c g^2 s] dt + [c != 1/2] g dw_bar with c = 1 (SDE) or 1/2 (probability flow)."""

    forward_sde: SDE
    score_fn: ScoreFn
    probability_flow: bool = False

    def sde(self, x, t):
        drift, g = self.forward_sde.sde(x, t)
        c = 0.5 if self.probability_flow else 1.0
        drift = drift - c * append_dims(g ** 2, x.ndim) * self.score_fn(x, t)
        return drift, torch.zeros_like(g) if self.probability_flow else g

    def discretize(self, x, t, dt: float):
        """Reverse-diffusion step x_{t} -> x_{t-dt}: x_new = x - f_rev + G_rev z."""
        f, G = self.forward_sde.discretize(x, t, dt)
        c = 0.5 if self.probability_flow else 1.0
        f_rev = f - c * append_dims(G ** 2, x.ndim) * self.score_fn(x, t)
        return f_rev, torch.zeros_like(G) if self.probability_flow else G


class VESDE(SDE):
    """Variance exploding: dx = sigma(t) sqrt(2 ln(sigma_max/sigma_min)) dw."""

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 50.0):
        if not (math.isfinite(sigma_min) and math.isfinite(sigma_max) and 0 < sigma_min < sigma_max):
            raise ValueError(f"need 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.eps = 1e-5

    def sigma(self, t):
        return self.sigma_min * (self.sigma_max / self.sigma_min) ** t

    def sde(self, x, t):
        g = self.sigma(t) * math.sqrt(2 * math.log(self.sigma_max / self.sigma_min))
        return torch.zeros_like(x), g

    def scale_std(self, t):
        return torch.ones_like(t), self.sigma(t)

    def discretize(self, x, t, dt):
        # Exact variance increment of the discrete NCSN chain: G^2 = sigma_i^2 - sigma_{i-1}^2.
        sigma = self.sigma(t)
        prev = torch.where(t - dt > 0, self.sigma((t - dt).clamp(min=0)), torch.zeros_like(t))
        return torch.zeros_like(x), (sigma ** 2 - prev ** 2).sqrt()

    def config(self):
        return {"type": "VESDE", "sigma_min": self.sigma_min, "sigma_max": self.sigma_max}


class _BetaSDE(SDE):
    """Shared linear schedule beta(t) = beta_min + t (beta_max - beta_min)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not (math.isfinite(beta_min) and math.isfinite(beta_max) and 0 <= beta_min < beta_max):
            raise ValueError(f"need 0 <= beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = float(beta_min), float(beta_max)
        self.eps = 1e-3

    def beta(self, t):
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def beta_integral(self, t):
        return self.beta_min * t + 0.5 * (self.beta_max - self.beta_min) * t ** 2

    def corrector_alpha(self, t, dt):
        return 1.0 - self.beta(t) * dt

    def config(self):
        return {"type": type(self).__name__, "beta_min": self.beta_min, "beta_max": self.beta_max}


class VPSDE(_BetaSDE):
    """Variance preserving: dx = -1/2 beta(t) x dt + sqrt(beta(t)) dw."""

    def sde(self, x, t):
        beta = self.beta(t)
        return -0.5 * append_dims(beta, x.ndim) * x, beta.sqrt()

    def scale_std(self, t):
        b = self.beta_integral(t)
        return torch.exp(-0.5 * b), (-torch.expm1(-b)).sqrt()

    def discretize(self, x, t, dt):
        # DDPM chain x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) z with beta_i = beta(t) dt.
        beta_i = self.beta(t) * dt
        f = (append_dims((1 - beta_i).sqrt(), x.ndim) - 1) * x
        return f, beta_i.sqrt()


class SubVPSDE(_BetaSDE):
    """sub-VP: dx = -1/2 beta x dt + sqrt(beta (1 - exp(-2 B(t)))) dw; std = 1 - exp(-B(t))."""

    def sde(self, x, t):
        beta = self.beta(t)
        g2 = beta * (-torch.expm1(-2 * self.beta_integral(t)))
        return -0.5 * append_dims(beta, x.ndim) * x, g2.sqrt()

    def scale_std(self, t):
        b = self.beta_integral(t)
        return torch.exp(-0.5 * b), -torch.expm1(-b)


SDES = {"VESDE": VESDE, "VPSDE": VPSDE, "SubVPSDE": SubVPSDE}


def sde_from_config(cfg: dict) -> SDE:
    cfg = dict(cfg)
    kind = cfg.pop("type")
    if kind not in SDES:
        raise ValueError(f"unknown SDE type {kind!r}; expected one of {sorted(SDES)}")
    return SDES[kind](**cfg)

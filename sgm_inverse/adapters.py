"""Score models from elsewhere: an epsilon-prediction network (DDPM, diffusers) or an EDM denoiser.

Both adapters return ScoreModel-protocol objects (`.sde`, `__call__(x, t) -> score`, x (B, C, H, W),
t (B,)) that solve(), pc_sample() and ode_sample() use unchanged.

Coordinates. Images, measurements and operators stay in [0, 1]; a network trained on data in
data_range = (lo, hi) sees x_net = lo + k x0, k = hi - lo. Noise is scaled with the data, so a noisy
x_t = alpha x0 + std z (caller coordinates) is the network's x_net,t = k x_t + alpha lo with noise level
std_net = k std (a [-1, 1] network: sigma_net = 2 sigma), and the change of variables multiplies the
score by the Jacobian k:  s(x_t) = k s_net(x_net,t).

from_epsilon: DDPM's x_n = sqrt(abar_n) x0 + sqrt(1 - abar_n) eps, n = 0 ... N-1. The SDE is
`DiscreteVPSDE`: alpha(t)^2 interpolates log abar log-linearly between t_n = (n + 1) / N (alpha(0) = 1),
so at t = t_n the marginals are exactly DDPM's (beta(t) = -d log alpha^2 / dt is piecewise constant,
N log(abar_{n-1} / abar_n) ~ N beta_n), and std(t) = sqrt(1 - alpha^2) / k. Sampling runs on
t in [1 / N, 1]. At any other t the network is called at the timestep n whose noise level
sigma_n = sqrt(1 - abar_n) / sqrt(abar_n) is nearest to sigma(t) = std_net / alpha (in log sigma), with
its input rescaled to that timestep's signal scale, x_in = (sqrt(abar_n) / alpha) x_net,t, and
s = -eps_hat / std (the score of VP models, Song et al. 2021). Exact at the N timesteps; between them
the noise level is off by at most half a timestep.

from_denoiser: EDM's x = x0 + sigma n with D(x; sigma) ~ E[x0 | x]. The SDE is
VESDE(sigma_min / k, sigma_max / k) (the geometric schedule of Song et al.; EDM's own rho = 7 time grid
is not used) and s = (D_caller - x) / sigma^2 with D_caller = (D(x_net, k sigma) - lo) / k.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .sde import SDE, VESDE
from .utils import append_dims, time_vector

__all__ = ["from_epsilon", "from_denoiser", "DiscreteVPSDE", "EpsilonScore", "DenoiserScore"]


def _data_range(data_range) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in data_range)
    except (TypeError, ValueError):
        raise ValueError(f"data_range must be a pair (lo, hi), got {data_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        raise ValueError(f"data_range must be finite with lo < hi, got {data_range!r}")
    return lo, hi


class DiscreteVPSDE(SDE):
    """VP SDE through a DDPM schedule (module docstring), in coordinates where the noise is std_net / scale.

    dx = -1/2 beta(t) x dt + sqrt(beta(t)) / scale dw;  alpha(t_n)^2 = alphas_cumprod[n] at t_n = (n + 1) / N;
    std(t) = sqrt(1 - alpha(t)^2) / scale.  T = 1, eps = 1 / N. `discretize` is the exact DDPM step over
    [t - dt, t], beta_i = 1 - alpha(t)^2 / alpha(t - dt)^2 (over one timestep: DDPM's beta_n = 1 - abar_n / abar_{n-1}).
    """

    def __init__(self, alphas_cumprod, scale: float = 1.0):
        ac = torch.as_tensor(alphas_cumprod, dtype=torch.float64).flatten().cpu()
        if ac.numel() < 2 or not torch.isfinite(ac).all() or (ac <= 0).any() or (ac >= 1).any():
            raise ValueError(f"alphas_cumprod must hold at least 2 values in (0, 1), got {ac.numel()} values "
                             f"in [{float(ac.min()):.3g}, {float(ac.max()):.3g}]")
        if (ac[1:] >= ac[:-1]).any():
            raise ValueError("alphas_cumprod must be strictly decreasing (more noise at later timesteps)")
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f"scale must be positive, got {scale}")
        self.alphas_cumprod, self.scale, self.N = ac, float(scale), ac.numel()
        self.T, self.eps = 1.0, 1.0 / self.N
        self._log_ac = torch.cat([torch.zeros(1, dtype=torch.float64), ac.log()])      # at t = n / N, n = 0..N
        self._log_sigma2 = torch.log1p(-ac) - ac.log()                                 # increasing in n

    def _interval(self, t):
        """Index i of the interval (i / N, (i + 1) / N] holding t, and the weight of its right end."""
        u = (t.double() * self.N).clamp(0, self.N)
        i = (torch.ceil(u) - 1).clamp(0, self.N - 1)
        return i.long(), u - i

    def _log_alpha2(self, t):
        i, w = self._interval(t)
        la = self._log_ac.to(t.device)
        return la[i] * (1 - w) + la[i + 1] * w

    def beta(self, t):
        i, _ = self._interval(t)
        la = self._log_ac.to(t.device)
        return ((la[i] - la[i + 1]) * self.N).to(t.dtype)

    def sde(self, x, t):
        beta = self.beta(t)
        return -0.5 * append_dims(beta, x.ndim) * x, beta.sqrt() / self.scale

    def scale_std(self, t):
        la2 = self._log_alpha2(t)
        return (0.5 * la2).exp().to(t.dtype), ((-torch.expm1(la2)).sqrt() / self.scale).to(t.dtype)

    def _beta_step(self, t, dt):
        """beta_i = 1 - (alpha(t) / alpha(t - dt))^2: the exact DDPM step from t - dt to t (beta(t) dt to first
        order, and in [0, 1) for any dt, so coarse steps stay finite)."""
        return (-torch.expm1(self._log_alpha2(t) - self._log_alpha2((t - dt).clamp(min=0)))).to(t.dtype)

    def discretize(self, x, t, dt):
        # DDPM chain x_i = sqrt(1 - beta_i) x_{i-1} + sqrt(beta_i) / scale z
        beta_i = self._beta_step(t, dt)
        return (append_dims((1 - beta_i).sqrt(), x.ndim) - 1) * x, beta_i.sqrt() / self.scale

    def corrector_alpha(self, t, dt):
        return 1.0 - self._beta_step(t, dt)

    def timestep(self, t) -> torch.Tensor:
        """(B,) int64: the DDPM timestep whose noise level sigma_n is nearest to sigma(t) in log sigma."""
        la2 = self._log_alpha2(t)
        log_sigma2 = torch.log(-torch.expm1(la2)) - la2
        table = self._log_sigma2.to(t.device)
        hi = torch.searchsorted(table, log_sigma2.contiguous()).clamp(1, self.N - 1)
        lo = hi - 1
        nearer_lo = (log_sigma2 - table[lo]).abs() <= (table[hi] - log_sigma2).abs()
        return torch.where(nearer_lo, lo, hi)

    def config(self):
        return {"type": "DiscreteVPSDE", "alphas_cumprod": self.alphas_cumprod.tolist(), "scale": self.scale}


def _device_of(module) -> torch.device | None:
    p = next(iter(module.parameters()), None) if isinstance(module, nn.Module) else None
    return None if p is None else p.device


def _call(fn, x, second, what: str):
    """fn(x, second) with x in the network's dtype when it is a module with weights; result as x's dtype."""
    p = next(iter(fn.parameters()), None) if isinstance(fn, nn.Module) else None
    out = fn(x if p is None or not p.is_floating_point() else x.to(p.dtype), second)
    if not isinstance(out, torch.Tensor):
        raise ValueError(f"the {what} returned {type(out).__name__}; expected a tensor of shape {tuple(x.shape)} "
                         f"(for a diffusers model pass lambda x, t: model(x, t).sample)")
    if out.shape[1] == 2 * x.shape[1] and out.shape[2:] == x.shape[2:]:
        out = out[:, : x.shape[1]]   # epsilon and a learned variance (guided-diffusion): keep epsilon
    if out.shape != x.shape:
        raise ValueError(f"the {what} returned shape {tuple(out.shape)}; expected {tuple(x.shape)}")
    return out.to(x.dtype)


class EpsilonScore(nn.Module):
    """Score of an epsilon-prediction network eps_fn(x_net, timesteps (B,) int64); see `from_epsilon`."""

    def __init__(self, eps_fn, alphas_cumprod, data_range=(0.0, 1.0)):
        super().__init__()
        if not callable(eps_fn):
            raise ValueError(f"eps_fn must be callable as eps_fn(x, timesteps), got {type(eps_fn).__name__}")
        self.lo, hi = _data_range(data_range)
        self.k = hi - self.lo
        self.eps_fn = eps_fn   # an nn.Module is registered: .to() and .parameters() reach it
        self.sde = DiscreteVPSDE(alphas_cumprod, scale=self.k)
        self.image_shape = None

    @property
    def device(self) -> torch.device | None:
        return _device_of(self.eps_fn)

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        t = time_vector(t, x.shape[0], x)
        alpha, std = self.sde.scale_std(t)
        n = self.sde.timestep(t)
        a_n = self.sde.alphas_cumprod.to(x.device)[n].sqrt().to(x.dtype)
        x_net = self.k * x + append_dims(alpha * self.lo, x.ndim)
        eps = _call(self.eps_fn, x_net * append_dims(a_n / alpha, x.ndim), n, "eps_fn")
        return -eps / append_dims(std, x.ndim)


class DenoiserScore(nn.Module):
    """Score of an EDM denoiser denoiser_fn(x_net, sigma_net (B,)); see `from_denoiser`."""

    def __init__(self, denoiser_fn, sigma_min: float, sigma_max: float, data_range=(0.0, 1.0)):
        super().__init__()
        if not callable(denoiser_fn):
            raise ValueError(f"denoiser_fn must be callable as denoiser_fn(x, sigma), got "
                             f"{type(denoiser_fn).__name__}")
        self.lo, hi = _data_range(data_range)
        self.k = hi - self.lo
        self.denoiser_fn = denoiser_fn
        self.sde = VESDE(float(sigma_min) / self.k, float(sigma_max) / self.k)
        self.image_shape = None

    @property
    def device(self) -> torch.device | None:
        return _device_of(self.denoiser_fn)

    def denoise(self, x: torch.Tensor, t) -> torch.Tensor:
        """E[x0 | x_t] in [0, 1] coordinates, shape of x."""
        t = time_vector(t, x.shape[0], x)
        _, sigma = self.sde.scale_std(t)
        d = _call(self.denoiser_fn, self.lo + self.k * x, self.k * sigma, "denoiser_fn")
        return (d - self.lo) / self.k

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        t = time_vector(t, x.shape[0], x)
        _, sigma = self.sde.scale_std(t)
        return (self.denoise(x, t) - x) / append_dims(sigma ** 2, x.ndim)


def from_epsilon(eps_fn, alphas_cumprod, *, data_range=(0.0, 1.0)) -> EpsilonScore:
    """A ScoreModel from an epsilon-prediction network: eps_fn(x, timesteps) with x (B, C, H, W) in the
    network's range and timesteps (B,) int64 indices into alphas_cumprod (N,) (the DDPM / diffusers
    convention: `scheduler.alphas_cumprod`). data_range: the network's data range, (-1, 1) for most DDPM
    and diffusers models. An output of 2C channels (epsilon and a learned variance) keeps the first C.
    See the module docstring for the SDE (`DiscreteVPSDE`, t in [1 / N, 1]) and the timestep choice."""
    return EpsilonScore(eps_fn, alphas_cumprod, data_range)


def from_denoiser(denoiser_fn, *, sigma_min: float, sigma_max: float, data_range=(0.0, 1.0)) -> DenoiserScore:
    """A ScoreModel from an EDM-style denoiser D(x, sigma) ~ E[x0 | x0 + sigma n] with x (B, C, H, W) in
    the network's range and sigma (B,); sigma_min / sigma_max: the noise levels it was trained for, in
    its own range (EDM: 0.002 / 80 on [-1, 1] data). The SDE is VESDE(sigma_min / k, sigma_max / k),
    k = data_range width."""
    return DenoiserScore(denoiser_fn, sigma_min, sigma_max, data_range)

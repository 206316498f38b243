"""Score models: a network plus an SDE, with all noise preconditioning in one place.

Any SDE here perturbs data as x_t = alpha(t) x_0 + std(t) z. Dividing by alpha gives a
variance-exploding view x~ = x_t / alpha with noise level sigma~ = std / alpha, in which
the EDM preconditioning (Karras et al. 2022) keeps the network's input and target O(1):

    D(x~; sigma~) = c_skip x~ + c_out F(c_in x~, c_noise)          (denoiser, ~ E[x_0 | x_t])
    c_skip = sd^2 / (sigma~^2 + sd^2),  c_out = sigma~ sd / sqrt(sigma~^2 + sd^2),
    c_in = 1 / sqrt(sigma~^2 + sd^2),   c_noise = ln(sigma~) / 4,

and the score follows from Tweedie's formula:  s(x_t, t) = (alpha D - x_t) / std^2.
Shapes: x (B, C, H, W), t (B,).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .sde import SDE
from .utils import append_dims, time_vector


def tweedie_denoise(score_model, x: torch.Tensor, t, score: torch.Tensor | None = None) -> torch.Tensor:
    """E[x_0 | x_t] = (x_t + std^2 s(x_t, t)) / alpha for any object with `.sde` and `__call__`."""
    t = time_vector(t, x.shape[0], x)
    alpha, std = score_model.sde.scale_std(t)
    if score is None:
        score = score_model(x, t)
    return (x + append_dims(std ** 2, x.ndim) * score) / append_dims(alpha, x.ndim)


class ScoreModel(nn.Module):
    """s_theta(x, t) ~ grad_x log p_t(x) from a network F(x, c_noise) and an SDE.

    Satisfies the ScoreModel protocol (`.sde`, `__call__(x, t) -> score`). `config` records
    what a checkpoint needs to rebuild it (see `sgm_inverse.checkpoints`).

    `autocast` (e.g. torch.bfloat16; None = off) runs the network alone under `torch.autocast` on
    the input's device, so sampling is faster on hardware with bfloat16 kernels while the
    preconditioning, the score and everything a sampler does with it (forward models, data
    consistency) stay in the input's precision.

    `cpu_chunk_pixels`: on the CPU the network sees the batch in chunks of about this many pixels
    (B x H x W; at least one image a chunk; None = one call), except in a training step (train mode
    with autograd on), which keeps one call. Its time per pixel grows with the pixels of a call once
    the activations outgrow the caches: `general` (2.1 M parameters) on one thread of this project's
    CPU took 59 ms per 64 x 64 pixels for 8 images of 128 x 128 in one call and 46 in chunks of
    32,768 pixels (benchmarks/speed_chunks.py). Every operation of the shipped networks works per
    image (GroupNorm, convolutions), so the chunks give the same result to float32 rounding.
    """

    def __init__(self, network: nn.Module, sde: SDE, sigma_data: float = 0.5, config: dict | None = None,
                 autocast: torch.dtype | None = None, prior_mean: torch.Tensor | None = None,
                 cpu_chunk_pixels: int | None = 32768):
        super().__init__()
        self.network, self.sde, self.sigma_data = network, sde, float(sigma_data)
        self.config = dict(config or {})
        self.autocast = autocast
        self.prior_mean = prior_mean
        self.cpu_chunk_pixels = cpu_chunk_pixels

    @property
    def prior_mean(self) -> torch.Tensor | None:
        """Mean image (C, H, W) of the training data, or None (then samplers start at N(0, std(T)^2 I)).

        p_T = p_data * N(0, std(T)^2 I) has mean alpha(T) E[x_0], not 0: a VE model whose sigma_max is not
        large against |E[x_0]| (patches32: |mean| = 26 at sigma_max = 25) started at 0 favours images of small
        norm (dark ones). `SDE.prior_sampling(mean=...)` starts at the right mean. A buffer: it follows .to().
        """
        return self._buffers.get("_prior_mean")

    @prior_mean.setter
    def prior_mean(self, mean: torch.Tensor | None) -> None:
        self.register_buffer("_prior_mean", None if mean is None else mean.detach().clone(), persistent=False)

    @property
    def image_shape(self):
        shape = self.config.get("image_shape")
        if shape is not None:
            return tuple(shape)
        net_cfg = getattr(self.network, "config", None)
        if net_cfg is not None:
            return (net_cfg.in_channels, net_cfg.image_size, net_cfg.image_size)
        return None

    @property
    def resolution_free(self) -> bool:
        """True when the network has no attention (UNetConfig.attn_resolutions empty, mid_attention off):
        a purely convolutional network that applies at any size divisible by `size_multiple`, with a
        prior mean of one number per channel. A model trained on crops of several sizes is one."""
        cfg = getattr(self.network, "config", None)
        return cfg is not None and not tuple(cfg.attn_resolutions) and not getattr(cfg, "mid_attention", True)

    @property
    def size_multiple(self) -> int:
        """H and W must be multiples of this (2^(levels - 1) of the U-Net); 1 for other networks."""
        cfg = getattr(self.network, "config", None)
        return 2 ** (len(cfg.channel_mult) - 1) if cfg is not None and hasattr(cfg, "channel_mult") else 1

    def accepts_shape(self, shape) -> bool:
        """Whether images of (C, H, W) = shape can be given to this model."""
        shape, own = tuple(shape), self.image_shape
        if own is None or shape == tuple(own):
            return True
        m = self.size_multiple
        return (self.resolution_free and len(shape) == 3 and shape[0] == own[0]
                and shape[1] % m == 0 and shape[2] % m == 0)

    def denoise(self, x: torch.Tensor, t) -> torch.Tensor:
        """Tweedie denoiser D(x_t, t) ~ E[x_0 | x_t], shape of x."""
        t = time_vector(t, x.shape[0], x)
        alpha, std = self.sde.scale_std(t)
        sigma = std / alpha
        sd2 = self.sigma_data ** 2
        c_skip, c_out = sd2 / (sigma ** 2 + sd2), sigma * self.sigma_data / (sigma ** 2 + sd2).sqrt()
        c_in = 1.0 / (sigma ** 2 + sd2).sqrt()
        x_tilde = x / append_dims(alpha, x.ndim)
        # no context at all when off: an autocast(enabled=False) would switch off a caller's autocast (training)
        region = torch.autocast(x.device.type, dtype=self.autocast) if self.autocast else contextlib.nullcontext()
        # the network runs in its weights' precision (float64 sampling with float32 weights: the
        # preconditioning, the score and the sampler stay in float64)
        p = next(iter(self.network.parameters()), None)
        net_dtype = p.dtype if p is not None and p.is_floating_point() else x.dtype
        with region:
            out = self._network((append_dims(c_in, x.ndim) * x_tilde).to(net_dtype), (sigma.log() / 4).to(net_dtype))
        return append_dims(c_skip, x.ndim) * x_tilde + append_dims(c_out, x.ndim) * out.to(x.dtype)

    def _network(self, x_in: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        """F(x_in, c_noise) for x_in (B, C, H, W), c_noise (B,); in chunks of images on the CPU (see the class)."""
        pixels = x_in.shape[0] * x_in[0, 0].numel()
        if ((self.training and torch.is_grad_enabled()) or x_in.device.type != "cpu" or not self.cpu_chunk_pixels
                or pixels <= self.cpu_chunk_pixels):
            return self.network(x_in, c_noise)
        per_chunk = max(1, self.cpu_chunk_pixels // x_in[0, 0].numel())
        return torch.cat([self.network(xc, cc) for xc, cc in zip(x_in.split(per_chunk), c_noise.split(per_chunk))])

    def forward(self, x: torch.Tensor, t) -> torch.Tensor:
        t = time_vector(t, x.shape[0], x)
        alpha, std = self.sde.scale_std(t)
        return (append_dims(alpha, x.ndim) * self.denoise(x, t) - x) / append_dims(std ** 2, x.ndim)


class GaussianScore:
    """Exact score of p_t when p_0 = N(mu, Sigma) on flattened (B, D) or image tensors.

    p_t = N(alpha mu, alpha^2 Sigma + std^2 I), so s(x, t) = -(alpha^2 Sigma + std^2 I)^{-1} (x - alpha mu).
    """

    def __init__(self, sde: SDE, mean: torch.Tensor, cov: torch.Tensor):
        self.sde, self.mean, self.cov = sde, mean.double(), cov.double()
        self.image_shape = tuple(mean.shape)

    def __call__(self, x, t):
        shape = x.shape
        xf = x.reshape(shape[0], -1).double()
        t = time_vector(t, shape[0], xf)
        alpha, std = self.sde.scale_std(t)
        eye = torch.eye(xf.shape[1], dtype=xf.dtype, device=xf.device)
        cov_t = alpha[:, None, None] ** 2 * self.cov.to(xf.device) + std[:, None, None] ** 2 * eye
        diff = xf - alpha[:, None] * self.mean.reshape(-1).to(xf.device)
        s = -torch.linalg.solve(cov_t, diff.unsqueeze(-1)).squeeze(-1)
        return s.reshape(shape).to(x.dtype)


class GaussianMixtureScore:
    """Exact score of p_t for p_0 = sum_k w_k N(mu_k, s_k^2 I) on (B, D) tensors (isotropic components)."""

    def __init__(self, sde: SDE, weights: torch.Tensor, means: torch.Tensor, stds: torch.Tensor):
        self.sde = sde
        self.weights = weights.double() / weights.sum()
        self.means, self.stds = means.double(), stds.double()
        self.image_shape = (means.shape[1],)

    def __call__(self, x, t):
        xf = x.reshape(x.shape[0], -1).double()
        t = time_vector(t, x.shape[0], xf)
        alpha, std = self.sde.scale_std(t)
        var = alpha[:, None] ** 2 * self.stds.to(xf)[None] ** 2 + std[:, None] ** 2     # (B, K)
        diff = xf[:, None, :] - alpha[:, None, None] * self.means.to(xf)[None]          # (B, K, D)
        d = xf.shape[1]
        logp = self.weights.to(xf).log()[None] - 0.5 * diff.pow(2).sum(-1) / var - 0.5 * d * var.log()
        resp = torch.softmax(logp, dim=1)                                                # (B, K)
        s = -(resp[:, :, None] * diff / var[:, :, None]).sum(1)
        return s.reshape(x.shape).to(x.dtype)

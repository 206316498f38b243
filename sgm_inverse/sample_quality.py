"""Sample quality: the Fréchet distance between two image sets in a fixed random feature space.

    FD = ||mu_1 - mu_2||^2 + tr(C_1 + C_2 - 2 (C_1^{1/2} C_2 C_1^{1/2})^{1/2})

is the 2-Wasserstein distance between Gaussians N(mu_1, C_1), N(mu_2, C_2) fitted to the features
of each set (FID without Inception: the features come from a small conv net whose weights are drawn
once from a seeded `torch.Generator`, so every machine and run computes the same numbers, offline).
Values are comparable only for the same feature net (same seed, shape, n_features) and the same N:
the estimate is biased upwards by finite N, and with N <~ 100 images it is noisy. Always compare it
with the floor FD(half of the real images, other half) computed on the same N.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _as64(a) -> torch.Tensor:
    return torch.as_tensor(a).detach().to("cpu", torch.float64)


def _sym_sqrt(c: torch.Tensor) -> torch.Tensor:
    """C^{1/2} of a symmetric PSD (D, D) matrix: V diag(sqrt(max(lambda, 0))) V^T."""
    lam, v = torch.linalg.eigh((c + c.T) / 2)
    return (v * lam.clamp_min(0).sqrt()) @ v.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """FD between N(mu1, cov1) and N(mu2, cov2); mu (D,), cov (D, D); tensors or arrays, any float dtype.

    Computed in float64 with symmetric eigendecompositions only: tr (C1^{1/2} C2 C1^{1/2})^{1/2} is the
    sum of the square roots of the (clamped, >= 0) eigenvalues of the symmetric PSD matrix C1^{1/2} C2 C1^{1/2}.
    """
    mu1, cov1, mu2, cov2 = map(_as64, (mu1, cov1, mu2, cov2))
    if mu1.shape != mu2.shape or mu1.ndim != 1 or cov1.shape != cov2.shape or cov1.shape != (len(mu1),) * 2:
        raise ValueError(f"expected mu (D,) and cov (D, D) for both sets, got {tuple(mu1.shape)}, "
                         f"{tuple(cov1.shape)}, {tuple(mu2.shape)}, {tuple(cov2.shape)}")
    s1 = _sym_sqrt(cov1)
    m = s1 @ cov2 @ s1
    tr_sqrt = torch.linalg.eigvalsh((m + m.T) / 2).clamp_min(0).sqrt().sum()
    fd = (mu1 - mu2).square().sum() + torch.trace(cov1) + torch.trace(cov2) - 2 * tr_sqrt
    return max(float(fd), 0.0)  # rounding can leave ~ -1e-15 for identical statistics


def feature_stats(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) features -> (mu (D,), unbiased covariance (D, D)), both float64; needs N >= 2."""
    f = _as64(features)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"expected features (N, D) with N >= 2, got shape {tuple(f.shape)}")
    mu = f.mean(0)
    d = f - mu
    return mu, d.T @ d / (f.shape[0] - 1)


class RandomFeatures(nn.Module):
    """Fixed random multi-scale conv features: (B, C, H, W) images in [0, 1] -> (B, n_features).

    x -> 2x - 1 -> 3 x [conv 5x5, stride 2, + bias, ReLU]; after each layer l (K_l channels, H/2^l x W/2^l)
    every channel contributes its spatial mean and (with `moments`) its spatial std, so fine edges/noise
    (layer 1) and blob layout (layer 3) both count; sum_l K_l = n_features / 2 (n_features without moments).
    Weights ~ N(0, 2 / fan_in) (He), biases ~ N(0, 0.1^2), drawn on the CPU from
    `torch.Generator().manual_seed(seed)`: identical on every machine and run. Never trained; eval mode.
    Works for square inputs with image_size >= 8 (e.g. 1x32x32, 3x32x32, 1x64x64).
    """

    def __init__(self, in_channels: int, image_size: int, n_features: int = 64, seed: int = 0,
                 moments: bool = True, n_layers: int = 3):
        super().__init__()
        per = 2 if moments else 1
        if n_features % per or n_features // per < n_layers:
            raise ValueError(f"n_features must be a multiple of {per} and >= {per * n_layers}, got {n_features}")
        self.in_channels, self.image_size, self.n_features = int(in_channels), int(image_size), int(n_features)
        self.moments, self.n_layers = moments, n_layers
        k = n_features // per
        widths = [k // n_layers + (i >= n_layers - k % n_layers) for i in range(n_layers)]  # e.g. 32 -> 10, 11, 11
        g = torch.Generator().manual_seed(int(seed))
        for i, (cin, cout) in enumerate(zip([self.in_channels, *widths[:-1]], widths)):
            self.register_buffer(f"w{i}", torch.randn(cout, cin, 5, 5, generator=g) * (2.0 / (cin * 25)) ** 0.5)
            self.register_buffer(f"b{i}", 0.1 * torch.randn(cout, generator=g))
        self.eval().requires_grad_(False)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or x.shape[-2:] != (self.image_size,) * 2:
            raise ValueError(f"expected images (B, {self.in_channels}, {self.image_size}, {self.image_size}), "
                             f"got {tuple(x.shape)}")
        h, feats = x.to(self.w0.dtype) * 2 - 1, []
        for i in range(self.n_layers):
            h = F.relu(F.conv2d(h, getattr(self, f"w{i}"), getattr(self, f"b{i}"), stride=2, padding=2))
            flat = h.flatten(2)                                  # (B, K_l, H_l W_l)
            feats += [flat.mean(-1)] + ([flat.std(-1, unbiased=False)] if self.moments else [])
        return torch.cat(feats, 1)


def image_features(x: torch.Tensor, features: nn.Module, batch_size: int = 256) -> torch.Tensor:
    """features(x) in batches: (N, C, H, W) -> (N, D), on the device of `features`'s buffers (or x's)."""
    dev = next(iter(features.buffers()), x).device
    with torch.no_grad():
        return torch.cat([features(x[i:i + batch_size].to(dev)) for i in range(0, len(x), batch_size)])


def sample_fd(x: torch.Tensor, y: torch.Tensor, features: nn.Module | None = None, batch_size: int = 256) -> float:
    """FD between image sets x (N, C, H, W) and y (M, C, H, W) in [0, 1], N, M >= 2.

    `features` defaults to RandomFeatures(C, W, seed=0) on x's device. With N <~ 100 the value is noisy and
    biased upwards; compare it with the half-vs-half floor of the real images at the same N.
    """
    if x.ndim != 4 or x.shape[1:] != y.shape[1:]:
        raise ValueError(f"expected two image sets (N, C, H, W) of the same image shape, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    if features is None:
        features = RandomFeatures(x.shape[1], x.shape[-1], seed=0).to(x.device)
    fx, fy = image_features(x, features, batch_size), image_features(y, features, batch_size)
    return frechet_distance(*feature_stats(fx), *feature_stats(fy))

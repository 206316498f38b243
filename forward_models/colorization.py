"""Colorization: observe the grey level (mean of R, G, B) of a colour image.

    y = (x_R + x_G + x_B) / 3,    x: (B, 3, H, W) -> y: (B, 1, H, W)

Decomposition (Song et al. 2021): z = T x per pixel with the orthogonal 3x3

    T = [[1, 1, 1] / sqrt(3),    (grey axis)
         [1, -1, 0] / sqrt(2),
         [1, 1, -2] / sqrt(6)]

so z_0 = sqrt(3) * y; mask = (1, 0, 0) selects channel 0, restrict(z) = z_0 / sqrt(3),
embed(y) = (sqrt(3) y, 0, 0).  A^T y = (y, y, y) / 3.
"""
from __future__ import annotations

import math

import torch

from .base import LinearForwardModel

__all__ = ["Grayscale", "colour_transform"]

_SQRT3 = math.sqrt(3.0)


def colour_transform(dtype=torch.float32, device=None) -> torch.Tensor:
    """The orthogonal 3x3 T, built in the caller's precision (a float32 buffer cast to
    float64 would leave T orthogonal only to ~1e-8)."""
    rows = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 0.0], [1.0, 1.0, -2.0]], dtype=torch.float64)
    norms = torch.tensor([[_SQRT3], [math.sqrt(2.0)], [math.sqrt(6.0)]], dtype=torch.float64)
    return (rows / norms).to(dtype=dtype, device=device)


class Grayscale(LinearForwardModel):
    """RGB (B, 3, H, W) -> grey (B, 1, H, W); ``image_size`` int or (H, W)."""

    def __init__(self, image_size, noise_std: float = 0.0):
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        super().__init__(image_shape=(3, h, w), noise_std=noise_std)
        self.register_buffer("mask", torch.tensor([1.0, 0.0, 0.0]).reshape(3, 1, 1))

    def _measurement_shape(self, image_shape):
        return (1, *image_shape[1:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_image(x)
        # defined through T so that forward(x) == restrict(transform(x)) bit for bit
        return self.restrict(self.transform(x))

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return (y / 3.0).repeat(1, 3, 1, 1)

    @property
    def normal_scale(self) -> float:
        return 1.0 / 3.0  # A A^T y = y / 3 (T orthogonal, restrict scales by 1/sqrt(3))

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ij,bjhw->bihw", colour_transform(x.dtype, x.device), x)

    def inverse_transform(self, z: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ji,bjhw->bihw", colour_transform(z.dtype, z.device), z)

    def restrict(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, :1] / _SQRT3

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        return torch.cat([y * _SQRT3, torch.zeros_like(y).expand(-1, 2, -1, -1)], dim=1)

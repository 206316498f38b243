"""Inpainting: observe the pixels where a 0/1 mask is 1.

    y = M * x,   x, y: (B, C, H, W),   M: (C, H, W) in {0, 1}

y keeps the full image shape (zeros where unobserved). Decomposition: T = I,
restrict(z) = M * z, embed(y) = M * y; A is self-adjoint.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import LinearForwardModel

__all__ = ["Inpainting"]


def _expand(mask: torch.Tensor, image_shape) -> torch.Tensor:
    """A 2-D (H, W) mask -> (C, H, W) with C taken from image_shape (1 if not given)."""
    c = 1 if image_shape is None or len(image_shape) == 2 else int(image_shape[0])
    return mask.unsqueeze(0).expand(c, *mask.shape).clone()


def _hw(image_shape):
    if len(image_shape) not in (2, 3):
        raise ValueError(f"image_shape must be (H, W) or (C, H, W), got {tuple(image_shape)}")
    return int(image_shape[-2]), int(image_shape[-1])


class Inpainting(LinearForwardModel):
    """y = mask * x with mask (H, W) or (C, H, W), 1 = observed."""

    def __init__(self, mask, noise_std: float = 0.0):
        mask = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
        if mask.ndim not in (2, 3):
            raise ValueError(f"mask has shape {tuple(mask.shape)}; expected (H, W) or (C, H, W)")
        if not torch.all((mask == 0) | (mask == 1)):
            raise ValueError(f"mask of shape {tuple(mask.shape)} must contain only 0 and 1")
        mask = mask.to(torch.float32)
        if mask.ndim == 2:
            mask = mask.unsqueeze(0)
        super().__init__(image_shape=tuple(mask.shape), noise_std=noise_std)
        self.register_buffer("mask", mask)

    def _masked(self, v: torch.Tensor) -> torch.Tensor:
        return self.mask.to(v.dtype) * v  # dtype follows the input, not the buffer

    @property
    def measurement_support(self) -> torch.Tensor:
        return self.mask

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_image(x)
        return self._masked(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._masked(y)

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @property
    def normal_scale(self) -> float:
        return 1.0  # T = I, A A^T = I on the observed pixels

    def inverse_transform(self, z: torch.Tensor) -> torch.Tensor:
        return z

    def restrict(self, z: torch.Tensor) -> torch.Tensor:
        return self._masked(z)

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        return self._masked(y)

    @property
    def observed_fraction(self) -> float:
        return float(self.mask.mean())

    # ----- mask generators ----------------------------------------------------------------
    @classmethod
    def box(cls, image_shape, size=None, center=None, noise_std: float = 0.0) -> "Inpainting":
        """Missing square (or (h, w) rectangle) of ``size`` (default H//2) around ``center``."""
        h, w = _hw(image_shape)
        size = h // 2 if size is None else size
        bh, bw = (size, size) if np.isscalar(size) else size
        ci, cj = (h // 2, w // 2) if center is None else center
        i0, j0 = max(ci - bh // 2, 0), max(cj - bw // 2, 0)
        m = torch.ones(h, w)
        m[i0:i0 + bh, j0:j0 + bw] = 0
        return cls(_expand(m, image_shape), noise_std=noise_std)

    @classmethod
    def random(cls, image_shape, keep: float = 0.5, seed: int = 0, noise_std: float = 0.0) -> "Inpainting":
        """Keep each pixel (all channels together) with probability ``keep``; seeded."""
        if not 0.0 <= keep <= 1.0:
            raise ValueError(f"keep must be in [0, 1], got {keep}")
        h, w = _hw(image_shape)
        g = torch.Generator().manual_seed(seed)
        m = (torch.rand(h, w, generator=g) < keep).float()
        return cls(_expand(m, image_shape), noise_std=noise_std)

    @classmethod
    def half(cls, image_shape, side: str = "right", noise_std: float = 0.0) -> "Inpainting":
        """Missing half of the image: ``side`` in {"left", "right", "top", "bottom"}."""
        h, w = _hw(image_shape)
        m = torch.ones(h, w)
        halves = {"left": (slice(None), slice(0, w // 2)), "right": (slice(None), slice(w // 2, None)),
                  "top": (slice(0, h // 2), slice(None)), "bottom": (slice(h // 2, None), slice(None))}
        if side not in halves:
            raise ValueError(f"side must be one of {sorted(halves)}, got {side!r}")
        m[halves[side]] = 0
        return cls(_expand(m, image_shape), noise_std=noise_std)

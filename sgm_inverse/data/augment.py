"""Batched, generator-driven augmentations: ``augment(batch, generator) -> batch``.

They run on whole batches (B, C, H, W) on the batch's device, outside ``__getitem__``, so
that a training run is reproduced exactly by its seed (the generator must live on the
batch's device). Outputs stay in [0, 1].
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def random_affine_elastic(batch: torch.Tensor, generator: torch.Generator | None = None, *,
                          max_rotate_deg: float = 10.0, max_scale: float = 0.1,
                          max_shift: float = 0.05, elastic_alpha: float = 0.05,
                          elastic_grid: int = 4, intensity_scale=(0.9, 1.1),
                          padding_mode: str = "zeros", mode: str = "bilinear") -> torch.Tensor:
    """Random rotation, zoom, shift, smooth elastic warp and intensity scaling.

    batch: (B, C, H, W) in [0, 1]. Per image: angle ~ U(±max_rotate_deg), zoom
    ~ U(1 ± max_scale), shift ~ U(±max_shift) of the image size, a displacement field
    of ``elastic_grid``² Gaussian control values (std ``elastic_alpha`` in units of the
    half-width, i.e. ≈ alpha·H/2 pixels) upsampled bicubically (smooth by construction),
    then a gain ~ U(intensity_scale). Returns (B, C, H, W), clamped to [0, 1].

    ``mode`` is grid_sample's interpolation. Bilinear resampling at a sub-pixel offset low-passes the
    image: on 32×32 digits a random shift alone moves the Fréchet distance to the test digits from 0.0046
    (raw training digits) to 0.050, bicubic to 0.016 (``benchmarks/data_shift.py``). The default stays bilinear so that the
    committed training states resume as they ran.
    """
    if batch.ndim != 4:
        raise ValueError(f"expected a batch (B, C, H, W), got shape {tuple(batch.shape)}")
    b, _, h, w = batch.shape
    dev, dt = batch.device, batch.dtype
    u = torch.rand(b, 5, generator=generator, device=dev, dtype=dt) * 2 - 1  # U(-1, 1)
    angle = u[:, 0] * math.radians(max_rotate_deg)
    zoom = 1 + u[:, 1] * max_scale
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    # affine_grid's coordinates span [-1, 1], so a shift of f·size is 2f.
    theta = torch.stack([torch.stack([cos, -sin, 2 * max_shift * u[:, 2]], -1),
                         torch.stack([sin, cos, 2 * max_shift * u[:, 3]], -1)], 1)
    grid = F.affine_grid(theta, list(batch.shape), align_corners=False)
    if elastic_alpha > 0:
        ctrl = torch.randn(b, 2, elastic_grid, elastic_grid, generator=generator, device=dev, dtype=dt)
        disp = F.interpolate(ctrl * elastic_alpha, size=(h, w), mode="bicubic", align_corners=True)
        grid = grid + disp.permute(0, 2, 3, 1)
    out = F.grid_sample(batch, grid, mode=mode, padding_mode=padding_mode, align_corners=False)
    lo, hi = intensity_scale
    gain = lo + (hi - lo) * (u[:, 4] + 1) / 2
    return (out * gain.view(b, 1, 1, 1)).clamp_(0, 1)


def random_hflip(batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2. (B, C, H, W) -> (B, C, H, W).

    Only the horizontal flip: photographs are not invariant to vertical flips (sky on top).
    """
    flip = torch.rand(batch.shape[0], generator=generator, device=batch.device) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), batch.flip(-1), batch)


def no_augment(batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Identity, for data sets that are already unlimited (random ellipses)."""
    return batch

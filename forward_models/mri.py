"""Single-coil Cartesian MRI with an undersampling mask over phase-encoding columns.

    y = M * F x,   F = fftshift . fft2(norm="ortho") . ifftshift  (unitary, centred)

x is a real image (B, 1, H, W) or a complex image stored as real/imag channels
(B, 2, H, W) (``channels=2``); y is complex (B, 1, H, W) with zeros where M = 0.
Phase-encoding lines are the columns (last axis); the mask is (H, W) in {0, 1}.

Adjoint w.r.t. the real inner product Re<A x, y>:
    real image:     A^T y = Re(F^H (M * y))            (B, 1, H, W)
    complex image:  A^T y = (Re, Im)(F^H (M * y))      (B, 2, H, W)
Decomposition: T = F (unitary), restrict = embed = M *.
"""
from __future__ import annotations

import numpy as np
import torch

from .base import LinearForwardModel

__all__ = ["UndersampledMRI", "fft2c", "ifft2c", "column_mask"]

_DIMS = (-2, -1)


def fft2c(x: torch.Tensor) -> torch.Tensor:
    """Centred unitary 2-D FFT over the last two dims."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=_DIMS), norm="ortho"), dim=_DIMS)


def ifft2c(k: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`fft2c` (= its adjoint)."""
    return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=_DIMS), norm="ortho"), dim=_DIMS)


def _centre_band(width: int, n_center: int) -> np.ndarray:
    """Indices of the ``n_center`` columns around k = 0 (index width // 2 after fftshift)."""
    start = width // 2 - n_center // 2
    return np.arange(start, start + n_center)


def _equispaced(rng, outside, n, width):
    # equal steps through the non-centre columns: exact count, random phase
    step = len(outside) / n
    idx = np.floor(rng.uniform(0, step) + step * np.arange(n)).astype(int)
    return outside[np.minimum(idx, len(outside) - 1)]


def _random(rng, outside, n, width):
    return rng.choice(outside, n, replace=False)


def _gaussian1d(rng, outside, n, width):
    # density exp(-k^2 / (2 s^2)) around k = 0 with s = width / 6 (fastMRI-like falloff)
    k = outside - width // 2
    p = np.exp(-0.5 * (k / (width / 6.0)) ** 2)
    return rng.choice(outside, n, replace=False, p=p / p.sum())


_MASKS = {"equispaced": _equispaced, "random": _random, "gaussian1d": _gaussian1d}


def column_mask(width: int, acceleration: float, mask_type: str = "equispaced",
                center_fraction: float = 0.08, seed: int = 0) -> np.ndarray:
    """0/1 column mask (width,): a fully sampled centre band of round(center_fraction * W)
    columns plus columns chosen by ``mask_type``; round(W / acceleration) columns in total."""
    if mask_type not in _MASKS:
        raise ValueError(f"mask_type must be one of {sorted(_MASKS)}, got {mask_type!r}")
    total = int(round(width / acceleration))
    n_center = int(round(center_fraction * width))
    if not 0 < total <= width or n_center > total:
        raise ValueError(f"cannot sample round(W/R) = {total} of W = {width} columns with a centre band "
                         f"of {n_center}; expected 0 < round(W/R) <= W and centre band <= round(W/R)")
    mask = np.zeros(width, dtype=np.float32)
    centre = _centre_band(width, n_center)
    mask[centre] = 1
    outside = np.setdiff1d(np.arange(width), centre)
    n_rest = total - n_center
    if n_rest > 0:
        rng = np.random.default_rng(seed)
        mask[_MASKS[mask_type](rng, outside, n_rest, width)] = 1
    return mask


class UndersampledMRI(LinearForwardModel):
    """Cartesian single-coil MRI: y = M * F x (complex64 (B, 1, H, W)).

    ``mask`` (W,) or (H, W) 0/1 overrides ``mask_type``; otherwise a column mask with
    ``round(W / acceleration)`` sampled columns (``center_fraction`` of them in the
    centre band) is drawn with ``seed``. ``channels=1``: real images; ``2``: real/imag.
    """

    def __init__(self, image_size, *, acceleration: float = 4, mask_type: str = "equispaced",
                 center_fraction: float = 0.08, mask=None, seed: int = 0, noise_std: float = 0.0,
                 channels: int = 1):
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 (real image) or 2 (real/imag), got {channels}")
        super().__init__(image_shape=(channels, h, w), noise_std=noise_std)
        if mask is None:
            m = torch.from_numpy(column_mask(w, acceleration, mask_type, center_fraction, seed))
        else:
            m = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask)
            if tuple(m.shape) not in ((w,), (h, w)):
                raise ValueError(f"mask has shape {tuple(m.shape)}; expected ({w},) or ({h}, {w})")
            if not torch.all((m == 0) | (m == 1)):
                raise ValueError(f"mask of shape {tuple(m.shape)} must contain only 0 and 1")
        m = m.to(torch.float32).expand(h, w).clone()
        self.register_buffer("mask", m.unsqueeze(0))  # (1, H, W), broadcasts over the batch

    @property
    def measurement_dtype(self) -> torch.dtype:
        return torch.complex64

    def _measurement_shape(self, image_shape):
        return (1, *image_shape[1:])

    @property
    def acceleration_achieved(self) -> float:
        """Number of k-space samples / number measured (W / columns for column masks)."""
        return float(self.mask.numel() / self.mask.sum())

    # ----- image <-> complex ------------------------------------------------------------------
    def _to_complex(self, x: torch.Tensor) -> torch.Tensor:
        self._check_image(x)
        return x.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64) if x.shape[1] == 1 \
            else torch.complex(x[:, :1], x[:, 1:])

    def _to_image(self, c: torch.Tensor) -> torch.Tensor:
        return c.real.contiguous() if self.image_shape[0] == 1 else torch.cat([c.real, c.imag], dim=1)

    # ----- operator --------------------------------------------------------------------------------
    @property
    def measurement_support(self) -> torch.Tensor:
        return self.mask

    @property
    def default_consistency(self) -> str:
        # Real images: the k-space replacement then Re() is not a projection (residual ~1e-2); the CG
        # step is exact. Validation slab of brain, brain64, 100 steps, 4 images, each at its best snr:
        # +0.5 / +0.1 / +0.3 dB PSNR at 4x / 8x equispaced / 4x gaussian1d (SSIM +0.011 / -0.001 / -0.033)
        # (benchmarks/results/mri_undersampled_tuned.json).
        return "cg" if self.image_shape[0] == 1 else "transform"

    @property
    def normal_scale(self) -> float | None:
        # complex images: F unitary, A A^H = I on the sampled entries; real images: Re() after F^H
        # pairs k-space entries (A A^T is not c I and the transform step is not a projection)
        return None if self.image_shape[0] == 1 else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.restrict(self.transform(x))

    def _masked(self, k: torch.Tensor) -> torch.Tensor:
        return self.mask.to(k.real.dtype) * k  # precision follows the input, not the buffer

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        return self._to_image(ifft2c(self._masked(y)))

    def transform(self, x: torch.Tensor) -> torch.Tensor:
        return fft2c(self._to_complex(x))

    def inverse_transform(self, z: torch.Tensor) -> torch.Tensor:
        return self._to_image(ifft2c(z))

    def restrict(self, z: torch.Tensor) -> torch.Tensor:
        return self._masked(z)

    def embed(self, y: torch.Tensor) -> torch.Tensor:
        return self._masked(y)

    def zero_filled(self, y: torch.Tensor) -> torch.Tensor:
        """F^H y: the magnitude |F^H y| (B, 1, H, W) for real images (the usual
        zero-filled baseline), the real/imag channels (B, 2, H, W) for complex ones."""
        c = ifft2c(self._masked(y))
        return c.abs() if self.image_shape[0] == 1 else torch.cat([c.real, c.imag], dim=1)

"""Image quality metrics: PSNR / SSIM (scikit-image) and the data residual.

data_range is always passed explicitly: scikit-image otherwise guesses it from the
dtype — for float images PSNR uses 1 if the reference is >= 0 but 2 if it has any
negative pixel (FBP / MRI real parts), silently adding 20 log10(2) = 6.02 dB, and SSIM
refuses float input. Reconstructions are compared on the scale of the data, so every
call here uses the caller's data_range (1.0 for images normalised to [0, 1]).
"""
from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def _as_batch(x) -> np.ndarray:
    """Tensor or array (B, C, H, W) (or one (H, W) image) -> float64 numpy (B, C, H, W)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.abs() if x.is_complex() else x
        x = x.double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x[None, None]
    if x.ndim != 4:
        raise ValueError(f"expected images of shape (B, C, H, W) or (H, W), got {x.shape}")
    return x


def _pairs(x, ref):
    x, ref = _as_batch(x), _as_batch(ref)
    if x.shape != ref.shape:
        raise ValueError(f"x has shape {x.shape} but ref has shape {ref.shape}")
    return x, ref


def psnr(x, ref, data_range: float = 1.0) -> np.ndarray:
    """PSNR per sample, 10 log10(data_range^2 / mean((x - ref)^2)) over C, H, W: (B,)."""
    x, ref = _pairs(x, ref)
    return np.array([peak_signal_noise_ratio(r, xi, data_range=data_range)
                     for xi, r in zip(x, ref)])


def ssim(x, ref, data_range: float = 1.0) -> np.ndarray:
    """SSIM per sample (scikit-image defaults: 7x7 uniform window), channels on axis 0: (B,)."""
    x, ref = _pairs(x, ref)
    if x.shape[1] == 1:
        return np.array([structural_similarity(r[0], xi[0], data_range=data_range)
                         for xi, r in zip(x, ref)])
    return np.array([structural_similarity(r, xi, data_range=data_range, channel_axis=0)
                     for xi, r in zip(x, ref)])


@torch.no_grad()
def data_residual(op, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Relative data residual ||A x - y|| / ||y|| per sample (complex modulus): (B,)."""
    r = (op(x) - y).reshape(y.shape[0], -1).abs().norm(dim=1)
    return r / y.reshape(y.shape[0], -1).abs().norm(dim=1).clamp(min=torch.finfo(r.dtype).tiny)


def summarize(values) -> tuple[float, float]:
    """(mean, std) of a list / array / tensor of per-sample values (population std, ddof=0)."""
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().double().numpy()
    values = np.asarray(values, dtype=np.float64).ravel()
    return float(values.mean()), float(values.std())

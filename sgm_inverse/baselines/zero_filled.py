"""Zero-filled inverse FFT baseline for undersampled MRI."""
from __future__ import annotations

import torch


def zero_filled(mri_op, y):
    """Zero-filled reconstruction x = mri_op.zero_filled(y): k-space y -> image (B, 1, H, W).

    The k-space layout and mask live in the operator (``forward_models.UndersampledMRI``),
    so the reconstruction is delegated to it.
    """
    if not callable(getattr(mri_op, "zero_filled", None)):
        raise TypeError(f"{type(mri_op).__name__} has no zero_filled(y) method; "
                        "expected an MRI operator such as forward_models.UndersampledMRI")
    return mri_op.zero_filled(y)


def zero_filled_ifft(kspace: torch.Tensor) -> torch.Tensor:
    """|fftshift(ifft2(ifftshift(k), norm="ortho"))| over the last two dims.

    kspace: complex (..., H, W), centred (DC in the middle, missing samples = 0)
    -> real magnitude (..., H, W). The exact inverse of the centred orthonormal FFT
    fftshift(fft2(ifftshift(x), norm="ortho")), up to the magnitude.
    """
    kspace = torch.as_tensor(kspace)
    dims = (-2, -1)
    img = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(kspace, dim=dims), norm="ortho"),
                             dim=dims)
    return img.abs()

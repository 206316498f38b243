"""Where and in which precision solve() works, without changing the caller's objects.

device: the one asked for; else that of the score model's weights; else the model's `device` attribute (an
adapter around a function); else the measurement's, when it is a tensor; else the CPU.
dtype: float32 (the library's convention) or float64. A measurement of any real dtype is converted to it,
a complex one to its complex counterpart (complex128 k-space -> complex64 for float32 work).
A forward or score model that must change device is copied first: the caller's stays where it was.
"""
from __future__ import annotations

import copy
import itertools

import torch

__all__ = ["resolve_device", "resolve_dtype", "on_device", "working_precision"]

DTYPES = (torch.float32, torch.float64)
_COMPLEX = {torch.float32: torch.complex64, torch.float64: torch.complex128}


def _tensors(obj):
    if not isinstance(obj, torch.nn.Module):
        return []
    return list(itertools.chain(obj.parameters(), obj.buffers()))


def resolve_device(score_model, measurement, device=None) -> torch.device:
    if device is not None:
        try:
            device = torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise ValueError(f"device {device!r} is not a torch device (e.g. 'cpu', 'cuda', 'cuda:1')") from err
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} was asked for but CUDA is not available")
        return device
    weights = _tensors(score_model)
    if weights:
        return weights[0].device
    own = getattr(score_model, "device", None)
    if own is not None:
        return torch.device(own)
    if isinstance(measurement, torch.Tensor):
        return measurement.device
    return torch.device("cpu")


def resolve_dtype(dtype=None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def _same_device(a: torch.device, b: torch.device) -> bool:
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)


def on_device(obj, device: torch.device):
    """obj itself when all its tensors are on `device` (or it has none: it follows its input), else a copy
    moved there."""
    tensors = _tensors(obj)
    if all(_same_device(t.device, device) for t in tensors):
        return obj
    return _moved_copy(obj, device)


def _moved_copy(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """A copy of `module` whose parameters and buffers are on `device`; the original keeps its own tensors.

    Module by module: a shallow copy with new parameter / buffer / submodule tables (deepcopy cannot copy
    sparse CSR buffers such as the CT system matrix, and .to() on a shallow copy would move the caller's
    parameters in place). Plain tensor attributes are shared, as .to() would leave them too."""
    new = copy.copy(module)
    new._parameters = {k: None if p is None else torch.nn.Parameter(p.detach().to(device), p.requires_grad)
                       for k, p in module._parameters.items()}
    new._buffers = {k: None if b is None else b.to(device) for k, b in module._buffers.items()}
    new._modules = {k: None if m is None else _moved_copy(m, device) for k, m in module._modules.items()}
    return new


def working_precision(y: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """y in the working precision: real floating -> dtype, complex -> its counterpart; integer labels stay."""
    if y.is_complex():
        return y.to(_COMPLEX[dtype])
    if y.is_floating_point():
        return y.to(dtype)
    return y

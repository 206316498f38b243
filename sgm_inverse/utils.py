"""Small tensor helpers shared across the engine."""
from __future__ import annotations

import torch


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Append trailing singleton dims so a per-sample tensor (B,) broadcasts against (B, ...)."""
    if v.ndim > ndim:
        raise ValueError(f"cannot broadcast a tensor with {v.ndim} dims to {ndim} dims")
    return v.reshape(*v.shape, *([1] * (ndim - v.ndim)))


def batch_norm(x: torch.Tensor) -> torch.Tensor:
    """Euclidean norm of each sample: (B, ...) -> (B,)."""
    return x.reshape(x.shape[0], -1).norm(dim=-1)


def time_vector(t, batch: int, like: torch.Tensor) -> torch.Tensor:
    """A scalar or (B,) time as a (B,) tensor on the device/dtype of `like`."""
    t = torch.as_tensor(t, device=like.device, dtype=like.dtype)
    return t.expand(batch) if t.ndim == 0 else t

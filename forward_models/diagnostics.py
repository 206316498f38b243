"""Operator diagnostics: the dot-product test of an adjoint.

For a linear A with adjoint A^T (taken in the real inner product Re<., .>, the operator contract):

    <A x, y> = <x, A^T y>    for all x, y.

`check_adjoint` draws random x (real images of `op.image_shape`) and y (of `op.measurement_shape()`,
complex where the measurement is) and reports both sides and their relative difference
|<A x, y> - <x, A^T y>| / max(|<A x, y>|, |<x, A^T y>|). An exact adjoint gives ~1e-16 in float64
and ~1e-7 in float32; a wrong one O(1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

__all__ = ["AdjointReport", "check_adjoint"]


@dataclass
class AdjointReport:
    """Per-trial <A x, y> (`forward_side`), <x, A^T y> (`adjoint_side`) and their relative differences
    (`errors`); `relative_error` is the largest. `passed(tol)` says whether it is below tol."""

    forward_side: list
    adjoint_side: list
    errors: list
    dtype: str

    @property
    def relative_error(self) -> float:
        return max(self.errors)

    def passed(self, tol: float = 1e-5) -> bool:
        return self.relative_error <= tol

    def __str__(self) -> str:
        return (f"adjoint test ({len(self.errors)} trials, {self.dtype}): <Ax, y> = {self.forward_side[0]:.6g}, "
                f"<x, A^T y> = {self.adjoint_side[0]:.6g}, max relative error {self.relative_error:.2e}")


def _real_inner(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.conj() * b).real.sum() if a.is_complex() or b.is_complex() else (a * b).sum())


def check_adjoint(op, n_trials: int = 3, seed: int = 0, dtype: torch.dtype = torch.float64) -> AdjointReport:
    """Dot-product test of `op.adjoint` on `n_trials` random pairs (x, y), drawn with `seed` in `dtype`
    (the complex counterpart for complex measurements) on the operator's device.

    op: anything with `image_shape`, `measurement_shape()` (a `forward_models.ForwardModel` infers it from
    `forward`), `__call__(x)` and `adjoint(y)`. Returns an `AdjointReport`; raises ValueError when the
    shapes do not fit (A x is not of the measurement's shape, A^T y not of the image's).
    """
    name = type(op).__name__
    if not callable(getattr(op, "adjoint", None)):
        raise ValueError(f"{name} has no adjoint(y); the dot-product test needs a linear operator")
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials}")
    image_shape = tuple(op.image_shape)
    meas_shape = tuple(op.measurement_shape())
    complex_y = getattr(op, "measurement_dtype", torch.float32).is_complex
    tensors = [*op.parameters(), *op.buffers()] if hasattr(op, "parameters") else []
    device = tensors[0].device if tensors else torch.device("cpu")
    g = torch.Generator().manual_seed(seed)
    fwd, adj, err = [], [], []
    for _ in range(n_trials):
        x = torch.randn((1, *image_shape), generator=g, dtype=dtype).to(device)
        y = torch.randn((1, *meas_shape), generator=g, dtype=dtype)
        if complex_y:
            y = torch.complex(y, torch.randn(y.shape, generator=g, dtype=dtype))
        y = y.to(device)
        ax, aty = op(x), op.adjoint(y)
        if tuple(ax.shape) != tuple(y.shape):
            raise ValueError(f"{name}: A x has shape {tuple(ax.shape)}; expected {tuple(y.shape)}")
        if tuple(aty.shape) != tuple(x.shape):
            raise ValueError(f"{name}: A^T y has shape {tuple(aty.shape)}; expected {tuple(x.shape)}")
        lhs, rhs = _real_inner(ax, y), _real_inner(x, aty)
        fwd.append(lhs)
        adj.append(rhs)
        err.append(abs(lhs - rhs) / max(abs(lhs), abs(rhs), torch.finfo(dtype).tiny))
    return AdjointReport(fwd, adj, err, str(dtype).replace("torch.", ""))

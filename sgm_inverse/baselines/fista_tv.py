"""FISTA for TV-regularised least squares (Beck & Teboulle 2009), batched torch.

    min_x  F(x) = 1/2 ||A x - y||^2 + lam * TV(x)   [+ indicator of lo <= x <= hi]

x_k = prox_{(lam/L) TV + box}( z_k - (1/L) A^T (A z_k - y) ),
t_{k+1} = (1 + sqrt(1 + 4 t_k^2)) / 2,  z_{k+1} = x_k + (t_k - 1)/t_{k+1} (x_k - x_{k-1}),
with L >= lambda_max(A^T A) and the prox computed by FGP (``prox_tv``), warm-started
from the previous iteration's dual. For complex y, |.|^2 is the complex modulus and
A^T is the adjoint w.r.t. Re<.,.> (the operator contract), so the same code applies.
"""
from __future__ import annotations

import math

import torch
from tqdm.auto import tqdm

from .tv import _per_sample, prox_tv, tv

# power iteration approaches lambda_max from below; a small margin keeps 1/L a safe step
LIPSCHITZ_MARGIN = 1.05


@torch.no_grad()
def power_method(op, image_shape, n_iter: int = 50, generator: torch.Generator | None = None,
                 device=None, dtype=torch.float32) -> float:
    """Estimate lambda_max(A^T A) = ||A||^2 by power iteration on a (1, C, H, W) image.

    The estimate is the Rayleigh quotient <v, A^T A v> / <v, v> after n_iter steps.
    device defaults to the generator's device (else CPU); the start is a fixed-seed
    normal draw when no generator is given, so results are reproducible.
    """
    if device is None:
        device = generator.device if generator is not None else torch.device("cpu")
    if generator is None:
        generator = torch.Generator(device=device).manual_seed(0)
    v = torch.randn((1, *image_shape), generator=generator, device=device, dtype=dtype)
    v = v / v.norm()
    est = 0.0
    for _ in range(n_iter):
        w = op.adjoint(op(v))
        est = float((v * w).sum())
        v = w / w.norm().clamp(min=torch.finfo(dtype).tiny)
    return est


def data_grad(op, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gradient of 1/2 ||A x - y||^2: A^T (A x - y), (B, C, H, W)."""
    return op.adjoint(op(x) - y)


def objective(op, x: torch.Tensor, y: torch.Tensor, lam) -> torch.Tensor:
    """F(x) = 1/2 ||A x - y||^2 + lam TV(x) per sample: (B,) (box not included)."""
    r = (op(x) - y).reshape(x.shape[0], -1)
    return 0.5 * r.abs().pow(2).sum(dim=1) + _per_sample(lam, x) * tv(x)


@torch.no_grad()
def fista_tv(op, y: torch.Tensor, lam, *, n_iter: int = 300, x0: torch.Tensor | None = None,
             box: tuple[float, float] | None = (0.0, 1.0), prox_iters: int = 20,
             lipschitz: float | None = None, progress: bool = False, callback=None,
             return_history: bool = False):
    """Solve min_x 1/2||A x - y||^2 + lam TV(x) [+ box] by FISTA; returns x (B, C, H, W).

    op: forward(x)/__call__ and adjoint(y) (duck-typed). y: (B, ...) real or complex.
    lam: float or (B,) tensor. box: (lo, hi) or None (use None for complex images
    stored as two channels). lipschitz: L >= ||A||^2; estimated by ``power_method``
    (times 1.05) when None. x0: default A^T y / L clipped to the box, i.e. one
    projected gradient step from zero (the zero-filled / masked image for unitary
    masked operators). callback(k, x) is called after each iteration.
    With return_history, also returns F(x_k) for k = 0..n_iter as a (n_iter + 1, B) tensor
    (one extra forward per iteration).
    """
    aty = op.adjoint(y)
    image_shape = tuple(aty.shape[1:])
    if lipschitz is None:
        lipschitz = LIPSCHITZ_MARGIN * power_method(op, image_shape, device=aty.device,
                                                     dtype=aty.dtype)
    if not (lipschitz > 0 and math.isfinite(lipschitz)):
        raise ValueError(f"lipschitz must be a positive finite number, got {lipschitz}")
    project = (lambda v: v) if box is None else (lambda v: v.clamp(box[0], box[1]))
    lam = _per_sample(lam, aty)

    x = project(aty / lipschitz) if x0 is None else x0.to(aty)
    z, t, dual = x, 1.0, None
    history = [objective(op, x, y, lam)] if return_history else None
    for k in tqdm(range(n_iter), disable=not progress, desc="fista-tv"):
        v = z - data_grad(op, z, y) / lipschitz
        x_next, dual = prox_tv(v, lam / lipschitz, n_iter=prox_iters, box=box, dual=dual,
                               return_dual=True)
        t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
        z = x_next + ((t - 1.0) / t_next) * (x_next - x)
        x, t = x_next, t_next
        if history is not None:
            history.append(objective(op, x, y, lam))
        if callback is not None:
            callback(k, x)
    return (x, torch.stack(history)) if return_history else x


def tune_fista_lambda(op, xs_val: torch.Tensor, ys_val: torch.Tensor, lams, n_iter: int = 300,
                      metric: str = "psnr", data_range: float = 1.0, fista_options=None):
    """Grid search of lam on a VALIDATION split (never the test split): (best_lam, table).

    xs_val: (B, C, H, W) ground truth, ys_val: (B, ...) their measurements. For every lam
    in lams runs fista_tv and scores it with ``metric`` ("psnr" or "ssim", explicit
    data_range). table: list of {"lam", "mean", "std"} in the order of lams;
    best_lam maximises the mean. fista_options: extra keyword arguments of fista_tv.
    """
    from .. import metrics  # lazy: keeps this module importable on its own

    scores = {"psnr": metrics.psnr, "ssim": metrics.ssim}
    if metric not in scores:
        raise ValueError(f"metric must be one of {sorted(scores)}, got {metric!r}")
    score = scores[metric]
    lipschitz = LIPSCHITZ_MARGIN * power_method(op, tuple(xs_val.shape[1:]),
                                                device=xs_val.device, dtype=xs_val.dtype)
    options = dict(fista_options or {})
    options.setdefault("lipschitz", lipschitz)
    table = []
    for lam in lams:
        x = fista_tv(op, ys_val, float(lam), n_iter=n_iter, **options)
        mean, std = metrics.summarize(score(x, xs_val, data_range=data_range))
        table.append({"lam": float(lam), "mean": mean, "std": std})
    best = max(table, key=lambda row: row["mean"])
    return best["lam"], table

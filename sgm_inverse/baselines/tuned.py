"""Validation-tuned baseline settings, for reconstructing a user's scan without a validation set of its own.

FISTA-TV's weight is stored scale-free as c = lam / L, L = 1.05 ||A||^2 (the benchmarks' parametrisation:
lam = c L, c grid-searched on the validation split of 64 x 64 brain slices, 300 iterations, box [0, 1]), so
it transfers to other image sizes; the FBP filter (ramp or hann) was chosen on the same split.
Sources (tests/test_baselines_cli.py checks the table against them):
  CT:  benchmarks/results/ct_sparse_view.json (parallel, noiseless), archive/ct_fan/ (fan, 2 pi),
       archive/ct_noisy/ (parallel, 8 views, noise 0.01); parallel 23 views: the demo's finer grid
       (sgm_inverse/weights/demo_brain_slice.json, lam 0.003 at L = 1492; the benchmark grid's best,
       1e-5, lies at its lower edge).
  MRI: benchmarks/results/mri_undersampled.json (noiseless), archive/mri_noisy/ (equispaced 4x, noise 0.05).
A setting not in the table takes the nearest one (geometry / mask type first, then views or acceleration
on a log scale, then noisy or not).
"""
from __future__ import annotations

import math

__all__ = ["FISTA_LAM_OVER_L", "FBP_FILTER", "tuned_fista_c", "tuned_fbp_filter"]

# (geometry, views, noisy) -> c = lam / L
_CT = {("parallel", 4, False): 3e-3, ("parallel", 6, False): 1e-5, ("parallel", 8, False): 1e-5,
       ("parallel", 23, False): 0.003 / 1492.2669982910156, ("fan", 8, False): 3e-5,
       ("parallel", 8, True): 3e-4}
# (mask type, acceleration, noisy) -> c
_MRI = {("equispaced", 4.0, False): 3e-4, ("equispaced", 8.0, False): 3e-4, ("gaussian1d", 4.0, False): 1e-4,
        ("equispaced", 4.0, True): 3e-4}
FISTA_LAM_OVER_L = {"ct": _CT, "mri": _MRI}
# (geometry, views) -> filter
FBP_FILTER = {("parallel", 4): "hann", ("parallel", 6): "hann", ("parallel", 8): "hann", ("parallel", 23): "ramp",
              ("fan", 8): "hann"}


def _nearest(table: dict, kind: str, amount: float, noisy: bool):
    """The entry of `table` nearest to (kind, amount, noisy): same kind if any, then same noisiness if any,
    then the nearest amount on a log scale."""
    keys = [k for k in table if k[0] == kind] or list(table)
    keys = [k for k in keys if k[2] == noisy] or keys
    key = min(keys, key=lambda k: abs(math.log(k[1] / amount)))
    return key, table[key]


def tuned_fista_c(task: str, *, views: int | None = None, geometry: str = "parallel", acceleration: float | None = None,
                  mask_type: str = "equispaced", noisy: bool = False) -> tuple[float, str]:
    """(c = lam / L, where it comes from) for a CT (views, geometry) or MRI (acceleration, mask_type) setting."""
    if task == "ct":
        key, c = _nearest(_CT, geometry, float(views), noisy)
        return c, f"{key[0]} {key[1]} views{', noisy' if key[2] else ''}"
    if task == "mri":
        key, c = _nearest(_MRI, mask_type, float(acceleration), noisy)
        return c, f"{key[0]} {key[1]:g}x{', noisy' if key[2] else ''}"
    raise ValueError(f"no tuned FISTA-TV weight for task {task!r}; expected 'ct' or 'mri'")


def tuned_fbp_filter(views: int, geometry: str = "parallel") -> str:
    """The validation-tuned FBP filter for the nearest (geometry, views) setting."""
    keys = [k for k in FBP_FILTER if k[0] == geometry] or list(FBP_FILTER)
    return FBP_FILTER[min(keys, key=lambda k: abs(math.log(k[1] / views)))]

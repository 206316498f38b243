"""Sparse-view CT benchmark: FBP, FISTA-TV and score-based projection / DPS with ONE checkpoint per data set.

    python benchmarks/ct_sparse_view.py --quick --checkpoint brain=runs/brain64/ema --datasets brain
    python benchmarks/ct_sparse_view.py --tune [options]     # val split only -> results/ct_sparse_view_tuned.json
    python benchmarks/ct_sparse_view.py [options]            # test split -> ct_sparse_view.{json,md}, _<dataset>.png

Settings (64x64 images of `ellipses` and `brain`): parallel beam over pi with --views (default 4 6 8 23),
fan beam over 2 pi with --fan-views (default 8; source 2N, detector N from the centre), each with and
without noise (--noise, default 0 and 0.01: additive white Gaussian on the sinogram with
noise_std = level x mean |A x| of the validation images). The same checkpoint serves every setting.
--quick: 4 test images, 100 steps, parallel 8 views without noise only, tiny tuning grids.

Tuning grids (val split; --grid default | small | tiny):
  FISTA-TV lam = c ||A||^2, c in {1e-5, 3e-5, ..., 1e-2, 3e-2}  (tiny: 1e-4, 1e-3)
  projection snr {0.08, 0.16, 0.25} x lam {0.6, 0.85, 1.0}, then inverse_method cg vs fbp at the best
             (small: snr {0.08, 0.16, 0.25, 0.5} x lam {0.85, 1.0}, cg vs fbp, then the CG consistency
              step over snr {0.08, 0.16, 0.25, 0.5, 1.0};
              tiny: snr {0.16} x lam {0.85, 1.0}, cg vs fbp)
  dps        snr {0.08, 0.16} x zeta {0.03, 0.1, 0.3, 1.0}        (small: snr {0.16} x zeta {0.1, 0.3, 1.0};
                                                                  tiny: snr {0.16} x zeta {0.3, 1.0})
Untuned defaults (used, and flagged UNTUNED, when no tuned file has the setting): projection snr 0.25,
lam 0.85 (Song et al. 2022's LIDC values) with the fbp inverse; dps snr 0.16, zeta 0.3.
"""
from __future__ import annotations

from pathlib import Path

import math

import reconstruction as rc  # first: it makes the package importable from a plain checkout

from forward_models import SparseViewCT  # noqa: E402

METHODS = ("fbp", "fista_tv", "projection", "dps")
GRIDS = {
    "default": {"fista_c": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2], "snr": [0.08, 0.16, 0.25],
                "lam": [0.6, 0.85, 1.0], "inverse_method": ["cg", "fbp"], "dps_snr": [0.08, 0.16],
                "zeta": [0.03, 0.1, 0.3, 1.0]},
    "small": {"fista_c": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2], "consistency": ["transform", "cg"],
              "consistency_snr": [0.08, 0.16, 0.25, 0.5, 1.0], "snr": [0.08, 0.16, 0.25, 0.5],
              "lam": [0.85, 1.0], "inverse_method": ["cg", "fbp"], "dps_snr": [0.16], "zeta": [0.1, 0.3, 1.0]},
    "tiny": {"fista_c": [1e-4, 1e-3], "snr": [0.16], "lam": [0.85, 1.0], "inverse_method": ["cg", "fbp"],
             "dps_snr": [0.16], "zeta": [0.3, 1.0]},
}
DEFAULTS = {"projection": {"snr": 0.25, "lam": 0.85, "inverse_method": "fbp"}, "dps": {"snr": 0.16, "zeta": 0.3}}


def add_args(ap):
    ap.add_argument("--views", nargs="*", type=int, default=None,
                    help="parallel-beam views over pi (default 4 6 8 23; quick 8)")
    ap.add_argument("--fan-views", nargs="*", type=int, default=None,
                    help="fan-beam views over 2 pi (default 8; quick none)")


def setting(image_size: int, views: int, geometry: str, noise: float, reference: bool) -> rc.Setting:
    angular_range = math.pi if geometry == "parallel" else 2 * math.pi

    def make_op(noise_std, inverse_method="fbp"):
        return SparseViewCT(image_size, views, geometry=geometry, angular_range=angular_range,
                            noise_std=noise_std, inverse_method=inverse_method)

    return rc.Setting(key=f"{geometry}-{views}v-noise{noise:g}", noise_level=noise, make_op=make_op,
                      fields={"views": views, "geometry": geometry, "angular_range": angular_range,
                              "angular_range_label": "pi" if geometry == "parallel" else "2pi"},
                      reference=reference)


def build_task(args) -> rc.Task:
    views = args.views if args.views is not None else ([8] if args.quick else [4, 6, 8, 23])
    fan = args.fan_views if args.fan_views is not None else ([] if args.quick else [8])
    noises = args.noise if args.noise is not None else ([0.0] if args.quick else [0.0, 0.01])
    ref = (8 if 8 in views else views[0], "parallel") if views else (fan[0], "fan")
    settings = [setting(args.image_size, v, g, r, (v, g) == ref and r == noises[0])
                for r in noises for g, vs in (("parallel", views), ("fan", fan)) for v in vs]
    if not settings:
        raise SystemExit("no settings: give --views and/or --fan-views")
    return rc.Task(name="ct_sparse_view", task="ct", baseline="fbp", settings=settings, defaults=DEFAULTS,
                   grids=GRIDS, columns=["geometry", "angular_range_label", "views"], datasets=["ellipses", "brain"],
                   measured=lambda op, y: y,
                   notes=["Parallel beam: astra 'linear' projector, detector spacing 1 pixel, angles over pi; fan "
                          "beam: source 2N and detector N from the centre, angles over 2 pi. The projection method's "
                          "T^-1 is SparseViewCT.inverse_method (cg: 20 CG iterations from FBP; fbp)."])


def main(argv=None):
    return rc.main_for(build_task, __doc__, METHODS, argv, add_args, script=f"benchmarks/{Path(__file__).name}")


if __name__ == "__main__":
    main()

"""Undersampled MRI benchmark: zero-filled, FISTA-TV and score-based projection / DPS (one checkpoint).

    python benchmarks/mri_undersampled.py --quick --checkpoint runs/brain64/ema
    python benchmarks/mri_undersampled.py --tune [options]   # val split only -> results/mri_undersampled_tuned.json
    python benchmarks/mri_undersampled.py [options]          # test split -> mri_undersampled.{json,md}, _brain.png

Single-coil Cartesian k-space of 64x64 `brain` magnitude images (real, non-negative); column masks
with a fully sampled centre band of round(0.08 W) columns: equispaced at --accelerations (default 4 8)
and gaussian1d at --gaussian-accelerations (default 4); mask seed --mask-seed (0). --noise (default 0):
complex white Gaussian on the sampled k-space entries, noise_std = level x mean |y| over them (val images).
--quick: 4 test images, 100 steps, 4x equispaced only, tiny tuning grids.

Tuning grids (val split; --grid default | small | tiny):
  FISTA-TV lam = c ||A||^2 (= c: the operator is a masked unitary FFT), c in {1e-5, 3e-5, ..., 1e-2,
             3e-2}  (tiny: 1e-4, 1e-3)
  projection snr {0.08, 0.16, 0.25, 0.5} x lam {0.6, 0.85, 1.0}    (small: snr {0.16, 0.25, 0.5, 1.0} x lam {0.85, 1.0}, then the CG consistency step over snr;
                                                                   tiny: snr {0.16} x lam {0.85, 1.0})
  dps        snr {0.08, 0.16} x zeta {0.03, 0.1, 0.3, 1.0}         (small: snr {0.16} x zeta {0.3, 1.0, 3.0};
                                                                   tiny: snr {0.16} x zeta {0.3, 1.0})
Untuned defaults: projection snr 0.5, lam 1.0 (Song et al. 2022's BraTS values); dps snr 0.16, zeta 0.3.
"""
from __future__ import annotations

from pathlib import Path

import reconstruction as rc  # first: it makes the package importable from a plain checkout

from forward_models import UndersampledMRI  # noqa: E402

METHODS = ("zero_filled", "fista_tv", "projection", "dps")
CENTER_FRACTION = 0.08
GRIDS = {
    "default": {"fista_c": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2], "snr": [0.08, 0.16, 0.25, 0.5],
                "lam": [0.6, 0.85, 1.0], "dps_snr": [0.08, 0.16], "zeta": [0.03, 0.1, 0.3, 1.0]},
    "small": {"fista_c": [1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2], "consistency": ["transform", "cg"],
              "snr": [0.16, 0.25, 0.5, 1.0],
              "lam": [0.85, 1.0], "dps_snr": [0.16], "zeta": [0.3, 1.0, 3.0]},
    "tiny": {"fista_c": [1e-4, 1e-3], "snr": [0.16], "lam": [0.85, 1.0], "dps_snr": [0.16], "zeta": [0.3, 1.0]},
}
DEFAULTS = {"projection": {"snr": 0.5, "lam": 1.0}, "dps": {"snr": 0.16, "zeta": 0.3}}


def add_args(ap):
    ap.add_argument("--accelerations", nargs="*", type=float, default=None,
                    help="equispaced-mask accelerations (default 4 8; quick 4)")
    ap.add_argument("--gaussian-accelerations", nargs="*", type=float, default=None,
                    help="gaussian1d-mask accelerations (default 4; quick none)")
    ap.add_argument("--mask-seed", type=int, default=0)


def setting(image_size, acceleration, mask_type, noise, mask_seed, reference) -> rc.Setting:
    def make_op(noise_std):
        return UndersampledMRI(image_size, acceleration=acceleration, mask_type=mask_type,
                               center_fraction=CENTER_FRACTION, seed=mask_seed, noise_std=noise_std)

    achieved = make_op(0.0).acceleration_achieved
    return rc.Setting(key=f"{mask_type}-{acceleration:g}x-noise{noise:g}", noise_level=noise, make_op=make_op,
                      fields={"acceleration": acceleration, "mask": mask_type, "acceleration_achieved": achieved,
                              "center_fraction": CENTER_FRACTION, "mask_seed": mask_seed},
                      reference=reference)


def measured(op, y):
    return y[op.mask.expand_as(y) > 0]


def build_task(args) -> rc.Task:
    accs = args.accelerations if args.accelerations is not None else ([4.0] if args.quick else [4.0, 8.0])
    gauss = args.gaussian_accelerations if args.gaussian_accelerations is not None else \
        ([] if args.quick else [4.0])
    noises = args.noise if args.noise is not None else [0.0]
    masks = [("equispaced", a) for a in accs] + [("gaussian1d", a) for a in gauss]
    if not masks:
        raise SystemExit("no settings: give --accelerations and/or --gaussian-accelerations")
    settings = [setting(args.image_size, a, m, r, args.mask_seed, (m, a, r) == (*masks[0], noises[0]))
                for r in noises for m, a in masks]
    return rc.Task(name="mri_undersampled", task="mri", baseline="zero_filled", settings=settings,
                   defaults=DEFAULTS, grids=GRIDS, columns=["mask", "acceleration"], datasets=["brain"],
                   measured=measured,
                   notes=[f"k-space y = M F x (centred unitary FFT), column masks with a centre band of "
                          f"round({CENTER_FRACTION} W) columns, mask seed {args.mask_seed}; zero-filled = "
                          "|F^H y|. FISTA-TV works on the real image with the complex data term "
                          "(adjoint w.r.t. Re<.,.>)."])


def main(argv=None):
    return rc.main_for(build_task, __doc__, METHODS, argv, add_args, script=f"benchmarks/{Path(__file__).name}")


if __name__ == "__main__":
    main()

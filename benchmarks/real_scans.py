"""Real scans that no prior has seen: pydicom's own test files, reconstructed at their own size.

    python benchmarks/real_scans.py                       # all scans, settings and methods
    python benchmarks/real_scans.py --scans ct_small_128 --settings ct8 --methods fbp fista_tv general

Scans (pydicom's test files only; never the pydicom-data package, which is reserved for an
independent evaluation; no prior is trained, tuned or calibrated on any of them):

    ct_small_128   CT_small.dcm, a 128 x 128 chest CT at its own size (HU, windowed to [0, 1])
    ct_small_64    the same, area-downsampled to 64 x 64
    ct_head_128    693_J2KI.dcm, a 512 x 512 head CT (CQ500), area-downsampled to 128 x 128
    mr_small_64    MR_small.dcm, a 64 x 64 MR slice at its own size
    mr_abdomen_128 examples_overlay.dcm, an abdominal MR (300 x 484): centre square, resized to 128 x 128

Settings: CT scans get 8- and 23-view parallel CT, MR scans 4x and 8x equispaced MRI, all noise-free.
Methods: fbp / zero_filled; fista_tv with lam = c ||A||^2, c grid-searched on 8 brain *validation* images at
64 x 64 under the same setting (c transfers across sizes, lam does not); the score priors through
solve() (projection method, CG consistency) with the sampler settings of `PRIOR_SETTINGS`, chosen on
brain validation images; `--patch P` adds the general prior with PaDIS patch assembly; a method
`general:cli` runs the general prior with the command line's default sampler (DDNM warm-started from FISTA-TV).
Writes benchmarks/results/real_scans.{json,md,png}.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, checkpoint_step, markdown_table, provenance, tune_fista_c, write_results  # noqa: E402

from forward_models import SparseViewCT, UndersampledMRI  # noqa: E402
from sgm_inverse import load_score_model, solve  # noqa: E402
from sgm_inverse.baselines import fbp, fista_tv, power_method, zero_filled  # noqa: E402
from sgm_inverse.data import BrainSlices, dicom_to_unit, read_dicom  # noqa: E402
from sgm_inverse.metrics import psnr, ssim  # noqa: E402
from sgm_inverse.patch_score import PatchScore  # noqa: E402

SCANS = {"ct_small_128": ("CT_small.dcm", 128, "ct"), "ct_small_64": ("CT_small.dcm", 64, "ct"),
         "ct_head_128": ("693_J2KI.dcm", 128, "ct"), "mr_small_64": ("MR_small.dcm", 64, "mri"),
         "mr_abdomen_128": ("examples_overlay.dcm", 128, "mri")}
SETTINGS = {"ct8": ("ct", 8), "ct23": ("ct", 23), "mri4": ("mri", 4), "mri8": ("mri", 8)}
FISTA_C = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
FISTA_ITERS = 300
# solve() settings of each prior: (steps, snr), the command line's defaults. snr 1.0 (brain64's best at 64 x 64,
# 100 steps) diverged for the general prior on 128 x 128 brain *validation* slices at 8 views (13.6 dB; 0.5: 22-23 dB,
# 0.16: 21.8 dB, benchmarks/patch_vs_direct.py and the closing note of issue 24), so every setting uses 0.5.
PRIOR_SETTINGS = {"ct8": (200, 0.5), "ct23": (200, 0.5), "mri4": (200, 0.5), "mri8": (200, 0.5)}


def load_scan(name: str) -> torch.Tensor:
    """(1, 1, S, S) float32 in [0, 1]."""
    import pydicom
    filename, size, _ = SCANS[name]
    path = Path(os.path.dirname(pydicom.__file__)) / "data" / "test_files" / filename
    array, info = read_dicom(path)
    unit = torch.from_numpy(dicom_to_unit(array, info["modality"])).float()[None, None]
    h, w = unit.shape[-2:]
    if h != w:                                   # centre square
        s = min(h, w)
        unit = unit[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    if unit.shape[-1] != size:
        unit = F.interpolate(unit, size=(size, size), mode="area" if unit.shape[-1] > size else "bilinear")
    return unit.clamp(0, 1)


def operator(setting: str, size: int):
    kind, n = SETTINGS[setting]
    return SparseViewCT(size, n) if kind == "ct" else UndersampledMRI(size, acceleration=n)


def tuned_fista_c(setting: str, n_val: int = 8) -> tuple[float, list]:
    """c = lam / ||A||^2 that maximises mean PSNR on brain validation images (64 x 64)."""
    val = BrainSlices("val", image_size=64).images
    x_val = val[np.linspace(0, len(val) - 1, n_val).round().astype(int)]
    c, _, table = tune_fista_c(operator(setting, 64), x_val, FISTA_C, n_iter=FISTA_ITERS)
    return c, [round(r["mean"], 3) for r in table]


def run_prior(model, op, y, setting, args):
    steps, snr = PRIOR_SETTINGS[setting]
    steps = args.steps or steps
    sol = solve(y, op, model, steps=steps, snr=snr, n_samples=args.samples, seed=args.seed,
                progress=not args.quiet)
    return sol.mean.clamp(0, 1), {"steps": steps, "snr": snr, "nfe_per_image": sol.nfe * args.samples,
                                   "samples": args.samples, "warning": sol.warning,
                                   "ood_ratio": None if sol.ood_ratio is None else round(float(sol.ood_ratio[0]), 3)}


def run_cli_default(model, op, y, kind: str, args):
    """The command line's default for the task (`sgm_inverse.tasks.solve_settings`): DDNM warm-started from
    FISTA-TV with its validation-tuned weight, as `sgm-inverse solve` runs it."""
    from sgm_inverse.tasks import solve_settings
    run = solve_settings(kind, steps=args.steps)
    kw, _ = run.solve_kwargs(kind, op, y)
    sol = solve(y, op, model, seed=args.seed, progress=not args.quiet, **kw)
    return sol.mean.clamp(0, 1), {"steps": run.steps, "sampler": run.sampler,
                                   "warm_start": list(run.warm) if run.warm else None,
                                   "nfe_per_image": sol.nfe * run.samples, "samples": run.samples,
                                   "warning": sol.warning,
                                   "ood_ratio": None if sol.ood_ratio is None else round(float(sol.ood_ratio[0]), 3)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scans", nargs="+", choices=list(SCANS), default=list(SCANS))
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    ap.add_argument("--methods", nargs="+", default=["baseline", "fista_tv", "general", "brain64"],
                    help="baseline (FBP / zero-filled), fista_tv, and checkpoint names or paths")
    ap.add_argument("--patch", type=int, default=0, help="also run the general prior with PaDIS patches of this size")
    ap.add_argument("--steps", type=int, help="override the sampler steps of PRIOR_SETTINGS")
    ap.add_argument("--samples", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--stem", default="real_scans")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prov = provenance()
    # "<checkpoint>:cli" runs the checkpoint with the command line's default sampler (run_cli_default)
    models = {m: load_score_model(m.removesuffix(":cli")) for m in args.methods if m not in ("baseline", "fista_tv")}
    if args.patch and "general" in models:
        models[f"general_patch{args.patch}"] = PatchScore(models["general"], args.patch,
                                                          torch.Generator().manual_seed(args.seed))
    records, panels = [], {}
    c_cache = {}
    start = time.time()
    for scan in args.scans:
        x = load_scan(scan)
        size, kind = x.shape[-1], SCANS[scan][2]
        for setting in [s for s in args.settings if SETTINGS[s][0] == kind]:
            op = operator(setting, size)
            y = op(x)
            recons = {"truth": x}
            for method in [m for m in ("baseline", "fista_tv") if m in args.methods] + list(models):
                t0, extra = time.time(), {}
                if method == "baseline":
                    name = "FBP" if kind == "ct" else "zero-filled"
                    r = (fbp(op, y) if kind == "ct" else zero_filled(op, y)).clamp(0, 1)
                elif method == "fista_tv":
                    if setting not in c_cache:
                        c_cache[setting] = tuned_fista_c(setting)
                    c, val_psnr = c_cache[setting]
                    lip = 1.05 * power_method(op, (1, size, size))
                    r, name = fista_tv(op, y, c * lip, n_iter=FISTA_ITERS, lipschitz=lip, box=(0.0, 1.0)), "FISTA-TV"
                    extra = {"lam_over_L": c, "lam_val_psnr": val_psnr, "tuning": "brain val 64x64"}
                else:
                    model = models[method]
                    if not model.accepts_shape((1, size, size)):
                        continue                        # e.g. brain64 on a 128 x 128 scan
                    name = method
                    if method.endswith(":cli"):
                        r, extra = run_cli_default(model, op, y, kind, args)
                    else:
                        r, extra = run_prior(model, op, y, setting, args)
                    # which weights: benchmarks/stale_results.py flags the row once another step ships
                    extra = {**extra, "checkpoint": method.removesuffix(":cli").split("_patch")[0],
                             "checkpoint_step": checkpoint_step(model)}
                rec = {"scan": scan, "size": size, "setting": setting, "method": name,
                       "psnr": round(float(psnr(r, x, data_range=1.0)[0]), 2),
                       "ssim": round(float(ssim(r, x, data_range=1.0)[0]), 3),
                       "seconds": round(time.time() - t0, 1), **extra}
                records.append(rec)
                recons[name] = r
                print(f"{scan} {setting} {name}: {rec['psnr']:.2f} dB / {rec['ssim']:.3f} ({rec['seconds']} s)"
                      + (f"  [{extra['warning'][:60]}...]" if extra.get("warning") else ""), flush=True)
            panels[f"{scan} {setting}"] = recons
    cols = ["scan", "size", "setting", "method", "psnr", "ssim", "seconds", "nfe_per_image", "ood_ratio"]
    for r in records:   # which sampler each prior row ran
        if "nfe_per_image" in r and "snr" in r:
            r.setdefault("sampler", f"pc {r['steps']} steps, snr {r['snr']}")
        elif "nfe_per_image" in r:
            if r.get("warm_start"):
                mean = f", mean of {r['samples']}" if r.get("samples", 1) > 1 else ""
                r["sampler"] = (f"{r['sampler']} {r['steps']} steps{mean} from {r['warm_start'][1]} "
                                f"at t0 {r['warm_start'][0]}")
    cols.insert(4, "sampler")
    table = markdown_table(records, cols)
    table += f"\n\nWall time {time.time() - start:.0f} s. FISTA-TV: lam/||A||^2 tuned on brain validation images."
    write_results(args.stem, records, table, out_dir=args.out, prov=prov)
    _figure(panels, args.out / f"{args.stem}.png")
    print(f"wrote {args.out / args.stem}.json/.md/.png")
    return 0


def _figure(panels: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = list(panels)
    ncol = max(len(v) for v in panels.values())
    fig, axes = plt.subplots(len(rows), ncol, figsize=(2.2 * ncol, 2.3 * len(rows)), squeeze=False)
    for i, row in enumerate(rows):
        truth = panels[row]["truth"]
        for j in range(ncol):
            ax = axes[i, j]
            ax.axis("off")
            if j < len(panels[row]):
                name, img = list(panels[row].items())[j]
                ax.imshow(img[0, 0].cpu().numpy(), cmap="gray", vmin=0, vmax=1)
                label = row if name == "truth" else f"{name}\n{float(psnr(img, truth, data_range=1.0)[0]):.2f} dB"
                ax.set_title(label, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())

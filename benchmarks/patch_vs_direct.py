"""Whole-image score of a crop-trained prior: the network applied directly, or PaDIS patch assembly?

    python benchmarks/patch_vs_direct.py --checkpoint general --size 128 --patches 32 64 [--sampler cli pc]

On brain *validation* slices at `--size` (a size the prior never trained on whole images of), 8-view CT and
4x MRI, solve() with the same seeds: the network applied to the whole image against `PatchScore` with a
random shift per evaluation. Each is run with the command line's settings for the task (`--sampler cli`:
`sgm_inverse.tasks.solve_settings`, DDNM warm-started from FISTA-TV) and/or with the PC sampler at the
task's PC defaults (`--sampler pc`; `--steps` overrides the steps of both). Writes
benchmarks/results/patch_vs_direct.{json,md}. Decides which the command line uses (validation only; no
test image, no real scan).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, checkpoint_step, markdown_table, provenance, write_results  # noqa: E402

from forward_models import SparseViewCT, UndersampledMRI  # noqa: E402
from sgm_inverse import load_score_model, solve  # noqa: E402
from sgm_inverse.data import BrainSlices  # noqa: E402
from sgm_inverse.metrics import psnr, ssim  # noqa: E402
from sgm_inverse.patch_score import PatchScore  # noqa: E402
from sgm_inverse.tasks import solve_settings, task_of  # noqa: E402


def sampler_label(run) -> str:
    """'ddnm 50 x 4 from fista-tv at t0 0.2' / 'pc 200 snr 0.5' (x K: the mean of K samples)."""
    label = f"{run.sampler} {run.steps}" + (f" x {run.samples}" if run.samples > 1 else "")
    if run.snr is not None:
        label += f" snr {run.snr:g}"
    if run.warm is not None:
        label += f" from {run.warm[1]} at t0 {run.warm[0]:g}"
    return label


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="general")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--patches", type=int, nargs="+", default=[32, 64])
    ap.add_argument("-n", type=int, default=4)
    ap.add_argument("--sampler", nargs="+", choices=["cli", "pc"], default=["cli"],
                    help="cli: the command line's default for the task; pc: PC at the task's PC defaults")
    ap.add_argument("--steps", type=int, help="override the steps of every sampler run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prov = provenance()
    val = BrainSlices("val", image_size=args.size).images
    x = val[np.linspace(0, len(val) - 1, args.n).round().astype(int)]
    model = load_score_model(args.checkpoint)
    priors = {"direct": model, **{f"patch{p}": PatchScore(model, p, torch.Generator().manual_seed(0))
                                  for p in args.patches}}
    rows = []
    for setting, op in {"ct8": SparseViewCT(args.size, 8), "mri4": UndersampledMRI(args.size, acceleration=4)}.items():
        task, y = task_of(op), op(x)
        for sampler in args.sampler:
            run = solve_settings(task, steps=args.steps) if sampler == "cli" else \
                solve_settings(task, sampler="pc", steps=args.steps)
            # the warm start's FISTA-TV is computed once per setting and sampler, outside the timed solve
            kw, _ = run.solve_kwargs(task, op, y)
            for name, prior in priors.items():
                t0 = time.time()
                sol = solve(y, op, prior, seed=0, progress=False, ood_check=False, **kw)
                r = sol.mean.clamp(0, 1)
                rows.append({"setting": setting, "sampler": sampler_label(run), "score": name,
                             "checkpoint": args.checkpoint, "checkpoint_step": checkpoint_step(model),
                             "size": args.size, "n": args.n, "nfe_per_image": sol.nfe * run.samples,
                             "psnr": round(float(psnr(r, x, data_range=1.0).mean()), 2),
                             "ssim": round(float(ssim(r, x, data_range=1.0).mean()), 3),
                             "seconds_per_image": round((time.time() - t0) / args.n, 1)})
                print(rows[-1], flush=True)
    table = markdown_table(rows, ["setting", "sampler", "score", "checkpoint_step", "size", "n", "nfe_per_image",
                                  "psnr", "ssim", "seconds_per_image"])
    write_results("patch_vs_direct", rows, table, out_dir=args.out, prov=prov)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

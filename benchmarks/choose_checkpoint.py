"""Choose among a training run's checkpoints by validation reconstruction PSNR, not by loss.

    python benchmarks/choose_checkpoint.py runs/general_snapshots/step* runs/general_live/ema

Each checkpoint reconstructs the same validation images (brain and ellipses *val* splits, 64 x 64; never a
test image, never a real scan) from 8-view parallel CT and 4x equispaced MRI with solve() (projection, CG
consistency, `--steps` PC steps, snr 1.0, one sample, fixed seed), or with `--sampler cli` as the command line
runs them (`sgm_inverse.tasks.solve_settings`: DDNM warm-started from FISTA-TV; `--steps` overrides its steps);
the mean PSNR over all of them ranks the checkpoints. Writes benchmarks/results/<stem>.json/.md.
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
from sgm_inverse.data import BrainSlices, Ellipses  # noqa: E402
from sgm_inverse.metrics import psnr, ssim  # noqa: E402
from sgm_inverse.tasks import solve_settings, task_of  # noqa: E402


def validation_set(n: int) -> dict:
    brain = BrainSlices("val").images
    ell = Ellipses("val")
    idx = np.linspace(0, len(brain) - 1, n).round().astype(int)
    return {"brain": brain[idx], "ellipses": torch.stack([ell[int(i)] for i in range(n)])}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="+")
    ap.add_argument("-n", type=int, default=4, help="validation images per data set")
    ap.add_argument("--sampler", choices=["pc", "cli"], default="pc",
                    help="pc: PC, --steps steps at snr 1.0; cli: the command line's default for the task")
    ap.add_argument("--steps", type=int, help="PC steps (default 100), or the cli sampler's (default its own)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stem", default="general_checkpoint_choice")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prov = provenance()
    images = validation_set(args.n)
    problems = {"ct8": SparseViewCT(64, 8), "mri4": UndersampledMRI(64, acceleration=4)}
    cli_kwargs = {}     # (data, problem) -> solve() keywords of the cli sampler, its warm start computed once

    def kwargs(data: str, name: str, op, y) -> dict:
        if args.sampler == "pc":
            return {"steps": args.steps or 100, "snr": 1.0}
        if (data, name) not in cli_kwargs:
            task = task_of(op)
            cli_kwargs[data, name] = solve_settings(task, steps=args.steps).solve_kwargs(task, op, y)[0]
        return cli_kwargs[data, name]

    rows = []
    for ckpt in args.checkpoints:
        model = load_score_model(ckpt)
        row = {"checkpoint": ckpt, "step": checkpoint_step(model), "sampler": args.sampler}
        scores = []
        t0 = time.time()
        for data, x in images.items():
            for name, op in problems.items():
                y = op(x)
                sol = solve(y, op, model, seed=0, progress=False, ood_check=False, **kwargs(data, name, op, y))
                r = sol.mean.clamp(0, 1)
                p = float(psnr(r, x, data_range=1.0).mean())
                row[f"{data}_{name}"] = round(p, 2)
                row[f"{data}_{name}_ssim"] = round(float(ssim(r, x, data_range=1.0).mean()), 3)
                scores.append(p)
        row["mean_psnr"] = round(float(np.mean(scores)), 3)
        row["seconds"] = round(time.time() - t0, 1)
        rows.append(row)
        print(row, flush=True)
    best = max(rows, key=lambda r: r["mean_psnr"])
    cols = ["checkpoint", "step", "brain_ct8", "brain_mri4", "ellipses_ct8", "ellipses_mri4", "mean_psnr", "seconds"]
    table = markdown_table(rows, cols) + f"\n\nBest by mean validation PSNR: `{best['checkpoint']}` (step {best['step']})."
    write_results(args.stem, rows, table, out_dir=args.out, prov=prov)
    print(f"best: {best['checkpoint']} (step {best['step']}, {best['mean_psnr']:.2f} dB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

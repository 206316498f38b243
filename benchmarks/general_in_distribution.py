"""The general prior on the in-distribution test splits, beside validation-tuned FISTA-TV and the domain priors.

    python benchmarks/general_in_distribution.py --settings brain-ct8 brain-ct23 brain-mri4 brain-mri8 \
        ellipses-ct8 ellipses-ct23 --methods baseline fista_tv general general:cli

25 test images per setting (evenly spaced over the test split, as benchmarks/reconstruction.py takes them),
64 x 64, noise-free. Settings: parallel-beam CT at 4, 6, 8 and 23 views over pi, fan-beam CT at 8 views over
2 pi (`ctfan8`), equispaced MRI at 4x and 8x, for the brain and the ellipses data sets. FISTA-TV: lam = c ||A||^2
with c grid-searched on 8 *validation* images of the same data set and setting. Score priors, the same for
every prior and setting (nothing is tuned on the test split):
  <checkpoint>      PC with projection and CG consistency, `--steps` steps at snr `--snr`, one sample;
  <checkpoint>:cli  the command line's default for the task (`sgm_inverse.tasks.solve_settings`: the mean of 4
                    (CT) or 8 (MRI) DDNM samples warm-started at t0), warm-started from this setting's
                    validation-tuned FISTA-TV (the row above it) rather than the command line's brain-tuned weight.
Writes benchmarks/results/<stem>.{json,md}; `--merge` keeps the rows of the settings this run does not redo
(several runs, e.g. one per core, may merge into the same file: the read-merge-write holds a lock).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import (RESULTS, checkpoint_step, file_lock, markdown_table, merge_records, provenance,  # noqa: E402
                    tuned_fista_tv, write_results)

from forward_models import SparseViewCT, UndersampledMRI  # noqa: E402
from sgm_inverse import load_score_model, solve  # noqa: E402
from sgm_inverse.baselines import fbp, zero_filled  # noqa: E402
from sgm_inverse.data import get_dataset  # noqa: E402
from sgm_inverse.metrics import psnr, ssim  # noqa: E402
from sgm_inverse.tasks import solve_settings, task_of  # noqa: E402

FISTA_C = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2)
SETTINGS = {f"{d}-{k}{n}": (d, k, n) for d in ("brain", "ellipses") for k, n in
            (("ct", 4), ("ct", 6), ("ct", 8), ("ct", 23), ("ctfan", 8), ("mri", 4), ("mri", 8))}


def operator(kind: str, n: int, size: int = 64):
    """The forward model of a setting: parallel-beam CT over pi, fan-beam CT over 2 pi (astra's default source
    and detector distances, as benchmarks/ct_sparse_view.py), or equispaced Cartesian MRI."""
    if kind == "ct":
        return SparseViewCT(size, n)
    if kind == "ctfan":
        return SparseViewCT(size, n, geometry="fan", angular_range=2 * math.pi)
    return UndersampledMRI(size, acceleration=n)


def images(dataset: str, split: str, n: int) -> torch.Tensor:
    data = get_dataset(dataset, split, image_size=64)
    idx = np.linspace(0, len(data) - 1, n).round().astype(int)
    return torch.stack([data[int(i)] for i in idx])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=["brain-ct8", "brain-mri4"])
    ap.add_argument("--methods", nargs="+", default=["baseline", "fista_tv", "general"])
    ap.add_argument("-n", type=int, default=25)
    ap.add_argument("--n-val", type=int, default=8)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--snr", type=float, default=0.5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of <stem>.json whose setting this run does not redo")
    ap.add_argument("--stem", default="general_in_distribution")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prov = provenance()
    rows = []
    models = {}
    for name in args.settings:
        dataset, kind, n = SETTINGS[name]
        op = operator(kind, n)
        task = task_of(op)
        x = images(dataset, "test", args.n)
        y = op(x)
        fista = None        # this setting's validation-tuned FISTA-TV reconstruction (also the :cli warm start)

        def fista_recon():
            nonlocal fista
            if fista is None:
                fista = tuned_fista_tv(op, images(dataset, "val", args.n_val), y, FISTA_C, n_iter=300)
            return fista

        for method in args.methods:
            t0, extra = time.time(), {}
            if method == "baseline":
                label, r = ("FBP", fbp(op, y)) if task == "ct" else ("zero-filled", zero_filled(op, y))
            elif method == "fista_tv":
                c, r = fista_recon()
                label, extra = "FISTA-TV", {"lam_over_L": c, "at_grid_edge": c in (FISTA_C[0], FISTA_C[-1])}
            else:
                checkpoint, cli = method.removesuffix(":cli"), method.endswith(":cli")
                if checkpoint not in models:
                    models[checkpoint] = load_score_model(checkpoint)
                model = models[checkpoint]
                if cli:
                    run = solve_settings(task)
                    kw = run.sampler_kwargs()   # the warm start from this setting's FISTA-TV, not the CLI's
                    if run.warm is not None:
                        t_fista = time.time()
                        kw.update(x_init=fista_recon()[1], t_start=run.warm[0])
                        t0 += time.time() - t_fista    # FISTA-TV is timed in its own row
                    extra = {"sampler": run.sampler, "steps": run.steps, "samples": run.samples,
                             "warm_start": [run.warm[0], "fista-tv (setting-tuned)"] if run.warm else None}
                else:
                    kw = {"steps": args.steps, "snr": args.snr}
                    extra = {"sampler": "pc", "steps": args.steps, "snr": args.snr, "samples": 1}
                sol = solve(y, op, model, seed=0, progress=False, ood_check=False, **kw)
                label, r = method, sol.mean
                extra.update(nfe_per_image=sol.nfe * extra["samples"], checkpoint=checkpoint,
                             checkpoint_step=checkpoint_step(model))
            r = r.clamp(0, 1)
            p, s = psnr(r, x, data_range=1.0), ssim(r, x, data_range=1.0)
            rows.append({"setting": name, "method": label, "n": args.n, "psnr": round(float(p.mean()), 2),
                         "psnr_std": round(float(p.std()), 2), "ssim": round(float(s.mean()), 3),
                         "seconds_per_image": round((time.time() - t0) / args.n, 2), **extra})
            print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    with file_lock(args.out / f".{args.stem}.lock"):
        old_prov = None
        if args.merge:
            rows, old_prov = merge_records(args.out / f"{args.stem}.json", rows, key=lambda r: r["setting"])
        if old_prov is not None:
            rows.sort(key=lambda r: list(SETTINGS).index(r["setting"]))   # stable: method order
            kept = sorted({r["setting"] for r in rows} - set(args.settings))
            prov["merged"] = f"settings {args.settings} by this command; {kept} from: {old_prov.get('command')}"
        table = markdown_table(rows, ["setting", "method", "n", "psnr", "psnr_std", "ssim", "sampler", "steps",
                                      "samples", "nfe_per_image", "seconds_per_image"])
        write_results(args.stem, rows, table, out_dir=args.out, prov=prov)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Choose the sampler defaults of `sgm-inverse solve ct|mri` for the resolution-free prior, on validation images.

    python benchmarks/cli_sampler_choice.py                      # general prior, brain val 128 x 128, ct8 + mri4
    python benchmarks/cli_sampler_choice.py -n 3 --size 128 --checkpoint general

The command line reconstructs a user's scan at its own size with the `general` prior, so its defaults are
chosen here, on brain *validation* slices at 128 x 128 (never a test image, never a real scan), from 8-view
parallel CT and 4x equispaced MRI, noise-free, one sample, fixed seed. Candidates:

    pc            the previous default: 200 PC steps (401 NFE), snr 0.5, projection with CG consistency
    ddnm          200 steps from noise (200 NFE)
    ddnm+ws       a warm start from FISTA-TV (validation-tuned weight, `sgm_inverse.tasks.run_baseline`, as the
                  command line computes it) at t0, then `steps` DDNM steps; "x K" (`--ws-samples`): the mean
                  of K such samples (K times the network evaluations)

The small-image study (benchmarks/sampler_nfe.py, brain64 / ellipses64 at 64 x 64) chose DDNM warm-started
from FISTA-TV; this checks that the choice carries over to the general prior at 128 x 128 and picks t0 and the
steps. Writes benchmarks/results/<stem>.json / .md (mean PSNR / SSIM per candidate and setting).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, checkpoint_step, markdown_table, merge_records, provenance, write_results  # noqa: E402

from forward_models import SparseViewCT, UndersampledMRI  # noqa: E402
from sgm_inverse import load_score_model, solve  # noqa: E402
from sgm_inverse.data import BrainSlices  # noqa: E402
from sgm_inverse.metrics import psnr, ssim  # noqa: E402
from sgm_inverse.tasks import run_baseline  # noqa: E402


def candidates(args) -> list:
    """(label, solve keywords, warm-start t0 or None)."""
    out = [("pc 200 steps", {"sampler": "pc", "steps": 200, "snr": 0.5}, None),
           ("ddnm 200", {"sampler": "ddnm", "steps": 200}, None)]
    for t0 in args.t0:
        for steps in args.ws_steps:
            for k in args.ws_samples:
                out.append((f"ddnm+ws t0={t0:g} {steps}" + (f" x {k}" if k > 1 else ""),
                            {"sampler": "ddnm", "steps": steps, "n_samples": k}, t0))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="general")
    ap.add_argument("-n", type=int, default=3, help="brain validation slices (evenly spaced)")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--t0", type=float, nargs="+", default=[0.2, 0.3])
    ap.add_argument("--ws-steps", type=int, nargs="+", default=[50, 100])
    ap.add_argument("--ws-samples", type=int, nargs="+", default=[1],
                    help="samples averaged by the warm-started candidates (the reconstruction is their mean)")
    ap.add_argument("--settings", nargs="+", default=["ct8", "mri4"], choices=["ct8", "mri4"])
    ap.add_argument("--skip-pc", action="store_true", help="leave out the (slow) PC candidate")
    ap.add_argument("--merge", action="store_true",
                    help="keep the rows of <stem>.json that this run does not redo (same setting and candidate)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stem", default="cli_sampler_choice")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prov = provenance()
    val = BrainSlices("val", image_size=args.size).images
    idx = np.linspace(0, len(val) - 1, args.n).round().astype(int)
    x = val[idx]
    model = load_score_model(args.checkpoint)
    problems = {"ct8": ("ct", SparseViewCT(args.size, 8)), "mri4": ("mri", UndersampledMRI(args.size, acceleration=4))}
    rows, start = [], time.time()
    ckpt = {"checkpoint": args.checkpoint, "checkpoint_step": checkpoint_step(model)}   # benchmarks/stale_results.py
    todo = [c for c in candidates(args) if not (args.skip_pc and c[1]["sampler"] == "pc")]
    for setting, (task, op) in [(k, v) for k, v in problems.items() if k in args.settings]:
        y = op(x)
        tv = torch.cat([run_baseline("fista-tv", task, op, y[i:i + 1], progress=False)[0] for i in range(len(x))])
        rows.append({**ckpt, "setting": setting, "candidate": "fista-tv (no prior)", "nfe": 0,
                     "psnr": round(float(psnr(tv.clamp(0, 1), x, data_range=1.0).mean()), 2),
                     "ssim": round(float(ssim(tv.clamp(0, 1), x, data_range=1.0).mean()), 3), "seconds_per_image": 0})
        for label, kw, t0 in todo:
            t = time.time()
            warm = {} if t0 is None else {"x_init": tv, "t_start": t0}
            sol = solve(y, op, model, seed=0, progress=False, ood_check=False, **kw, **warm)
            r = sol.mean.clamp(0, 1)
            row = {**ckpt, "setting": setting, "candidate": label, "nfe": sol.nfe * kw.get("n_samples", 1),
                   "psnr": round(float(psnr(r, x, data_range=1.0).mean()), 2),
                   "ssim": round(float(ssim(r, x, data_range=1.0).mean()), 3),
                   "seconds_per_image": round((time.time() - t) / len(x), 1)}
            rows.append(row)
            print(row, flush=True)
    if args.merge:
        redone = sorted({(r["setting"], r["candidate"]) for r in rows})
        rows, old_prov = merge_records(args.out / f"{args.stem}.json", rows,
                                       key=lambda r: (r["setting"], r["candidate"]))
        if old_prov is not None:
            rows.sort(key=lambda r: ["ct8", "mri4"].index(r["setting"]))
            prov["merged"] = f"rows {redone} redone by this command; the others from the previous run"
    labels = [c[0] for c in candidates(args)]
    means = {lab: float(np.mean([r["psnr"] for r in rows if r["candidate"] == lab])) for lab in labels
             if any(r["candidate"] == lab for r in rows)}
    best = max(means, key=means.get)
    table = markdown_table(rows, ["setting", "candidate", "nfe", "psnr", "ssim", "seconds_per_image"])
    table += (f"\n\nBrain validation slices {idx.tolist()} at {args.size} x {args.size}, checkpoint "
              f"`{args.checkpoint}`. Mean PSNR over {' and '.join(args.settings)}: "
              + ", ".join(f"{k} {v:.2f}" for k, v in means.items()) + f". Best: **{best}**. "
              f"Wall time {time.time() - start:.0f} s.")
    write_results(args.stem, rows, table, out_dir=args.out, prov=prov)
    print(f"best: {best} ({means[best]:.2f} dB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Whole-image score of a crop-trained prior: the network applied directly, or PaDIS patch assembly?

    python benchmarks/patch_vs_direct.py --checkpoint general --size 128 --patches 32 64

On brain *validation* slices at `--size` (a size the prior never trained on whole images of), 8-view CT and
4x MRI, solve() with the same seeds: the network applied to the whole image against `PatchScore` with a
random shift per evaluation. Writes benchmarks/results/patch_vs_direct.{json,md}. Decides which the command
line uses (validation only; no test image, no real scan).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, markdown_table, provenance, write_results  # noqa: E402

from forward_models import SparseViewCT, UndersampledMRI  # noqa: E402
from sgm_inverse import load_score_model, solve  # noqa: E402
from sgm_inverse.data import BrainSlices  # noqa: E402
from sgm_inverse.metrics import psnr, ssim  # noqa: E402
from sgm_inverse.patch_score import PatchScore  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="general")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--patches", type=int, nargs="+", default=[32, 64])
    ap.add_argument("-n", type=int, default=4)
    ap.add_argument("--steps", type=int, default=100)
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
        for name, prior in priors.items():
            t0 = time.time()
            sol = solve(op(x), op, prior, steps=args.steps, snr=1.0, seed=0, progress=False, ood_check=False)
            r = sol.mean.clamp(0, 1)
            rows.append({"setting": setting, "score": name, "size": args.size, "n": args.n, "steps": args.steps,
                         "psnr": round(float(psnr(r, x, data_range=1.0).mean()), 2),
                         "ssim": round(float(ssim(r, x, data_range=1.0).mean()), 3),
                         "seconds": round(time.time() - t0, 1)})
            print(rows[-1], flush=True)
    table = markdown_table(rows, ["setting", "score", "size", "n", "steps", "psnr", "ssim", "seconds"])
    write_results("patch_vs_direct", rows, table, out_dir=args.out, prov=prov)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

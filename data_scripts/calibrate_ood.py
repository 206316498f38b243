"""Calibrate a checkpoint's out-of-distribution warning on its validation images and store it in its config.

    python data_scripts/calibrate_ood.py brain64
    python data_scripts/calibrate_ood.py general --config path/to/config.json   # a checkpoint not yet shipped

Measures `sgm_inverse.ood.denoising_gain_ratio` on the least-squares estimates of the validation images
under 8- and 23-view parallel CT and 4x / 8x equispaced MRI (noise-free) and writes the "ood" block
(max, median, threshold = 1.5 max) into the checkpoint's JSON config; `solve()` warns above the threshold.
Validation images only: the test splits and the real scans of benchmarks/real_scans.py are never used.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from forward_models import SparseViewCT, UndersampledMRI
from sgm_inverse import load_score_model
from sgm_inverse.checkpoints import resolve_checkpoint
from sgm_inverse.data import BrainSlices, Ellipses
from sgm_inverse.ood import calibrate

# which validation images calibrate which prior (the data it was trained on; both for the general prior)
VALIDATION = {"brain64": ("brain",), "ellipses64": ("ellipses",), "general": ("brain", "ellipses")}


def validation_images(kinds, size: int, n: int = 40) -> torch.Tensor:
    out = []
    if "brain" in kinds:
        out.append(BrainSlices("val", image_size=size).images[:n])
    if "ellipses" in kinds:
        ds = Ellipses("val", image_size=size)
        out.append(torch.stack([ds[i] for i in range(min(n, len(ds)))]))
    return torch.cat(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", help="a shipped name or a checkpoint path")
    ap.add_argument("--data", nargs="+", choices=["brain", "ellipses"],
                    help="validation images to calibrate on (default: by shipped name)")
    ap.add_argument("--size", type=int, default=64, help="image size of the calibration problems")
    ap.add_argument("-n", type=int, default=40, help="validation images per data set")
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    name = Path(args.checkpoint).name
    kinds = args.data or VALIDATION.get(name)
    if not kinds:
        raise SystemExit(f"say which validation images calibrate {args.checkpoint!r} (--data)")
    model = load_score_model(args.checkpoint)
    images = validation_images(kinds, args.size, args.n)
    ops = [SparseViewCT(args.size, 8), SparseViewCT(args.size, 23),
           UndersampledMRI(args.size, acceleration=4), UndersampledMRI(args.size, acceleration=8)]
    block = calibrate(model, images, ops)
    block.update({"data": list(kinds), "size": args.size})
    _, cfg_path = resolve_checkpoint(args.checkpoint)
    config = json.loads(cfg_path.read_text())
    config["ood"] = block
    cfg_path.write_text(json.dumps(config, indent=2) + "\n")
    print(f"{cfg_path}: ood {block}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

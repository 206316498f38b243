"""Denoising error of score-model checkpoints by noise level, beside what predicting the data mean scores.

    python benchmarks/denoising_error.py --checkpoint NAME_OR_PATH [NAME_OR_PATH ...] [--names A B ...]
        [-n 64] [--levels 12] [--seed 0] [--images heldout|train] [--dataset auto] [--stem NAME]
        [--out benchmarks/results] [--bf16]

For each checkpoint: n held-out images (the split sample_quality.py uses; `--images train`: n training images,
unaugmented, for a data set whose held-out split is another distribution, as brain's mid-brain slabs, whose mean
the denoiser should not be expected to predict at high noise), noised at `--levels` times evenly
spaced over [eps, T] (for a VE SDE: evenly in log sigma), denoised by Tweedie's formula; per level the mse,
the mse of predicting the images' mean (mse_mean: the MMSE's limit at high noise), their ratio and the
mean-intensity bias of the denoiser (`sgm_inverse.denoising_error`). Every checkpoint sees the same images
and the same noise (seeded), so the rows compare checkpoints, not draws. A ratio above 1 at high noise, or a
large bias there, means samples of the wrong brightness or layout, however low the training loss.

Writes <out>/denoising_error_<stem>.json / .md (one record per checkpoint and level) and .png (ratio and
bias against sigma, one line per checkpoint); stem: --stem, else the first checkpoint's name.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

try:  # a checkout without `pip install -e .`: use the package next to benchmarks/
    import sgm_inverse  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgm_inverse import load_score_model
from sgm_inverse.denoising_error import denoising_error, noise_times

from common import RESULTS, checkpoint_step, markdown_table, provenance, write_results
from sample_quality import checkpoint_name, heldout_images, load_images

COLUMNS = ["checkpoint", "step", "sigma", "mse", "mse_mean", "ratio", "mean_bias"]


def plot(records: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name in dict.fromkeys(r["checkpoint"] for r in records):
        rows = [r for r in records if r["checkpoint"] == name]
        label = f"{name} (step {rows[0]['step']})"
        ax1.plot([r["sigma"] for r in rows], [r["ratio"] for r in rows], "o-", label=label)
        ax2.plot([r["sigma"] for r in rows], [r["mean_bias"] for r in rows], "o-", label=label)
    ax1.axhline(1.0, color="k", lw=0.8, ls="--")
    ax1.set(xscale="log", xlabel="noise level sigma", ylabel="mse / mse of the data mean",
            title="denoising error (1 = predicting the mean)")
    ax2.axhline(0.0, color="k", lw=0.8, ls="--")
    ax2.set(xscale="log", xlabel="noise level sigma", ylabel="mean(D) - mean(x0)", title="brightness bias")
    ax1.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", nargs="+", required=True, help="shipped names, checkpoint directories or .safetensors")
    ap.add_argument("--names", nargs="+", help="names in the output (default: from each checkpoint)")
    ap.add_argument("-n", type=int, default=64, help="images (at most; a fixed seeded subset)")
    ap.add_argument("--levels", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", choices=("heldout", "train"), default="heldout",
                    help="held-out images (default) or training images (unaugmented)")
    ap.add_argument("--dataset", default="auto", help="auto: the first checkpoint's config data.dataset")
    ap.add_argument("--stem", help="output file stem after denoising_error_ (default: the first name)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--bf16", action="store_true", help="run the networks under bfloat16 autocast")
    args = ap.parse_args(argv)
    names = args.names or [checkpoint_name(c) for c in args.checkpoint]
    if len(names) != len(args.checkpoint):
        ap.error(f"--names gives {len(names)} names for {len(args.checkpoint)} checkpoints")
    device = torch.device(args.device)
    models = [load_score_model(c, device=device) for c in args.checkpoint]
    dataset = models[0].config.get("data", {}).get("dataset") if args.dataset == "auto" else args.dataset
    if not dataset:
        ap.error("the checkpoint's config names no data set (data.dataset); pass --dataset")
    shapes = {tuple(m.image_shape) for m in models}
    if len(shapes) != 1:
        ap.error(f"the checkpoints differ in image shape: {sorted(shapes)}")
    size = shapes.pop()[-1]
    images, split = heldout_images(dataset, size, args.n) if args.images == "heldout" else \
        (load_images(dataset, "train", size, args.n), "train")

    prov = provenance(device)
    records = []
    for name, arg, model in zip(names, args.checkpoint, models):
        model.autocast = torch.bfloat16 if args.bf16 else None
        t0 = time.perf_counter()
        rows = denoising_error(model, images.to(device), noise_times(model.sde, args.levels),
                               generator=torch.Generator(device=device).manual_seed(args.seed))
        seconds = time.perf_counter() - t0
        for row in rows:
            records.append({"checkpoint": name, "checkpoint_arg": str(arg), "step": checkpoint_step(model),
                            "dataset": dataset, "split": split, "n_images": len(images), **row,
                            "network_precision": "bf16" if args.bf16 else "fp32", "seed": args.seed,
                            "seconds": seconds, "command": prov["command"], "commit": prov["commit"]})
    stem = f"denoising_error_{args.stem or names[0]}"
    table = markdown_table(records, COLUMNS)
    write_results(stem, records, table, device=device, out_dir=args.out, prov=prov)
    plot(records, args.out / f"{stem}.png", f"{dataset}: {len(images)} {split} images, seed {args.seed}")
    print(table)
    return records


if __name__ == "__main__":
    main()

"""Measured sample quality of a score-model checkpoint: Fréchet distance on fixed random features.

    python benchmarks/sample_quality.py --checkpoint NAME_OR_PATH [-n 500] [--steps 100]
        [--predictor ancestral|reverse_diffusion|euler_maruyama] [--corrector none|langevin] [--snr 0.16]
        [--seed 0] [--batch-size 50] [--out benchmarks/results]
        [--dataset auto] [--device cpu|cuda] [--name NAME] [--save-samples X.npy] [--bf16] [--quick]

Draws n unconditional PC samples (clamped to [0, 1]; default predictor ancestral: at 100 steps the
reverse-diffusion predictor adds too much noise per step and its samples come out too bright and too full,
e.g. ellipses64 mean intensity 0.24 against 0.13 for the data, ancestral 0.125) and reports, all with
`sgm_inverse.sample_quality.sample_fd` (RandomFeatures, seed 0):
  * fd_samples_train: FD(samples, n training images as the model saw them: drawn with replacement and passed
                through the data set's own augment, seed 1, unless the checkpoint was trained without it,
                `train_augmented`) -- the distribution the model is fitted to;
  * fd_floor_train: FD(that draw, a second one with seed 2) -- what the training distribution scores, n vs n;
  * fd_samples: FD(samples, held-out images) -- mixes sample quality with any shift between the splits (brain:
                held-out = the mid-brain slabs, training = the rest; patches: other photographs);
  * fd_floor:   FD(held-out half A, held-out half B), a fixed seeded permutation -- what two real sets of
                n_heldout / 2 images score (finite-N noise and bias; lower is not reachable);
  * fd_blurred: FD(held-out blurred with a Gaussian of sigma 1.5 px, held-out) -- what "blobs" score;
  * fd_train:   FD(first n training images, held-out) -- what real images from the other split score;
  * mean_samples / mean_train / mean_heldout: mean intensities (too bright = too much brain / ink / ellipse);
  * in_range_fraction: the share of sample pixels in [-0.25, 1.25] before clamping.
Held-out = the test split (brain: val + test, as its test split has only ~71 slices), all of it when it has
at most n images, else a fixed random subset (seed 0) of n; training images = n of the train split, chosen the
same way. The data set comes from the checkpoint's config unless --dataset is given.
Writes <out>/samples_<name>.png (samples_<name>_<predictor>.png for a predictor other than ancestral; labelled:
16 held-out images, 16 training images as augmented in training, 32 samples of this run) and
<out>/sample_quality_<name>.json / .md: one record per sampler (predictor, corrector, steps, n) of the checkpoint
at its current training step; a run replaces the record of the same sampler and keeps the others (each record
carries its own command and date), records of another training step are dropped. --quick: n = 16, steps = 10 (for tests).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

try:  # a checkout without `pip install -e .`: use the package next to benchmarks/
    import sgm_inverse  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgm_inverse import load_score_model, pc_sample
from sgm_inverse.checkpoints import resolve_checkpoint, training_cost
from sgm_inverse.data import get_dataset
from sgm_inverse.plotting import save_grid_sections
from sgm_inverse.sample_quality import sample_fd
from sgm_inverse.samplers import langevin, no_corrector
from sgm_inverse.samplers.predictors import PREDICTORS

from common import RESULTS, file_lock, markdown_table, provenance, write_results

CORRECTOR = {"none": no_corrector, "langevin": langevin}
DEFAULT_PREDICTOR = "ancestral"
COLUMNS = ["checkpoint", "dataset", "step", "n_samples", "n_heldout", "steps", "predictor", "corrector",
           "network_precision", "fd_samples_train", "fd_floor_train", "fd_samples", "fd_floor", "fd_blurred",
           "fd_train", "mean_samples", "mean_train", "mean_heldout", "in_range_fraction", "seconds"]


def gaussian_blur(x: torch.Tensor, sigma: float = 1.5) -> torch.Tensor:
    """Separable Gaussian blur of (B, C, H, W), kernel radius ceil(3 sigma), reflect padding."""
    r = math.ceil(3 * sigma)
    k = torch.exp(-torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).repeat(x.shape[1], 1, 1, 1)               # (C, 1, 1, 2r + 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k, groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.transpose(-1, -2), groups=x.shape[1])


def load_images(name: str, split: str, image_size: int, n: int | None = None) -> torch.Tensor:
    """n items of a split (all when None or fewer, in order) as (N, C, H, W); (image, label) items give image.

    A subset is a fixed random one (seed 0, sorted): the first n would be e.g. adjacent brain slices of one axis.
    """
    ds = get_dataset(name, split, image_size=image_size)
    idx = range(len(ds)) if n is None or n >= len(ds) else \
        torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:n].sort().values.tolist()
    items = [ds[i] for i in idx]
    return torch.stack([it[0] if isinstance(it, tuple) else it for it in items])


def heldout_images(name: str, image_size: int, n: int) -> tuple[torch.Tensor, str]:
    """(at most n held-out images (N, C, H, W), the split they come from): the test split, except brain's
    val + test (its test slab alone is ~71 slices: too few for a stable FD), a fixed random subset (seed 0)."""
    if name != "brain":
        return load_images(name, "test", image_size, n), "test"
    heldout = torch.cat([load_images(name, s, image_size) for s in ("val", "test")])
    if len(heldout) > n:
        heldout = heldout[torch.randperm(len(heldout), generator=torch.Generator().manual_seed(0))[:n]]
    return heldout, "val+test"


def trained_on(ds, n: int, seed: int, augmented: bool = True) -> torch.Tensor:
    """n images of the training data set `ds` as the model saw them: drawn with replacement, then (`augmented`)
    `ds.augment`.

    This is the distribution a score model is fitted to. Held-out images can come from another one (brain: the
    mid-brain slabs; patches: other photographs), so FD to them mixes sample quality with that shift.
    """
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randint(len(ds), (n,), generator=gen).tolist()
    items = [ds[i] for i in idx]
    x = torch.stack([it[0] if isinstance(it, tuple) else it for it in items])
    return ds.augment(x, gen) if augmented else x


def was_augmented(config: dict) -> bool:
    """Whether a checkpoint was trained on augmented images: its data.augment record (`train` writes it), else
    whether its training command lacks --no-augment (checkpoints from before the record)."""
    data = config.get("data", {})
    if "augment" in data:
        return data["augment"] not in (None, "no_augment")
    return "--no-augment" not in config.get("command", "")


def checkpoint_name(ckpt: str) -> str:
    p = Path(ckpt)
    name = p.stem if p.suffix == ".safetensors" else p.name
    return f"{p.parent.name}_{name}" if name in ("ema", "model", "final", "latest") else name


def grid_name(name: str, predictor: str) -> str:
    """samples_<name>.png for the default predictor (ancestral), samples_<name>_<predictor>.png for the others,
    so that measuring a second sampler does not replace the grid of the first."""
    return f"samples_{name}.png" if predictor == DEFAULT_PREDICTOR else f"samples_{name}_{predictor}.png"


def weights_mb(ckpt: str) -> float | None:
    try:
        return round(resolve_checkpoint(ckpt)[0].stat().st_size / 2 ** 20, 2)
    except (OSError, ValueError):
        return None


def draw_samples(model, shape, n, args, device) -> tuple[torch.Tensor, int]:
    """n samples (unclamped) in batches of args.batch_size, batch i seeded with seed + i; returns (x, NFE)."""
    out, info = [], {}
    for i, start in enumerate(range(0, n, args.batch_size)):
        b = min(args.batch_size, n - start)
        gen = torch.Generator(device=device).manual_seed(args.seed + i)
        out.append(pc_sample(model, (b, *shape), steps=args.steps, predictor=PREDICTORS[args.predictor],
                             corrector=CORRECTOR[args.corrector],
                             snr=args.snr, generator=gen, progress=not args.no_progress, info=info).cpu())
    return torch.cat(out), info.get("nfe")


def sampler_of(record: dict) -> tuple:
    # records from before the predictor (the precision) was recorded ran reverse_diffusion (fp32)
    return (record.get("predictor", "reverse_diffusion"), record.get("corrector"), record.get("steps"),
            record.get("n_samples"), record.get("network_precision", "fp32"))


def earlier_records(path: Path, record: dict) -> list:
    """The records of an existing results file to keep beside `record`: same checkpoint step, other sampler."""
    if not path.exists():
        return []
    return [r for r in json.loads(path.read_text())["records"]
            if r.get("step") == record["step"] and sampler_of(r) != sampler_of(record)]


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="shipped name, checkpoint directory or .safetensors")
    ap.add_argument("-n", type=int, default=500, help="samples (and at most this many held-out / train images)")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--predictor", choices=sorted(k for k in PREDICTORS if k != "none"), default=DEFAULT_PREDICTOR)
    ap.add_argument("--corrector", choices=sorted(CORRECTOR), default="langevin")
    ap.add_argument("--snr", type=float, default=0.16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--dataset", default="auto", help="auto: the checkpoint's config data.dataset")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--name", default=None, help="name in the output files (default: from the checkpoint)")
    ap.add_argument("--bf16", action="store_true",
                    help="run the network under bfloat16 autocast (ScoreModel.autocast): faster on CPUs with "
                         "AVX512-BF16 or AMX")
    ap.add_argument("--save-samples", type=Path, metavar="NPY",
                    help="also write the (clamped) samples, (n, C, H, W) float32, to this .npy file")
    ap.add_argument("--quick", action="store_true", help="n = 16, steps = 10")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.steps = 16, 10
    if args.n < 4:
        ap.error("-n must be >= 4 (two halves of >= 2 held-out images)")
    device = torch.device(args.device)
    model = load_score_model(args.checkpoint, device=device)
    model.autocast = torch.bfloat16 if args.bf16 else None
    shape = tuple(model.image_shape)
    dataset = model.config.get("data", {}).get("dataset") if args.dataset == "auto" else args.dataset
    if not dataset:
        ap.error("the checkpoint's config names no data set (data.dataset); pass --dataset")
    name = args.name or checkpoint_name(args.checkpoint)

    heldout, heldout_split = heldout_images(dataset, shape[-1], args.n)
    train = load_images(dataset, "train", shape[-1], args.n)
    # two independent draws of the training distribution (seeds 1, 2): the reference and its floor at n vs n
    augmented = was_augmented(model.config)
    train_set = get_dataset(dataset, "train", image_size=shape[-1])
    seen_a, seen_b = (trained_on(train_set, args.n, seed, augmented) for seed in (1, 2))
    if heldout.shape[1:] != shape:
        raise SystemExit(f"data set {dataset!r} gives images {tuple(heldout.shape[1:])}, model expects {shape}")

    t0 = time.perf_counter()
    raw, nfe = draw_samples(model, shape, args.n, args, device)
    seconds = time.perf_counter() - t0
    samples = raw.clamp(0, 1)
    if args.save_samples:
        args.save_samples.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.save_samples, samples.numpy().astype("float32"))

    perm = torch.randperm(len(heldout), generator=torch.Generator().manual_seed(0))
    half_a, half_b = heldout[perm[: len(heldout) // 2]], heldout[perm[len(heldout) // 2:]]
    training = model.config.get("training", {})
    cost = training_cost(model.config)   # a fine-tuned checkpoint (train --init-from) includes its parent's
    record = {
        "checkpoint": name, "checkpoint_arg": str(args.checkpoint), "weights_mb": weights_mb(args.checkpoint),
        "step": training.get("step"), "images_seen": cost.get("images_seen"),
        "training_hours": cost["seconds"] / 3600 if "seconds" in cost else None,
        "init_from": model.config.get("init_from"),
        "final_loss": training.get("final_loss"),
        "dataset": dataset, "heldout_split": heldout_split, "n_samples": len(samples), "n_heldout": len(heldout),
        "n_train": len(train), "n_floor_half": len(half_a), "steps": args.steps,
        "predictor": args.predictor, "corrector": args.corrector,
        "snr": args.snr, "seed": args.seed, "nfe": nfe, "network_precision": "bf16" if args.bf16 else "fp32",
        "fd_samples": sample_fd(samples, heldout), "fd_floor": sample_fd(half_a, half_b),
        "fd_blurred": sample_fd(gaussian_blur(heldout, 1.5), heldout), "fd_train": sample_fd(train, heldout),
        "train_augmented": augmented, "fd_samples_train": sample_fd(samples, seen_a),
        "fd_floor_train": sample_fd(seen_a, seen_b),
        "mean_samples": float(samples.mean()), "mean_train": float(seen_a.mean()),
        "mean_heldout": float(heldout.mean()),
        "in_range_fraction": float(((raw >= -0.25) & (raw <= 1.25)).float().mean()),
        "seconds": seconds, "features": "RandomFeatures(seed=0, n_features=64)",
        # the start x_T ~ N(prior_mean, std(T)^2 I) (ScoreModel.prior_mean) or N(0, std(T)^2 I) (None)
        "prior_mean_norm": None if model.prior_mean is None else float(model.prior_mean.norm()),
    }

    prov = provenance(device)
    record.update(command=prov["command"], commit=prov["commit"], date=prov["date"])
    args.out.mkdir(parents=True, exist_ok=True)
    # read-merge-write under a lock: two runs for the same checkpoint (other samplers) would otherwise
    # each keep only the records they read, and one would lose the other's
    with file_lock(args.out / f".sample_quality_{name}.lock"):
        records = [*earlier_records(args.out / f"sample_quality_{name}.json", record), record]
        k = min(32, len(heldout), len(samples))
        k = k - k % 8 if k >= 8 else k
        seen_label = "training images, augmented as in training" if augmented else "training images (no augmentation)"
        sections = {f"held-out ({heldout_split})": heldout[:16], seen_label: seen_a[:16],
                    f"samples: {args.predictor}, {args.steps} steps": samples[:k]}
        save_grid_sections(sections, args.out / grid_name(name, args.predictor), nrow=8,
                           scale=2 if shape[-1] <= 32 else 1,
                           title=f"{name} step {record['step']}: FD to training {record['fd_samples_train']:.3g} "
                                 f"(floor {record['fd_floor_train']:.3g}), to held-out {record['fd_samples']:.3g} "
                                 f"(floor {record['fd_floor']:.3g}); mean intensity samples "
                                 f"{record['mean_samples']:.3f}, training {record['mean_train']:.3f}, held-out "
                                 f"{record['mean_heldout']:.3f}")
        table = markdown_table(records, COLUMNS)
        write_results(f"sample_quality_{name}", records, table, device=device, out_dir=args.out, prov=prov)
    print(table)
    return record


if __name__ == "__main__":
    main()

"""The command line of the reconstruction benchmarks: the shared options, their quick / full defaults,
the --grid-set overrides of a tuning grid, and the score checkpoint of each data set."""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import torch

try:  # a checkout without `pip install -e .`: use the package next to benchmarks/
    import sgm_inverse  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgm_inverse import load_score_model  # noqa: E402

from common import RESULTS, checkpoint_step  # noqa: E402
from recon_task import Task  # noqa: E402

DEFAULT_CHECKPOINTS = {"brain": "brain64", "ellipses": "ellipses64"}


def base_parser(description: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", nargs="+", default=None, metavar="[DATASET=]NAME_OR_PATH",
                    help="score checkpoint(s): a shipped name or a path for every data set, or DATASET=... "
                         "per data set (default: brain=brain64, ellipses=ellipses64)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (default 1: the many small ops oversubscribe shared cores)")
    ap.add_argument("--bf16", action="store_true",
                    help="run the score network under bfloat16 autocast (ScoreModel.autocast): 1.4-1.6x less time per "
                         "image on a CPU with AVX512-BF16 (brain, 8-view CT / 4x MRI); forward models and data "
                         "consistency stay fp32")
    ap.add_argument("--quick", action="store_true", help="4 images, 100 steps, a subset of the settings")
    ap.add_argument("--n-images", type=int, default=None, help="test images per setting (default 25, quick 4)")
    ap.add_argument("--n-val", type=int, default=None, help="validation images for tuning (default 8, quick 4)")
    ap.add_argument("--steps", type=int, default=None,
                    help="sampler steps (default: the tuned recommendation, else 1000; quick 100)")
    ap.add_argument("--n-samples", type=int, default=2, help="posterior samples per image (>= 2 for a std map)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS, help="output directory")
    ap.add_argument("--datasets", nargs="+", default=None)
    ap.add_argument("--methods", nargs="+", default=None, help="subset of the methods")
    ap.add_argument("--noise", nargs="+", type=float, default=None,
                    help="noise levels: noise_std as a fraction of the mean |A x| (0.01 = 1%%)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--fista-iters", type=int, default=300)
    ap.add_argument("--tune", action="store_true",
                    help="tune the score-based settings on the val split and write <name>_tuned.json")
    ap.add_argument("--tuned", type=Path, default=None, help="tuned settings file (default OUT/<name>_tuned.json)")
    ap.add_argument("--grid", choices=("default", "small", "tiny"), default=None,
                    help="tuning grids (default 'default'; quick 'tiny'; 'small' for a CPU budget)")
    ap.add_argument("--tune-steps", type=int, default=None,
                    help="steps during the grid search (default 250, quick 100)")
    ap.add_argument("--steps-study", nargs="+", type=int, default=None,
                    help="steps of the val steps study (default 100 250 500 1000; quick 25 50 100)")
    ap.add_argument("--grid-set", action="append", default=[], metavar="KEY=V1,V2",
                    help="override one entry of the chosen tuning grid, e.g. --grid-set snr=0.25,0.5 "
                         "(an empty list: KEY=); repeatable, recorded in the tuned file")
    ap.add_argument("--skip-steps-study", action="store_true",
                    help="--tune: leave the steps study of the tuned file as it is")
    ap.add_argument("--samples-study", nargs="+", type=int, default=None, metavar="K",
                    help="--tune: also measure on val, at the reference setting, the posterior mean of the "
                         "first K of max(K) samples (one run at --tune-steps), e.g. 1 2 4 8")
    ap.add_argument("--figure-rows", type=int, default=4)
    ap.add_argument("--no-progress", action="store_true")
    return ap


def finish_args(args, methods: tuple) -> argparse.Namespace:
    """Fill the quick / full defaults that depend on other options."""
    q = args.quick
    args.n_images = args.n_images or (4 if q else 25)
    args.n_val = args.n_val or (4 if q else 8)
    args.grid = args.grid or ("tiny" if q else "default")
    args.tune_steps = args.tune_steps or (100 if q else 250)
    args.steps_study = args.steps_study or ([25, 50, 100] if q else [100, 250, 500, 1000])
    args.methods = args.methods or list(methods)
    unknown = set(args.methods) - set(methods)
    if unknown:
        raise SystemExit(f"unknown method(s) {sorted(unknown)}; choose from {methods}")
    if args.n_samples < 1:
        raise SystemExit("--n-samples must be >= 1")
    args.progress = not args.no_progress
    args.tuned = args.tuned or Path(args.out) / f"{args.name}_tuned.json"
    if torch.device(args.device).type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    return args


def checkpoint_for(args, dataset: str) -> str:
    """--checkpoint entries: DATASET=NAME_OR_PATH for one data set, NAME_OR_PATH for all the others."""
    per, shared = {}, None
    for item in args.checkpoint or []:
        name, sep, value = item.partition("=")
        if sep and name in set(args.datasets) | set(DEFAULT_CHECKPOINTS):
            per[name] = value
        else:
            shared = item
    return per.get(dataset) or shared or DEFAULT_CHECKPOINTS.get(dataset, f"{dataset}{args.image_size}")


def load_model(args, dataset: str):
    ckpt = checkpoint_for(args, dataset)
    try:
        model = load_score_model(ckpt, device=args.device)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"cannot load the score checkpoint {ckpt!r} for data set {dataset!r}: {err}\n"
                         f"pass --checkpoint {dataset}=PATH, or run only the baselines with --methods") from err
    shape = tuple(getattr(model, "image_shape", None) or ())
    if shape and shape[-1] != args.image_size:
        raise SystemExit(f"checkpoint {ckpt!r} is for {shape} images but --image-size is {args.image_size}")
    if args.bf16:
        model.autocast = torch.bfloat16
    info = {"checkpoint": str(ckpt), "checkpoint_step": checkpoint_step(model),
            "checkpoint_data": model.config.get("data", {}).get("dataset"),
            "network_precision": "bf16" if args.bf16 else "fp32"}
    return model, info


def _grid_value(text: str):
    try:
        return float(text)
    except ValueError:
        return text


def with_grid_overrides(task: Task, grid_name: str, items: list) -> Task:
    """A copy of the task whose grid `grid_name` has the KEY=V1,V2 entries replaced (numbers where they parse)."""
    grid, known = dict(task.grids[grid_name]), set().union(*task.grids.values())  # any grid's keys
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or key not in known:
            raise SystemExit(f"--grid-set {item!r}: expected KEY=V1,V2 with KEY one of {sorted(known)}")
        grid[key] = [_grid_value(v) for v in values.split(",") if v]
    return replace(task, grids={**task.grids, grid_name: grid})

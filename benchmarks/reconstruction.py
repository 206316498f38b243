"""Shared machinery of the CT and MRI reconstruction benchmarks (ct_sparse_view.py, mri_undersampled.py).

A benchmark is a `Task` (forward-model family, baseline, settings, tuning grids). For every data
set x setting it
  1. loads `n_val` validation and `n_images` test images, evenly spaced over each split
     (index round(linspace(0, len - 1, n))), from `sgm_inverse.data.get_dataset`;
  2. builds the forward model; with noise level r > 0 sets noise_std = r * mean|A x| over the
     measured entries of the VALIDATION images (the same absolute sigma is then used for val
     and test) and draws y = A x + noise_std * n, n ~ N(0, I) (complex, E|n|^2 = 1, on the
     sampled k-space entries only for MRI), with fixed seeds;
  3. runs each method on the whole test batch at once:
       fbp / zero_filled   the classical direct inverse (FBP filter ramp/hann chosen on val);
       fista_tv            lam = c * ||A||^2, c grid-searched on val by `tune_fista_lambda`;
       projection / dps    `solve()` with the score checkpoint; settings from <name>_tuned.json
                           (written by --tune, val only) or the documented untuned defaults;
                           "ours" = posterior mean of n_samples samples, std = pixelwise std;
  4. clamps every reconstruction to [0, 1], scores PSNR / SSIM (data_range = 1) per image and
     writes JSON records, a markdown table and one PNG figure per data set (provenance inside).
The test split is never used for any choice; every tuning record names the split it used.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm.auto import tqdm

try:  # a checkout without `pip install -e .`: use the package next to benchmarks/
    import sgm_inverse  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgm_inverse import load_score_model, metrics, solve
from sgm_inverse.baselines import fbp, fista_tv, power_method, tune_fista_lambda, zero_filled
from sgm_inverse.data import get_dataset
from sgm_inverse.plotting import save_panels

from common import RESULTS, checkpoint_step, file_lock, markdown_table, provenance, write_results

SCORE_METHODS = ("projection", "dps")
FISTA_MARGIN = 1.05          # step 1 / (1.05 ||A||^2), as tune_fista_lambda does
STEPS_TOLERANCE_DB = 0.2     # recommended steps: the fewest within this of the best val PSNR
DEFAULT_CHECKPOINTS = {"brain": "brain64", "ellipses": "ellipses64"}


@dataclass
class Setting:
    """One acquisition setting: record fields, noise level and a forward-model factory."""
    key: str                                   # unique within a task, e.g. "parallel-8v-noise0"
    fields: dict                               # views/geometry/angular_range or acceleration/mask
    noise_level: float                         # noise_std as a fraction of mean |A x|
    make_op: Callable[..., torch.nn.Module]    # make_op(noise_std, **options) -> forward model
    reference: bool = False                    # the setting shown in the figure / steps study


@dataclass
class Task:
    name: str                                  # file stem, e.g. "ct_sparse_view"
    task: str                                  # "ct" | "mri"
    baseline: str                              # "fbp" | "zero_filled"
    settings: list                             # [Setting]
    defaults: dict                             # untuned score settings per method
    grids: dict                                # {"default": {...}, "tiny": {...}}
    columns: list                              # setting columns of the table
    datasets: list                             # default data sets
    measured: Callable = None                  # (op, y) -> measured entries (for the noise level)
    notes: list = field(default_factory=list)  # extra markdown notes


# ----- command line ---------------------------------------------------------------------------
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


# ----- data -------------------------------------------------------------------------------------
def load_images(dataset: str, split: str, n: int, image_size: int):
    """n images evenly spaced over the split's distinct images (index round(linspace(0, len - 1, n))):
    (n, 1, S, S) float32, the split name, the dataset indices. Exact duplicates are dropped first
    (the MNI template is left-right symmetric, so sagittal slices k and 196 - k are the same image)."""
    ds = get_dataset(dataset, split, image_size=image_size)
    images = torch.stack([ds[i] for i in range(len(ds))])
    flat = images.flatten(1)
    dist = torch.cdist(flat, flat)
    keep = [i for i in range(len(ds)) if not bool((dist[i, :i] < 1e-4).any())]
    if n > len(keep):
        raise SystemExit(f"{dataset}/{split} has only {len(keep)} distinct images; asked for {n}")
    pick = [keep[int(j)] for j in np.unique(np.round(np.linspace(0, len(keep) - 1, n)).astype(int))]
    return images[pick], ds.split, pick


class Operators:
    """The forward models of one setting with the calibrated noise_std, built on first use per
    option set (e.g. SparseViewCT's inverse_method "cg" / "fbp" for the projection step)."""

    def __init__(self, setting: Setting, task: Task, x_val: torch.Tensor):
        self.setting, self.cache, self.device = setting, {}, x_val.device
        self.noise_abs = 0.0
        if setting.noise_level > 0:
            op = setting.make_op(0.0).to(self.device)
            with torch.no_grad():
                self.noise_abs = setting.noise_level * float(task.measured(op, op(x_val)).abs().mean())

    def __call__(self, **options):
        key = tuple(sorted(options.items()))
        if key not in self.cache:
            self.cache[key] = self.setting.make_op(self.noise_abs, **options).to(self.device)
        return self.cache[key]


def measure(task: Task, ops: Operators, x: torch.Tensor, seed: int) -> torch.Tensor:
    """y = A x + noise with a fixed seed (val uses seed + 1, test seed); the noise is drawn on the
    CPU generator, so the measurements are the same on every device."""
    return ops().simulate(x, generator=torch.Generator().manual_seed(seed))


def timer(device):
    """time.time() after the device has finished its queued work (CUDA kernels run asynchronously)."""
    def now():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        return time.time()
    return now


# ----- methods ----------------------------------------------------------------------------------
def clamp01(x):
    return x.clamp(0.0, 1.0)


def mean_psnr(x, ref) -> float:
    return float(np.mean(metrics.psnr(clamp01(x), ref, data_range=1.0)))


def run_fbp(op, y, x_val, y_val, args, grid, val_split):
    """FBP with the filter (ramp / hann) that scores best on the validation images."""
    scores = {f: mean_psnr(fbp(op, y_val, filter=f), x_val) for f in ("ramp", "hann")}
    best = max(scores, key=scores.get)
    now = timer(y.device)
    t0 = now()
    x = fbp(op, y, filter=best)
    return {"recon": x, "seconds": now() - t0, "nfe": 0,
            "hyper": {"filter": best, "filter_val_psnr": scores, "tuning_split": val_split}}


def run_zero_filled(op, y, x_val, y_val, args, grid, val_split):
    now = timer(y.device)
    t0 = now()
    x = zero_filled(op, y)
    return {"recon": x, "seconds": now() - t0, "nfe": 0, "hyper": {}}


def run_fista(op, y, x_val, y_val, args, grid, val_split):
    """FISTA-TV, box [0, 1], fixed iterations; lam = c ||A||^2 with c grid-searched on val."""
    lipschitz = FISTA_MARGIN * power_method(op, tuple(x_val.shape[1:]), device=x_val.device)
    cs = grid["fista_c"]
    now = timer(y.device)
    t0 = now()
    best, table = tune_fista_lambda(op, x_val, y_val, [c * lipschitz for c in cs], n_iter=args.fista_iters,
                                    fista_options={"lipschitz": lipschitz, "box": (0.0, 1.0)})
    tuning = now() - t0
    c_best = cs[[row["lam"] for row in table].index(best)]
    t0 = now()
    x = fista_tv(op, y, best, n_iter=args.fista_iters, lipschitz=lipschitz, box=(0.0, 1.0))
    seconds = now() - t0
    hyper = {"lam": best, "lam_over_L": c_best, "lam_over_L_grid": list(cs), "lipschitz": lipschitz,
             "lam_val_psnr": [round(r["mean"], 3) for r in table], "lam_at_grid_edge": c_best in (cs[0], cs[-1]),
             "fista_iters": args.fista_iters, "box": [0.0, 1.0], "tuning_split": val_split,
             "n_val": int(x_val.shape[0]), "tuning_seconds": tuning}
    return {"recon": x, "seconds": seconds, "nfe": 0, "hyper": hyper}


def run_score(method, ops: Operators, model, y, params: dict, args, steps: int):
    """solve() on the whole batch; params: snr + lam (+ inverse_method) or snr + zeta."""
    op = ops(**{k: params[k] for k in ("inverse_method",) if k in params})
    names = ("lam", "consistency", "noise_aware") if method == "projection" else ("zeta",)
    sol = solve(y, op, model, method=method, steps=steps, snr=params["snr"], n_samples=args.n_samples,
                seed=args.seed, progress=args.progress, **{k: params[k] for k in names if k in params})
    if method == "projection":  # the record says which step ran, as solve() resolved it (damped:
        # noise_aware only asks, the operator and the step decide)
        params = {**params, **{k: sol.settings[k] for k in ("consistency", "noise_aware", "damped")}}
    return {"recon": sol.mean, "std": sol.std, "samples": sol.samples, "seconds": sol.seconds, "nfe": sol.nfe,
            "hyper": {**params, "steps": steps, "n_samples": args.n_samples, "sampler": "pc",
                      "corrector_steps": 1, "nfe_total_per_image": sol.nfe * args.n_samples}}


def score(op, recon, x, y) -> dict:
    """Per-image metrics of a reconstruction: PSNR / SSIM of the clamped image, residual of the raw one."""
    xc = clamp01(recon)
    p, s = metrics.psnr(xc, x, data_range=1.0), metrics.ssim(xc, x, data_range=1.0)
    r = metrics.data_residual(op, recon, y).cpu().numpy()
    (pm, ps), (sm, ss), (rm, rs) = metrics.summarize(p), metrics.summarize(s), metrics.summarize(r)
    return {"psnr_mean": pm, "psnr_std": ps, "ssim_mean": sm, "ssim_std": ss, "residual_mean": rm,
            "residual_std": rs, "psnr_values": [round(float(v), 4) for v in p],
            "ssim_values": [round(float(v), 5) for v in s]}


# ----- tuned settings ---------------------------------------------------------------------------
def tuned_key(dataset, setting, method):
    return f"{dataset}|{setting.key}|{method}"


def read_tuned(path: Path) -> dict:
    return json.loads(Path(path).read_text()) if Path(path).exists() else {}


def score_params(task, tuned, dataset, setting, method, checkpoint, checkpoint_step=None):
    """(params, extra record fields): the tuned settings of this setting, else the untuned defaults;
    warns when they were tuned with another checkpoint or training step than the one evaluated."""
    chosen = tuned.get("chosen", {}).get(tuned_key(dataset, setting, method))
    if not chosen:
        return dict(task.defaults[method]), {"tuned": False}
    if chosen.get("checkpoint") != checkpoint or chosen.get("checkpoint_step") != checkpoint_step:
        # parameters tuned on other weights (or another training step of the same ones) may not suit these
        tqdm.write(f"warning: {tuned_key(dataset, setting, method)} was tuned with checkpoint "
                   f"{chosen.get('checkpoint')!r} at step {chosen.get('checkpoint_step')}, evaluating "
                   f"{checkpoint!r} at step {checkpoint_step}: re-tune it")
    return dict(chosen["params"]), {"tuned": True, "tuned_checkpoint": chosen.get("checkpoint"),
                                    "tuned_checkpoint_step": chosen.get("checkpoint_step"),
                                    "tuned_val_psnr": chosen.get("val_psnr"), "tuned_steps": chosen.get("steps"),
                                    "tuned_date": chosen.get("date")}


def eval_steps(args, tuned, dataset, method):
    if args.steps:
        return args.steps, "--steps"
    if args.quick:
        return 100, "quick default"
    rec = tuned.get("recommended_steps", {}).get(f"{dataset}|{method}")
    return (rec, "tuned (steps study)") if rec else (1000, "default")


# ----- evaluation -------------------------------------------------------------------------------
def run_benchmark(task: Task, args) -> list:
    """Evaluate every data set x setting x method on the test split; write JSON, markdown, PNGs."""
    tuned = read_tuned(args.tuned)
    runners = {"fbp": run_fbp, "zero_filled": run_zero_filled, "fista_tv": run_fista}
    records, figures, start = [], [], time.time()
    bar = tqdm(total=len(args.datasets) * len(task.settings) * len(args.methods), disable=not args.progress,
               desc=task.name)
    uses_model = bool(set(args.methods) & set(SCORE_METHODS))
    models = {d: load_model(args, d) if uses_model else (None, {}) for d in args.datasets}  # fail early
    for dataset in args.datasets:
        model, ckpt_info = models[dataset]
        x_val, val_split, val_idx = load_images(dataset, "val", args.n_val, args.image_size)
        x_test, test_split, test_idx = load_images(dataset, "test", args.n_images, args.image_size)
        x_val, x_test = x_val.to(args.device), x_test.to(args.device)
        figure = None
        for setting in task.settings:
            ops = Operators(setting, task, x_val)
            y_val, y_test = measure(task, ops, x_val, args.seed + 1), measure(task, ops, x_test, args.seed)
            base = {"task": task.task, "dataset": dataset, "setting": setting.key, **setting.fields,
                    "noise_std": setting.noise_level, "noise_std_abs": ops.noise_abs, "split": test_split,
                    "n_images": int(x_test.shape[0]),
                    "test_indices": test_idx, "val_split": val_split, "val_indices": val_idx,
                    "image_size": args.image_size, "seed": args.seed,
                    # ||A x_true - y|| / ||y||: the noise floor of the data residual
                    "truth_residual_mean": metrics.summarize(metrics.data_residual(ops(), x_test, y_test))[0]}
            outputs = {}
            for method in args.methods:
                bar.set_postfix_str(f"{dataset} {setting.key} {method}")
                if method in SCORE_METHODS:
                    params, tune_info = score_params(task, tuned, dataset, setting, method,
                                                     ckpt_info["checkpoint"], ckpt_info["checkpoint_step"])
                    steps, steps_source = eval_steps(args, tuned, dataset, method)
                    out = run_score(method, ops, model, y_test, params, args, steps)
                    out["hyper"].update({**tune_info, "steps_source": steps_source, **ckpt_info,
                                         "tuned_file": str(args.tuned) if tune_info["tuned"] else None})
                else:
                    out = runners[method](ops(), y_test, x_val, y_val, args, task.grids[args.grid], val_split)
                rec = {**base, "method": method, **score(ops(), out["recon"], x_test, y_test),
                       "seconds_per_image": out["seconds"] / x_test.shape[0], "nfe": out["nfe"], **out["hyper"]}
                records.append(rec)
                outputs[method] = out
                tqdm.write(f"{dataset:9s} {setting.key:24s} {method:12s} PSNR {rec['psnr_mean']:6.2f} ± "
                           f"{rec['psnr_std']:.2f}  SSIM {rec['ssim_mean']:.3f}  {rec['seconds_per_image']:.3g} s/img")
                bar.update(1)
            if figure is None or setting.reference:
                figure = (setting, outputs)
        if figure is not None:
            figures.append(save_figure(task, args, dataset, x_test, *figure))
    bar.close()
    write_outputs(task, args, records, figures, time.time() - start)
    return records


def _png_provenance(path: Path, prov: dict, extra: dict) -> None:
    """Write the provenance into the PNG's text chunks (readable with PIL: Image.open(p).text)."""
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo
    info = PngInfo()
    for k, v in {**prov, **extra}.items():
        info.add_text(str(k), str(v))
    with Image.open(path) as im:
        im.load()
        im.save(path, pnginfo=info)


def save_figure(task, args, dataset, x_test, setting, outputs) -> Path:
    """Rows: test images; columns: truth, baseline, FISTA-TV, ours (mean), std, |error|."""
    rows = min(args.figure_rows, x_test.shape[0])
    cols = {"ground truth": x_test}
    if task.baseline in outputs:
        cols[{"fbp": "FBP", "zero_filled": "zero-filled"}[task.baseline]] = clamp01(outputs[task.baseline]["recon"])
    if "fista_tv" in outputs:
        cols["FISTA-TV"] = clamp01(outputs["fista_tv"]["recon"])
    ours = next((m for m in SCORE_METHODS if m in outputs), None)
    if ours:
        mean = clamp01(outputs[ours]["recon"])
        cols[f"ours ({ours}, mean)"] = mean
        cols["std (posterior)"] = outputs[ours]["std"]
        cols["|error| (ours)"] = (mean - x_test).abs()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{args.name}_{dataset}.png"
    prov = provenance(args.device)
    title = (f"{dataset}, {setting.key}, test split | commit {prov['commit'][:12]} | {prov['device']} | "
             f"{prov['date']}\n{prov['command']}")
    save_panels(cols, path, rows=rows, title=title)
    _png_provenance(path, prov, {"setting": setting.key, "dataset": dataset,
                                 "columns": ", ".join(cols), "split": "test"})
    return path


def effective_options(args) -> str:
    keep = ["quick", "datasets", "methods", "n_images", "n_val", "steps", "n_samples", "seed", "image_size",
            "fista_iters", "grid", "device", "threads"]
    shown = {k: getattr(args, k) for k in keep}
    shown["steps"] = shown["steps"] or "per method (see settings)"
    return ", ".join(f"{k}={v}" for k, v in shown.items())


def table_rows(task, records) -> list:
    rows = []
    for r in records:
        hyper = []
        if r["method"] == "fbp":
            hyper.append(f"filter={r['filter']}")
        if r["method"] == "fista_tv":
            hyper.append(f"lam={r['lam']:.3g} (c={r['lam_over_L']:g}{', EDGE' if r['lam_at_grid_edge'] else ''})")
        if r["method"] == "projection":
            # records before "damped" was recorded: the noise-aware cg step damps noisy data only
            damped = r.get("damped", r.get("noise_aware") and r["noise_std"] > 0)
            step = (" cg-consistency" if r.get("consistency") == "cg" else
                    f" transform{', ' + r['inverse_method'] if 'inverse_method' in r else ''}")
            hyper.append(f"snr={r['snr']:g} lam={r['lam']:g}{step}{', noise-aware' if damped else ''}")
        if r["method"] == "dps":
            hyper.append(f"snr={r['snr']:g} zeta={r['zeta']:g}")
        if r["method"] in SCORE_METHODS:
            hyper.append(f"steps={r['steps']} x{r['n_samples']}" + ("" if r["tuned"] else " UNTUNED"))
        rows.append({**{c: r.get(c, "") for c in ["dataset", *task.columns]},
                     "noise": f"{100 * r['noise_std']:g}%", "method": r["method"],
                     "PSNR (dB)": f"{r['psnr_mean']:.2f} ± {r['psnr_std']:.2f}",
                     "SSIM": f"{r['ssim_mean']:.3f} ± {r['ssim_std']:.3f}",
                     "rel. residual": f"{r['residual_mean']:.3g}", "s / image": f"{r['seconds_per_image']:.3g}",
                     "NFE": r["nfe"], "n": r["n_images"], "split": r["split"], "settings": ", ".join(hyper)})
    return rows


def write_outputs(task, args, records, figures, wall: float) -> None:
    cols = ["dataset", *task.columns, "noise", "method", "PSNR (dB)", "SSIM", "rel. residual", "s / image",
            "NFE", "n", "split", "settings"]
    ckpts = sorted({f"{r['dataset']}: {r['checkpoint']} (training step {r.get('checkpoint_step')})"
                    for r in records if "checkpoint" in r})
    notes = [
        f"Test split, {args.n_images} images per setting evenly spaced over the split; mean ± std over images.",
        "PSNR / SSIM (scikit-image, data_range = 1) of reconstructions clamped to [0, 1]; the relative data "
        "residual ||A x - y|| / ||y|| is of the unclamped reconstruction (the ground truth's own residual, "
        "the noise floor, is truth_residual_mean in the JSON).",
        "Noise: additive white Gaussian on the measurement, noise_std = (noise) x mean |A x| over the measured "
        "entries of the validation images (absolute value in the JSON as noise_std_abs).",
        ("FBP filter (ramp / hann) and " if task.baseline == "fbp" else "") +
        "FISTA-TV lam (lam = c ||A||^2, c on a log grid, box [0, 1], "
        f"{args.fista_iters} iterations) are chosen on the validation split ({args.n_val} images) for each "
        "setting; EDGE = the chosen c is at the end of the grid.",
        f"Score-based: PC sampler (reverse diffusion + 1 Langevin step); 'ours' = posterior mean of "
        f"{args.n_samples} samples; NFE = network evaluations per sample; s / image includes all samples. "
        f"Settings tuned on the validation split by `--tune` ({args.tuned.name}); UNTUNED = documented defaults.",
        *task.notes,
    ] + ([f"Checkpoints: {'; '.join(ckpts)}."] if ckpts else []) + \
        [f"Figure ({args.name}_<dataset>.png): {', '.join(p.name for p in figures)}.",
         f"Wall time of the run: {wall / 60:.1f} min. Effective options: `{effective_options(args)}`."]
    text = "\n".join(f"- {n}" for n in notes) + "\n\n" + markdown_table(table_rows(task, records), cols)
    jpath, mpath = write_results(args.name, records, text, args.device, args.out)
    print(f"wrote {jpath}, {mpath}" + "".join(f", {p}" for p in figures))


# ----- tuning -------------------------------------------------------------------------------------
def _val_run(method, ops, model, y_val, x_val, params, args, steps):
    out = run_score(method, ops, model, y_val, params, args, steps)
    xc = clamp01(out["recon"])
    return {"psnr": float(np.mean(metrics.psnr(xc, x_val))), "ssim": float(np.mean(metrics.ssim(xc, x_val))),
            "seconds_per_image": out["seconds"] / x_val.shape[0], "nfe": out["nfe"]}


def _samples_study(method, ops, model, y_val, x_val, params, args, ks) -> list:
    """One val run with max(ks) posterior samples per image; PSNR / SSIM of the mean of the first K.
    The samples are independent (one batch, one seed), so the first K are K samples like any others;
    seconds_per_image is the run's time scaled by K / max(ks) (sampling cost is linear in K)."""
    kmax = ks[-1]
    out = run_score(method, ops, model, y_val, params, argparse.Namespace(**{**vars(args), "n_samples": kmax}),
                    args.tune_steps)
    rows = []
    for k in ks:
        xc = clamp01(out["samples"][:k].mean(0))
        rows.append({"n_samples": k, "steps": args.tune_steps, "params": params, "n_val": int(x_val.shape[0]),
                     "psnr": float(np.mean(metrics.psnr(xc, x_val))), "ssim": float(np.mean(metrics.ssim(xc, x_val))),
                     "seconds_per_image": out["seconds"] / x_val.shape[0] * k / kmax, "nfe": out["nfe"] * k})
    return rows


def _cache_key(key, params, steps, n_val, n_samples, seed, checkpoint, checkpoint_step, network_precision):
    """What a validation run depends on (the checkpoint by name and training step, the network's precision)."""
    return (key, json.dumps(params, sort_keys=True), steps, n_val, n_samples, seed, checkpoint, checkpoint_step,
            network_precision)


def _tune_setting(task, args, grid, method, ops, model, y_val, x_val, log, cached=lambda params: None) -> list:
    """Val runs over the grid: (snr x lam) or (snr x zeta). For projection the (snr x lam) grid
    runs the forward model's default consistency step, then each other step of grid["consistency"]
    over grid["consistency_snr"] at the best lam, then, if the transform-domain step is best, each
    other inverse_method (CT's T^-1; the CG step has none). Every projection point names its
    consistency step, so a row means the same thing whatever the model's default is.
    A cg point on noisy data also names noise_aware (the damped step, solve()'s default).
    Rows {params, psnr, ssim, ...}; a point already measured under the same conditions
    (`cached(params)` returns its row) is not run again."""

    def run(params):
        row = cached(params)
        if row is None:
            row = {"params": params, **_val_run(method, ops, model, y_val, x_val, params, args, args.tune_steps)}
        else:
            row = {k: row[k] for k in ("params", "psnr", "ssim", "seconds_per_image", "nfe")}
            row["cached"] = True
        log(row)
        return row

    if method != "projection":
        points = [{"snr": s, "zeta": z} for s in grid["dps_snr"] for z in grid["zeta"]]
        return [run({**task.defaults[method], **point}) for point in points]
    # explicit, not left to solve(): rows measured under another default must not be mistaken for these
    first = task.defaults[method].get("consistency", ops().default_consistency)
    noisy = ops().noise_std > 0
    step = lambda c: {"consistency": c, **({"noise_aware": True} if c == "cg" and noisy else {})}  # noqa: E731
    best_of = lambda rows: max(rows, key=lambda r: r["psnr"])["params"]  # noqa: E731
    rows = [run({**task.defaults[method], "snr": s, "lam": l, **step(first)})
            for s in grid["snr"] for l in grid["lam"]]
    # another consistency step pulls to the data with another strength, so snr is searched again
    # for it (lam stays at the best)
    best = best_of(rows)
    rows += [run({**{k: v for k, v in best.items() if k != "noise_aware"}, **step(c), "snr": s})
             for c in grid.get("consistency", []) if c != first for s in grid.get("consistency_snr", grid["snr"])]
    best = best_of(rows)
    if best["consistency"] == "transform":  # T^-1 only matters to the transform-domain step
        rows += [run({**best, "inverse_method": inv}) for inv in grid.get("inverse_method", [])
                 if inv != best.get("inverse_method")]
    return rows


def run_tuning(task: Task, args) -> dict:
    """Grid search of the score-based settings on the VALIDATION split, then a steps study at the
    reference setting; merges into <name>_tuned.json (+ .md) so settings can be tuned piecewise."""
    grid = task.grids[args.grid]
    methods = [m for m in args.methods if m in SCORE_METHODS]
    if not methods:
        raise SystemExit("--tune tunes the score-based methods; --methods has none of " + ", ".join(SCORE_METHODS))
    tuned, prov = read_tuned(args.tuned), provenance(args.device)
    chosen, recs, study = tuned.get("chosen", {}), tuned.get("records", []), tuned.get("steps_study", [])
    samples_study = tuned.get("samples_study", [])
    recommended = tuned.get("recommended_steps", {})
    cache = {_cache_key(r["key"], r["params"], r["steps"], r["n_val"], r.get("n_samples"), r.get("seed"),
                        r.get("checkpoint"), r.get("checkpoint_step"),
                        r.get("network_precision", "fp32")): r for r in recs}   # older rows: all fp32
    models = {d: load_model(args, d) for d in args.datasets}  # fail before any work
    for dataset in args.datasets:
        model, ckpt_info = models[dataset]
        x_val, split, val_idx = load_images(dataset, "val", args.n_val, args.image_size)
        x_val, n_val = x_val.to(args.device), int(x_val.shape[0])
        for setting in task.settings:
            ops = Operators(setting, task, x_val)
            y_val = measure(task, ops, x_val, args.seed + 1)
            for method in methods:
                key = tuned_key(dataset, setting, method)
                log = lambda row: tqdm.write(f"tune {key} {row['params']}: val PSNR {row['psnr']:.2f} "  # noqa: E731
                                             f"SSIM {row['ssim']:.3f}" + (" (cached)" if row.get("cached") else ""))
                same = dict(steps=args.tune_steps, n_val=n_val, n_samples=args.n_samples, seed=args.seed,
                            checkpoint=ckpt_info["checkpoint"], checkpoint_step=ckpt_info["checkpoint_step"],
                            network_precision=ckpt_info["network_precision"])
                cached = lambda params: cache.get(_cache_key(key, params, **same))  # noqa: E731
                rows = _tune_setting(task, args, grid, method, ops, model, y_val, x_val, log, cached)
                # rows of earlier searches under the same conditions stay candidates (piecewise tuning);
                # rows under other conditions (steps, images, checkpoint, ...) are dropped
                measured = [json.dumps(r["params"], sort_keys=True) for r in rows]
                earlier = [r for r in recs if r["key"] == key and json.dumps(r["params"], sort_keys=True) not in measured
                           and cached(r["params"]) is r]
                rows_now = [{"key": key, "dataset": dataset, "setting": setting.key, "method": method, "split": split,
                             **same, **{k: v for k, v in r.items() if k != "cached"}} for r in rows]
                recs = [r for r in recs if r["key"] != key] + earlier + rows_now
                best = max(earlier + rows_now, key=lambda r: r["psnr"])
                chosen[key] = {"params": best["params"], "val_psnr": best["psnr"], "val_ssim": best["ssim"],
                               "split": split, "n_val": n_val, "val_indices": val_idx, "steps": args.tune_steps,
                               "criterion": "max mean PSNR", "date": prov["date"], "commit": prov["commit"],
                               "command": prov["command"],
                               "grid": args.grid, "grid_set": args.grid_set, "rows_compared": len(earlier + rows_now),
                               **ckpt_info}
        if args.skip_steps_study and not args.samples_study:
            continue
        # both studies run at the reference setting with that setting's tuned parameters
        ref = next((s for s in task.settings if s.reference), task.settings[0])
        ops = Operators(ref, task, x_val)
        y_val = measure(task, ops, x_val, args.seed + 1)
        for method in methods:
            if tuned_key(dataset, ref, method) not in chosen:
                raise SystemExit(f"{tuned_key(dataset, ref, method)} has no tuned setting yet for the studies")
            params = chosen[tuned_key(dataset, ref, method)]["params"]
            others = lambda rows: [r for r in rows if not (r["dataset"] == dataset and r["method"] == method)]  # noqa: E731
            if not args.skip_steps_study:
                rows = []
                for steps in args.steps_study:
                    r = _val_run(method, ops, model, y_val, x_val, params, args, steps)
                    rows.append({"dataset": dataset, "setting": ref.key, "method": method, "steps": steps,
                                 "split": split, "n_val": n_val, "params": params, **r, **ckpt_info})
                    tqdm.write(f"steps study {dataset} {ref.key} {method} steps={steps}: val PSNR {r['psnr']:.2f} "
                               f"{r['seconds_per_image']:.3g} s/img")
                study = others(study) + rows
                top = max(r["psnr"] for r in rows)
                recommended[f"{dataset}|{method}"] = min(r["steps"] for r in rows
                                                         if r["psnr"] >= top - STEPS_TOLERANCE_DB)
            if args.samples_study:
                rows = [{"dataset": dataset, "setting": ref.key, "method": method, "split": split, **r, **ckpt_info}
                        for r in _samples_study(method, ops, model, y_val, x_val, params, args,
                                                sorted(set(args.samples_study)))]
                for r in rows:
                    tqdm.write(f"samples study {dataset} {ref.key} {method} K={r['n_samples']}: "
                               f"val PSNR {r['psnr']:.2f} SSIM {r['ssim']:.3f}")
                samples_study = others(samples_study) + rows
    result = {"provenance": prov, "benchmark": task.name, "grid_name": args.grid, "grid_set": args.grid_set,
              "grids": task.grids, "defaults": task.defaults, "criterion": "max mean PSNR on the val split",
              "steps_tolerance_db": STEPS_TOLERANCE_DB, "chosen": chosen, "recommended_steps": recommended,
              "steps_study": study, "samples_study": samples_study, "records": recs}
    path = Path(args.tuned)
    path.parent.mkdir(parents=True, exist_ok=True)
    ours = {"keys": {tuned_key(d, s, m) for d in args.datasets for s in task.settings for m in methods},
            "studies": set() if args.skip_steps_study else {(d, m) for d in args.datasets for m in methods},
            "samples": {(d, m) for d in args.datasets for m in methods} if args.samples_study else set()}
    # read-merge-write under a lock: another --tune run on the same file (other settings) may have
    # written since this one read it; keep what it wrote and replace only what this run tuned
    with file_lock(path.parent / f".{path.stem}.lock"):
        result = merge_tuned(read_tuned(path), result, ours)
        path.write_text(json.dumps(result, indent=2))
        write_tuned_markdown(path.with_suffix(".md"), result)
    print(f"wrote {path}, {path.with_suffix('.md')}")
    return result


def merge_tuned(now: dict, result: dict, ours: dict) -> dict:
    """The tuned file `now` (as on disk at write time) with this run's `result` laid over it: the
    chosen settings and records of the keys in ours["keys"], the steps / samples studies of the
    (dataset, method) pairs in ours["studies"] / ours["samples"]; everything else stays as in `now`."""
    keys, pair = ours["keys"], (lambda r: (r["dataset"], r["method"]))
    merged = dict(result)
    merged["chosen"] = {**{k: v for k, v in now.get("chosen", {}).items() if k not in keys},
                        **{k: v for k, v in result["chosen"].items() if k in keys}}
    merged["records"] = ([r for r in now.get("records", []) if r["key"] not in keys]
                         + [r for r in result["records"] if r["key"] in keys])
    for study, mine in (("steps_study", ours["studies"]), ("samples_study", ours["samples"])):
        merged[study] = ([r for r in now.get(study, []) if pair(r) not in mine]
                         + [r for r in result[study] if pair(r) in mine])
    studied = {f"{d}|{m}" for d, m in ours["studies"]}
    merged["recommended_steps"] = {**{k: v for k, v in now.get("recommended_steps", {}).items() if k not in studied},
                                   **{k: v for k, v in result["recommended_steps"].items() if k in studied}}
    return merged


def write_tuned_markdown(path: Path, result: dict) -> None:
    prov = "\n".join(f"- {k}: `{v}`" for k, v in result["provenance"].items())
    chosen = [{"key": k.replace("|", " / "), **{p: v for p, v in c["params"].items()}, "val PSNR": c["val_psnr"],
               "split": c["split"], "n_val": c["n_val"], "steps": c["steps"],
               # each key may come from a different --tune command: say which checkpoint and grid it saw
               "ckpt step": c.get("checkpoint_step", ""), "grid_set": " ".join(c.get("grid_set") or []),
               "tuned": str(c.get("date", ""))[:16]} for k, c in result["chosen"].items()]
    pcols = sorted({p for c in result["chosen"].values() for p in c["params"]})
    study = [{k: r[k] for k in ("dataset", "setting", "method", "steps", "psnr", "ssim", "seconds_per_image",
                                "nfe", "split")} for r in result["steps_study"]]
    text = (f"# {result['benchmark']} tuning (validation split only)\n\nLast tuning command:\n\n{prov}\n\n"
            f"Grids ({result['grid_name']}) of that command: `{json.dumps(result['grids'][result['grid_name']])}`; "
            f"criterion: {result['criterion']}. Settings are tuned piecewise: each row below says when it was "
            "tuned, on which checkpoint step and with which --grid-set overrides.\n\n## Chosen settings\n\n"
            + markdown_table(chosen, ["key", *pcols, "val PSNR", "split", "n_val", "steps", "ckpt step",
                                      "grid_set", "tuned"])
            + "\n\n## Steps study (val)\n\n"
            + markdown_table(study, ["dataset", "setting", "method", "steps", "psnr", "ssim", "seconds_per_image",
                                     "nfe", "split"])
            + f"\n\nRecommended steps (fewest within {result['steps_tolerance_db']} dB of the best): "
            + ", ".join(f"{k.replace('|', ' / ')}: {v}" for k, v in result["recommended_steps"].items()) + "\n")
    if result.get("samples_study"):
        text += ("\n## Posterior samples study (val): PSNR / SSIM of the mean of K samples\n\n"
                 + markdown_table(result["samples_study"], ["dataset", "setting", "method", "n_samples", "steps",
                                                            "psnr", "ssim", "seconds_per_image", "nfe", "split"]) + "\n")
    path.write_text(text)


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


def main_for(task_factory, description: str, methods: tuple, argv=None, add_args=None, script=None):
    """Parse the command line, build the task and run the evaluation (or the tuning).

    argv=None reads sys.argv; a list (called in-process, e.g. by the tests) is shown in the
    provenance as `python <script> <argv>`."""
    ap = base_parser(description)
    if add_args is not None:
        add_args(ap)
    args = ap.parse_args(argv)
    saved = sys.argv
    if argv is not None:
        sys.argv = [script or ap.prog, *argv]
    try:
        task = task_factory(args)
        args.name = task.name
        args.datasets = args.datasets or list(task.datasets)
        args = finish_args(args, methods)
        if args.grid_set:
            task = with_grid_overrides(task, args.grid, args.grid_set)
        return run_tuning(task, args) if args.tune else run_benchmark(task, args)
    finally:
        sys.argv = saved

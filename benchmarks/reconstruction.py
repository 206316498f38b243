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

This module holds the evaluation (`run_benchmark`) and the entry point (`main_for`); the rest lives in
one module per idea, whose names are re-exported here:
    recon_task.py      Task, Setting, the images of a split, the forward models and measurements of a setting
    recon_args.py      the command line, its defaults and --grid-set overrides, the checkpoint per data set
    recon_methods.py   the method runners (fbp, zero_filled, fista_tv, projection / dps) and the scoring
    recon_tuning.py    --tune: grid search, steps and samples studies, the locked merge of <name>_tuned.json
    recon_figures.py   the PNG figure of an evaluation
    recon_markdown.py  the markdown of an evaluation and of the tuned file
"""
from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm

# recon_task comes first: it makes the package importable from a plain checkout
from recon_task import SCORE_METHODS, Operators, Setting, Task, load_images, measure, timer  # noqa: F401
from recon_args import (DEFAULT_CHECKPOINTS, base_parser, checkpoint_for, finish_args, load_model,  # noqa: F401
                        with_grid_overrides)
from recon_figures import save_figure
from recon_markdown import write_outputs, write_tuned_markdown  # noqa: F401
from recon_methods import (FISTA_MARGIN, clamp01, mean_psnr, run_fbp, run_fista, run_score,  # noqa: F401
                           run_zero_filled, score)
from recon_tuning import (STEPS_TOLERANCE_DB, merge_tuned, read_tuned, run_tuning, tuned_key,  # noqa: F401
                          _samples_study, _tune_setting, _val_run)

from sgm_inverse import metrics


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

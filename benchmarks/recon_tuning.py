"""Tuning of the score-based settings on the VALIDATION split (`--tune`), and the tuned file it keeps.

The grid search, the steps study and the posterior-samples study write <name>_tuned.json (+ .md).
Settings are tuned piecewise by many --tune runs, possibly at once: each run merges its keys into the
file under a lock (`merge_tuned`), and a point already measured under the same conditions (checkpoint
and step, steps, images, samples, seed, precision) is read from the file instead of run again.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

try:  # a checkout without `pip install -e .`: use the package next to benchmarks/
    import sgm_inverse  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgm_inverse import metrics  # noqa: E402

from common import file_lock, provenance  # noqa: E402
from recon_args import load_model  # noqa: E402
from recon_markdown import write_tuned_markdown  # noqa: E402
from recon_methods import clamp01, run_score  # noqa: E402
from recon_task import SCORE_METHODS, Operators, Task, load_images, measure  # noqa: E402

STEPS_TOLERANCE_DB = 0.2     # recommended steps: the fewest within this of the best val PSNR


def tuned_key(dataset, setting, method):
    return f"{dataset}|{setting.key}|{method}"


def read_tuned(path: Path) -> dict:
    return json.loads(Path(path).read_text()) if Path(path).exists() else {}


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

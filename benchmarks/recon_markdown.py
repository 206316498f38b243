"""The markdown of the reconstruction benchmarks: the results table of an evaluation (with JSON) and the
tuned-settings page of a tuning run."""
from __future__ import annotations

import json
from pathlib import Path

from common import markdown_table, write_results
from recon_task import SCORE_METHODS


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

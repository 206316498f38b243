"""PSNR versus network evaluations (NFE): few-step samplers against the PC / DPS loops, validation split.

    python benchmarks/sampler_nfe.py --setting brain-ct8                      # the full study, one setting
    python benchmarks/sampler_nfe.py --setting brain-ct8 brain-mri4 ellipses-ct8 --n-images 8
    python benchmarks/sampler_nfe.py --quick                                  # 1 image, budgets 4 8: a smoke run

For every setting x method x budget (NFE per sample, default 25 50 100 200) it reconstructs `--n-images`
validation images (evenly spaced over the split, `reconstruction.load_images`) with `solve()` and scores
the posterior mean of `--n-samples` samples (clamped to [0, 1]; PSNR / SSIM with data_range = 1) and the
data residual. Methods (steps chosen so that NFE <= budget):

    dds, diffpir, ddnm, pigdm   solve(sampler=...), steps = budget (PiGDM: + one backward pass per step)
    pc                          projection conditioning, reverse diffusion + 1 Langevin step: steps = (budget - 1) // 2
    dps                         DPS on reverse diffusion (no corrector): steps = budget - 1 (+ backward passes)

--warm-start T0 adds, per method, a CCDF run from the baseline (FBP for CT, zero-filled for MRI) noised to
t0 = T0 ("<method>+ws" in the tables). Sampler options: --set ddnm.eta=1.0 --set pc.snr=0.25 (repeatable).
The study is for choosing a sampler and a budget, so it uses the validation split only; nothing here is
tuned per budget (untuned defaults unless --set). Writes <setting>.json / .md / _psnr.png / _images.png under
benchmarks/results/sampler_nfe/ (--out), with the command, commit, device and wall time.
Cost: ~0.1 s per NFE per 64x64 image on a CPU: 6 methods x (25+50+100+200) NFE x 8 images ~ 30 min per setting.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import reconstruction as rc  # first: it makes the package importable from a plain checkout

from forward_models import SparseViewCT, UndersampledMRI  # noqa: E402
from sgm_inverse import load_score_model, metrics, solve  # noqa: E402
from sgm_inverse.baselines import fbp, zero_filled  # noqa: E402
from sgm_inverse.plotting import save_panels  # noqa: E402

from common import RESULTS, markdown_table, provenance, write_results  # noqa: E402

SETTINGS = {  # name -> (data set, default checkpoint, forward model factory(image_size, noise_std), baseline)
    "brain-ct8": ("brain", "brain64", lambda n, s: SparseViewCT(n, n_views=8, noise_std=s), "fbp"),
    "brain-mri4": ("brain", "brain64", lambda n, s: UndersampledMRI(n, acceleration=4, noise_std=s), "zero_filled"),
    "ellipses-ct8": ("ellipses", "ellipses64", lambda n, s: SparseViewCT(n, n_views=8, noise_std=s), "fbp"),
}
TWEEDIE = ("dds", "diffpir", "ddnm", "pigdm")
METHODS = (*TWEEDIE, "pc", "dps")


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--setting", nargs="+", default=None, choices=sorted(SETTINGS))
    ap.add_argument("--checkpoint", default=None, help="score checkpoint (default: the setting's, e.g. brain64)")
    ap.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--budgets", nargs="+", type=int, default=None, help="NFE per sample (default 25 50 100 200)")
    ap.add_argument("--n-images", type=int, default=None, help="validation images (default 8; quick 1)")
    ap.add_argument("--n-samples", type=int, default=1, help="posterior samples per image (the mean is scored)")
    ap.add_argument("--noise", type=float, default=0.0, help="noise_std as a fraction of mean |A x| (0.01 = 1%%)")
    ap.add_argument("--schedule", default="geometric", choices=("geometric", "edm", "linear"),
                    help="time grid of the few-step samplers")
    ap.add_argument("--warm-start", type=float, default=None, metavar="T0",
                    help="also run every method warm-started (CCDF) from the baseline at t_start = T0")
    ap.add_argument("--set", action="append", default=[], metavar="METHOD.KEY=VALUE",
                    help="a sampler option, e.g. ddnm.eta=1.0, dds.cg_iterations=10, pc.snr=0.25, dps.zeta=0.3")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "sampler_nfe")
    ap.add_argument("--quick", action="store_true", help="1 image, budgets 4 8, brain-ct8: checks the script runs")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    args.setting = args.setting or ["brain-ct8"]
    args.budgets = args.budgets or ([4, 8] if args.quick else [25, 50, 100, 200])
    args.n_images = args.n_images or (1 if args.quick else 8)
    args.options = parse_sets(args.set)
    if torch.device(args.device).type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    return args


def parse_sets(items) -> dict:
    """["ddnm.eta=1.0", ...] -> {"ddnm": {"eta": 1.0}}; values parsed as JSON where they parse, else strings."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not (sep and dot and method in METHODS):
            raise SystemExit(f"--set {item!r}: expected METHOD.KEY=VALUE with METHOD in {METHODS}")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        out.setdefault(method, {})[name] = value
    return out


def solve_kwargs(method: str, budget: int, options: dict) -> dict:
    """solve() keywords that spend at most `budget` network evaluations per sample."""
    if method in TWEEDIE:
        return {"sampler": method, "steps": budget, **options}
    if method == "pc":
        return {"sampler": "pc", "method": "projection", "steps": max(1, (budget - 1) // 2), **options}
    return {"sampler": "reverse_diffusion", "method": "dps", "steps": max(1, budget - 1), **options}


def run_setting(name: str, args) -> tuple[list, dict]:
    dataset, default_ckpt, make_op, baseline = SETTINGS[name]
    model = load_score_model(args.checkpoint or default_ckpt, device=args.device)
    x, split, idx = rc.load_images(dataset, "val", args.n_images, args.image_size)
    x = x.to(args.device)
    clean = make_op(args.image_size, 0.0).to(args.device)
    noise_abs = 0.0
    if args.noise > 0:
        with torch.no_grad():
            y0 = clean(x)
            support = getattr(clean, "measurement_support", None)
            noise_abs = args.noise * float((y0[support.expand_as(y0) > 0] if support is not None else y0).abs().mean())
    op = make_op(args.image_size, noise_abs).to(args.device)
    y = op.simulate(x, generator=torch.Generator().manual_seed(args.seed))
    x_base = (fbp(op, y) if baseline == "fbp" else zero_filled(op, y)).clamp(0, 1)
    base = {"setting": name, "dataset": dataset, "split": split, "val_indices": idx, "n_images": len(idx),
            "checkpoint": str(args.checkpoint or default_ckpt), "noise_std": args.noise, "noise_std_abs": noise_abs,
            "n_samples": args.n_samples, "seed": args.seed, "schedule": args.schedule}
    records = [{**base, "method": baseline, "nfe": 0, "budget": 0, **score(op, x_base, x, y)}]
    print(f"{name:13s} {baseline:14s} NFE    0  PSNR {records[0]['psnr_mean']:6.2f}")
    images = {"ground truth": x, baseline: x_base}
    starts = [None] + ([args.warm_start] if args.warm_start is not None else [])
    for t_start in starts:
        for method in args.methods:
            for budget in args.budgets:
                kw = solve_kwargs(method, budget, args.options.get(method, {}))
                if method in TWEEDIE:
                    kw.setdefault("schedule", args.schedule)
                if t_start is not None:
                    kw.update(x_init=x_base, t_start=t_start)
                label = method + ("+ws" if t_start is not None else "")
                start = time.time()
                sol = solve(y, op, model, n_samples=args.n_samples, seed=args.seed, progress=not args.no_progress,
                            ood_check=False, **kw)
                seconds = time.time() - start
                rec = {**base, "method": label, "budget": budget, "nfe": sol.nfe,
                       "backward_passes": sol.settings.get("backward_passes", 0),
                       "steps": kw["steps"], "t_start": t_start, "seconds_per_image": seconds / len(idx),
                       "options": {k: v for k, v in kw.items() if k not in ("x_init", "steps", "sampler")},
                       **score(op, sol.mean, x, y)}
                records.append(rec)
                print(f"{name:13s} {label:14s} NFE {sol.nfe:4d}  PSNR {rec['psnr_mean']:6.2f}  "
                      f"SSIM {rec['ssim_mean']:.3f}  {rec['seconds_per_image']:.3g} s/img")
                if budget == max(args.budgets):
                    images[f"{label} ({sol.nfe} NFE)"] = sol.mean.clamp(0, 1)
    return records, images


def score(op, recon, x, y) -> dict:
    xc = recon.clamp(0, 1)
    p, s = metrics.psnr(xc, x, data_range=1.0), metrics.ssim(xc, x, data_range=1.0)
    r = metrics.data_residual(op, recon, y).cpu().numpy()
    return {"psnr_mean": float(np.mean(p)), "psnr_std": float(np.std(p)), "ssim_mean": float(np.mean(s)),
            "ssim_std": float(np.std(s)), "residual_mean": float(np.mean(r)),
            "psnr_values": [round(float(v), 4) for v in p]}


def plot_curves(records, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    methods = list(dict.fromkeys(r["method"].removesuffix("+ws") for r in records if r["nfe"] > 0))
    for label in dict.fromkeys(r["method"] for r in records if r["nfe"] > 0):
        rows = sorted((r for r in records if r["method"] == label), key=lambda r: r["nfe"])
        warm = label.endswith("+ws")   # a warm start: same colour as its method, dashed
        ax.plot([r["nfe"] for r in rows], [r["psnr_mean"] for r in rows], marker="s" if warm else "o", label=label,
                linestyle="--" if warm else "-", color=plt.cm.tab10(methods.index(label.removesuffix("+ws")) % 10))
    for r in records:
        if r["nfe"] == 0:
            ax.axhline(r["psnr_mean"], color="grey", linestyle=":", label=f"{r['method']} (no network)")
    ax.set_xscale("log")
    ax.set_xlabel("network evaluations per sample (NFE)")
    ax.set_ylabel("PSNR (dB), validation")
    ax.set_title(title, fontsize=7)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(str(path), dpi=120)
    plt.close(fig)


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.setting:
        start = time.time()
        records, images = run_setting(name, args)
        prov = {**provenance(args.device), "wall_seconds": round(time.time() - start, 1)}
        rows = [{"method": r["method"], "NFE": r["nfe"], "backward": r.get("backward_passes", 0),
                 "steps": r.get("steps", ""), "PSNR (dB)": f"{r['psnr_mean']:.2f} ± {r['psnr_std']:.2f}",
                 "SSIM": f"{r['ssim_mean']:.3f}", "rel. residual": f"{r['residual_mean']:.3g}",
                 "s / image": f"{r.get('seconds_per_image', 0):.3g}"} for r in records]
        notes = (f"- {name}: {records[0]['dataset']} validation images {records[0]['val_indices']}, "
                 f"noise {args.noise:g} "
                 f"x mean |Ax|; posterior mean of {args.n_samples} sample(s); untuned defaults "
                 f"(options: {json.dumps(args.options)}); schedule {args.schedule}.\n"
                 "- NFE = network evaluations per sample; 'backward' = backward passes through the network "
                 "(PiGDM, DPS), each costing ~2 NFE of time. pc: reverse diffusion + 1 Langevin step + final "
                 "denoise; dps: reverse diffusion.\n")
        write_results(name, records, notes + "\n" + markdown_table(rows, list(rows[0])), args.device, args.out, prov)
        title = f"{name} | {prov['commit'][:12]} | {prov['device']} | {prov['date']}\n{prov['command']}"
        plot_curves(records, args.out / f"{name}_psnr.png", title)
        save_panels(images, args.out / f"{name}_images.png", rows=min(4, len(records[0]["val_indices"])),
                    title=title)
        print(f"wrote {args.out / name}.json / .md / _psnr.png / _images.png ({prov['wall_seconds']} s)")


if __name__ == "__main__":
    sys.exit(main())

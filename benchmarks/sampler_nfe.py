"""PSNR versus network evaluations (NFE): few-step samplers against the PC / DPS loops, tuned on validation.

    python benchmarks/sampler_nfe.py --setting brain-ct8 --n-images 3 --grid ddnm.eta=0.85,1.0 \
        --grid pc.snr=0.5,1.0 --warm-start 0.2 0.3 --warm-from fista_tv --warm-methods ddnm pc \
        --extra-budgets 500 1000                                            # the study of one setting
    python benchmarks/sampler_nfe.py --setting brain-ct8 --test-only --test-images 4 --warm-from fista_tv
    python benchmarks/sampler_nfe.py --summary                              # summary.md over the settings
    python benchmarks/sampler_nfe.py --quick                                # 1 image, budgets 4 8: a smoke run

For every setting x method x budget (NFE per sample, default 25 50 100 200; --extra-budgets for
--extra-methods, default pc) it reconstructs `--n-images` validation images (evenly spaced over the split,
`reconstruction.load_images`) with `solve()` once per option set of the method's --grid (and per warm-start
time), and scores the posterior mean of `--n-samples` samples (clamped to [0, 1]; PSNR / SSIM with data_range
= 1) and the data residual. The option set with the best mean PSNR at a budget is that budget's chosen row.
Methods (steps chosen so that NFE <= budget):

    dds, diffpir, ddnm, pigdm   solve(sampler=...), steps = budget (PiGDM: + one backward pass per step)
    pc                          projection conditioning, reverse diffusion + 1 Langevin step: steps = (budget - 1) // 2
    dps                         DPS on reverse diffusion (no corrector): steps = budget - 1 (+ backward passes)

--warm-start T0 [T0 ...] adds, for --warm-methods, CCDF runs from --warm-from (the baseline, FBP / zero-filled,
or FISTA-TV with its validation-tuned weight) noised to t0 ("<method>+ws"; t0 is tuned like an option).
Fixed options: --set ddnm.eta=1.0 (repeatable). --test-images N then reruns each method's chosen setting at its
best budget and at its best budget <= --low-budget on N test images (<setting>_test.*). --merge replaces one
method's rows in an existing result (a wider grid). Writes <setting>.json / .md / _psnr.png / _images.png under
benchmarks/results/sampler_nfe/ (--out), with the command, commit, device and wall time; every trial is in
the JSON. Cost: ~0.065 s per NFE per 64x64 image on one CPU thread (backward passes ~2x): 30-50 min per
setting with 3 images and two options per method.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

import reconstruction as rc  # first: it makes the package importable from a plain checkout

from forward_models import SparseViewCT, UndersampledMRI  # noqa: E402
from sgm_inverse import load_score_model, metrics, solve  # noqa: E402
from sgm_inverse.baselines import fbp, fista_tv, power_method, zero_filled  # noqa: E402
from sgm_inverse.baselines.tuned import tuned_fista_c  # noqa: E402
from sgm_inverse.plotting import save_panels  # noqa: E402

from common import RESULTS, checkpoint_step, markdown_table, merge_records, provenance, write_results  # noqa: E402

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
    ap.add_argument("--warm-start", type=float, nargs="+", default=None, metavar="T0",
                    help="also run the --warm-methods warm-started (CCDF) from --warm-from at t_start = T0 "
                         "(several T0: tuned like an option)")
    ap.add_argument("--warm-from", default="baseline", choices=("baseline", "fista_tv"),
                    help="the estimate a warm start noises: the setting's baseline (FBP / zero-filled) or "
                         "FISTA-TV with the validation-tuned weight (sgm_inverse.baselines.tuned)")
    ap.add_argument("--warm-methods", nargs="+", default=list(METHODS), choices=METHODS)
    ap.add_argument("--grid", action="append", default=[], metavar="METHOD.KEY=V1,V2",
                    help="values tried per budget (cartesian product per method); the best by validation "
                         "PSNR is the chosen row, e.g. --grid pc.snr=0.25,0.5,1 --grid ddnm.eta=0.5,0.85")
    ap.add_argument("--extra-budgets", nargs="+", type=int, default=[],
                    help="budgets run only for --extra-methods (not warm-started), tuned over the grid like the others")
    ap.add_argument("--extra-methods", nargs="+", default=["pc"], choices=METHODS)
    ap.add_argument("--extra-fixed", action="store_true",
                    help="run the extra budgets with the options chosen at the largest budget instead of the grid")
    ap.add_argument("--test-images", type=int, default=0,
                    help="then run each method's chosen setting at its best budget and at its best budget "
                         "<= --low-budget on this many test images (<setting>_test.json / .md)")
    ap.add_argument("--low-budget", type=int, default=100)
    ap.add_argument("--merge", action="store_true",
                    help="add this run's methods to --out/<setting>.json, replacing that file's rows of the same "
                         "methods (e.g. a wider grid for one method); the image panel is left as it is. With "
                         "--test-only: the same for <setting>_test.json (only --methods are rerun)")
    ap.add_argument("--summary", action="store_true",
                    help="only write --out/summary.md from the settings' JSON files (no reconstruction)")
    ap.add_argument("--test-only", action="store_true",
                    help="skip the validation study: take the chosen rows from --out/<setting>.json (same settings "
                         "and image size) and only run the --test-images rows")
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
    args.grid = {m: {k: [parse_value(v) for v in str(vals).split(",")] for k, vals in kv.items()}
                 for m, kv in parse_sets(args.grid, raw=True).items()}
    if torch.device(args.device).type == "cpu" and args.threads:
        torch.set_num_threads(args.threads)
    return args


def parse_value(value: str):
    """JSON where it parses (numbers, true, null), else the string itself."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


def parse_sets(items, raw: bool = False) -> dict:
    """["ddnm.eta=1.0", ...] -> {"ddnm": {"eta": 1.0}}; values parsed as JSON where they parse, else
    strings (raw: left as strings)."""
    out: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        method, dot, name = key.partition(".")
        if not (sep and dot and method in METHODS):
            raise SystemExit(f"--set / --grid {item!r}: expected METHOD.KEY=VALUE with METHOD in {METHODS}")
        out.setdefault(method, {})[name] = value if raw else parse_value(value)
    return out


def solve_kwargs(method: str, budget: int, options: dict) -> dict:
    """solve() keywords that spend at most `budget` network evaluations per sample."""
    if method in TWEEDIE:
        return {"sampler": method, "steps": budget, **options}
    if method == "pc":
        return {"sampler": "pc", "method": "projection", "steps": max(1, (budget - 1) // 2), **options}
    return {"sampler": "reverse_diffusion", "method": "dps", "steps": max(1, budget - 1), **options}


class TimedModel:
    """A score model whose forward calls are timed (network seconds, for the sampler-overhead ratio);
    everything else is the wrapped model's. Backward passes (PiGDM, DPS) are not in the count."""

    def __init__(self, model):
        self.model, self.seconds = model, 0.0

    def __call__(self, x, t):
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        out = self.model(x, t)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        self.seconds += time.perf_counter() - start
        return out

    def __getattr__(self, name):
        return getattr(self.model, name)


def configs(method: str, args) -> list:
    """The option sets tried for `method`: the cartesian product of its --grid values, each merged over
    its --set options (one empty set when it has no grid)."""
    grid = args.grid.get(method, {})
    combos = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else [{}]
    return [{**args.options.get(method, {}), **c} for c in combos]


def prepare(name: str, split: str, n_images: int, args, model=None):
    """(model, op, x, y, starts, base record) for one setting on `split`; starts: {label: estimate} of the
    baselines the warm starts may begin from."""
    dataset, default_ckpt, make_op, baseline = SETTINGS[name]
    x, split, idx = rc.load_images(dataset, split, n_images, args.image_size)
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
    starts = {baseline: (fbp(op, y) if baseline == "fbp" else zero_filled(op, y)).clamp(0, 1)}
    if args.warm_from == "fista_tv":
        # the settings here: parallel 8 views, equispaced 4x (the operators' defaults)
        c, source = tuned_fista_c("ct" if baseline == "fbp" else "mri", views=getattr(op, "n_views", None),
                                  acceleration=getattr(op, "acceleration_achieved", None), noisy=args.noise > 0)
        lip = 1.05 * power_method(op, tuple(x.shape[1:]))
        starts["fista_tv"] = fista_tv(op, y, c * lip, lipschitz=lip, box=(0.0, 1.0))
    base = {"setting": name, "dataset": dataset, "split": split, "indices": idx, "n_images": len(idx),
            "checkpoint": str(args.checkpoint or default_ckpt), "noise_std": args.noise, "noise_std_abs": noise_abs,
            "checkpoint_step": None if model is None else checkpoint_step(model),
            "n_samples": args.n_samples, "seed": args.seed, "schedule": args.schedule, "warm_from": args.warm_from}
    return op, x, y, starts, base


def warm_estimate(starts: dict, args) -> torch.Tensor:
    """The estimate warm starts noise: FISTA-TV, or the setting's baseline (the first entry of `starts`)."""
    return starts["fista_tv"] if args.warm_from == "fista_tv" else next(iter(starts.values()))


def replay_options(rec: dict) -> dict:
    """The options of a record to run it again with `run_config` (which adds t_start itself; solve_kwargs
    re-adds the method and steps it recorded)."""
    return {k: v for k, v in rec["options"].items() if k != "t_start"}


def run_config(model, op, x, y, base, method, budget, opts, args, t_start=None, starts=None) -> tuple[dict, torch.Tensor]:
    """One reconstruction of every image with `method` at `budget` NFE per sample and options `opts`; with
    t_start, warm-started from `warm_estimate(starts, args)`."""
    kw = solve_kwargs(method, budget, opts)
    if method in TWEEDIE:
        kw.setdefault("schedule", args.schedule)
    if t_start is not None:
        kw.update(x_init=warm_estimate(starts, args), t_start=t_start)
    timed = TimedModel(model)
    start = time.perf_counter()
    sol = solve(y, op, timed, n_samples=args.n_samples, seed=args.seed, progress=not args.no_progress,
                ood_check=False, **kw)
    seconds = time.perf_counter() - start
    n = x.shape[0]
    rec = {**base, "method": method + ("+ws" if t_start is not None else ""), "budget": budget, "nfe": sol.nfe,
           "nfe_per_image": sol.nfe * args.n_samples,
           "backward_passes": sol.settings.get("backward_passes", 0),
           "steps": kw["steps"], "t_start": t_start, "seconds_per_image": seconds / n,
           "network_seconds_per_image": timed.seconds / n, "overhead": seconds / max(timed.seconds, 1e-9),
           "options": {k: v for k, v in kw.items() if k not in ("x_init", "steps", "sampler")},
           **score(op, sol.mean, x, y)}
    return rec, sol.mean.clamp(0, 1)


def baseline_records(op, x, y, starts, base) -> list:
    return [{**base, "method": label, "nfe": 0, "nfe_per_image": 0, "budget": 0, "chosen": True,
             **score(op, est, x, y)} for label, est in starts.items()]


def run_setting(name: str, args) -> tuple[list, dict]:
    """Every method x budget x option set (--grid) on the validation images; the best option set per
    (method, budget) by mean PSNR is marked chosen. --extra-budgets run the --extra-methods with the option
    set chosen at the largest tuned budget."""
    dataset, default_ckpt, _, baseline = SETTINGS[name]
    model = load_score_model(args.checkpoint or default_ckpt, device=args.device)
    op, x, y, starts, base = prepare(name, "val", args.n_images, args, model)
    records = baseline_records(op, x, y, starts, base)
    for r in records:
        print(f"{name:13s} {r['method']:14s} NFE    0  PSNR {r['psnr_mean']:6.2f}")
    images = {"ground truth": x, **starts}
    modes = [[None]] + ([list(args.warm_start)] if args.warm_start else [])   # cold; warm (t_start tuned)
    for method in args.methods:
        for t_starts in modes:
            if t_starts != [None] and method not in args.warm_methods:
                continue
            grid = [(opts, t0) for opts in configs(method, args) for t0 in t_starts]
            budgets = list(args.budgets)
            if method in args.extra_methods and t_starts == [None]:   # warm starts are for small budgets
                budgets += list(args.extra_budgets)
            best = None
            for budget in budgets:
                if budget in args.extra_budgets and args.extra_fixed:   # the options chosen at the largest budget
                    trials_at = [(replay_options(best[0]), best[0]["t_start"])]
                else:
                    trials_at = grid
                trials = []
                for opts, t_start in trials_at:
                    rec, mean = run_config(model, op, x, y, base, method, budget, opts, args, t_start, starts)
                    trials.append((rec, mean))
                    print(f"{name:13s} {rec['method']:14s} NFE {rec['nfe']:4d}  PSNR {rec['psnr_mean']:6.2f}  "
                          f"SSIM {rec['ssim_mean']:.3f}  {rec['seconds_per_image']:.3g} s/img  "
                          f"overhead {rec['overhead']:.3f}  {json.dumps(opts)} t0={t_start}", flush=True)
                best = max(trials, key=lambda tm: tm[0]["psnr_mean"])
                for rec, _ in trials:
                    rec["chosen"] = rec is best[0]
                    rec["grid"] = {**args.grid.get(method, {}),
                                   **({"t_start": t_starts} if t_starts != [None] else {})}
                    records.append(rec)
            images[f"{best[0]['method']} ({best[0]['nfe']} NFE)"] = best[1]
    return records, images


def test_rows(name: str, records: list, args) -> list:
    """For each method: its chosen validation configuration at the best budget overall and at the best
    budget with <= --low-budget NFE per image, run on --test-images images of the test split."""
    dataset, default_ckpt, _, _ = SETTINGS[name]
    model = load_score_model(args.checkpoint or default_ckpt, device=args.device)
    op, x, y, starts, base = prepare(name, "test", args.test_images, args, model)
    out = baseline_records(op, x, y, starts, base)
    chosen = [r for r in records if r.get("chosen") and r["nfe"] > 0]
    for label in dict.fromkeys(r["method"] for r in chosen):
        if label.removesuffix("+ws") not in args.methods:
            continue
        rows = [r for r in chosen if r["method"] == label]
        picks = {"best": max(rows, key=lambda r: r["psnr_mean"])}
        low = [r for r in rows if r["nfe_per_image"] <= args.low_budget]
        if low:
            picks[f"<= {args.low_budget} NFE"] = max(low, key=lambda r: r["psnr_mean"])
        done = {}
        for why, r in picks.items():
            if id(r) in done:
                done[id(r)]["picked_for"] += f", {why}"
                continue
            rec, _ = run_config(model, op, x, y, base, label.removesuffix("+ws"), r["budget"], replay_options(r),
                                args, r["t_start"], starts)
            rec["picked_for"], rec["val_psnr"] = why, r["psnr_mean"]
            done[id(r)] = rec
            out.append(rec)
            print(f"{name:13s} TEST {rec['method']:14s} NFE {rec['nfe']:4d}  PSNR {rec['psnr_mean']:6.2f}  "
                  f"SSIM {rec['ssim_mean']:.3f}  {rec['seconds_per_image']:.3g} s/img  ({why})", flush=True)
    return out


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


def table_rows(records) -> list:
    return [{"method": r["method"], "NFE / sample": r["nfe"], "NFE / image": r.get("nfe_per_image", 0),
             "backward": r.get("backward_passes", 0), "steps": r.get("steps", ""),
             "t_start": "" if r.get("t_start") is None else r["t_start"],
             "PSNR (dB)": f"{r['psnr_mean']:.2f} ± {r['psnr_std']:.2f}", "SSIM": f"{r['ssim_mean']:.3f}",
             "rel. residual": f"{r['residual_mean']:.3g}", "s / image": f"{r.get('seconds_per_image', 0):.3g}",
             "overhead": f"{r['overhead']:.3f}" if "overhead" in r else "",
             "options": ", ".join(f"{k}={v}" for k, v in r.get("options", {}).items()
                                  if k not in ("method", "t_start", "schedule"))} for r in records]


NOTES = ("- NFE = network evaluations; per image = per sample x {n_samples} sample(s) (the posterior mean is "
         "scored). 'backward' = backward passes through the network (PiGDM, DPS), each costing about 2 NFE of "
         "time. pc: reverse diffusion + 1 Langevin step + final denoise (projection conditioning); dps: reverse "
         "diffusion. '+ws': warm start (CCDF) from {warm} noised to t_start.\n"
         "- overhead = wall time / time inside the network's forward calls (backward passes count as "
         "overhead).\n")


def summary(out: Path, settings, low_budget: int = 100) -> str:
    """One table over the settings' JSONs: per method its best chosen validation row at <= low_budget NFE per
    image and at any budget, and its test rows (<setting>_test.json) where they exist. Writes summary.md."""
    lines = ["| setting | method | best <= %d NFE: PSNR (NFE) | best any budget: PSNR (NFE) | test: PSNR / SSIM (NFE, "
             "s / image) |" % low_budget, "|---|---|---|---|---|"]
    for name in settings:
        path = out / f"{name}.json"
        if not path.exists():
            continue
        rows = [r for r in json.loads(path.read_text())["records"] if r.get("chosen", True)]
        test_path = out / f"{name}_test.json"
        test = json.loads(test_path.read_text())["records"] if test_path.exists() else []
        for label in dict.fromkeys(r["method"] for r in rows):
            mine = [r for r in rows if r["method"] == label]
            low = [r for r in mine if r.get("nfe_per_image", r["nfe"]) <= low_budget]
            cell = lambda r: f"{r['psnr_mean']:.2f} ({r['nfe']})" if r else "–"  # noqa: E731
            best_low = max(low, key=lambda r: r["psnr_mean"]) if low else None
            best = max(mine, key=lambda r: r["psnr_mean"])
            tests = "; ".join(f"{t['psnr_mean']:.2f} / {t['ssim_mean']:.3f} ({t['nfe']}, "
                              f"{t.get('seconds_per_image', 0):.3g} s)" for t in test if t["method"] == label)
            lines.append(f"| {name} | {label} | {cell(best_low)} | {cell(best)} | {tests or '–'} |")
    text = "\n".join(lines) + "\n"
    (out / "summary.md").write_text("# PSNR versus NFE: summary\n\nValidation rows tuned per budget on the "
                                    "same images (see <setting>.md); test rows rerun the chosen settings on "
                                    "held-out test images (<setting>_test.md).\n\n" + text)
    return text


def main(argv=None):
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.summary:
        print(summary(args.out, sorted(SETTINGS), args.low_budget))
        return 0
    warm = "FISTA-TV (validation-tuned weight)" if args.warm_from == "fista_tv" else "the baseline"
    for name in args.setting:
        if args.test_only:
            if not args.test_images:
                raise SystemExit("--test-only needs --test-images N")
            records = json.loads((args.out / f"{name}.json").read_text())["records"]
            args.warm_from = records[0].get("warm_from", args.warm_from)   # the study's warm-start estimate
            write_test_rows(name, records, args, warm)
            continue
        start = time.time()
        records, images = run_setting(name, args)
        prov = {**provenance(args.device), "wall_seconds": round(time.time() - start, 1)}
        if args.merge and (args.out / f"{name}.json").exists():
            ran = sorted({r["method"] for r in records if r["nfe"] > 0})
            records, old_prov = merge_records(args.out / f"{name}.json", [r for r in records if r["nfe"] > 0],
                                              key=lambda r: r["method"])
            prov = {**prov, "merged_into": old_prov}
            notes_extra = (f"- Merged: the rows of {ran} come from this command; the others from "
                           f"`{old_prov['command']}` (commit {old_prov['commit'][:12]}). Each "
                           f"record's grid is in the JSON ('grid').\n")
        else:
            notes_extra = ""
        chosen = [r for r in records if r.get("chosen")]
        grid = {m: args.grid.get(m, {}) for m in args.methods}
        notes = (f"- {name}: {records[0]['dataset']} validation images {records[0]['indices']}, noise "
                 f"{args.noise:g} x mean |Ax|; schedule of the Tweedie samplers {args.schedule}.\n"
                 f"- Tuned per budget on these images: the option set with the best mean PSNR among the grid "
                 f"{json.dumps(grid)} (fixed: {json.dumps(args.options)}; warm starts t_start in "
                 f"{args.warm_start or []} for {args.warm_methods}) is the row shown; budgets "
                 f"{args.extra_budgets} run for {args.extra_methods} only"
                 + (f", with the options chosen at {max(args.budgets)}. " if args.extra_fixed else ". ") +
                 f"Every trial is in the JSON ('chosen' marks the rows below). These are validation numbers "
                 f"with the tuning on the same images; see the _test rows for held-out ones.\n"
                 + NOTES.format(n_samples=args.n_samples, warm=warm) + notes_extra)
        write_results(name, records, notes + "\n" + markdown_table(table_rows(chosen), list(table_rows(chosen)[0])),
                      args.device, args.out, prov)
        title = f"{name} | {prov['commit'][:12]} | {prov['device']} | {prov['date']}\n{prov['command']}"
        plot_curves(chosen, args.out / f"{name}_psnr.png", title)
        if not args.merge:
            save_panels(images, args.out / f"{name}_images.png", rows=min(4, len(records[0]["indices"])),
                        title=title)
        print(f"wrote {args.out / name}.json / .md / _psnr.png / _images.png ({prov['wall_seconds']} s)")
        if args.test_images:
            write_test_rows(name, records, args, warm)


def write_test_rows(name: str, records: list, args, warm: str) -> None:
    start = time.time()
    test = test_rows(name, records, args)
    prov = {**provenance(args.device), "wall_seconds": round(time.time() - start, 1)}
    path = args.out / f"{name}_test.json"
    if args.merge and path.exists():   # replace the rerun methods' rows, keep the others; baselines first
        test, old_prov = merge_records(path, test, key=lambda r: r["method"])
        test = sorted(test, key=lambda r: r["nfe"] > 0)   # stable: kept rows before the rerun ones
        prov = {**prov, "merged_into": old_prov}
    notes = (f"- {name}: {test[0]['dataset']} test images {test[0]['indices']}; each method with the "
             f"options chosen on validation ({name}.json) at its best budget and at its best budget "
             f"<= {args.low_budget} NFE per image ('picked_for' in the JSON; val_psnr: its validation PSNR).\n"
             + NOTES.format(n_samples=args.n_samples, warm=warm))
    rows = table_rows(test)
    for row, r in zip(rows, test):
        row["picked for"] = r.get("picked_for", "")
    write_results(f"{name}_test", test, notes + "\n" + markdown_table(rows, list(rows[0])), args.device, args.out,
                  prov)
    print(f"wrote {args.out / name}_test.json / .md ({prov['wall_seconds']} s)")

if __name__ == "__main__":
    sys.exit(main())

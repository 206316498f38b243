"""Inpainting and colorization with the shared unconditional score models (no retraining).

    python benchmarks/inpaint_colorize.py [--digits-checkpoint digits32] [--patches-checkpoint patches32]
        [-n 16] [--steps 100] [--seed 0] [--out benchmarks/results] [--quick] [--device cpu]
        [--tasks digits_box digits_random patches_box patches_random patches_colorize]

Tasks (test split; n images of each data set, evenly spaced over it):
    digits_box / patches_box          y = M x, M = 0 on a central square of half the side
    digits_random / patches_random    y = M x, each pixel (all channels) kept with probability 0.25
    patches_colorize                  y = (R + G + B) / 3   (Grayscale(32))
Measurements are noiseless (`forward_model.simulate`). Ours: `solve(y, A, model)` with the default
method for these linear models with a decomposition, projection (Song et al. 2022, lam = 1), PC
sampler, one sample per image, clamped to [0, 1]. Classical reference: biharmonic inpainting
(`skimage.restoration.inpaint_biharmonic`) for the masks; for colorization the grey image
replicated to three channels (the luminance alone). PSNR / SSIM (data_range 1), mean ± std over
the images. For colorization the record also holds max |Grayscale(sample) - y| of the sample
before and after clamping to [0, 1]: projection imposes the grey level exactly, clamping may not
keep it.
--quick: 4 images, 20 steps (explicit options still win).
Outputs: OUT/inpaint_colorize.json, OUT/inpaint_colorize.md, OUT/<task>.png (input, reference,
ours, ground truth; up to 8 rows).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

try:  # a checkout without `pip install -e .`: use the package next to benchmarks/
    import sgm_inverse  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forward_models import Grayscale, Inpainting
from sgm_inverse import load_score_model, metrics, solve
from sgm_inverse.data import get_dataset
from sgm_inverse.plotting import save_panels

from common import RESULTS, checkpoint_step, markdown_table, provenance, write_results

# task -> (data set, kind)
TASKS = {"digits_box": ("digits", "box"), "digits_random": ("digits", "random"),
         "patches_box": ("patches", "box"), "patches_random": ("patches", "random"),
         "patches_colorize": ("patches", "colorize")}
KEEP_RANDOM = 0.25
FIGURE_ROWS = 8


def make_forward_model(kind: str, image_shape: tuple, seed: int):
    """Box: central missing square of side H // 2; random: keep 25 % of the pixels; colorize: Grayscale."""
    if kind == "box":
        return Inpainting.box(image_shape)
    if kind == "random":
        return Inpainting.random(image_shape, keep=KEEP_RANDOM, seed=seed)
    if kind == "colorize":
        if image_shape[0] != 3:
            raise SystemExit(f"colorization needs colour images, got shape {image_shape}")
        return Grayscale(image_shape[-1])
    raise ValueError(f"unknown task kind {kind!r}")


def load_test_images(dataset: str, n: int) -> torch.Tensor:
    """n test-split images (N, C, H, W) in [0, 1], evenly spaced over the split (patches: both held-out
    photographs, not only the first one)."""
    ds = get_dataset(dataset, "test")
    if n > len(ds):
        raise SystemExit(f"the {dataset} test split has {len(ds)} images; asked for {n}")
    items = [ds[int(i)] for i in torch.linspace(0, len(ds) - 1, n).round().long()]
    return torch.stack([it[0] if isinstance(it, (tuple, list)) else it for it in items])


def biharmonic(y: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """skimage biharmonic inpainting of each image of y (N, C, H, W) where mask (C, H, W) is 0."""
    from skimage.restoration import inpaint_biharmonic
    missing = (mask[0] == 0).cpu().numpy()   # the masks here are the same for every channel
    out = []
    for img in y.cpu().double().numpy():
        if img.shape[0] == 1:
            out.append(inpaint_biharmonic(img[0], missing)[None])
        else:
            out.append(np.moveaxis(inpaint_biharmonic(np.moveaxis(img, 0, -1), missing, channel_axis=-1), -1, 0))
    return torch.from_numpy(np.stack(out)).float().clamp(0, 1)


def reference(kind: str, fm, y: torch.Tensor) -> torch.Tensor:
    """The classical answer: biharmonic inpainting, or the grey level in all three channels."""
    if kind == "colorize":
        return y.repeat(1, 3, 1, 1).clamp(0, 1)
    return biharmonic(y, fm.mask)


def input_view(kind: str, fm, y: torch.Tensor) -> torch.Tensor:
    """What the figure shows as input: observed pixels on grey 0.5, or the grey image."""
    if kind == "colorize":
        return y
    return y * fm.mask + 0.5 * (1 - fm.mask)


def quality(x: torch.Tensor, truth: torch.Tensor) -> dict:
    p, s = metrics.psnr(x, truth), metrics.ssim(x, truth)
    return {"psnr_mean": float(p.mean()), "psnr_std": float(p.std()),
            "ssim_mean": float(s.mean()), "ssim_std": float(s.std())}


def grey_error(fm, x: torch.Tensor, y: torch.Tensor) -> float:
    """max |A x - y| over all pixels of the batch."""
    with torch.no_grad():
        return float((fm(x) - y).abs().max())


def run_task(task: str, model, args) -> tuple[list, Path]:
    dataset, kind = TASKS[task]
    x = load_test_images(dataset, args.n)
    fm = make_forward_model(kind, tuple(x.shape[1:]), args.seed)
    y = fm.simulate(x, generator=torch.Generator().manual_seed(args.seed))
    base = {"task": task, "dataset": dataset, "split": "test", "n_images": args.n, "noise_std": 0.0}
    if kind != "colorize":
        base["observed_fraction"] = fm.observed_fraction

    t0 = time.time()
    ref = reference(kind, fm, y)
    ref_rec = {**base, "method": "biharmonic (skimage)" if kind != "colorize" else "grey replicated",
               **quality(ref, x), "seconds_per_image": (time.time() - t0) / args.n}

    sol = solve(y, fm, model, sampler="pc", steps=args.steps, n_samples=1, seed=args.seed,
                progress=not args.no_progress)
    raw = sol.samples[0].cpu()
    ours = raw.clamp(0, 1)
    ours_rec = {**base, "method": f"ours ({sol.settings['method']})", **quality(ours, x),
                "seconds_per_image": sol.seconds / args.n, "nfe": sol.nfe, "steps": args.steps, "seed": args.seed,
                "snr": sol.settings["snr"], "checkpoint": str(args.checkpoints[dataset]),
                "checkpoint_step": checkpoint_step(model),
                "residual_max_unclamped": float(sol.residual.max())}
    fm_cpu = fm.cpu()
    if kind == "colorize":
        ours_rec["gray_max_abs_err_unclamped"] = grey_error(fm_cpu, raw, y)
        ours_rec["gray_max_abs_err_clamped"] = grey_error(fm_cpu, ours, y)
    else:
        observed = fm_cpu.mask.bool().expand_as(raw)
        ours_rec["observed_max_abs_err_unclamped"] = float((raw - y).abs()[observed].max())

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{task}.png"
    prov = provenance(args.device)
    title = f"{task}, {dataset} test split | commit {prov['commit'][:12]} | {prov['date']}\n{prov['command']}"
    cols = {"input (grey)" if kind == "colorize" else "input (observed)": input_view(kind, fm_cpu, y),
            ref_rec["method"]: ref, ours_rec["method"]: ours, "ground truth": x}
    save_panels(cols, path, rows=min(FIGURE_ROWS, args.n), title=title)
    return [ref_rec, ours_rec], path


def table(records: list) -> str:
    rows = []
    for r in records:
        extra = ""
        if "gray_max_abs_err_unclamped" in r:
            extra = (f"max abs(gray(x) - y): {r['gray_max_abs_err_unclamped']:.2g} raw, "
                     f"{r['gray_max_abs_err_clamped']:.2g} clamped")
        elif "observed_max_abs_err_unclamped" in r:
            extra = f"max abs error on observed pixels {r['observed_max_abs_err_unclamped']:.2g}"
        rows.append({"task": r["task"], "method": r["method"],
                     "PSNR (dB)": f"{r['psnr_mean']:.2f} ± {r['psnr_std']:.2f}",
                     "SSIM": f"{r['ssim_mean']:.3f} ± {r['ssim_std']:.3f}",
                     "s / image": f"{r['seconds_per_image']:.3g}", "NFE": r.get("nfe", "-"), "n": r["n_images"],
                     "data consistency": extra})
    return markdown_table(rows, ["task", "method", "PSNR (dB)", "SSIM", "s / image", "NFE", "n", "data consistency"])


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--digits-checkpoint", default="digits32", help="1x32x32 score model: shipped name or path")
    ap.add_argument("--patches-checkpoint", default="patches32", help="3x32x32 score model: shipped name or path")
    ap.add_argument("-n", "--n-images", dest="n", type=int, default=None,
                    help="test images per task (default 16, quick 4)")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default 100, quick 20)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true", help="4 images, 20 steps")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    args.n = args.n or (4 if args.quick else 16)
    args.steps = args.steps or (20 if args.quick else 100)
    if args.n < 1 or args.steps < 1:
        raise SystemExit("-n and --steps must be >= 1")
    args.checkpoints = {"digits": args.digits_checkpoint, "patches": args.patches_checkpoint}
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    start = time.time()
    models, records, figures = {}, [], []
    for task in args.tasks:
        dataset = TASKS[task][0]
        if dataset not in models:
            models[dataset] = load_score_model(args.checkpoints[dataset], device=args.device)
        recs, path = run_task(task, models[dataset], args)
        records += recs
        figures.append(path)
        print(f"{task}: " + "; ".join(f"{r['method']} PSNR {r['psnr_mean']:.2f} SSIM {r['ssim_mean']:.3f}"
                                      for r in recs))
    notes = [
        f"Test split, {args.n} images of each data set evenly spaced over it; noiseless measurements; mean ± std over images.",
        "Score models: " + ", ".join(f"{d} `{c}` (step {checkpoint_step(models[d])})"
                                     for d, c in args.checkpoints.items() if d in models) +
        f" (unconditional, shared with every other task). Ours = one posterior sample per image, PC sampler "
        f"(reverse diffusion + 1 Langevin step), {args.steps} steps, projection (lam = 1), seed {args.seed}, "
        "clamped to [0, 1].",
        "Masks: box = central missing square of half the side; random = 25 % of the pixels kept (all channels "
        f"together, seed {args.seed}). Reference: skimage biharmonic inpainting; for colorization the grey "
        "image in all three channels.",
        "PSNR / SSIM: scikit-image, data_range = 1. Data consistency: max |A x - y| of the unclamped sample "
        "(colorization also after clamping); for inpainting the max error on the observed pixels.",
        f"Figures: {', '.join(p.name for p in figures)}. Wall time {time.time() - start:.1f} s.",
    ]
    text = "\n".join(f"- {n}" for n in notes) + "\n\n" + table(records)
    jpath, mpath = write_results("inpaint_colorize", records, text, args.device, args.out)
    print(f"wrote {jpath}, {mpath}" + "".join(f", {p}" for p in figures))


if __name__ == "__main__":
    main()

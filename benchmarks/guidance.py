"""Accuracy of classifier-guided digit generation, judged by an independent clean classifier.

    python benchmarks/guidance.py [--checkpoint digits32] [--classifier digits32_classifier]
        [--judge digits32_judge] [--scales 0 1 2 4] [--per-class 10] [--steps 100] [--snr 0.16]
        [--seed 0] [--out benchmarks/results] [--quick] [--device cpu]

For every guidance scale s, `per-class` samples of each class 0..9 are drawn in one batch with
the Bayes rule for scores (as `sgm-inverse generate` does):

    grad log p_t(x | c) = s_theta(x, t) + s * grad_x log softmax(classifier(x_t, t))[c]

i.e. `solve(labels, ClassifierGuidance(classifier, scale=s), model, method="bayes")`; s = 0 is
the unguided prior through the same code path (the guidance term is then exactly zero). Every
scale uses the same seed, so all scales start from the same prior noise. Samples are clamped
to [0, 1] and classified by `digits32_judge`, a clean-image CNN trained separately and never
used for guidance (a guided sample cannot pass merely by fooling the classifier that steered
it). Reported per scale: overall accuracy with a 95 % Wilson interval, per-class accuracy,
the worst class, seconds and NFE; also how often the steering classifier itself (at t = 0)
agrees with the requested class. A sanity row runs the judge on real test digits (the same
number per class) through the same bookkeeping function.
--quick: scales 0 2, 2 per class, 20 steps (explicit options still win).
Outputs: OUT/guidance.json, OUT/guidance.md, OUT/guidance_scale<s>.png (row = class).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

try:  # a checkout without `pip install -e .`: use the package next to benchmarks/
    import sgm_inverse  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forward_models import ClassifierGuidance
from sgm_inverse import load_classifier, load_score_model, solve
from sgm_inverse.data import get_dataset
from sgm_inverse.plotting import save_grid

from common import RESULTS, checkpoint_step, markdown_table, write_results

NUM_CLASSES = 10


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95 % Wilson score interval for a binomial proportion k / n (sensible also at k = 0 or n)."""
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@torch.no_grad()
def judge_accuracy(judge, images: torch.Tensor, labels: torch.Tensor, num_classes: int = NUM_CLASSES,
                   batch_size: int = 500) -> dict:
    """Top-1 accuracy of ``judge(x) -> logits (B, K)`` on images (N, C, H, W) with labels (N,).

    Returns n, correct, accuracy, its 95 % Wilson interval (ci95_low, ci95_high), per-class
    n / correct / accuracy (lists of length num_classes; NaN accuracy for a class with no image),
    the worst class and its accuracy. sum_c per_class_correct = correct, so the per-class
    accuracies weighted by per_class_n average to the overall accuracy.
    """
    if images.shape[0] != labels.shape[0]:
        raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
    device = next(iter(judge.parameters())).device if hasattr(judge, "parameters") else images.device
    labels = labels.long().cpu()
    preds = torch.cat([judge(images[i:i + batch_size].to(device)).argmax(-1).cpu()
                       for i in range(0, images.shape[0], batch_size)])
    hit = preds == labels
    per_n = torch.bincount(labels, minlength=num_classes)[:num_classes]
    per_correct = torch.bincount(labels[hit], minlength=num_classes)[:num_classes]
    per_acc = [c / n if n else float("nan") for c, n in zip(per_correct.tolist(), per_n.tolist())]
    present = [c for c in range(num_classes) if per_n[c] > 0]
    worst = min(present, key=lambda c: per_acc[c]) if present else None
    n, k = int(hit.numel()), int(hit.sum())
    lo, hi = wilson_interval(k, n)
    return {"n": n, "correct": k, "accuracy": k / n if n else float("nan"), "ci95_low": lo, "ci95_high": hi,
            "per_class_n": per_n.tolist(), "per_class_correct": per_correct.tolist(),
            "per_class_accuracy": per_acc, "worst_class": worst,
            "worst_class_accuracy": per_acc[worst] if worst is not None else float("nan")}


def real_digits(per_class: int, split: str = "test") -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` digits of each class of ``split``, class-major: (10 per_class, 1, 32, 32), labels."""
    ds = get_dataset("digits", split, with_labels=True)
    rows = []
    for c in range(NUM_CLASSES):
        idx = torch.nonzero(ds.labels == c).flatten()
        if len(idx) < per_class:
            raise SystemExit(f"the {split} split has only {len(idx)} digits of class {c}; ask for fewer per class")
        rows.append(idx[:per_class])
    rows = torch.cat(rows)
    return ds.images[rows].clone(), ds.labels[rows].clone()


def generate(model, classifier, scale: float, per_class: int, steps: int, snr: float, seed: int,
             progress: bool) -> tuple[torch.Tensor, torch.Tensor, object]:
    """Class-major samples (10 per_class, C, H, W) in [0, 1], their labels, and the Solution."""
    labels = torch.arange(NUM_CLASSES).repeat_interleave(per_class)
    guidance = ClassifierGuidance(classifier, scale=scale)
    sol = solve(labels, guidance, model, method="bayes", steps=steps, snr=snr, seed=seed, progress=progress)
    return sol.samples[0].clamp(0, 1).cpu(), labels, sol


def fmt_scale(s: float) -> str:
    return f"{s:g}"


def table(records: list) -> str:
    rows = []
    for r in records:
        per = " ".join(f"{c}:{a:.2f}" for c, a in enumerate(r["per_class_accuracy"]))
        rows.append({"images": r["images"], "scale": r["scale"] if r["scale"] is not None else "-",
                     "accuracy": f"{r['accuracy']:.3f}", "95% CI": f"[{r['ci95_low']:.3f}, {r['ci95_high']:.3f}]",
                     "worst class": f"{r['worst_class']} ({r['worst_class_accuracy']:.2f})",
                     "steering clf. agrees": f"{r['guide_accuracy']:.3f}" if "guide_accuracy" in r else "-",
                     "n": r["n"], "seconds": f"{r['seconds']:.1f}", "NFE": r.get("nfe", "-"),
                     "per-class accuracy": per})
    cols = ["images", "scale", "accuracy", "95% CI", "worst class", "steering clf. agrees", "n", "seconds", "NFE",
            "per-class accuracy"]
    return markdown_table(rows, cols)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="digits32", help="score model: shipped name or path")
    ap.add_argument("--classifier", default="digits32_classifier", help="noise-conditional guidance classifier")
    ap.add_argument("--judge", default="digits32_judge", help="independent clean classifier")
    ap.add_argument("--scales", nargs="+", type=float, default=None, help="guidance scales (default 0 1 2 4)")
    ap.add_argument("--per-class", type=int, default=None, help="samples per class (default 10, quick 2)")
    ap.add_argument("--steps", type=int, default=None, help="sampler steps (default 100, quick 20)")
    ap.add_argument("--snr", type=float, default=0.16)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true", help="scales 0 2, 2 per class, 20 steps")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    q = args.quick
    args.scales = args.scales if args.scales is not None else ([0.0, 2.0] if q else [0.0, 1.0, 2.0, 4.0])
    args.per_class = args.per_class or (2 if q else 10)
    args.steps = args.steps or (20 if q else 100)
    if args.per_class < 1 or args.steps < 1 or any(s < 0 for s in args.scales):
        raise SystemExit("--per-class and --steps must be >= 1 and --scales >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    device = torch.device(args.device)
    model = load_score_model(args.checkpoint, device=device)
    classifier = load_classifier(args.classifier, device=device)
    judge = load_classifier(args.judge, device=device)
    steer = ClassifierGuidance(classifier)  # forward(x) = logits at t = 0, for the agreement column
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    step = checkpoint_step(model)
    common = {"checkpoint": str(args.checkpoint), "checkpoint_step": step, "classifier": str(args.classifier),
              "judge": str(args.judge), "per_class": args.per_class}

    t0 = time.time()
    x_real, y_real = real_digits(args.per_class)
    records = [{"images": "real test digits (sanity)", "scale": None, **common,
                **judge_accuracy(judge, x_real, y_real), "seconds": time.time() - t0}]
    figures = []
    for s in args.scales:
        x, labels, sol = generate(model, classifier, s, args.per_class, args.steps, args.snr, args.seed,
                                  not args.no_progress)
        rec = {"images": "guided samples" if s > 0 else "unguided samples", "scale": s, **common,
               **judge_accuracy(judge, x, labels), "guide_accuracy": judge_accuracy(steer, x, labels)["accuracy"],
               "seconds": sol.seconds, "nfe": sol.nfe, "steps": args.steps, "snr": args.snr, "seed": args.seed,
               "method": sol.settings["method"], "sampler": sol.settings["sampler"]}
        records.append(rec)
        path = out / f"guidance_scale{fmt_scale(s)}.png"
        save_grid(x, path, nrow=args.per_class)
        figures.append(path)
        print(f"scale {fmt_scale(s)}: judge accuracy {rec['accuracy']:.3f} "
              f"[{rec['ci95_low']:.3f}, {rec['ci95_high']:.3f}], worst class {rec['worst_class']} "
              f"({rec['worst_class_accuracy']:.2f}), {sol.seconds:.1f} s")

    notes = [
        f"Score model `{args.checkpoint}` (step {step}), guidance classifier `{args.classifier}` "
        f"(noise-conditional), judge `{args.judge}` (clean CNN, independent of the guidance).",
        f"{args.per_class} samples per class x 10 classes per scale, one batch, PC sampler (reverse diffusion + "
        f"1 Langevin step, snr {args.snr:g}), {args.steps} steps, seed {args.seed} for every scale; "
        "samples clamped to [0, 1]; scale 0 = unguided (zero guidance term, same code path).",
        "accuracy = judge argmax == requested class; 95% CI = Wilson score interval; "
        "'steering clf. agrees' = the guidance classifier at t = 0 on the same samples (a large gap to the "
        "judge's accuracy would mean the samples fool the steering classifier).",
        f"Sanity row: the judge on real test-split digits ({args.per_class} per class) through the same "
        "bookkeeping.",
        f"Figures: {', '.join(p.name for p in figures)} (row = class 0..9).",
    ]
    text = "\n".join(f"- {n}" for n in notes) + "\n\n" + table(records)
    jpath, mpath = write_results("guidance", records, text, device, out)
    print(f"wrote {jpath}, {mpath}" + "".join(f", {p}" for p in figures))


if __name__ == "__main__":
    main()

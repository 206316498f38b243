"""Train the two shipped digit classifiers and write their accuracy table.

    python data_scripts/train_digit_classifiers.py

(options: --steps-guidance 2000 --steps-judge 1200 --batch-size 128 --seed 0 --out sgm_inverse/weights
--threads 1 --no-progress). CPU, about 12 + 6 minutes on one busy core.

(a) ``digits32_classifier``: ``NoiseConditionalClassifier``, the guidance likelihood p_t(y | x_t).
    Trained on the digits TRAIN split perturbed by the SDE of the ``digits32`` score model,
    VESDE(sigma_min=0.01, sigma_max=25): t ~ U(eps, 1), x_t = x_0 + std(t) z, after a light
    augmentation (shifts up to 2 px, rotation up to 5 deg). Cross-entropy, AdamW, cosine LR.
(b) ``digits32_judge``: ``CleanClassifier`` on clean TRAIN digits with small random affine
    jitter (rotation, zoom, shift, slight elastic warp) so that it stays reliable on slightly
    off-distribution generated digits. Only used to judge samples, never for guidance.

The validation split is printed for monitoring only; nothing is selected: the final weights
are saved. The TEST split is used once, at the end, for the reported accuracies: the judge
on clean digits, the guidance classifier on noisy digits x_0 + std(t) z at
t in {eps, 0.1, 0.3, 0.5, 0.7, 1.0} (4 noise draws per test digit, fixed seed). Results go
to benchmarks/results/digit_classifiers.{json,md} with the command, commit, device and date.
Deterministic for a given seed, thread count and machine.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from sgm_inverse.classifiers import save_classifier
from sgm_inverse.data import Digits, random_affine_elastic
from sgm_inverse.nets.classifier import CleanClassifier, NoiseConditionalClassifier
from sgm_inverse.sde import VESDE

ROOT = Path(__file__).resolve().parent.parent
EVAL_TIMES = (0.0, 0.1, 0.3, 0.5, 0.7, 1.0)  # t = 0 means t = eps


def light_shift(x, g):
    return random_affine_elastic(x, g, max_rotate_deg=5, max_scale=0.0, max_shift=2 / 32,
                                 elastic_alpha=0.0, intensity_scale=(1.0, 1.0))


def judge_jitter(x, g):
    return random_affine_elastic(x, g, max_rotate_deg=12, max_scale=0.1, max_shift=0.08,
                                 elastic_alpha=0.03, intensity_scale=(0.8, 1.1))


def train(model, images, labels, steps, batch_size, lr, augment, g, noisy: bool, monitor=None, progress=True):
    """AdamW with linear warm-up and cosine decay; returns wall time in seconds."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    warm = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / steps)))
    sde = getattr(model, "sde", None)
    start, bar = time.time(), tqdm(range(steps), disable=not progress, mininterval=2.0)
    model.train()
    for step in bar:
        idx = torch.randint(len(images), (batch_size,), generator=g)
        x, y = augment(images[idx], g), labels[idx]
        if noisy:
            t = torch.rand(batch_size, generator=g) * (sde.T - sde.eps) + sde.eps
            x = x + sde.marginal_prob(x, t)[1].view(-1, 1, 1, 1) * torch.randn(x.shape, generator=g)
            loss = F.cross_entropy(model(x, t), y)
        else:
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if monitor is not None and (step + 1) % max(1, steps // 4) == 0:
            model.eval()
            tqdm.write(f"  step {step + 1}: val {monitor(model)}")
            model.train()
    model.eval()
    return time.time() - start


@torch.no_grad()
def accuracy(model, images, labels, t=None, draws=1, seed=0, batch=500):
    """Top-1 accuracy; with ``t``, on x_0 + std(t) z averaged over ``draws`` noise draws."""
    g, correct, total = torch.Generator().manual_seed(seed), 0, 0
    for _ in range(draws):
        for i in range(0, len(images), batch):
            x, y = images[i:i + batch], labels[i:i + batch]
            if t is None:
                logits = model(x)
            else:
                tt = torch.full((len(x),), max(t, model.sde.eps))
                x = x + model.sde.marginal_prob(x, tt)[1].view(-1, 1, 1, 1) * torch.randn(x.shape, generator=g)
                logits = model(x, tt)
            correct += int((logits.argmax(-1) == y).sum())
            total += len(y)
    return correct / total


def provenance(threads: int) -> dict:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                cwd=ROOT, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {"command": "python " + " ".join([Path(sys.argv[0]).as_posix()] + sys.argv[1:]), "commit": commit,
            "device": f"CPU: {platform.processor() or platform.machine()}, {threads} thread(s)",
            "torch": torch.__version__, "date": datetime.datetime.now().isoformat(timespec="seconds")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps-guidance", type=int, default=2000)
    p.add_argument("--steps-judge", type=int, default=1200)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=ROOT / "sgm_inverse" / "weights")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    progress = not args.no_progress
    prov = provenance(args.threads)  # the commit the run started from

    train_set, val_set, test_set = (Digits(s, with_labels=True) for s in ("train", "val", "test"))
    xs, ys = train_set.images, train_set.labels
    sde = VESDE(sigma_min=0.01, sigma_max=25.0)
    data_rec = {"dataset": "digits", "split": "train", "range": [0.0, 1.0], "n_train": len(xs)}

    # (a) the noise-conditional guidance classifier
    torch.manual_seed(args.seed)
    clf = NoiseConditionalClassifier(in_channels=1, image_size=32, num_classes=10, sde=sde)
    val_t = (0.0, 0.3, 0.5, 0.7)
    monitor = lambda m: "  ".join(f"t={t}: {accuracy(m, val_set.images, val_set.labels, t):.3f}" for t in val_t)
    g = torch.Generator().manual_seed(args.seed)
    print(f"guidance classifier: {sum(p.numel() for p in clf.parameters()) / 1e3:.0f} k params, "
          f"{args.steps_guidance} steps")
    sec_clf = train(clf, xs, ys, args.steps_guidance, args.batch_size, 2e-3, light_shift, g, True, monitor, progress)

    # (b) the clean judge
    torch.manual_seed(args.seed + 1)
    judge = CleanClassifier(in_channels=1, image_size=32, num_classes=10)
    monitor = lambda m: f"{accuracy(m, val_set.images, val_set.labels):.3f}"
    g = torch.Generator().manual_seed(args.seed + 1)
    print(f"judge: {sum(p.numel() for p in judge.parameters()) / 1e3:.0f} k params, {args.steps_judge} steps")
    sec_judge = train(judge, xs, ys, args.steps_judge, args.batch_size, 2e-3, judge_jitter, g, False, monitor,
                      progress)

    # the test split, once
    xt, yt = test_set.images, test_set.labels
    judge_acc = accuracy(judge, xt, yt)
    rows = [{"t": t, "sigma": float(sde.sigma(torch.tensor(max(t, sde.eps)))),
             "accuracy": accuracy(clf, xt, yt, t, draws=4, seed=1234)} for t in EVAL_TIMES]
    common = {"seed": args.seed, "batch_size": args.batch_size, "optimizer": "AdamW lr 2e-3 wd 0.05, cosine",
              "command": prov["command"], "commit": prov["commit"]}
    save_classifier(clf, args.out / "digits32_classifier.safetensors", data=data_rec,
                    training={**common, "steps": args.steps_guidance, "seconds": round(sec_clf, 1),
                              "noise": "t ~ U(eps, 1), x_t = x_0 + std(t) z", "augment": "shift <= 2 px, rot <= 5 deg"},
                    test_accuracy={f"t={r['t']}": r["accuracy"] for r in rows})
    save_classifier(judge, args.out / "digits32_judge.safetensors", data=data_rec,
                    training={**common, "steps": args.steps_judge, "seconds": round(sec_judge, 1),
                              "augment": "rot <= 12 deg, zoom 10%, shift 8%, elastic 0.03, gain 0.8-1.1"},
                    test_accuracy=judge_acc)

    table = ["| model | test digits | t | sigma | accuracy |", "|---|---|---|---|---|",
             f"| digits32_judge | clean (500) | - | 0 | {judge_acc:.4f} |"]
    table += [f"| digits32_classifier | x0 + sigma z (500 x 4 draws) | {r['t']:g}{' (eps)' if r['t'] == 0 else ''} "
              f"| {r['sigma']:.4g} | {r['accuracy']:.4f} |" for r in rows]
    times = f"Training time: guidance classifier {sec_clf / 60:.1f} min ({args.steps_guidance} steps), " \
            f"judge {sec_judge / 60:.1f} min ({args.steps_judge} steps), batch {args.batch_size}."
    print("\n".join([times, *table]))
    args.results.mkdir(parents=True, exist_ok=True)
    record = {"provenance": prov, "training_seconds": {"digits32_classifier": round(sec_clf, 1),
                                                       "digits32_judge": round(sec_judge, 1)},
              "records": [{"model": "digits32_judge", "noise": "clean", "accuracy": judge_acc}]
              + [{"model": "digits32_classifier", **r} for r in rows]}
    (args.results / "digit_classifiers.json").write_text(json.dumps(record, indent=2) + "\n")
    head = "\n".join(f"- {k}: `{v}`" for k, v in prov.items())
    (args.results / "digit_classifiers.md").write_text(
        f"# digit_classifiers\n\nTest-split accuracy of the shipped digit classifiers.\n\n{head}\n\n{times}\n\n"
        + "\n".join(table) + "\n")


if __name__ == "__main__":
    main()

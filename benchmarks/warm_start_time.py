"""The warm-start time t0 of `sgm-inverse solve ct|mri`, lane by lane, on validation images.

    python benchmarks/warm_start_time.py --lanes brain-ct8 brain-ct23 brain-mri4 ellipses-ct8 ellipses-ct23 \
        ellipses-mri4 --t0 0.03 0.05 0.1 0.2 0.3

The command line's default (`sgm_inverse.tasks.solve_settings`: the mean of 4 (CT) or 8 (MRI; 4 before step 9,000
of `general` shipped) DDNM samples, 50 steps each) is re-run from the same FISTA-TV warm start x_ws at several t0,
i.e. from x_t0 = alpha(t0) (x_ws + sigma(t0) z) with sigma = std / alpha (alpha = 1 for the VE SDE): a small t0
keeps more of the warm start, a large one lets the prior redraw more of it. Per lane (the settings of
benchmarks/general_in_distribution.py), on *validation* images only: FISTA-TV's weight c (lam = c ||A||^2) is
grid-searched on `--n-tune` of them and the t0 candidates are scored on `--n` others (the two sets are disjoint;
the test split is never read). Noise-free, fixed seed, `general` unless `--checkpoint` names another prior.
Writes benchmarks/results/<stem>.json / .md (mean PSNR / SSIM per lane and t0, FISTA-TV's beside them) and
<stem>.png (each lane's PSNR gain over FISTA-TV against sigma(t0)).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, checkpoint_step, markdown_table, provenance, tuned_fista_tv, write_results  # noqa: E402
from general_in_distribution import FISTA_C, SETTINGS, operator  # noqa: E402

from sgm_inverse import load_score_model, solve  # noqa: E402
from sgm_inverse.data import get_dataset  # noqa: E402
from sgm_inverse.metrics import psnr, ssim  # noqa: E402
from sgm_inverse.tasks import solve_settings, task_of  # noqa: E402


def split_validation(n_images: int, n_tune: int, n_eval: int) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (tuning, scoring) indices into a validation split of n_images, evenly spread over it: the
    n_tune + n_eval evenly spaced indices, alternately given to scoring (up to n_eval) and to tuning, so
    n_eval <= n_tune."""
    if n_tune + n_eval > n_images:
        raise ValueError(f"{n_tune} + {n_eval} images asked from a validation split of {n_images}")
    if n_eval > n_tune:
        raise ValueError(f"{n_eval} images to score needs as many to tune on or more, got {n_tune}")
    idx = np.unique(np.linspace(0, n_images - 1, n_tune + n_eval).round().astype(int))
    score = idx[1::2][:n_eval]
    return np.setdiff1d(idx, score), score


def plot(rows: list, path: Path) -> None:
    """Each lane's mean PSNR gain over its FISTA-TV start against sigma(t0) (log axis), one line per lane."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for lane in dict.fromkeys(r["lane"] for r in rows):
        fista = next(r["psnr"] for r in rows if r["lane"] == lane and r["t0"] is None)
        pts = sorted((r["sigma_t0"], r["psnr"] - fista) for r in rows if r["lane"] == lane and r["t0"] is not None)
        ax.plot(*zip(*pts), marker="o", label=lane)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("sigma(t0): noise the warm start is restarted from")
    ax.set_ylabel("PSNR gain over FISTA-TV (dB)")
    ax.set_title(f"warm-start time, validation images, {rows[0]['size']} px")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lanes", nargs="+", choices=list(SETTINGS), default=["brain-ct8", "brain-mri4"])
    ap.add_argument("--t0", type=float, nargs="+", default=[0.1, 0.2, 0.3])
    ap.add_argument("--checkpoint", default="general")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("-n", type=int, default=4, help="validation images the t0 candidates are scored on")
    ap.add_argument("--n-tune", type=int, default=8, help="other validation images FISTA-TV's weight is tuned on")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stem", default="warm_start_time")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prov, start = provenance(), time.time()
    model = load_score_model(args.checkpoint)
    ckpt = {"checkpoint": args.checkpoint, "checkpoint_step": checkpoint_step(model)}   # stale_results.py
    rows = []
    for lane in args.lanes:
        dataset, kind, n = SETTINGS[lane]
        op = operator(kind, n, args.size)
        run = solve_settings(task_of(op))
        data = get_dataset(dataset, "val", image_size=args.size)
        tune, score = split_validation(len(data), args.n_tune, args.n)
        x_tune, x = (torch.stack([data[int(i)] for i in ix]) for ix in (tune, score))
        y = op(x)
        c, warm = tuned_fista_tv(op, x_tune, y, FISTA_C, n_iter=300)
        warm = warm.clamp(0, 1)
        base = {**ckpt, "lane": lane, "size": args.size, "images": score.tolist()}
        rows.append({**base, "candidate": "FISTA-TV", "t0": None, "sigma_t0": None, "lam_over_L": c,
                     "psnr": round(float(psnr(warm, x, data_range=1.0).mean()), 2),
                     "ssim": round(float(ssim(warm, x, data_range=1.0).mean()), 3), "seconds_per_image": None})
        print(rows[-1], flush=True)
        for t0 in args.t0:
            t = time.time()
            sol = solve(y, op, model, seed=0, progress=False, ood_check=False, x_init=warm, t_start=t0,
                        **run.sampler_kwargs())
            r = sol.mean.clamp(0, 1)
            alpha, std = model.sde.scale_std(torch.tensor(t0))
            sigma = float(std / alpha)   # the noise-to-signal level the sampler restarts from
            rows.append({**base, "candidate": f"{run.sampler} {run.steps} x {run.samples}", "t0": t0,
                         "sigma_t0": round(sigma, 4), "lam_over_L": c,
                         "psnr": round(float(psnr(r, x, data_range=1.0).mean()), 2),
                         "ssim": round(float(ssim(r, x, data_range=1.0).mean()), 3),
                         "seconds_per_image": round((time.time() - t) / len(x), 1)})
            print(rows[-1], flush=True)
    shown = [{k: ("" if v is None else v) for k, v in r.items()} for r in rows]
    table = markdown_table(shown, ["lane", "candidate", "t0", "sigma_t0", "psnr", "ssim", "seconds_per_image"])
    best = []
    for lane in args.lanes:
        cands = [r for r in rows if r["lane"] == lane and r["t0"] is not None]
        top = max(cands, key=lambda r: r["psnr"])
        best.append(f"{lane} t0 = {top['t0']:g} ({top['psnr']:.2f} dB)")
    table += (f"\n\nValidation images at {args.size} x {args.size} ({args.n} scored per lane, FISTA-TV tuned on "
              f"{args.n_tune} others), checkpoint `{args.checkpoint}`. Best t0: " + "; ".join(best)
              + f". Wall time {time.time() - start:.0f} s.")
    write_results(args.stem, rows, table, out_dir=args.out, prov=prov)
    plot(rows, args.out / f"{args.stem}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

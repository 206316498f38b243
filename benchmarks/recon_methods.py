"""The methods a reconstruction benchmark runs on one setting, and how a reconstruction is scored.

    fbp / zero_filled   the classical direct inverse (FBP filter ramp / hann chosen on val);
    fista_tv            lam = c * ||A||^2, c grid-searched on val by `tune_fista_lambda`;
    projection / dps    `solve()` with the score checkpoint; "ours" = posterior mean of n_samples
                        samples, std = pixelwise std.
Every runner returns {"recon", "seconds", "nfe", "hyper"}; `score` clamps to [0, 1] and gives PSNR /
SSIM (data_range = 1) per image and the relative data residual of the unclamped reconstruction.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

try:  # a checkout without `pip install -e .`: use the package next to benchmarks/
    import sgm_inverse  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgm_inverse import metrics, solve  # noqa: E402
from sgm_inverse.baselines import fbp, fista_tv, power_method, tune_fista_lambda, zero_filled  # noqa: E402

from recon_task import Operators, timer  # noqa: E402

FISTA_MARGIN = 1.05          # step 1 / (1.05 ||A||^2), as tune_fista_lambda does


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

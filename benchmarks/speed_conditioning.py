"""Per-step cost of each conditioning rule relative to one score evaluation.

    python benchmarks/speed_conditioning.py [--device cuda] [--batch 8] [--steps 10]

For the default 64x64 U-Net (random weights: timing does not depend on training), it times
one pc_sample step (reverse-diffusion predictor, no corrector) unconditioned and with bayes,
projection and dps on 23-view CT, 4x MRI and box inpainting, and reports time per step
divided by the time of one score evaluation.
"""
from __future__ import annotations

import argparse
import time

import torch

from forward_models import Inpainting, SparseViewCT, UndersampledMRI
from sgm_inverse import VESDE, ScoreModel, pc_sample
from sgm_inverse.conditioning import Bayes, DPS, Projection
from sgm_inverse.nets import UNet, UNetConfig

from common import markdown_table, write_results


def timed(fn, repeats: int, device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = ScoreModel(UNet(UNetConfig()), VESDE(0.01, 40.0)).to(device).eval().requires_grad_(False)
    shape = (args.batch, 1, 64, 64)
    x = torch.rand(shape, device=device)
    t = torch.full((args.batch,), 0.5, device=device)
    with torch.no_grad():
        t_score = timed(lambda: model(x, t), args.repeats * 3, device)

    def per_step(conditioner):
        g = torch.Generator(device=device).manual_seed(0)
        run = lambda: pc_sample(model, shape, steps=args.steps, corrector="none", denoise=False, generator=g,
                                progress=False, conditioner=conditioner, device=device)
        return timed(run, args.repeats, device) / args.steps

    rows = [{"task": "-", "rule": "none (unconditional)", "ms_per_step": 1e3 * per_step(None)}]
    ops = {"ct 23 views": SparseViewCT(64, 23), "mri 4x": UndersampledMRI(64, acceleration=4),
           "inpainting box": Inpainting.box((1, 64, 64), size=24)}
    for name, fm in ops.items():
        fm = fm.to(device)
        y = fm(torch.rand(shape, device=device))
        for rule, cond in {"projection": Projection(fm, y, model.sde, lam=1.0), "dps": DPS(fm, y, model, zeta=1.0),
                           "bayes": Bayes(fm, y)}.items():
            rows.append({"task": name, "rule": rule, "ms_per_step": 1e3 * per_step(cond)})
    for r in rows:
        r["ms_score_eval"] = 1e3 * t_score
        r["step / score eval"] = r["ms_per_step"] / (1e3 * t_score)
    table = markdown_table(rows, ["task", "rule", "ms_per_step", "ms_score_eval", "step / score eval"])
    print(table)
    write_results("speed_conditioning", rows, f"U-Net 64x64 (default config), batch {args.batch}, "
                  f"reverse-diffusion predictor, no corrector.\n\n{table}", device)


if __name__ == "__main__":
    main()

"""Per-step cost of each conditioning rule relative to one score evaluation.

    python benchmarks/speed_conditioning.py [--device cuda] [--batch 8] [--steps 10]

For the default 64x64 U-Net (random weights: timing does not depend on training), it runs
pc_sample (reverse-diffusion predictor, no corrector) unconditioned and with bayes, projection
and dps on 23-view CT, 4x MRI and box inpainting, and reports the time per step spent outside
the network divided by the time of one score evaluation, both measured in the same run.
DPS and bayes pay a backward pass through the network (bayes only through the likelihood).
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


class TimedScore:
    """Wraps a score model and accumulates the wall time spent inside its forward calls."""

    def __init__(self, model, device):
        self.model, self.sde, self.device, self.seconds, self.calls = model, model.sde, device, 0.0, 0

    def __call__(self, x, t):
        self._sync()
        t0 = time.perf_counter()
        out = self.model(x, t)
        self._sync()
        self.seconds += time.perf_counter() - t0
        self.calls += 1
        return out

    def _sync(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()


def overhead(model, shape, steps, conditioner, device) -> dict:
    """Per-step time and, from the same run, the time outside the network per score evaluation.

    Measuring both in one run makes the ratio robust to other load on the machine.
    """
    timed = TimedScore(model, device)
    g = torch.Generator(device=device).manual_seed(0)
    run = lambda: pc_sample(timed, shape, steps=steps, corrector="none", denoise=False, generator=g,
                            progress=False, conditioner=conditioner, device=device)
    run()  # warm-up (caches, CT matrices)
    timed.seconds, timed.calls = 0.0, 0
    t0 = time.perf_counter()
    run()
    total = time.perf_counter() - t0
    per_eval = timed.seconds / timed.calls
    return {"ms_per_step": 1e3 * total / steps, "ms_score_eval": 1e3 * per_eval,
            "overhead / score eval": (total - timed.seconds) / steps / per_eval}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = ap.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = ScoreModel(UNet(UNetConfig()), VESDE(0.01, 40.0)).to(device).eval().requires_grad_(False)
    shape = (args.batch, 1, 64, 64)
    rows = [{"task": "-", "rule": "none (unconditional)", **overhead(model, shape, args.steps, None, device)}]
    ops = {"ct 23 views (cg inverse)": SparseViewCT(64, 23),
           "ct 23 views (fbp inverse)": SparseViewCT(64, 23, inverse_method="fbp"),
           "mri 4x": UndersampledMRI(64, acceleration=4), "inpainting box": Inpainting.box((1, 64, 64), size=24)}
    for name, fm in ops.items():
        fm = fm.to(device)
        y = fm(torch.rand(shape, device=device))
        for rule, cond in {"projection": Projection(fm, y, model.sde, lam=1.0), "dps": DPS(fm, y, model, zeta=1.0),
                           "bayes": Bayes(fm, y)}.items():
            if rule == "bayes" and "fbp" in name:
                continue  # the inverse is used by projection only
            rows.append({"task": name, "rule": rule, **overhead(model, shape, args.steps, cond, device)})
    table = markdown_table(rows, ["task", "rule", "ms_per_step", "ms_score_eval", "overhead / score eval"])
    print(table)
    write_results("speed_conditioning", rows, f"U-Net 64x64 (default config), batch {args.batch}, "
                  f"reverse-diffusion predictor, no corrector.\n\n{table}", device)


if __name__ == "__main__":
    main()

"""The main job on embedded data (`sgm-inverse demo`): a held-out brain slice, simulated sparse-view CT,
FBP vs validation-tuned FISTA-TV vs a score prior (posterior mean and pixelwise std), as a table and a figure."""
from __future__ import annotations

import json
import time

import numpy as np
import torch


def run_demo(model, output="demo.png", *, views: int = 23, steps: int = 300, samples: int = 4, snr: float = 0.5,
             device=None, name: str = "the model", log=print) -> list[dict]:
    """Reconstruct the embedded 64 x 64 held-out brain slice (`checkpoints.WEIGHTS_DIR/demo_brain_slice.npy`)
    from `views`-view parallel-beam CT with FBP, FISTA-TV (its validation-tuned weight) and `model` (a 1x64x64
    score model: `samples` posterior samples of `steps` steps). Writes the panels to `output`, reports through
    `log` (print by default), returns one row per method: {method, psnr, ssim, seconds}."""
    from forward_models import SparseViewCT

    from .baselines import fbp, fista_tv
    from .checkpoints import WEIGHTS_DIR
    from .metrics import psnr, ssim
    from .plotting import save_panels
    from .solve import solve

    if tuple(model.image_shape) != (1, 64, 64):
        raise ValueError(f"the demo needs a 1x64x64 score model; {name} is for "
                         f"{'x'.join(map(str, model.image_shape))} images")
    meta = json.loads((WEIGHTS_DIR / "demo_brain_slice.json").read_text())
    x = torch.from_numpy(np.load(WEIGHTS_DIR / "demo_brain_slice.npy"))[None]
    where = "{} slice {}".format(*meta["slice_id"])
    log(f"demo: held-out brain image ({where} of the MNI152 template's test slab, 64x64), "
        f"simulated {views}-view parallel-beam CT")
    ct = SparseViewCT(64, views)
    y = ct(x)
    rows, images = [], {"ground truth": x}
    t0 = time.time()
    images["FBP"] = fbp(ct, y).clamp(0, 1)
    rows.append(("FBP", time.time() - t0))
    t0 = time.time()
    images["FISTA-TV"] = fista_tv(ct, y, meta["fista_lambda"], n_iter=meta["fista_iterations"], progress=True)
    rows.append((f"FISTA-TV (lambda {meta['fista_lambda']:g}, tuned on val)", time.time() - t0))
    log(f"demo: sampling the posterior with the score prior ({samples} samples, {steps} steps, "
        f"CG consistency step, snr {snr:g})")
    sol = solve(y if device is None else y.to(device), ct, model, steps=steps, n_samples=samples, snr=snr, seed=0)
    images[f"ours (mean of {samples})"] = sol.mean.clamp(0, 1).cpu()
    rows.append(("ours: score prior + projection", sol.seconds))
    log(f"\n{'method':44s} {'PSNR dB':>8s} {'SSIM':>6s} {'time s':>7s}")
    table = []
    for (method, seconds), img in zip(rows, list(images.values())[1:]):
        table.append({"method": method, "psnr": float(psnr(img, x)[0]), "ssim": float(ssim(img, x)[0]),
                      "seconds": seconds})
        log(f"{method:44s} {table[-1]['psnr']:8.2f} {table[-1]['ssim']:6.3f} {seconds:7.1f}")
    images["posterior std"] = sol.std.cpu()
    save_panels(images, output, title=f"{views}-view CT of a held-out brain image ({where})")
    log(f"\nwrote {output}")
    return table

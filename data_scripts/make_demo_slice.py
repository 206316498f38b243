"""Embed the demo's defaults in the package: one held-out brain slice and a validation-tuned FISTA-TV lambda.

    python data_scripts/make_demo_slice.py

Writes sgm_inverse/weights/demo_brain_slice.npy (the middle axial slice of the TEST slab, 1x64x64 float32
in [0, 1]) and demo_brain_slice.json (which slice, and lambda for 23-view parallel CT chosen by
`tune_fista_lambda` on the axial VALIDATION slices: the test slice plays no part in the choice).
Needs the brain template (python data_scripts/prepare_brain.py).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from forward_models import SparseViewCT
from sgm_inverse.baselines import tune_fista_lambda
from sgm_inverse.data import BrainSlices

OUT = Path(__file__).resolve().parents[1] / "sgm_inverse" / "weights"
VIEWS, ITERS = 23, 300
GRID = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1]


def main():
    test = BrainSlices("test", axes=("axial",))
    i = len(test) // 2
    x = test[i]
    val = BrainSlices("val", axes=("axial",))
    xs = torch.stack([val[j] for j in range(len(val))])
    ct = SparseViewCT(64, VIEWS)
    lam, table = tune_fista_lambda(ct, xs, ct(xs), GRID, n_iter=ITERS)
    OUT.mkdir(parents=True, exist_ok=True)
    np.save(OUT / "demo_brain_slice.npy", x.numpy().astype(np.float32))
    meta = {"source": "MNI ICBM152 2009a T1, BrainSlices('test', axes=('axial',))", "slice_id": test.slice_ids[i],
            "views": VIEWS, "fista_iterations": ITERS, "fista_lambda": lam,
            "fista_lambda_tuning": {"split": "val (axial)", "n_images": len(val), "metric": "psnr", "table": table}}
    (OUT / "demo_brain_slice.json").write_text(json.dumps(meta, indent=2))
    print(f"wrote {OUT / 'demo_brain_slice.npy'} (slice {test.slice_ids[i]}) and its JSON; "
          f"FISTA-TV lambda {lam:g} (val PSNR {max(r['mean'] for r in table):.2f} dB)")


if __name__ == "__main__":
    main()

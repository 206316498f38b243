"""CT forward + adjoint time per image: SparseViewCT vs astra (CPU) vs scikit-image.

    python benchmarks/speed_ct.py [--sizes 128 256] [--views 23 180] [--batch 8] [--device cpu] [--threads 1]

For each image size N and number of views V (parallel beam, angles over pi) it times one
forward projection followed by one back-projection of a batch of ``--batch`` random
images and reports seconds per image for
  * SparseViewCT: batched sparse matrix products (torch CSR) on ``--device``;
  * astra:        astra.create_sino + astra.create_backprojection, CPU, one image at a time;
  * skimage:      skimage.transform.radon + iradon(filter_name=None), one image at a time.
It also reports the one-off (uncached) system-matrix build time, its number of non-zeros
and the relative difference between the SparseViewCT and astra sinograms.  torch uses
``--threads`` CPU threads (default 1, like astra's CPU projector and scikit-image).
Results: benchmarks/results/speed_ct.json and speed_ct.md.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from forward_models import SparseViewCT

from common import markdown_table, write_results


def timed(fn, repeats: int, sync=lambda: None) -> float:
    """Median wall time of ``fn`` over ``repeats`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]


def astra_pair(ct: SparseViewCT):
    """astra projector with the same geometry as ``ct`` and a forward+back function."""
    import astra
    n = ct.image_shape[-1]
    proj = astra.create_proj_geom("parallel", 1.0, ct.n_detectors, ct.angles)
    pid = astra.create_projector("linear", proj, astra.create_vol_geom(n, n))

    def run(images):
        sinos = []
        for img in images:
            sid, sino = astra.create_sino(img, pid)
            bid, _ = astra.create_backprojection(sino, pid)
            astra.data2d.delete([sid, bid])
            sinos.append(sino)
        return np.stack(sinos)

    return pid, run


def skimage_run(ct: SparseViewCT):
    from skimage.transform import iradon, radon
    theta = np.degrees(ct.angles)

    def run(images):
        for img in images:
            iradon(radon(img, theta, circle=True), theta, filter_name=None, circle=True)

    return run


def bench(n: int, views: int, args, device) -> dict:
    import astra
    t0 = time.perf_counter()
    ct = SparseViewCT(n, views)
    build = time.perf_counter() - t0
    ct = ct.to(device)
    x = torch.rand(args.batch, 1, n, n, generator=torch.Generator().manual_seed(0))
    r = torch.arange(n) - n // 2
    x = x * ((r[:, None] ** 2 + r ** 2) < (n // 2 - 1) ** 2)  # zero outside the circle, as radon wants
    images = x[:, 0].numpy()
    xd = x.to(device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    ours = timed(lambda: ct.adjoint(ct(xd)), args.repeats, sync) / args.batch
    pid, astra_fn = astra_pair(ct)
    t_astra = timed(lambda: astra_fn(images), args.repeats) / args.batch
    sino = astra_fn(images)
    astra.projector.delete(pid)
    diff = float(np.linalg.norm(ct(xd)[:, 0].cpu().numpy() - sino) / np.linalg.norm(sino))
    t_sk = timed(lambda: skimage_run(ct)(images), args.skimage_repeats) / args.batch
    nnz = int(ct.projector.W.values().numel())
    rec = {"N": n, "views": views, "n_det": ct.n_detectors, "nnz": nnz, "matrix_MB": round(2 * nnz * 8 / 2 ** 20, 1),
           "build_s": round(build, 3), "ours_ms": 1e3 * ours, "astra_ms": 1e3 * t_astra,
           "skimage_ms": 1e3 * t_sk, "astra/ours": t_astra / ours, "skimage/ours": t_sk / ours,
           "rel_diff_vs_astra": diff}
    print(rec, flush=True)
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--views", type=int, nargs="+", default=[23, 180])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--skimage-repeats", type=int, default=1, help="radon/iradon are slow")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    records = [bench(n, v, args, device) for n in args.sizes for v in args.views]
    cols = ["N", "views", "n_det", "nnz", "matrix_MB", "build_s", "ours_ms", "astra_ms", "skimage_ms",
            "astra/ours", "skimage/ours", "rel_diff_vs_astra"]
    note = (f"Forward + adjoint (back-projection) time per image, batch {args.batch}, parallel beam over pi; "
            f"`ours` = SparseViewCT on the device above ({args.threads} torch thread(s) on CPU), astra and "
            "skimage on the CPU, one image at a time. "
            "`matrix_MB` = W and W^T in float32 values + int32 indices; `build_s` = one-off astra matrix "
            "build (cached per geometry afterwards).")
    jpath, mpath = write_results("speed_ct", records, note + "\n\n" + markdown_table(records, cols), device)
    print(f"wrote {jpath} and {mpath}")


if __name__ == "__main__":
    main()

"""Time per pixel of a score evaluation on the CPU against the pixels in one network call.

    python benchmarks/speed_chunks.py [--checkpoint general] [--threads 1] [--reps 5]

On a CPU the network's time per pixel grows once a call's activations outgrow the caches, so
`ScoreModel.cpu_chunk_pixels` splits a batch into chunks of images. This measures, for the batches the
command line runs (4 or 8 samples of 128 x 128, a 256 x 256 image, 64 x 64 batches), the time of one score
evaluation with one call (cpu_chunk_pixels=None) and in chunks of 16,384 / 32,768 / 65,536 pixels, in ms
per 64 x 64 pixels (median over --reps, every configuration interleaved so that other load on the machine
falls on all alike). Timing does not depend on the weights: records name the architecture, not a training
step. Writes benchmarks/results/speed_chunks.{json,md}.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from sgm_inverse.checkpoints import load_score_model

from common import RESULTS, markdown_table, provenance, write_results

SHAPES = [(4, 128), (8, 128), (1, 256), (2, 256), (16, 64), (32, 64)]   # (batch, side)
CHUNKS = [None, 16384, 32768, 65536]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="general")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", default=RESULTS)
    ap.add_argument("--stem", default="speed_chunks")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prov = provenance()
    model = load_score_model(args.checkpoint)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    rows = []
    for batch, side in SHAPES:
        g = torch.Generator().manual_seed(0)
        x, t = torch.rand(batch, 1, side, side, generator=g), torch.full((batch,), 0.2)
        times = {c: [] for c in CHUNKS}
        with torch.no_grad():
            model(x, t)   # warm-up
            for _ in range(args.reps):
                for c in CHUNKS:
                    model.cpu_chunk_pixels = c
                    t0 = time.perf_counter()
                    model(x, t)
                    times[c].append(time.perf_counter() - t0)
        one_call = statistics.median(times[None])
        row = {"batch": batch, "side": side, "pixels": batch * side * side,
               "network": f"{args.checkpoint}'s U-Net ({params:.2f} M parameters)"}
        for c in CHUNKS:
            med = statistics.median(times[c])
            key = "one_call" if c is None else f"chunks_{c}"
            row[f"{key}_ms_per_4096px"] = round(1000 * med / (batch * side * side / 4096), 1)
            if c is not None:
                row[f"{key}_speedup"] = round(one_call / med, 2)
        rows.append(row)
        print(row, flush=True)
    cols = ["batch", "side", "pixels", "one_call_ms_per_4096px"] + \
        [f"chunks_{c}_{k}" for c in CHUNKS[1:] for k in ("ms_per_4096px", "speedup")]
    table = markdown_table(rows, cols) + (
        f"\n\nms per 64 x 64 pixels of one score evaluation (median of {args.reps}), {args.threads} thread(s); "
        "speedup: one call's time over the chunked time. A chunk holds at least one image, so a single "
        "image is never split.")
    write_results(args.stem, rows, table, out_dir=args.out, prov=prov)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

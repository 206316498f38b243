"""One network call of a score model with glibc's default malloc thresholds and with `retain_freed_memory()`.

    python benchmarks/speed_allocator.py [--checkpoint general] [--threads 2] [--shapes 2x512 4x128 8x128 32x64]

Each shape and setting runs in a fresh interpreter (mallopt changes the whole process, and glibc's thresholds
adapt to what a process has freed before): per shape (B images of S x S), one warm-up call, then `--reps` timed
calls under no_grad, with the wall time, the system CPU time and the minor page faults per call.
Writes benchmarks/results/speed_allocator.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, markdown_table, provenance, write_results  # noqa: E402

WORKER = """
import json, resource, sys, time, torch
from sgm_inverse import load_score_model
from sgm_inverse.allocator import retain_freed_memory
checkpoint, threads, retain, reps, shape = sys.argv[1:6]
threads, retain, reps = int(threads), retain == "1", int(reps)
applied = retain_freed_memory() if retain else False
torch.set_num_threads(threads)
model = load_score_model(checkpoint).eval()
b, s = (int(v) for v in shape.split("x"))
x, t = torch.rand(b, 1, s, s), torch.full((b,), 0.3)
with torch.no_grad():
    model(x, t)
    r0, w = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(reps):
        model(x, t)
    wall, r1 = time.perf_counter() - w, resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"images": b, "size": s, "retain_freed_memory": applied, "seconds_per_call": wall / reps,
                  "checkpoint_step": model.config.get("training", {}).get("step"),   # stale_results.py
                  "system_seconds": (r1.ru_stime - r0.ru_stime) / reps,
                  "page_faults": (r1.ru_minflt - r0.ru_minflt) // reps}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="general")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shapes", nargs="+", default=["2x512", "4x128", "8x128", "32x64"], help="BxS: B images of S x S")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    prov = provenance()
    prov["device"] = prov["device"].rsplit(",", 1)[0] + f", {args.threads} threads"

    def run(shape: str, retain: bool) -> dict:
        out = subprocess.run([sys.executable, "-c", WORKER, args.checkpoint, str(args.threads), str(int(retain)),
                              str(args.reps), shape], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    rows = []
    for shape in args.shapes:
        default, kept = run(shape, False), run(shape, True)
        rows.append({"images": default["images"], "size": default["size"], "checkpoint_step": kept["checkpoint_step"],
                     "seconds_default": round(default["seconds_per_call"], 3),
                     "seconds_retained": round(kept["seconds_per_call"], 3),
                     "speedup": round(default["seconds_per_call"] / kept["seconds_per_call"], 2),
                     "system_seconds_default": round(default["system_seconds"], 2),
                     "system_seconds_retained": round(kept["system_seconds"], 2),
                     "page_faults_default": default["page_faults"], "page_faults_retained": kept["page_faults"],
                     "applied": kept["retain_freed_memory"]})
        print(rows[-1], flush=True)
    table = markdown_table(rows, list(rows[0]))
    table += (f"\n\n`{args.checkpoint}`, one call of B images under no_grad (the CPU chunking of `ScoreModel` "
              f"applies), mean of {args.reps} calls after one warm-up, each shape and setting in a fresh interpreter.")
    write_results("speed_allocator", [{"checkpoint": args.checkpoint, **r} for r in rows], table, out_dir=args.out,
                  prov=prov)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

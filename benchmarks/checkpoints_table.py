"""Collect <results>/sample_quality_*.json into <results>/checkpoints.md, one row per checkpoint.

    python benchmarks/checkpoints_table.py [--results benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from common import RESULTS, markdown_table
from sample_quality import sampler_of
from sgm_inverse.checkpoints import shipped_weights

COLUMNS = {"name": "checkpoint", "step": "step", "images seen": "images_seen", "hours": "training_hours",
           "final loss": "final_loss", "MB": "weights_mb", "n": "n_samples", "sampler": None, "FD samples": "fd_samples",
           "floor": "fd_floor", "blurred": "fd_blurred", "train vs held-out": "fd_train"}


def main(argv=None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    rows = []
    for path in sorted(args.results.glob("sample_quality_*.json")):
        for r in json.loads(path.read_text())["records"]:
            row = {col: "" if key is None or r.get(key) is None else r[key] for col, key in COLUMNS.items()}
            predictor, corrector, steps, _, precision = sampler_of(r)
            row["sampler"] = f"{predictor}, {corrector}, {steps} steps" + (", bf16" if precision == "bf16" else "")
            # a measured training state that does not ship (yet) must not read as a shipped checkpoint
            row["shipped"] = "yes" if shipped_weights(r["checkpoint"]).exists() else "no"
            rows.append(row)
    out = args.results / "checkpoints.md"
    note = ("FD on fixed random features (sgm_inverse.sample_quality, seed 0); floor = held-out half vs half. "
            "Only rows with the same n and sampler are comparable. The better predictor at 100 steps differs by data set "
            "(ancestral for ellipses64, whose reverse-diffusion samples come out too bright and full, and for patches32; "
            "reverse diffusion for digits32 and brain64, whose ancestral samples are too smooth), so each row measures the "
            "sampler as well as the model.")
    out.write_text(f"# Score-model checkpoints: sample quality\n\n{note}\n\n{markdown_table(rows, [*COLUMNS, 'shipped'])}\n")
    print(out.read_text())
    return out


if __name__ == "__main__":
    main()

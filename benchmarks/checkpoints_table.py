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
           "final loss": "final_loss", "MB": "weights_mb", "n": "n_samples", "sampler": None,
           "FD to training": "fd_samples_train", "training floor": "fd_floor_train",
           "FD to held-out": "fd_samples", "held-out floor": "fd_floor", "blurred": "fd_blurred",
           "training vs held-out": "fd_train", "mean samples": "mean_samples", "mean training": "mean_train"}


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
    note = ("FD on fixed random features (sgm_inverse.sample_quality, seed 0). \"FD to training\": samples against n "
            "training images as the model saw them (augmented), floor = two such draws, n vs n: the distribution the "
            "model is fitted to. \"FD to held-out\": against the held-out split, floor = its halves; for brain (the "
            "held-out slabs are the mid-brain, training the rest) and patches (other photographs) that split is "
            "another distribution (\"training vs held-out\"), and digits' augmentation moves its training images away "
            "from the held-out ones, so FD to held-out mixes sample quality with those shifts. Only rows with the "
            "same n and sampler are comparable; rows without the training columns predate them.")
    out.write_text(f"# Score-model checkpoints: sample quality\n\n{note}\n\n{markdown_table(rows, [*COLUMNS, 'shipped'])}\n")
    print(out.read_text())
    return out


if __name__ == "__main__":
    main()

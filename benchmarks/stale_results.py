"""Find the committed benchmark results that were measured with another training step of a shipped checkpoint.

    python benchmarks/stale_results.py [--checkpoint brain64] [--results benchmarks/results]

Every result record names its score model (`checkpoint`) and the training step of those weights
(`checkpoint_step`; `step` in sample-quality records); so does every tuned setting in a
`*_tuned.json`. A record whose checkpoint is a shipped name (sgm_inverse.checkpoints.SHIPPED) at a
step other than the shipped weights' step is stale: re-shipping a checkpoint invalidates every
number measured with it, tuned parameters included. The script lists, per stale file, the recorded
and shipped steps and the commands that wrote it (the file's provenance, and each tuned entry's
own command where it was recorded), and exits with status 1 when anything is stale, so it can gate
a commit that ships weights.

Studies live in benchmarks/results/archive/ with the partial runs behind reconstruction.md (which are
checked); the folders in HISTORICAL hold studies of earlier training states on purpose and are not. Rows
that name no checkpoint are not seen: the steps and samples studies in the tuned files recorded theirs
only from 2026-12-02 on (the committed ones are brain64 step 2430 and ellipses64 step 1758).
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sgm_inverse.checkpoints import SHIPPED, shipped_weights

RESULTS = Path(__file__).parent / "results"
# studies under archive/ that compare earlier training states, kept as measured (CHANGELOG.md cites them as such)
HISTORICAL = {
    "digits32_steps_study": "sampler steps at digits32 step 1461",
    "digits32_weighting_study": "sigma2 vs edm loss weighting at step 1461",
    "bf16_check": "float32 vs bfloat16 network at brain64 step 2430",
    "general5540_warm_start": "warm-start time t0 and MRI sample count at general step 5540",
}


@dataclass
class Stale:
    """One results file with records of a shipped checkpoint at other steps."""
    path: Path
    checkpoint: str
    recorded_steps: list  # sorted, None for a record without a step
    shipped_step: int | None
    commands: list = field(default_factory=list)


def shipped_steps() -> dict:
    """{shipped name: the training step its weights were saved at} from the JSON configs (those in
    $SGM_INVERSE_WEIGHTS first, like the loader); a name whose files are missing is left out."""
    steps = {}
    for name in SHIPPED:
        cfg = shipped_weights(name).with_suffix(".json")
        if cfg.exists():
            steps[name] = json.loads(cfg.read_text()).get("training", {}).get("step")
    return steps


def _checkpoint_records(obj):
    """Every dict below `obj` that names a checkpoint: yields (checkpoint, step, command or None)."""
    if isinstance(obj, dict):
        if "checkpoint" in obj:
            step = obj.get("checkpoint_step", obj.get("step"))
            yield str(obj["checkpoint"]), step, obj.get("command")
        for key, value in obj.items():
            if key != "init_from":  # the weights a fine-tune started from: not what was measured
                yield from _checkpoint_records(value)
    elif isinstance(obj, list):
        for value in obj:
            yield from _checkpoint_records(value)


def find_stale(results: Path = RESULTS, steps: dict | None = None, only: str | None = None) -> list[Stale]:
    """The stale files under `results` (recursively, skipping HISTORICAL folders), one Stale per
    (file, checkpoint); `steps`: shipped name -> step (default: the installed weights'); `only`:
    check this checkpoint alone."""
    steps = shipped_steps() if steps is None else steps
    if not Path(results).is_dir():
        raise FileNotFoundError(f"no results folder {results}")
    found = []
    for path in sorted(Path(results).rglob("*.json")):
        if any(part in HISTORICAL for part in path.relative_to(results).parts):
            continue
        data = json.loads(path.read_text())
        by_name: dict = {}
        body = {k: v for k, v in data.items() if k != "provenance"} if isinstance(data, dict) else data
        for name, step, command in _checkpoint_records(body):
            if name in steps and (only is None or name == only):
                recorded, commands = by_name.setdefault(name, (set(), []))
                recorded.add(step)
                if command and step != steps[name] and command not in commands:
                    commands.append(command)
        for name, (recorded, commands) in by_name.items():
            if recorded != {steps[name]}:
                # a tuned file's provenance is only the last of the many --tune runs that wrote it
                prov = None if path.name.endswith("_tuned.json") else data.get("provenance", {}).get("command")
                found.append(Stale(path, name, sorted(recorded, key=lambda s: (s is None, s or 0)), steps[name],
                                   ([prov] if prov and prov not in commands else []) + commands))
    return found


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument("--checkpoint", choices=sorted(SHIPPED), help="check this shipped checkpoint only")
    args = ap.parse_args(argv)
    steps = shipped_steps()
    stale = find_stale(args.results, steps, args.checkpoint)
    checked = [args.checkpoint] if args.checkpoint else sorted(steps)
    print("shipped: " + ", ".join(f"{n} step {steps[n]}" for n in checked))
    if not stale:
        print(f"no stale results under {args.results}")
        return 0
    for s in stale:
        print(f"\nSTALE {s.path.relative_to(args.results)}: {s.checkpoint} at step(s) {s.recorded_steps}, "
              f"shipped step {s.shipped_step}")
        for command in s.commands:
            print(f"    {command}")
        if s.path.name.endswith("_tuned.json"):
            print("    (a tuned file is written by many --tune commands: benchmarks/reproduce.sh lists them all)")
    print(f"\n{len(stale)} stale file(s): re-run them with the shipped weights, tuning first")
    return 1


if __name__ == "__main__":
    sys.exit(main())

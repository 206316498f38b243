"""benchmarks/reproduce.sh: every run writes under $RESULTS, so candidate weights can be benchmarked
beside the shipped results; FROM=N continues a lane, TO=M stops it."""
from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def dry_run(tmp_path, lane, *extra, **env):
    """The commands a lane would run, with `python` replaced by a stub that prints its arguments."""
    stub = tmp_path / "bin"
    stub.mkdir(exist_ok=True)
    (stub / "python").write_text('#!/bin/sh\necho RUN "$@"\n')
    (stub / "python").chmod(0o755)
    r = subprocess.run(["bash", str(REPO / "benchmarks" / "reproduce.sh"), lane, *extra], capture_output=True,
                       text=True, env={**os.environ, "PATH": f"{stub}:{os.environ['PATH']}", **env}, timeout=60)
    assert r.returncode == 0, r.stderr
    return [shlex.split(line)[1:] for line in r.stdout.splitlines() if line.startswith("RUN ")], r.stderr


def value(args, flag):
    return [args[i + 1] for i, a in enumerate(args[:-1]) if a == flag]


def test_every_command_writes_under_results(tmp_path):
    out = str(tmp_path / "staged")
    commands, _ = dry_run(tmp_path, "all", "--bf16", RESULTS=out)
    benchmarks = [c for c in commands if c[0] in ("benchmarks/ct_sparse_view.py", "benchmarks/mri_undersampled.py")]
    assert len(benchmarks) == len(commands) - 1 >= 30            # the rest: reconstruction_summary
    for c in benchmarks:
        outs, tuned = value(c, "--out"), value(c, "--tuned")
        assert len(outs) == 1 and (outs[0] == out or outs[0].startswith(out + "/")), c
        assert all(t.startswith(out + "/") for t in tuned), c
        assert c[-2:] == ["--bf16", "--no-progress"], c
    summary = commands[-1]
    assert summary[0] == "benchmarks/reconstruction_summary.py" and value(summary, "-o") == [out + "/reconstruction.md"]
    assert all(a.startswith(out + "/") for a in summary[3:])


def test_from_skips_the_first_commands_of_a_lane(tmp_path):
    every, _ = dry_run(tmp_path, "brain-mri")
    later, log = dry_run(tmp_path, "brain-mri", FROM="4")
    assert later == every[3:] and "[#3 skipped]" in log and "[#4] " in log


def test_to_stops_a_lane_so_two_parts_can_run_at_once(tmp_path):
    every, _ = dry_run(tmp_path, "ellipses-ct")
    first, log = dry_run(tmp_path, "ellipses-ct", TO="5")
    middle, _ = dry_run(tmp_path, "ellipses-ct", FROM="6", TO="7")
    rest, _ = dry_run(tmp_path, "ellipses-ct", FROM="8")
    assert first + middle + rest == every and len(middle) == 2 and "[#6 skipped]" in log
    assert all("dps" in c for c in middle)

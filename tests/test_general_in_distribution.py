"""benchmarks/general_in_distribution.py --merge: a run replaces the rows of its own settings and keeps the others."""
from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import general_in_distribution as gid  # noqa: E402


def _rows(path):
    return json.loads(path.read_text())


def test_merge_keeps_other_settings_and_replaces_its_own(tmp_path):
    common = ["--methods", "baseline", "-n", "2", "--out", str(tmp_path), "--stem", "gid"]
    gid.main(["--settings", "ellipses-mri8"] + common)
    gid.main(["--settings", "brain-mri4", "--merge"] + common)
    gid.main(["--settings", "ellipses-mri8", "-n", "3", "--merge"] + common[:2] + common[4:])   # redo, 3 images
    out = _rows(tmp_path / "gid.json")
    # one row per setting, in the script's own setting order, the redone one from the last run
    assert [(r["setting"], r["n"]) for r in out["records"]] == [("brain-mri4", 2), ("ellipses-mri8", 3)]
    assert all(r["method"] == "zero-filled" and 0 < r["psnr"] < 60 for r in out["records"])
    assert "['brain-mri4'] from:" in out["provenance"]["merged"]
    without = tmp_path / "fresh"
    gid.main(["--settings", "brain-mri4", "--merge", "--methods", "baseline", "-n", "2", "--out", str(without),
              "--stem", "gid"])   # --merge with nothing to merge: just this run's rows
    assert [r["setting"] for r in _rows(without / "gid.json")["records"]] == ["brain-mri4"]
    assert "merged" not in _rows(without / "gid.json")["provenance"]
    # the same images and setting give the same numbers in a merged file as in a fresh one
    assert _rows(without / "gid.json")["records"][0]["psnr"] == out["records"][0]["psnr"]

"""Repository weight: every committed byte stays in every clone forever.

No tracked file over 10 MB outside sgm_inverse/weights/ (shipped weights, <= 25 MB each), and no pickle
anywhere (sgm-inverse never unpickles a file: checkpoints are safetensors + JSON).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIMIT_MB, WEIGHTS_LIMIT_MB = 10.0, 25.0
PICKLE_SUFFIXES = {".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npz"}


def tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.fail(f"this test needs the git checkout of the repository ({err}); CI runs in one")
    return [REPO / p for p in out.decode().split("\0") if p and (REPO / p).is_file()]


def test_no_tracked_file_over_the_size_limit():
    files = tracked_files()
    assert len(files) > 50, "git ls-files found almost nothing: not the repository checkout?"
    too_big = []
    for f in files:
        mb = f.stat().st_size / 2 ** 20
        in_weights = f.parent == REPO / "sgm_inverse" / "weights"
        if mb > (WEIGHTS_LIMIT_MB if in_weights else LIMIT_MB):
            too_big.append(f"{f.relative_to(REPO)} ({mb:.1f} MB)")
    assert not too_big, "tracked files over the limit: " + ", ".join(too_big)


def _is_safetensors(path: Path) -> bool:
    from safetensors import safe_open
    try:
        with safe_open(str(path), "pt"):
            return True
    except Exception:
        return False


def test_no_tracked_pickle():
    bad = []
    for f in tracked_files():
        with f.open("rb") as fh:
            head = fh.read(2)
        # 0x80 0x02..0x05 opens a pickle stream (protocols 2-5); torch.save writes a zip holding one
        is_pickle = len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5
        if f.suffix == ".safetensors":    # its first 8 bytes are a header length, which may start 0x80 0x02
            is_pickle = not _is_safetensors(f)
        if f.suffix.lower() in PICKLE_SUFFIXES or is_pickle or (head == b"PK" and f.suffix != ".zip"):
            bad.append(str(f.relative_to(REPO)))
    assert not bad, "pickles (or torch.save zips) are tracked: " + ", ".join(bad)


def test_the_checks_catch_what_they_should(tmp_path):
    """The pickle check itself: a real pickle and a torch.save file are recognised by their first bytes."""
    import pickle

    import torch
    p, t = tmp_path / "a.dat", tmp_path / "b.dat"
    p.write_bytes(pickle.dumps({"x": 1}, protocol=4))
    torch.save({"x": torch.zeros(1)}, t)
    assert p.read_bytes()[0] == 0x80 and 2 <= p.read_bytes()[1] <= 5
    assert t.read_bytes()[:2] == b"PK"

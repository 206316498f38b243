"""benchmarks/stale_results.py: results measured with another training step than the shipped weights'."""
from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import stale_results as sr  # noqa: E402


def write(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"provenance": {"command": f"python make {path.name}"}, **data}))


def results_tree(root: Path) -> Path:
    write(root / "fresh.json", {"records": [{"checkpoint": "brain64", "checkpoint_step": 10, "psnr": 1.0}]})
    write(root / "run" / "mixed.json", {"records": [{"checkpoint": "brain64", "checkpoint_step": 10},
                                                      {"checkpoint": "brain64", "checkpoint_step": 9}]})
    write(root / "sample_quality_brain64.json", {"records": [{"checkpoint": "brain64", "step": 9,
                                                             "command": "python sq --old"}]})
    write(root / "ct_tuned.json", {"chosen": {
        "a": {"checkpoint": "brain64", "checkpoint_step": 9, "command": "tune a"},
        "b": {"checkpoint": "brain64", "checkpoint_step": 10, "command": "tune b"}}})
    # a study of an earlier state, and a checkpoint that is not a shipped name: neither is checked
    write(root / "archive" / "digits32_steps_study" / "old.json",
          {"records": [{"checkpoint": "brain64", "checkpoint_step": 1}]})
    write(root / "other.json", {"records": [{"checkpoint": "my_ema_7", "step": 7}]})
    # a fine-tune's record names the shipped weights it started from: not a measurement of them
    write(root / "finetune.json", {"records": [{"checkpoint": "brain64_ft", "step": 3,
                                                "init_from": {"checkpoint": "brain64", "step": 9}}]})
    return root


def test_finds_exactly_the_stale_files_and_their_commands(tmp_path):
    stale = sr.find_stale(results_tree(tmp_path), steps={"brain64": 10})
    got = {s.path.relative_to(tmp_path).as_posix(): s for s in stale}
    assert sorted(got) == ["ct_tuned.json", "run/mixed.json", "sample_quality_brain64.json"]
    assert got["run/mixed.json"].recorded_steps == [9, 10] and got["run/mixed.json"].shipped_step == 10
    assert got["run/mixed.json"].commands == ["python make mixed.json"]
    assert got["sample_quality_brain64.json"].commands == ["python make sample_quality_brain64.json", "python sq --old"]
    # a tuned file names the entries' own commands, not its provenance (the last --tune run only)
    assert got["ct_tuned.json"].commands == ["tune a"]
    assert sr.find_stale(tmp_path, steps={"brain64": 10}, only="digits32") == []
    assert sr.find_stale(tmp_path, steps={"brain64": 9}) != []


def test_exit_status_says_whether_anything_is_stale(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sr, "shipped_steps", lambda: {"brain64": 10})
    assert sr.main(["--results", str(results_tree(tmp_path))]) == 1
    assert "STALE run/mixed.json: brain64 at step(s) [9, 10], shipped step 10" in capsys.readouterr().out
    fresh = tmp_path / "fresh_only"
    write(fresh / "fresh.json", {"records": [{"checkpoint": "brain64", "checkpoint_step": 10}]})
    assert sr.main(["--results", str(fresh)]) == 0


def test_shipped_steps_read_from_the_weights_configs(tmp_path, monkeypatch):
    from sgm_inverse.checkpoints import WEIGHTS_DIR, WEIGHTS_ENV
    steps = sr.shipped_steps()
    for name, step in steps.items():
        cfg = json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
        assert step == cfg["training"]["step"] and isinstance(step, int)
    assert set(steps) == set(sr.SHIPPED)
    # staged candidate weights ($SGM_INVERSE_WEIGHTS) are what the check compares against, name by name
    (tmp_path / "brain64.safetensors").write_bytes(b"")
    (tmp_path / "brain64.json").write_text(json.dumps({"training": {"step": steps["brain64"] + 1}}))
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path))
    assert sr.shipped_steps() == {**steps, "brain64": steps["brain64"] + 1}


def test_committed_results_come_from_the_shipped_checkpoints():
    """Shipping new weights must come with re-running every benchmark measured with the old ones
    (run `python benchmarks/stale_results.py` for the list)."""
    stale = sr.find_stale()
    assert stale == [], "\n".join(f"{s.path}: {s.checkpoint} steps {s.recorded_steps} != shipped {s.shipped_step}"
                                  for s in stale)

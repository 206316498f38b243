"""benchmarks/warm_start_time.py: its validation split and its rows, on a tiny untrained checkpoint at 16 x 16."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import warm_start_time  # noqa: E402
from test_cli import save_tiny_model  # noqa: E402


@pytest.mark.parametrize("n_images,n_tune,n_eval", [(60, 8, 4), (200, 8, 4), (12, 8, 4), (5, 3, 2), (2, 1, 1)])
def test_split_validation_is_disjoint_and_complete(n_images, n_tune, n_eval):
    tune, score = warm_start_time.split_validation(n_images, n_tune, n_eval)
    assert len(score) == n_eval and len(tune) == n_tune
    assert not set(tune) & set(score)
    assert min(tune.min(), score.min()) >= 0 and max(tune.max(), score.max()) < n_images


def test_split_validation_refuses_too_many():
    with pytest.raises(ValueError, match="validation split of 10"):
        warm_start_time.split_validation(10, 8, 4)
    with pytest.raises(ValueError, match="as many to tune on"):
        warm_start_time.split_validation(60, 2, 4)


def test_warm_start_time_rows(tmp_path):
    before = torch.get_num_threads()
    save_tiny_model(tmp_path / "tiny", 16, 10.0)
    try:
        warm_start_time.main(["--checkpoint", str(tmp_path / "tiny"), "--size", "16", "-n", "2", "--n-tune", "2",
                              "--lanes", "brain-ct8", "--t0", "0.02", "1.0", "--out", str(tmp_path), "--stem", "t0"])
    finally:
        torch.set_num_threads(before)
    rows = json.loads((tmp_path / "t0.json").read_text())["records"]
    assert [r["t0"] for r in rows] == [None, 0.02, 1.0]
    assert rows[0]["candidate"] == "FISTA-TV" and rows[1]["candidate"] == "ddnm 50 x 4"   # the CLI's default
    for r in rows[1:]:   # sigma(t0) of the VE SDE: sigma_min (sigma_max / sigma_min)^t0
        assert r["sigma_t0"] == pytest.approx(0.01 * 1000 ** r["t0"], abs=1e-4)
    # an untrained prior: starting almost at FISTA-TV (t0 = 0.02) stays near it, starting from noise does not
    fista, near, far = (r["psnr"] for r in rows)
    assert abs(near - fista) < abs(far - fista) / 3
    assert "Best t0: brain-ct8 t0 = " in (tmp_path / "t0.md").read_text()
    assert (tmp_path / "t0.png").stat().st_size > 1000

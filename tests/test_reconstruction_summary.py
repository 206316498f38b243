"""benchmarks/reconstruction_summary.py: merging runs and judging the goals from the numbers."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import reconstruction_summary as rs  # noqa: E402


def rec(task, dataset, setting, method, psnr, ssim, idx=(0, 1), **fields):
    return {"task": task, "dataset": dataset, "setting": setting, "method": method, "psnr_mean": psnr,
            "psnr_std": 0.5, "ssim_mean": ssim, "ssim_std": 0.01, "seconds_per_image": 1.0, "n_images": len(idx),
            "noise_std": 0.0, "test_indices": list(idx), "steps": 100, "n_samples": 2, **fields}


def write(path, records):
    path.write_text(json.dumps({"provenance": {"command": "x", "commit": "c", "device": "cpu", "date": "d"},
                                "records": records}))
    return path


def ct(views, method, psnr, ssim, dataset="brain", **kw):
    return rec("ct", dataset, f"parallel-{views}v-noise0", method, psnr, ssim, geometry="parallel", views=views, **kw)


def test_goals_use_the_best_score_method_and_fista_of_the_right_setting(tmp_path):
    a = write(tmp_path / "a.json", [ct(8, "fista_tv", 27.0, 0.89), ct(8, "projection", 29.0, 0.93),
                                    ct(4, "fista_tv", 20.0, 0.60), ct(4, "projection", 27.5, 0.90)])
    b = write(tmp_path / "b.json", [ct(8, "fista_tv", 27.0, 0.89), ct(8, "dps", 30.5, 0.925)])
    rows, _ = rs.load([a, b])
    assert len(rows) == 5  # the repeated FISTA-TV row is kept once
    goals = {g["goal"]: g for g in rs.goals(rows)}
    g8 = goals["brain CT 8 views: >= +3 dB, >= +0.03 SSIM"]
    assert g8["ours"].startswith("dps 30.50") and g8["dPSNR"] == "+3.50" and g8["dSSIM"] == "+0.035"
    assert g8["verdict"] == "met"
    # 4 views against FISTA-TV at 8 views: 27.5 >= 27.0
    assert goals["brain CT: ours at 4 views >= FISTA-TV at 8 views"]["verdict"] == "met"
    assert goals["brain CT 6 views: >= +3 dB, >= +0.03 SSIM"]["verdict"] == "not run"
    assert goals["brain MRI 8x: >= +3 dB, >= +0.05 SSIM"]["verdict"] == "not run"


def test_a_goal_needs_both_psnr_and_ssim(tmp_path):
    a = write(tmp_path / "a.json", [ct(8, "fista_tv", 27.0, 0.89), ct(8, "projection", 31.0, 0.91)])
    rows, _ = rs.load([a])
    g8 = next(g for g in rs.goals(rows) if g["goal"].startswith("brain CT 8 views"))
    assert g8["verdict"] == "MISSED"  # +4 dB but only +0.02 SSIM


def test_the_same_key_on_different_test_images_is_an_error(tmp_path):
    a = write(tmp_path / "a.json", [ct(8, "fista_tv", 27.0, 0.89, idx=(0, 1))])
    b = write(tmp_path / "b.json", [ct(8, "fista_tv", 26.0, 0.88, idx=(2, 3))])
    with pytest.raises(SystemExit, match="different test images"):
        rs.load([a, b])


def test_main_writes_the_table(tmp_path):
    a = write(tmp_path / "a.json", [ct(8, "fbp", 19.0, 0.46), ct(8, "fista_tv", 27.0, 0.89)])
    out = rs.main([str(a), "-o", str(tmp_path / "r.md")])
    text = out.read_text()
    assert "| ct | brain | parallel 8 views | 0% | fista_tv | 27.00 ± 0.50 |" in text
    assert text.index("| fbp |") < text.index("| fista_tv |")


def test_exact_fit_and_noise_aware_projection_rows_are_both_kept(tmp_path):
    noisy = dict(geometry="parallel", views=8, noise_std=0.01, consistency="cg")
    old = write(tmp_path / "old.json", [rec("ct", "brain", "parallel-8v-noise0.01", "projection", 21.6, 0.59, **noisy)])
    new = write(tmp_path / "new.json", [rec("ct", "brain", "parallel-8v-noise0.01", "projection", 24.2, 0.80,
                                            noise_aware=True, **noisy)])
    rows, _ = rs.load([new, old])
    assert sorted(k[4] for k in rows) == ["", "exact fit"]
    labels = {r["method"]: r["PSNR (dB)"] for r in rs.table(rows)}
    assert labels == {"projection": "24.20 ± 0.50", "projection (exact fit)": "21.60 ± 0.50"}


def test_a_score_run_with_more_samples_is_its_own_row(tmp_path):
    """The same method and setting with 8 posterior samples instead of 2 costs 4x: a second row, not a
    repeat to drop; the goal takes the better one, and the table names each budget."""
    a = write(tmp_path / "a.json", [ct(8, "fista_tv", 27.0, 0.89), ct(8, "projection", 27.2, 0.88)])
    b = write(tmp_path / "b.json", [ct(8, "fista_tv", 27.0, 0.89), ct(8, "projection", 27.8, 0.90, n_samples=8)])
    rows, _ = rs.load([a, b])
    assert len(rows) == 3
    g8 = next(g for g in rs.goals(rows) if g["goal"].startswith("brain CT 8 views"))
    assert g8["ours"].startswith("projection 27.80")
    assert [r["steps x samples"] for r in rs.table(rows) if r["method"] == "projection"] == ["100 x2", "100 x8"]

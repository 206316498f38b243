"""benchmarks/sampler_nfe.py end to end on a tiny untrained checkpoint (16x16, 1 validation image).

Checks: the JSON / markdown / PNG outputs exist with provenance; every method stays within its NFE
budget (pc: 2 per step + 1; dps: 1 per step + 1); the warm-started runs are recorded as such; the
--set options reach solve(); per (method, budget) exactly the best trial of the --grid is chosen; the extra
budgets reuse the options chosen at the largest budget; the test rows rerun the chosen options on the test
split, with NFE and seconds per image.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import sampler_nfe  # noqa: E402
from sgm_inverse import VESDE, ScoreModel, save_score_model  # noqa: E402
from sgm_inverse.nets import UNet, UNetConfig  # noqa: E402


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_budget_accounting():
    for budget in (3, 25, 100):
        assert sampler_nfe.solve_kwargs("ddnm", budget, {})["steps"] == budget
        assert 2 * sampler_nfe.solve_kwargs("pc", budget, {})["steps"] + 1 <= budget
        assert sampler_nfe.solve_kwargs("dps", budget, {})["steps"] + 1 <= budget
    assert sampler_nfe.parse_sets(["ddnm.eta=1.0", "pc.snr=0.2", "dds.schedule=edm"]) == \
        {"ddnm": {"eta": 1.0}, "pc": {"snr": 0.2}, "dds": {"schedule": "edm"}}
    args = sampler_nfe.parse_args(["--grid", "dds.eta=0.5,1", "--grid", "dds.cg_iterations=2,5", "--set",
                                   "dds.gamma=1.0"])
    assert sampler_nfe.configs("dds", args) == [
        {"gamma": 1.0, "eta": 0.5, "cg_iterations": 2}, {"gamma": 1.0, "eta": 0.5, "cg_iterations": 5},
        {"gamma": 1.0, "eta": 1, "cg_iterations": 2}, {"gamma": 1.0, "eta": 1, "cg_iterations": 5}]
    assert sampler_nfe.configs("pc", args) == [{}]
    with pytest.raises(SystemExit):
        sampler_nfe.parse_sets(["eta=1.0"])


def test_sampler_nfe_end_to_end(tmp_path, restore_threads, monkeypatch):
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=16, base_channels=8, channel_mult=(1, 2), attn_resolutions=()))
    ckpt = tmp_path / "tiny"
    save_score_model(ScoreModel(net, VESDE(0.01, 10.0)), ckpt)
    out = tmp_path / "out"
    argv = ["--setting", "ellipses-ct8", "--checkpoint", str(ckpt), "--image-size", "16", "--n-images", "1",
            "--budgets", "3", "5", "--warm-start", "0.5", "--no-progress", "--set", "ddnm.eta=1.0", "--out", str(out),
            "--grid", "pc.snr=0.1,0.3", "--extra-budgets", "7", "--test-images", "1", "--low-budget", "4"]
    monkeypatch.setattr(sys, "argv", ["benchmarks/sampler_nfe.py", *argv])   # the provenance records sys.argv
    sampler_nfe.main(argv)
    data = json.loads((out / "ellipses-ct8.json").read_text())
    prov = data["provenance"]
    assert "benchmarks/sampler_nfe.py --setting" in prov["command"] and "wall_seconds" in prov
    for suffix in (".md", "_psnr.png", "_images.png"):
        assert (out / f"ellipses-ct8{suffix}").stat().st_size > 0
    records = data["records"]
    assert records[0]["method"] == "fbp" and records[0]["split"] == "val"
    methods = {r["method"] for r in records}
    assert methods == {"fbp", *sampler_nfe.METHODS, *(m + "+ws" for m in sampler_nfe.METHODS)}
    for r in records[1:]:
        assert 0 < r["nfe"] <= r["budget"] and math.isfinite(r["psnr_mean"])
        assert (r["t_start"] == 0.5) == r["method"].endswith("+ws")
        if r["method"].startswith("ddnm"):
            assert r["options"]["eta"] == 1.0 and r["nfe"] == r["budget"]

    # tuning: per (method, budget) one chosen row, the best of its trials; pc tried both snr values
    trials = {}
    for r in records[1:]:
        trials.setdefault((r["method"], r["budget"]), []).append(r)
    for (method, budget), rows in trials.items():
        chosen = [r for r in rows if r["chosen"]]
        assert len(chosen) == 1 and chosen[0]["psnr_mean"] == max(r["psnr_mean"] for r in rows)
        if method == "pc":   # the extra budget 7 is tuned over the grid too
            assert sorted(r["options"]["snr"] for r in rows) == [0.1, 0.3]
    assert ("pc", 7) in trials and ("dds", 7) not in trials   # extra budgets: --extra-methods only
    assert ("pc+ws", 7) not in trials   # warm starts are not run at the extra budgets
    # test rows: the test split, the options chosen on validation, NFE and seconds per image
    test = json.loads((out / "ellipses-ct8_test.json").read_text())["records"]
    assert all(r["split"] == "test" for r in test) and test[0]["method"] == "fbp"
    assert {r["method"] for r in test[1:]} == methods - {"fbp"}
    for r in test[1:]:
        val = next(v for v in trials[(r["method"], r["budget"])] if v["chosen"])
        assert r["options"] == val["options"] and r["t_start"] == val["t_start"]
        assert r["nfe_per_image"] == r["nfe"] > 0 and r["seconds_per_image"] > 0
        assert ("<= 4 NFE" in r["picked_for"]) == (r["nfe"] <= 4)
    # --test-only reruns the test rows from the study's JSON, with the same result
    (out / "ellipses-ct8_test.json").unlink()
    sampler_nfe.main(argv + ["--test-only"])
    again = json.loads((out / "ellipses-ct8_test.json").read_text())["records"]
    assert [(r["method"], r["budget"], r["psnr_mean"]) for r in again] == \
        [(r["method"], r["budget"], r["psnr_mean"]) for r in test]
    # --test-only --merge --methods: only those methods' test rows are rerun, the others kept
    sampler_nfe.main(argv + ["--test-only", "--merge", "--methods", "pc"])
    merged_test = json.loads((out / "ellipses-ct8_test.json").read_text())["records"]
    key = lambda rows: sorted((r["method"], r["budget"], r["psnr_mean"]) for r in rows)  # noqa: E731
    assert key(merged_test) == key(test)
    # --merge replaces one method's rows (here pc with another grid) and keeps the others
    merge = ["--setting", "ellipses-ct8", "--checkpoint", str(ckpt), "--image-size", "16", "--n-images", "1",
             "--budgets", "3", "5", "--no-progress", "--out", str(out), "--methods", "pc", "--grid", "pc.snr=0.2",
             "--merge"]
    sampler_nfe.main(merge)
    merged = json.loads((out / "ellipses-ct8.json").read_text())
    pc = [r for r in merged["records"] if r["method"] == "pc"]
    assert len(pc) == 2 and all(r["options"]["snr"] == 0.2 and r["chosen"] for r in pc)
    assert [r for r in merged["records"] if r["method"] not in ("pc",)] == \
        [r for r in records if r["method"] != "pc"]
    assert "merged_into" in merged["provenance"]

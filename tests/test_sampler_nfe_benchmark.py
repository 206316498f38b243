"""benchmarks/sampler_nfe.py end to end on a tiny untrained checkpoint (16x16, 1 validation image).

Checks: the JSON / markdown / PNG outputs exist with provenance; every method stays within its NFE
budget (pc: 2 per step + 1; dps: 1 per step + 1); the warm-started runs are recorded as such; the
--set options reach solve().
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
    with pytest.raises(SystemExit):
        sampler_nfe.parse_sets(["eta=1.0"])


def test_sampler_nfe_end_to_end(tmp_path, restore_threads, monkeypatch):
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=16, base_channels=8, channel_mult=(1, 2), attn_resolutions=()))
    ckpt = tmp_path / "tiny"
    save_score_model(ScoreModel(net, VESDE(0.01, 10.0)), ckpt)
    out = tmp_path / "out"
    argv = ["--setting", "ellipses-ct8", "--checkpoint", str(ckpt), "--image-size", "16", "--n-images", "1",
            "--budgets", "3", "5", "--warm-start", "0.5", "--no-progress", "--set", "ddnm.eta=1.0", "--out", str(out)]
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

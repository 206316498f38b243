"""benchmarks/cli_sampler_choice.py end to end on a tiny untrained resolution-free checkpoint at 16 x 16."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import cli_sampler_choice  # noqa: E402
from sgm_inverse import VESDE, ScoreModel, save_score_model  # noqa: E402
from sgm_inverse.nets import UNet, UNetConfig  # noqa: E402


def test_cli_sampler_choice_rows_and_merge(tmp_path):
    torch.manual_seed(0)
    before = torch.get_num_threads()
    cfg = UNetConfig(image_size=16, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                     mid_attention=False)
    save_score_model(ScoreModel(UNet(cfg), VESDE(0.01, 10.0)), tmp_path / "tiny")
    common = ["--checkpoint", str(tmp_path / "tiny"), "-n", "1", "--size", "16", "--t0", "0.2", "--ws-steps", "3",
              "--out", str(tmp_path), "--stem", "choice"]
    try:
        cli_sampler_choice.main(common + ["--settings", "ct8", "--skip-pc"])
        cli_sampler_choice.main(common + ["--settings", "mri4", "--skip-pc", "--merge", "--ws-samples", "1", "2"])
    finally:
        torch.set_num_threads(before)
    rows = json.loads((tmp_path / "choice.json").read_text())["records"]
    assert [(r["setting"], r["candidate"]) for r in rows] == [
        (s, c) for s in ("ct8", "mri4") for c in ("fista-tv (no prior)", "ddnm 200", "ddnm+ws t0=0.2 3")] + [
        ("mri4", "ddnm+ws t0=0.2 3 x 2")]
    for r in rows:
        assert r["checkpoint"] == str(tmp_path / "tiny") and r["checkpoint_step"] is None
        assert r["nfe"] == {"fista-tv (no prior)": 0, "ddnm 200": 200, "ddnm+ws t0=0.2 3": 3,
                            "ddnm+ws t0=0.2 3 x 2": 6}[r["candidate"]]   # network evaluations per image
        assert 0 < r["psnr"] < 100
    # the warm start begins near FISTA-TV: 3 steps from t0 = 0.2 stay far closer to it than 200 from noise
    by = {(r["setting"], r["candidate"]): r["psnr"] for r in rows}
    for s in ("ct8", "mri4"):
        assert by[(s, "ddnm+ws t0=0.2 3")] > by[(s, "ddnm 200")]
    assert "Best: **" in (tmp_path / "choice.md").read_text()

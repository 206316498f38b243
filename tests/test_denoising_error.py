"""Denoising error by noise level (sgm_inverse.denoising_error) against closed forms.

For p_0 = N(mu, Sigma) and the exact GaussianScore, the Tweedie denoiser is the posterior mean, so the
measured mse must equal the MMSE tr(Sigma - alpha^2 Sigma (alpha^2 Sigma + std^2 I)^{-1} Sigma) / d, and
mse_mean the average variance tr(Sigma) / d. A score with a wrong mean must show that mean as mean_bias
at high noise and score above mse_mean there: the failure the table is for.
"""
from __future__ import annotations

import pytest
import torch

from sgm_inverse import VESDE, VPSDE, GaussianScore
from sgm_inverse.denoising_error import denoising_error, noise_times

SHAPE = (1, 2, 3)
D = 6


def gaussian(seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(D, D, generator=g, dtype=torch.float64)
    cov = a @ a.T / D + 0.05 * torch.eye(D, dtype=torch.float64)
    mean = torch.rand(SHAPE, generator=g, dtype=torch.float64)
    return mean, cov


def draw(mean, cov, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, D, generator=g, dtype=torch.float64)
    return (mean.reshape(-1) + z @ torch.linalg.cholesky(cov).T).reshape(n, *SHAPE).float()


def mmse(sde, cov, t):
    alpha, std = (float(v) for v in sde.scale_std(torch.tensor([t], dtype=torch.float64)))
    eye = torch.eye(D, dtype=torch.float64)
    post = cov - alpha ** 2 * cov @ torch.linalg.solve(alpha ** 2 * cov + std ** 2 * eye, cov)
    return float(torch.trace(post)) / D


@pytest.mark.parametrize("sde", [VESDE(0.01, 20.0), VPSDE(0.1, 20.0)], ids=["ve", "vp"])
def test_exact_score_scores_the_mmse(sde):
    mean, cov = gaussian()
    x0 = draw(mean, cov, 20000)
    times = noise_times(sde, 5)
    rows = denoising_error(GaussianScore(sde, mean, cov), x0, times, generator=torch.Generator().manual_seed(2),
                           batch_size=4096)
    assert [r["t"] for r in rows] == pytest.approx(times.tolist())
    assert rows[0]["mse_mean"] == pytest.approx(float(torch.trace(cov)) / D, rel=0.03)
    for r in rows:
        assert r["mse"] == pytest.approx(mmse(sde, cov, r["t"]), rel=0.03)
        assert abs(r["mean_bias"]) < 0.02
    # the MMSE runs from ~0 at eps to the variance at T
    assert rows[0]["ratio"] < 0.01 and rows[-1]["ratio"] > 0.95


def test_a_wrong_mean_shows_at_high_noise():
    sde = VESDE(0.01, 20.0)
    mean, cov = gaussian()
    x0 = draw(mean, cov, 4000)
    wrong = GaussianScore(sde, mean - 0.3, cov)
    rows = denoising_error(wrong, x0, [sde.eps, 1.0], generator=torch.Generator().manual_seed(3))
    low, high = rows
    assert low["ratio"] < 0.01 and abs(low["mean_bias"]) < 0.01     # the data term wins at low noise
    assert high["mean_bias"] == pytest.approx(-0.3, abs=0.02)         # the prior's mean wins at high noise
    assert high["ratio"] > 1.05                                       # worse than predicting the mean


def test_bad_input_is_refused():
    sde = VESDE(0.01, 20.0)
    mean, cov = gaussian()
    model = GaussianScore(sde, mean, cov)
    with pytest.raises(ValueError, match="two images"):
        denoising_error(model, torch.zeros(1, *SHAPE), [0.5])
    with pytest.raises(ValueError, match="NaN"):
        denoising_error(model, torch.full((3, *SHAPE), float("nan")), [0.5])
    with pytest.raises(ValueError, match="at least one"):
        noise_times(sde, 0)


def test_script_on_a_checkpoint_matches_the_closed_form(tmp_path):
    """benchmarks/denoising_error.py on an untrained U-Net, whose zero-initialised output layer makes the denoiser
    exactly D(x_t) = c_skip x_t with c_skip = sigma_data^2 / (sigma^2 + sigma_data^2) (VE: x_t = x_0 + sigma z).
    Then mse(sigma) = (1 - c)^2 mean(x_0^2) + c^2 sigma^2 mean(z^2) - 2 c (1 - c) sigma mean(x_0 z): with
    E[z^2] = 1 and E[x_0 z] = 0, the expected mse is a closed form of the images alone. 8 x 32 x 32 noise draws
    put it within ~1.6% (one standard error of mean(z^2)) plus the cross term; 6% is ~4 standard errors.
    One record per checkpoint and level, with the table, the JSON provenance and the figure written."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from sgm_inverse import ScoreModel, save_score_model
    from sgm_inverse.nets import UNet, UNetConfig

    torch.manual_seed(0)
    model = ScoreModel(UNet(UNetConfig(in_channels=1, image_size=32, base_channels=8, channel_mult=(1, 2),
                                       attn_resolutions=())), VESDE(0.01, 25.0))
    assert all(float(p.abs().max()) == 0 for p in model.network.conv_out.parameters())
    ckpt = tmp_path / "tiny"
    save_score_model(model, ckpt, data={"dataset": "ellipses"}, training={"step": 7})
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "denoising_error.py"
    r = subprocess.run([sys.executable, str(script), "--checkpoint", str(ckpt), str(ckpt), "--names", "a", "b",
                        "-n", "8", "--levels", "3", "--seed", "5", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    records = json.loads((tmp_path / "denoising_error_a.json").read_text())["records"]
    assert [(x["checkpoint"], x["step"]) for x in records] == [("a", 7)] * 3 + [("b", 7)] * 3
    assert (tmp_path / "denoising_error_a.png").stat().st_size > 0 and "| a | 7 |" in r.stdout
    assert records[3]["mse"] == records[0]["mse"]          # same images, same noise for every checkpoint

    # the script's documented images: 8 held-out (test) ellipses, a fixed random subset (seed 0, in order)
    from sgm_inverse.data import get_dataset
    test = get_dataset("ellipses", "test", image_size=32)
    pick = sorted(torch.randperm(len(test), generator=torch.Generator().manual_seed(0))[:8].tolist())
    x0 = torch.stack([test[i] for i in pick]).double()
    second_moment = float(x0.pow(2).mean())
    mse_mean = float((x0 - x0.mean(0)).pow(2).mean())
    eps = model.sde.eps
    sigmas = [0.01 * (25.0 / 0.01) ** t for t in (eps, (1 + eps) / 2, 1.0)]   # 3 levels evenly over [eps, T]
    for got, sigma in zip(records[:3], sigmas):
        c = 0.25 / (sigma ** 2 + 0.25)
        expected = (1 - c) ** 2 * second_moment + c ** 2 * sigma ** 2
        assert got["sigma"] == pytest.approx(sigma, rel=1e-4)
        assert got["mse"] == pytest.approx(expected, rel=0.06), (sigma, got["mse"], expected)
        assert got["mse_mean"] == pytest.approx(mse_mean, rel=1e-5)
        assert got["ratio"] == pytest.approx(got["mse"] / mse_mean)

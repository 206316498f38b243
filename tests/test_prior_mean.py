"""The prior mean: samplers start at N(alpha(T) E[x_0], std(T)^2 I) when the score model carries the data mean.

Why it matters (checked against an exact target): for a VE SDE whose sigma_max is not large against the data's
norm, p_T = p_data * N(0, sigma_max^2 I) is centred at E[x_0], and the reverse SDE with the exact score maps a
start x_T to x_0 ~ p(x_0 | x_T). A start drawn from q_T therefore yields mixture component k with probability
E_{x_T ~ q_T}[p(k | x_T)], which we estimate independently by Monte Carlo from the closed-form
p(k | x_T) ∝ w_k N(x_T; mu_k, (s_k^2 + sigma_max^2) I).
"""
from __future__ import annotations

import math

import pytest
import torch

from sgm_inverse import VESDE, VPSDE, ScoreModel, load_score_model, save_score_model
from sgm_inverse.nets import UNet, UNetConfig
from sgm_inverse.samplers import pc_sample
from sgm_inverse.score import GaussianMixtureScore
from sgm_inverse.training import TrainConfig, draw_batch, ema_from_state, train

pytestmark = pytest.mark.usefixtures("single_thread")

D = 16
SIGMA_MAX = 5.0
# Two equally likely, well separated components on one line; norms 2 and 8 (|mu_2|^2 - |mu_1|^2 = 60 is
# comparable to sigma_max^2 = 25, as for the colour patches: |E[x_0]| = 26 at sigma_max = 25).
DIRECTION = torch.ones(D, dtype=torch.float64) / math.sqrt(D)
MEANS = torch.stack([2.0 * DIRECTION, 8.0 * DIRECTION])
STDS = torch.tensor([0.3, 0.3], dtype=torch.float64)
WEIGHTS = torch.tensor([0.5, 0.5], dtype=torch.float64)
DATA_MEAN = (WEIGHTS[:, None] * MEANS).sum(0)


def predicted_far_fraction(start_mean: torch.Tensor, n: int = 200_000) -> float:
    """E_{x_T ~ N(start_mean, sigma_max^2 I)}[p(k = far | x_T)] by Monte Carlo (float64)."""
    gen = torch.Generator().manual_seed(123)
    x = start_mean + SIGMA_MAX * torch.randn(n, D, generator=gen, dtype=torch.float64)
    var = STDS ** 2 + SIGMA_MAX ** 2 - 0.01 ** 2          # VE: std(T)^2 = sigma_max^2 - sigma_min^2
    logp = WEIGHTS.log() - 0.5 * torch.cdist(x, MEANS) ** 2 / var - 0.5 * D * var.log()
    return float(torch.softmax(logp, dim=1)[:, 1].mean())


def far_fraction(score, n: int = 2000) -> float:
    x = pc_sample(score, (n, D), steps=300, corrector="none", dtype=torch.float64, progress=False,
                  generator=torch.Generator().manual_seed(0))
    return float((torch.cdist(x, MEANS).argmin(1) == 1).double().mean())


def test_mean_start_removes_the_norm_bias_of_a_zero_start():
    sde = VESDE(0.01, SIGMA_MAX)
    score = GaussianMixtureScore(sde, WEIGHTS, MEANS, STDS)
    se = math.sqrt(0.25 / 2000)
    predicted_zero = predicted_far_fraction(torch.zeros(D, dtype=torch.float64))
    assert predicted_zero < 0.35                           # the bias is real: the far component is under-drawn
    got_zero = far_fraction(score)
    assert abs(got_zero - predicted_zero) < 5 * se + 0.02, (got_zero, predicted_zero)

    score.prior_mean = DATA_MEAN                           # the protocol attribute samplers read
    predicted_mean = predicted_far_fraction(DATA_MEAN)
    assert abs(predicted_mean - 0.5) < 0.01
    got_mean = far_fraction(score)
    assert abs(got_mean - 0.5) < 5 * se + 0.02, (got_mean, predicted_mean)


@pytest.mark.parametrize("sde", [VESDE(0.01, 3.0), VPSDE(0.1, 20.0), VPSDE(0.1, 2.0)], ids=["ve", "vp", "vp_short"])
def test_prior_sampling_mean_is_alpha_T_times_the_data_mean(sde):
    mean = torch.linspace(-2, 5, 12, dtype=torch.float64).reshape(3, 4)
    x = sde.prior_sampling((20000, 3, 4), generator=torch.Generator().manual_seed(0), dtype=torch.float64,
                           mean=mean)
    alpha, std = (float(v) for v in sde.scale_std(torch.tensor([sde.T], dtype=torch.float64)))
    se = std / math.sqrt(20000)
    assert (x.mean(0) - alpha * mean).abs().max() < 5 * se
    assert abs(float(x.std(0).mean()) / std - 1) < 0.02
    x0 = sde.prior_sampling((20000, 3, 4), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    assert torch.allclose(x - x0, (alpha * mean).expand_as(x))   # the same noise, shifted


def tiny_unet_model():
    torch.manual_seed(0)
    return ScoreModel(UNet(UNetConfig(image_size=8, base_channels=8, channel_mult=(1, 2), attn_resolutions=())),
                      VESDE(0.01, 5.0))


def test_training_records_the_mean_of_the_images_it_saw_and_it_survives_save_load_and_resume(tmp_path):
    data = [torch.rand(1, 8, 8, generator=torch.Generator().manual_seed(i)) * (1 + i) for i in range(6)]

    def augment(x, gen):                                   # the mean must be taken after augmentation
        return x * 0.5 + torch.rand(x.shape[0], 1, 1, 1, generator=gen)

    cfg = TrainConfig(steps=4, batch_size=3, lr=1e-3, warmup_steps=1, checkpoint_every=2, amp=False)
    train(tiny_unet_model(), data, TrainConfig(**{**cfg.__dict__, "steps": 2}), tmp_path, augment=augment,
          progress=False)
    ema = train(tiny_unet_model(), data, cfg, tmp_path, augment=augment, progress=False)   # resumes at step 2

    # Replay the data stream independently: the data generator is seeded seed * 1000 + rank.
    gen = torch.Generator().manual_seed(cfg.seed * 1000)
    seen = torch.cat([augment(draw_batch(data, cfg.batch_size, gen), gen) for _ in range(cfg.steps)])
    expected = seen.double().mean(0).float()
    assert torch.allclose(ema.prior_mean, expected, atol=1e-6)
    loaded = load_score_model(tmp_path / "ema")
    assert torch.allclose(loaded.prior_mean, expected, atol=1e-6)
    assert loaded.config["training"]["prior_mean_images"] == cfg.steps * cfg.batch_size
    assert torch.allclose(ema_from_state(tmp_path).prior_mean, expected, atol=1e-6)

    # a checkpoint without one loads with None (then samplers start at 0), and .to() moves it
    loaded.prior_mean = None
    save_score_model(loaded, tmp_path / "no_mean")
    assert load_score_model(tmp_path / "no_mean").prior_mean is None
    assert load_score_model(tmp_path / "ema").to(torch.float64).prior_mean.dtype == torch.float64

"""solve(sampler="auto"): the few-step sampler the NFE study chose (solve.AUTO_SAMPLER) for one sample of a
linear forward model, the PC sampler wherever its posterior sampling or its options are asked for."""
from __future__ import annotations

import pytest
import torch

from forward_models import Inpainting, SparseViewCT
from sgm_inverse import VESDE, ScoreModel, solve
from sgm_inverse.nets import UNet, UNetConfig
from sgm_inverse.solve import AUTO_SAMPLER, DEFAULT_STEPS, pick_sampler


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    cfg = UNetConfig(image_size=16, base_channels=8, channel_mult=(1, 2), num_res_blocks=1, attn_resolutions=(),
                     mid_attention=False)
    return ScoreModel(UNet(cfg), VESDE(0.01, 10.0)).eval().requires_grad_(False)


class TimeDependent:
    time_dependent = True

    def adjoint(self, y):
        return y


@pytest.mark.parametrize("kwargs,expected", [
    ({}, AUTO_SAMPLER),
    ({"x_init": None, "t_start": 0.3, "eta": 1.0}, AUTO_SAMPLER),   # the few-step sampler's own options
    ({"n_samples": 2}, "pc"),           # posterior samples: PC's spread follows the posterior
    ({"snr": 0.3}, "pc"),               # a Langevin snr only the PC sampler uses
    ({"method": "projection"}, "pc"),   # a conditioning method of the PC sampler
    ({"lam": 0.9}, "pc"),               # a projection option
])
def test_pick_sampler(kwargs, expected):
    kwargs = dict(kwargs)
    n_samples, snr, method = kwargs.pop("n_samples", 1), kwargs.pop("snr", None), kwargs.pop("method", "auto")
    assert pick_sampler(SparseViewCT(16, n_views=6), method, n_samples, snr, kwargs) == expected
    assert pick_sampler(TimeDependent(), method, n_samples, snr, kwargs) == "pc"   # classifier guidance


def test_auto_runs_the_chosen_sampler_with_its_default_steps(model):
    op = SparseViewCT(16, n_views=6)
    y = op.simulate(torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0)))
    sol = solve(y, op, model, seed=0, progress=False, ood_check=False)
    assert sol.settings["sampler"] == AUTO_SAMPLER and sol.nfe == DEFAULT_STEPS["few_step"]
    same = solve(y, op, model, sampler=AUTO_SAMPLER, seed=0, progress=False, ood_check=False)
    torch.testing.assert_close(sol.mean, same.mean)
    named = solve(y, op, model, sampler="dds", seed=0, progress=False, ood_check=False)
    assert named.nfe == DEFAULT_STEPS["few_step"]
    two = solve(y, op, model, n_samples=2, steps=4, seed=0, progress=False, ood_check=False)
    assert two.settings["sampler"] == "pc" and two.settings["snr"] == 0.16 and two.nfe == 2 * 4 + 1


def test_auto_keeps_inpainted_pixels(model):
    """DDNM's data step is the exact pseudo-inverse for a mask: observed pixels are kept, the rest is filled."""
    fm = Inpainting.random((1, 16, 16), keep=0.3, seed=0)
    x = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    sol = solve(fm.simulate(x), fm, model, steps=5, seed=0, progress=False, ood_check=False)
    assert sol.settings["sampler"] == AUTO_SAMPLER
    observed = fm.mask.bool().expand_as(sol.mean)
    assert (sol.mean - x).abs()[observed].max() < 1e-5
    assert (sol.mean - x).abs()[~observed].mean() > 0.05

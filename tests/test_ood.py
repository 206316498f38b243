"""The out-of-distribution warning: its statistic, its calibration, and brain64 on a real MR scan."""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from forward_models import UndersampledMRI
from sgm_inverse import VESDE, VPSDE, load_score_model, solve
from sgm_inverse.data import dicom_to_unit, read_dicom
from sgm_inverse.ood import denoising_gain_ratio, ood_warning, time_for_sigma

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("sde", [VESDE(0.01, 40.0), VPSDE(0.1, 20.0)])
def test_time_for_sigma_inverts_the_noise_level(sde):
    for sigma in (0.05, 0.2, 1.0):
        t = time_for_sigma(sde, sigma)
        alpha, std = sde.scale_std(torch.tensor([t], dtype=torch.float64))
        assert float(std / alpha) == pytest.approx(sigma, rel=1e-6)


class ExactGaussian:
    """Exact score of N(mu, s^2 I) per pixel: its denoiser is the MMSE one, which beats any blur on such data."""

    def __init__(self, sde, mu=0.5, s=0.1):
        self.sde, self.mu, self.s = sde, mu, s

    def __call__(self, x, t):
        alpha, std = self.sde.scale_std(t)
        a, v = alpha.view(-1, 1, 1, 1), (alpha ** 2 * self.s ** 2 + std ** 2).view(-1, 1, 1, 1)
        return -(x - a * self.mu) / v


def test_ratio_is_small_for_the_right_prior_and_large_for_a_wrong_one():
    sde = VESDE(0.01, 40.0)
    g = torch.Generator().manual_seed(0)
    white = 0.5 + 0.1 * torch.randn(4, 1, 32, 32, generator=g)             # i.i.d. N(0.5, 0.1^2) pixels
    right = denoising_gain_ratio(ExactGaussian(sde, 0.5, 0.1), white)
    wrong = denoising_gain_ratio(ExactGaussian(sde, 0.1, 0.02), white)      # believes in dark, flat images
    # right prior: its MMSE error s^2 sigma^2 / (s^2 + sigma^2) over the best blur's error (a blur cannot
    # separate white noise from white signal, so it is at best the same shrinkage): ratio <= ~1
    assert float(right.max()) < 1.05
    assert float(wrong.min()) > 2.0


def test_warning_needs_a_calibration_and_names_the_numbers():
    class Calibrated:
        config = {"ood": {"threshold": 1.5, "max": 1.0}}
    assert ood_warning(Calibrated(), torch.tensor([1.2])) is None
    line = ood_warning(Calibrated(), torch.tensor([0.9, 2.4]))
    assert line.startswith("warning:") and "2.40" in line and "1.50" in line and "\n" not in line
    assert ood_warning(type("Bare", (), {"config": {}})(), torch.tensor([9.0])) is None


def _mr_small() -> torch.Tensor:
    import pydicom
    path = os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files", "MR_small.dcm")
    array, info = read_dicom(path)
    return torch.from_numpy(dicom_to_unit(array, info["modality"])).float()[None, None]


def test_brain64_warns_on_mr_small_and_not_on_the_held_out_brain_slice():
    from sgm_inverse.checkpoints import WEIGHTS_DIR
    model = load_score_model("brain64")
    assert model.config.get("ood", {}).get("threshold"), "brain64 is not calibrated: run data_scripts/calibrate_ood.py"
    op = UndersampledMRI(64, acceleration=4)
    brain = torch.from_numpy(np.load(WEIGHTS_DIR / "demo_brain_slice.npy")).float().reshape(1, 1, 64, 64)
    mr = _mr_small()
    assert mr.shape == (1, 1, 64, 64)
    quiet = solve(op(brain), op, model, steps=2, seed=0, progress=False)
    loud = solve(op(mr), op, model, steps=2, seed=0, progress=False)
    assert quiet.warning is None, quiet.ood_ratio
    assert loud.warning is not None and loud.warning.startswith("warning:")
    assert float(loud.ood_ratio) > 1.3 * float(quiet.ood_ratio)
    assert solve(op(mr), op, model, steps=1, seed=0, progress=False, ood_check=False).warning is None

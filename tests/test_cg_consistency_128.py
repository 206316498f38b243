"""The CG consistency step must not blow up once it has converged (real images under MRI at 128 x 128).

For real images A A^T is singular under MRI (k-space entries come in conjugate pairs) and CG converges in two
iterations; run on towards a tolerance float32 cannot reach (rtol 1e-6), a later step divides by a round-off-sized
curvature and the correction explodes: the general prior's 128 x 128 MRI reconstructions came out at 3.5-4.7 dB
with values of 1e4-1e8. rtol 1e-4 stops it.
"""
from __future__ import annotations

import torch

from forward_models import UndersampledMRI
from sgm_inverse import load_score_model, solve
from sgm_inverse.data import BrainSlices
from sgm_inverse.metrics import psnr


def test_general_prior_mri_at_128_does_not_diverge():
    torch.set_num_threads(1)
    x = BrainSlices("val", image_size=128).images[[10]]
    op = UndersampledMRI(128, acceleration=4)
    sol = solve(op(x), op, load_score_model("general"), steps=20, sampler="reverse_diffusion", seed=0,
                progress=False, ood_check=False)
    assert float(sol.mean.abs().max()) < 2.0
    assert float(psnr(sol.mean.clamp(0, 1), x, data_range=1.0)[0]) > 10.0     # 14.8 dB; diverged: 3.5


def test_few_step_data_steps_do_not_diverge_at_128():
    """The same round-off blow-up in the few-step samplers' CG data steps (pinv_correction: DDNM / PiGDM,
    proximal_correction: DDS / DiffPIR), which had kept rtol 1e-6: DDNM on 128 x 128 MRI came out at 3.5 dB."""
    from sgm_inverse.samplers.data_steps import pinv_correction, proximal_correction
    torch.manual_seed(0)
    x = BrainSlices("val", image_size=128).images[[10, 30]]
    op = UndersampledMRI(128, acceleration=4)
    x0 = x + 0.2 * torch.randn_like(x)                  # a noisy Tweedie estimate
    r = op(x) - op(x0)
    for dx in (pinv_correction(op, r), proximal_correction(op, r, 0.0, 20)):
        fixed = x0 + dx
        assert float(dx.abs().max()) < 5.0
        rel = (op(fixed) - op(x)).abs().flatten(1).norm(dim=1) / op(x).abs().flatten(1).norm(dim=1)
        assert float(rel.max()) < 1e-3                   # the measured data are fitted
    sol = solve(op(x[:1]), op, load_score_model("general"), sampler="ddnm", steps=10, seed=0, progress=False,
                ood_check=False)
    assert float(psnr(sol.mean.clamp(0, 1), x[:1], data_range=1.0)[0]) > 15.0

"""ScoreModel.autocast: the network alone in bfloat16, the score and the sampler's arithmetic in fp32."""
from __future__ import annotations

import pytest
import torch

from sgm_inverse import VESDE, ScoreModel
from sgm_inverse.nets import UNet, UNetConfig

pytestmark = pytest.mark.usefixtures("single_thread")


def small_model() -> ScoreModel:
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=16, base_channels=8, channel_mult=(1, 2), attn_resolutions=(8,)))
    with torch.no_grad():   # the last conv starts at zero: give every layer weights that matter
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return ScoreModel(net, VESDE(0.01, 10.0)).eval()


def inputs():
    g = torch.Generator().manual_seed(1)
    return torch.rand(4, 1, 16, 16, generator=g) * 3, torch.tensor([0.05, 0.2, 0.5, 0.9])


def test_bf16_network_is_close_to_fp32_and_returns_fp32():
    model, (x, t) = small_model(), inputs()
    ref_d, ref_s = model.denoise(x, t), model(x, t)
    model.autocast = torch.bfloat16
    low_d, low_s = model.denoise(x, t), model(x, t)
    assert low_d.dtype == torch.float32 and low_s.dtype == torch.float32
    # bfloat16 keeps 8 bits of mantissa: ~0.1% on D, ~1% on the score at the lowest noise (1/std^2 amplifies)
    for low, ref, tol in [(low_d, ref_d, 0.005), (low_s, ref_s, 0.05)]:
        gap = ((low - ref).norm() / ref.norm()).item()
        assert 0 < gap < tol, gap


def test_off_means_fp32_and_leaves_a_callers_autocast_alone():
    """autocast=None must not open an autocast(enabled=False) region: training on CUDA runs the
    whole loss under the caller's autocast."""
    model, (x, t) = small_model(), inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outer = model.denoise(x, t)
    model.autocast = torch.bfloat16
    inner = model.denoise(x, t)
    assert torch.equal(outer, inner)
    model.autocast = None
    assert not torch.equal(model.denoise(x, t), inner)


def test_gradient_through_the_bf16_network_is_close():
    """DPS differentiates the denoiser with respect to x_t."""
    model, (x, t) = small_model(), inputs()

    def grad(m):
        xg = x.clone().requires_grad_(True)
        m.denoise(xg, t).pow(2).sum().backward()
        return xg.grad
    ref = grad(model)
    model.autocast = torch.bfloat16
    low = grad(model)
    gap = ((low - ref).norm() / ref.norm()).item()
    assert torch.isfinite(low).all() and 0 < gap < 0.05, gap

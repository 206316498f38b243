"""Time-conditional U-Net: shapes, conditioning, size, validation."""
from __future__ import annotations

import pytest
import torch

from sgm_inverse.nets import NETWORKS, UNet, UNetConfig

pytestmark = pytest.mark.usefixtures("single_thread")


def perturb_all(net, scale=0.05, seed=0):
    """Give every parameter (the zero-initialised output convs included) a random nudge."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return net


@pytest.mark.parametrize("embedding", ["fourier", "sinusoidal"])
@pytest.mark.parametrize("image_size", [32, 64])
@pytest.mark.parametrize("in_channels", [1, 2, 3])
def test_output_shape(in_channels, image_size, embedding):
    # Default depth / attention layout, thinner channels so 12 forwards stay fast on CPU.
    net = UNet(UNetConfig(in_channels=in_channels, image_size=image_size, embedding=embedding, base_channels=8))
    x = torch.randn(2, in_channels, image_size, image_size)
    with torch.no_grad():
        out = net(x, torch.tensor([-1.0, 0.5]))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(out, torch.zeros_like(out))      # zero-initialised output layer: starts at F = 0


@pytest.mark.parametrize("embedding", ["fourier", "sinusoidal"])
def test_time_conditioning_matters(embedding):
    net = perturb_all(UNet(UNetConfig(base_channels=8, image_size=32, embedding=embedding))).eval()
    x = torch.randn(1, 1, 32, 32).expand(3, 1, 32, 32).contiguous()
    # c_noise = ln(sigma)/4: the three values span sigma from ~0.02 to ~50.
    with torch.no_grad():
        out = net(x, torch.tensor([-1.0, 0.0, 1.0]))
    assert out.abs().max() > 0
    for i, j in [(0, 1), (1, 2), (0, 2)]:
        rel = (out[i] - out[j]).norm() / out[i].norm()
        assert rel > 1e-2, (i, j, rel)
    # Same c_noise and same input -> same output (conditioning is per sample, nothing leaks across the batch).
    with torch.no_grad():
        again = net(x, torch.tensor([0.0, 0.0, 0.0]))
    torch.testing.assert_close(again[0], again[2])
    torch.testing.assert_close(again[1], out[1], rtol=1e-5, atol=1e-6)


def test_samples_are_independent_in_a_batch():
    net = perturb_all(UNet(UNetConfig(base_channels=8, image_size=32))).eval()
    x, c = torch.randn(4, 1, 32, 32), torch.tensor([-0.5, 0.0, 0.3, 1.0])
    with torch.no_grad():
        full = net(x, c)
        single = torch.cat([net(x[i:i + 1], c[i:i + 1]) for i in range(4)])
    torch.testing.assert_close(full, single, rtol=1e-4, atol=1e-5)


def test_gradient_flows_to_every_parameter():
    net = perturb_all(UNet(UNetConfig(base_channels=8, image_size=32)))
    out = net(torch.randn(2, 1, 32, 32), torch.tensor([0.1, -0.3]))
    out.pow(2).sum().backward()
    unused = [n for n, p in net.named_parameters() if p.grad is None or p.grad.abs().max() == 0]
    assert unused == []      # DDP without find_unused_parameters relies on this


def test_default_parameter_count():
    net = UNet(UNetConfig())
    cfg = net.config
    assert (cfg.image_size, cfg.in_channels) == (64, 1)
    n = sum(p.numel() for p in net.parameters())
    assert 1_000_000 <= n <= 3_000_000, n


def test_config_round_trip():
    cfg = UNetConfig(in_channels=3, base_channels=16, channel_mult=(1, 2), attn_resolutions=(8,), image_size=16,
                     embedding="sinusoidal")
    d = cfg.to_dict()
    assert d["channel_mult"] == [1, 2] and d["attn_resolutions"] == [8]
    rebuilt = UNetConfig(**{**d, "channel_mult": tuple(d["channel_mult"]),
                            "attn_resolutions": tuple(d["attn_resolutions"])})
    assert rebuilt == cfg
    assert NETWORKS["UNet"] is UNet
    assert UNet(in_channels=2, base_channels=8, image_size=16).config.in_channels == 2   # kwargs form


@pytest.mark.parametrize("size", [30, 36, 20])
def test_bad_image_size_raises(size):
    with pytest.raises(ValueError, match="divisible"):
        UNet(UNetConfig(image_size=size))      # default 4 levels: divisible by 8 needed


def test_bad_embedding_raises():
    with pytest.raises(ValueError, match="embedding"):
        UNet(UNetConfig(embedding="learned"))

"""ScoreModel.cpu_chunk_pixels: on the CPU in eval mode the network sees the batch in chunks of images,
with the same result as one call (every layer of the U-Net works per image)."""
from __future__ import annotations

import pytest
import torch

from sgm_inverse import VESDE, ScoreModel
from sgm_inverse.nets import UNet, UNetConfig

pytestmark = pytest.mark.usefixtures("single_thread")


def small_model(chunk_pixels) -> ScoreModel:
    torch.manual_seed(0)
    net = UNet(UNetConfig(image_size=16, base_channels=8, channel_mult=(1, 2), attn_resolutions=()))
    with torch.no_grad():   # the last conv starts at zero: give every layer weights that matter
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return ScoreModel(net, VESDE(0.01, 10.0), cpu_chunk_pixels=chunk_pixels).eval()


def batch_sizes_seen(model: ScoreModel, x, t) -> tuple[list, torch.Tensor]:
    seen = []
    hook = model.network.register_forward_pre_hook(lambda mod, args: seen.append(args[0].shape[0]))
    try:
        out = model(x, t)
    finally:
        hook.remove()
    return seen, out


@pytest.mark.parametrize("chunk_pixels, sizes", [(None, [5]), (2 * 256, [2, 2, 1]), (256, [1] * 5),
                                                 (100, [1] * 5), (10 ** 6, [5])])
def test_chunks_split_the_batch_and_give_one_calls_score(chunk_pixels, sizes):
    """5 images of 16 x 16 (256 pixels each): a chunk of 512 pixels holds 2 images; one smaller than an image
    still takes one; the chunked score equals the one-call score to float32 rounding."""
    g = torch.Generator().manual_seed(1)
    x, t = torch.rand(5, 1, 16, 16, generator=g) * 3, torch.tensor([0.05, 0.2, 0.5, 0.7, 0.9])
    seen, out = batch_sizes_seen(small_model(chunk_pixels), x, t)
    _, ref = batch_sizes_seen(small_model(None), x, t)
    assert seen == sizes
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5 * ref.abs().max().item())
    assert not torch.equal(ref[0], ref[1])   # the images' scores differ: a chunk mix-up would show


def test_a_training_step_keeps_one_call():
    """A training step (train mode, autograd on) computes its loss on the whole batch in one call; the same
    model sampling under no_grad is chunked (a user's model that was never put in eval mode)."""
    model = small_model(256).train()
    x, t = torch.rand(4, 1, 16, 16), torch.full((4,), 0.3)
    seen, _ = batch_sizes_seen(model, x, t)
    assert seen == [4]
    with torch.no_grad():
        seen, _ = batch_sizes_seen(model, x, t)
    assert seen == [1, 1, 1, 1]


def test_chunked_score_keeps_its_gradient():
    """DPS differentiates the score through the network: the chunks must keep the autograd graph, and give
    the gradient of one call."""
    x = torch.rand(3, 1, 16, 16, requires_grad=True)
    grads = []
    for chunk in (None, 256):
        model = small_model(chunk)
        (g,) = torch.autograd.grad(model(x, torch.full((3,), 0.4)).square().sum(), x)
        grads.append(g)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5 * grads[0].abs().max().item())

"""Resolution-free priors: any-size application, patch assembly, crop-size training, minimal resume state."""
from __future__ import annotations

import json

import pytest
import torch

from forward_models import Inpainting
from sgm_inverse import VESDE, VPSDE, ScoreModel, solve
from sgm_inverse.nets import UNet, UNetConfig
from sgm_inverse.patch_score import PatchScore
from sgm_inverse.training import RESUME_FILES, STATE_FILE, TrainConfig, _state_metadata, train
from sgm_inverse.utils import append_dims

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_model(resolution_free: bool = True) -> ScoreModel:
    cfg = UNetConfig(image_size=16, base_channels=8, channel_mult=(1, 2), num_res_blocks=1,
                     attn_resolutions=() if resolution_free else (8,), mid_attention=not resolution_free)
    return ScoreModel(UNet(cfg), VESDE(0.01, 10.0))


def test_resolution_free_model_accepts_multiples_of_its_downsampling():
    free, fixed = tiny_model(True), tiny_model(False)
    assert free.resolution_free and not fixed.resolution_free
    assert free.size_multiple == 2
    assert free.accepts_shape((1, 16, 16)) and free.accepts_shape((1, 48, 32))
    assert not free.accepts_shape((1, 15, 16)) and not free.accepts_shape((3, 16, 16))
    assert fixed.accepts_shape((1, 16, 16)) and not fixed.accepts_shape((1, 32, 32))
    # the attention-free network really has no attention module anywhere
    assert not any("Attention" in type(m).__name__ for m in free.network.modules())


def test_solve_runs_a_resolution_free_model_at_another_size_and_refuses_a_fixed_one():
    op = Inpainting.random((1, 24, 24), keep=0.5, seed=0)
    y = op(torch.rand(1, 1, 24, 24))
    sol = solve(y, op, tiny_model(True).eval(), steps=3, seed=0, progress=False)
    assert sol.samples.shape == (1, 1, 1, 24, 24)
    # the projection step puts the measured pixels back: they equal y up to the final Tweedie step
    assert torch.isfinite(sol.mean).all()
    with pytest.raises(ValueError, match="does not match"):
        solve(y, op, tiny_model(False).eval(), steps=3, seed=0, progress=False)
    with pytest.raises(ValueError, match="multiples of 2"):
        op2 = Inpainting.random((1, 25, 25), keep=0.5, seed=0)
        solve(op2(torch.rand(1, 1, 25, 25)), op2, tiny_model(True).eval(), steps=1, progress=False)


class PixelwiseGaussian:
    """Exact score of p_0 = N(mu, s^2 I) with a scalar mu: pixelwise, so any tiling gives the same score."""

    def __init__(self, sde, mu=0.3, s=0.2):
        self.sde, self.mu, self.s = sde, mu, s

    def __call__(self, x, t):
        alpha, std = self.sde.scale_std(t)
        a, v = append_dims(alpha, x.ndim), append_dims(alpha ** 2 * self.s ** 2 + std ** 2, x.ndim)
        return -(x - a * self.mu) / v


@pytest.mark.parametrize("shape", [(2, 1, 20, 20), (1, 3, 16, 24), (1, 1, 8, 8)])
def test_patch_assembly_puts_every_patch_score_back_at_its_pixels(shape):
    model = PixelwiseGaussian(VPSDE(0.1, 20.0))
    patch = PatchScore(model, 8, torch.Generator().manual_seed(1))
    x = torch.randn(shape)
    t = torch.full((shape[0],), 0.4)
    offsets = set()
    for _ in range(5):       # five random shifts: each must reassemble exactly
        state = patch.generator.get_state()
        offsets.add(tuple(torch.randint(0, 9, (2,), generator=torch.Generator().set_state(state)).tolist()))
        torch.testing.assert_close(patch(x, t), model(x, t), rtol=0, atol=1e-6)
    assert len(offsets) > 1      # the shift really changes between evaluations


def test_patch_assembly_differs_from_direct_application_for_a_network():
    """For a real (non-pixelwise) network the seams matter: the wrapper must not silently be the identity."""
    torch.manual_seed(0)
    model = tiny_model(True).eval()
    for p in model.network.conv_out.parameters():          # zero-initialised: make the output depend on x
        torch.nn.init.normal_(p, std=0.1)
    x = torch.randn(1, 1, 32, 32)
    t = torch.full((1,), 0.5)
    with torch.no_grad():
        direct, patched = model(x, t), PatchScore(model, 16)(x, t)
    assert patched.shape == direct.shape
    assert (patched - direct).abs().max() > 1e-4


class CropSizes(torch.utils.data.Dataset):
    """A resolution-free toy data set: constant images of value 0.25 or 0.75, batches of two sizes."""

    resolution_free = True

    def __len__(self):
        return 100

    def __getitem__(self, i):
        return torch.full((1, 8, 8), 0.25 if i % 2 else 0.75)

    def draw_batch(self, batch_size, generator):
        size = 8 if torch.rand(1, generator=generator) < 0.5 else 16
        n = batch_size * (8 // size) ** 2 or 2
        values = torch.where(torch.rand(n, generator=generator) < 0.5, 0.25, 0.75)
        return values.view(n, 1, 1, 1).expand(n, 1, size, size).clone()


def test_training_on_crops_of_several_sizes_records_a_scalar_mean(tmp_path):
    cfg = TrainConfig(steps=6, batch_size=4, checkpoint_every=3, warmup_steps=2)
    ema = train(tiny_model(True), CropSizes(), cfg, tmp_path, progress=False)
    assert ema.prior_mean.shape == (1, 1, 1)
    assert abs(float(ema.prior_mean) - 0.5) < 0.25          # a mean of 0.25 / 0.75 draws
    from sgm_inverse import load_score_model
    loaded = load_score_model(tmp_path / "ema")
    assert loaded.config["training"]["images_seen"] >= 6 * 2   # images actually drawn, not steps * batch


def test_resume_from_the_minimal_files_continues_with_fresh_moments(tmp_path):
    cfg = TrainConfig(steps=4, batch_size=4, checkpoint_every=2, warmup_steps=2)
    train(tiny_model(True), CropSizes(), cfg, tmp_path, progress=False)
    sizes = {f: (tmp_path / f).stat().st_size for f in (*RESUME_FILES, STATE_FILE)}
    n_params = sum(p.numel() for p in tiny_model(True).parameters())
    # the two resume files hold no optimizer moments: together about two copies of the weights
    assert sizes[RESUME_FILES[0]] + sizes[RESUME_FILES[1]] < 2 * 4 * n_params + 200_000
    assert sizes[STATE_FILE] > 3.5 * 4 * n_params                   # the full state holds Adam's two moments
    (tmp_path / STATE_FILE).unlink()
    model = tiny_model(True)
    ema = train(model, CropSizes(), TrainConfig(steps=6, batch_size=4, checkpoint_every=2, warmup_steps=2),
                tmp_path, progress=False)
    from sgm_inverse import load_score_model
    cfg_after = load_score_model(tmp_path / "ema").config["training"]
    assert cfg_after["step"] == 6
    log = json.loads(_state_metadata(tmp_path / STATE_FILE)["log"])
    assert log["rewarm"] == [4]
    assert ema.prior_mean is not None


def test_a_fine_tune_is_recognised_from_its_resume_files_alone(tmp_path):
    """On a fresh clone only the two resume files exist: the run must still be known as a fine-tune of its
    parent (architecture and the parent's cost), without the parent checkpoint being present."""
    import shutil

    from sgm_inverse.cli import _fine_tune_record
    parent = {"checkpoint": "runs/parent", "step": 7, "images_seen": 700, "seconds": 70.0}
    record = {"data": {"dataset": "toy"}, "init_from": parent}
    train(tiny_model(True), CropSizes(), TrainConfig(steps=2, batch_size=4, checkpoint_every=2), tmp_path,
          progress=False, record=record)
    shutil.rmtree(tmp_path / "ema")
    (tmp_path / STATE_FILE).unlink()
    found = _fine_tune_record(tmp_path)
    assert found["init_from"] == parent
    assert found["network"]["mid_attention"] is False and found["sde"]["type"] == "VESDE"

"""`sgm-inverse solve` reconstructs a scan at its own size with a resolution-free prior, and warns on
out-of-distribution input (run in subprocesses, on tiny models / few steps)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from sgm_inverse import VESDE, ScoreModel, save_score_model
from sgm_inverse.nets import UNet, UNetConfig


def run(*args):
    return subprocess.run([sys.executable, "-m", "sgm_inverse.cli", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def pydicom_file(name: str) -> str:
    import pydicom
    return os.path.join(os.path.dirname(pydicom.__file__), "data", "test_files", name)


@pytest.fixture(scope="module")
def tiny_free_model(tmp_path_factory):
    torch.manual_seed(0)
    cfg = UNetConfig(image_size=32, base_channels=8, channel_mult=(1, 2, 2, 2), num_res_blocks=1,
                     attn_resolutions=(), mid_attention=False)
    path = tmp_path_factory.mktemp("ckpt") / "free"
    save_score_model(ScoreModel(UNet(cfg), VESDE(0.01, 40.0)), path)
    return path


def test_ct_small_is_reconstructed_at_its_own_128_pixels(tiny_free_model, tmp_path):
    out = tmp_path / "recon.npy"
    res = run("solve", "ct", pydicom_file("CT_small.dcm"), "--checkpoint", str(tiny_free_model), "--views", "8",
              "--steps", "2", "-o", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    assert np.load(out).shape[-2:] == (128, 128)
    assert "measurement (1, 8, 182)" in res.stdout     # 8 views x ceil(128 sqrt 2) detectors: 128 pixels


def test_resize_is_an_option(tiny_free_model, tmp_path):
    out = tmp_path / "recon.npy"
    res = run("solve", "ct", pydicom_file("CT_small.dcm"), "--checkpoint", str(tiny_free_model), "--views", "8",
              "--steps", "1", "--resize", "64", "-o", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    assert np.load(out).shape[-2:] == (64, 64)


def test_a_size_the_network_cannot_take_is_one_line(tiny_free_model, tmp_path):
    img = tmp_path / "odd.npy"
    np.save(img, np.random.default_rng(0).random((60, 60)).astype(np.float32))
    res = run("solve", "ct", str(img), "--checkpoint", str(tiny_free_model), "--steps", "1",
              "-o", str(tmp_path / "r.npy"))
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.strip().splitlines() if ln]
    assert len(lines) == 1 and "multiple of 8" in lines[0] and "--resize" in lines[0]


def test_fixed_size_checkpoint_still_needs_resize(tmp_path):
    res = run("solve", "ct", pydicom_file("CT_small.dcm"), "--checkpoint", "brain64", "--steps", "1",
              "-o", str(tmp_path / "r.npy"))
    assert res.returncode != 0 and "--resize" in res.stderr


def test_brain64_warns_on_mr_small_from_the_command_line(tmp_path):
    res = run("solve", "mri", pydicom_file("MR_small.dcm"), "--checkpoint", "brain64", "--steps", "2",
              "-o", str(tmp_path / "r.png"), "--quiet")
    assert res.returncode == 0, res.stderr
    warnings = [ln for ln in res.stderr.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "unlike this prior's training data" in warnings[0]


def test_sample_draws_at_another_size_only_from_a_resolution_free_prior(tiny_free_model, tmp_path):
    out = tmp_path / "s.npy"
    res = run("sample", "--checkpoint", str(tiny_free_model), "-n", "2", "--steps", "2", "--size", "48",
              "-o", str(out), "--quiet")
    assert res.returncode == 0, res.stderr
    assert np.load(out).shape == (2, 1, 48, 48)
    res = run("sample", "--checkpoint", "brain64", "-n", "1", "--steps", "1", "--size", "48", "-o", str(out))
    assert res.returncode != 0 and "(1, 64, 64)" in res.stderr

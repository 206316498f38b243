"""The sgm-inverse command, run in subprocesses on tiny configurations."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from sgm_inverse import VESDE, ScoreModel, save_score_model
from sgm_inverse.nets import UNet, UNetConfig


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "sgm_inverse.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def tiny_digits_model(tmp_path_factory):
    torch.manual_seed(0)
    model = ScoreModel(UNet(UNetConfig(image_size=32, base_channels=8, channel_mult=(1, 2),
                                       attn_resolutions=())), VESDE(0.01, 25.0))
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    save_score_model(model, path)
    return path


def test_help_lists_commands():
    out = run("--help").stdout
    for command in ("demo", "train", "sample", "generate"):
        assert command in out


def test_generate_writes_npy_in_range(tiny_digits_model, tmp_path):
    out = tmp_path / "sevens.npy"
    r = run("generate", "--checkpoint", str(tiny_digits_model), "--class", "7", "-n", "3", "--steps", "3",
            "--quiet", "-o", str(out))
    assert r.returncode == 0, r.stderr
    x = np.load(out)
    assert x.shape == (3, 1, 32, 32) and np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1


@pytest.mark.parametrize("args,message", [
    (["generate", "--checkpoint", "no-such-model", "--class", "1", "-o", "x.png"], "no checkpoint named"),
    (["generate", "--class", "12", "--checkpoint", "{model}", "-o", "x.png"], "out of range"),
    (["sample", "--checkpoint", "{model}", "--device", "cuda:0", "-o", "x.png"], "CUDA"),
    (["generate", "--checkpoint", "{model}", "--class", "1", "-o", "x.jpg", "--steps", "1"], "expected a .png or .npy"),
])
def test_user_errors_are_one_line(tiny_digits_model, tmp_path, args, message):
    if "CUDA" == message and torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    args = [a.replace("{model}", str(tiny_digits_model)) for a in args]
    r = run(*args, cwd=tmp_path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr, r.stderr

"""Fréchet distance on fixed random features (sgm_inverse.sample_quality) and the sample-quality script.

Checks: the FD formula against closed forms and an independent scipy.linalg.sqrtm computation; symmetry
and FD = 0 for identical statistics; RandomFeatures is a fixed function of its seed; on real images a
corrupted half scores far above the clean half-vs-half floor (200 vs 200 images) while real images from
another split do not; benchmarks/sample_quality.py --quick runs end to end on an untrained checkpoint.
"""
from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from sgm_inverse import VESDE, ScoreModel, save_score_model
from sgm_inverse.data import Digits, Ellipses
from sgm_inverse.nets import UNet, UNetConfig
from sgm_inverse.sample_quality import RandomFeatures, feature_stats, frechet_distance, sample_fd

from conftest import prepared

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPT = BENCH / "sample_quality.py"
KEYS = ["checkpoint", "step", "images_seen", "dataset", "n_samples", "n_heldout", "steps", "corrector",
        "fd_samples", "fd_floor", "fd_blurred", "fd_train", "fd_samples_train", "fd_floor_train", "mean_samples",
        "mean_train", "mean_heldout", "in_range_fraction", "seconds"]
FINITE = ["n_samples", "n_heldout", "steps", "fd_samples", "fd_floor", "fd_blurred", "fd_train", "fd_samples_train",
          "fd_floor_train", "mean_samples", "mean_train", "mean_heldout", "in_range_fraction", "seconds"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def random_spd(d: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def scipy_fd(mu1, c1, mu2, c2) -> float:
    """The usual FID formula, an independent computation: tr sqrtm(C1 C2) by Schur decomposition."""
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(c1) + np.trace(c2)
                 - 2 * np.trace(scipy.linalg.sqrtm(c1 @ c2).real))


def test_fd_diagonal_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(8), rng.standard_normal(8)
    a, b = rng.uniform(0.1, 3, 8), rng.uniform(0.1, 3, 8)
    expected = np.sum((np.sqrt(a) - np.sqrt(b)) ** 2) + np.sum((mu1 - mu2) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)
    # 1-D: (mu1 - mu2)^2 + (sigma1 - sigma2)^2
    assert frechet_distance([1.0], [[4.0]], [-1.0], [[9.0]]) == pytest.approx(4.0 + 1.0, rel=1e-12)


def test_fd_equal_covariances_is_mean_distance():
    rng = np.random.default_rng(1)
    c = random_spd(12, rng)
    mu1, mu2 = rng.standard_normal(12), rng.standard_normal(12)
    assert frechet_distance(mu1, c, mu2, c) == pytest.approx(np.sum((mu1 - mu2) ** 2), rel=1e-8)


@pytest.mark.parametrize("d", [2, 16, 64])
def test_fd_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    c1, c2 = random_spd(d, rng), random_spd(d, rng)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    ours = frechet_distance(torch.tensor(mu1, dtype=torch.float32), torch.tensor(c1), mu2, c2)
    ours64 = frechet_distance(mu1, c1, mu2, c2)
    assert ours64 == pytest.approx(scipy_fd(mu1, c1, mu2, c2), rel=1e-6)
    assert ours == pytest.approx(ours64, rel=1e-5)  # float32 input only rounds the mean


def test_fd_symmetric_and_zero_for_identical():
    rng = np.random.default_rng(2)
    c1, c2 = random_spd(10, rng), random_spd(10, rng)
    mu1, mu2 = rng.standard_normal(10), rng.standard_normal(10)
    assert frechet_distance(mu1, c1, mu2, c2) == pytest.approx(frechet_distance(mu2, c2, mu1, c1), rel=1e-9)
    assert frechet_distance(mu1, c1, mu1, c1) == pytest.approx(0.0, abs=1e-9)
    # rank-deficient covariances (N < D features), as with few images: finite, >= 0, 0 for identical
    low = torch.randn(5, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    mu, cov = feature_stats(low)
    assert 0 <= frechet_distance(mu, cov, mu, cov) < 1e-6
    assert math.isfinite(frechet_distance(mu, cov, mu2, c2))
    with pytest.raises(ValueError, match="expected mu"):
        frechet_distance(mu1, c1, mu2[:5], c2[:5, :5])


def test_feature_stats_matches_numpy():
    f = torch.randn(50, 6, generator=torch.Generator().manual_seed(3))
    mu, cov = feature_stats(f)
    assert mu.dtype == cov.dtype == torch.float64
    np.testing.assert_allclose(cov.numpy(), np.cov(f.double().numpy(), rowvar=False), rtol=1e-10)
    np.testing.assert_allclose(mu.numpy(), f.double().numpy().mean(0), rtol=1e-10)


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 32, 32), (1, 64, 64)])
def test_random_features_fixed_by_seed(shape):
    x = torch.rand(4, *shape, generator=torch.Generator().manual_seed(0))
    f0, f0b, f1 = RandomFeatures(shape[0], shape[-1]), RandomFeatures(shape[0], shape[-1]), \
        RandomFeatures(shape[0], shape[-1], seed=1)
    out = f0(x)
    assert out.shape == (4, 64) and torch.isfinite(out).all()
    assert torch.equal(out, f0b(x))                      # same seed, new instance: identical
    assert not torch.allclose(out, f1(x))                # another seed: another function
    assert RandomFeatures(shape[0], shape[-1], n_features=32)(x).shape == (4, 32)
    assert not any(p.requires_grad for p in f0.parameters()) and not f0.training
    with pytest.raises(ValueError, match="expected images"):
        f0(torch.rand(2, shape[0] + 1, shape[1], shape[2]))


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_sample_quality", SCRIPT)
    sys.path.insert(0, str(BENCH))
    try:
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(BENCH))
    return mod


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return bench_module().gaussian_blur(x, sigma)


def halves(x: torch.Tensor, seed: int = 0):
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    return x[perm[: len(x) // 2]], x[perm[len(x) // 2:]]


def noisy(x: torch.Tensor, std: float = 0.2, seed: int = 0) -> torch.Tensor:
    return (x + std * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))).clamp(0, 1)


def test_corrupted_digits_score_far_above_the_floor():
    test = prepared(lambda: Digits("test"), "digits").images[:400]
    train = Digits("train").images[:200]
    a, b = halves(test)                                   # 200 vs 200
    floor = sample_fd(a, b)
    # Measured (RandomFeatures seed 0, permutation seed 0): noise 0.2 -> 9.6x the floor, blur sigma 3 -> 112x,
    # training images vs held-out -> ~1x (over 5 permutations: noise 9.6-11.3x, blur 108-123x).
    assert sample_fd(noisy(a), b) > 5 * floor
    assert sample_fd(blur(a, 3.0), b) > 30 * floor
    assert sample_fd(train, b) < 3 * floor


def test_corrupted_ellipses_score_far_above_the_floor():
    x = torch.stack([Ellipses("test", image_size=64, length=400)[i] for i in range(400)])
    a, b = halves(x)
    floor = sample_fd(a, b)
    # Measured: noise 0.2 -> 82x the floor, blur sigma 3 -> 38x (21-118x and 14-64x over 5 permutations).
    assert sample_fd(noisy(a), b) > 10 * floor
    assert sample_fd(blur(a, 3.0), b) > 5 * floor


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = ScoreModel(UNet(UNetConfig(in_channels=1, image_size=32, base_channels=8, channel_mult=(1, 2),
                                       attn_resolutions=())), VESDE(0.01, 25.0))
    path = tmp_path_factory.mktemp("ckpt") / "ckpt"
    save_score_model(model, path, data={"dataset": "digits", "split": "train", "range": [0, 1]},
                     training={"step": 7, "images_seen": 224, "seconds": 36.0, "final_loss": 0.5})
    return path


def run_script(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--quick", "--no-progress"],
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize("dataset", ["auto", "ellipses"])
def test_script_quick_end_to_end(tiny_checkpoint, tmp_path, dataset):
    if dataset == "auto":
        prepared(lambda: Digits("test"), "digits")
    r = run_script("--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path), "--dataset", dataset,
                   "--save-samples", str(tmp_path / "s.npy"))
    assert r.returncode == 0, r.stderr[-3000:]
    saved = np.load(tmp_path / "s.npy")
    assert saved.shape == (16, 1, 32, 32) and saved.dtype == np.float32 and 0 <= saved.min() and saved.max() <= 1
    assert "fd_samples" in r.stdout                       # the table is printed
    for f in ("samples_ckpt.png", "sample_quality_ckpt.json", "sample_quality_ckpt.md"):
        assert (tmp_path / f).stat().st_size > 0, f
    data = json.loads((tmp_path / "sample_quality_ckpt.json").read_text())
    assert "commit" in data["provenance"] and "command" in data["provenance"]
    rec = data["records"][0]
    assert set(KEYS) <= set(rec), set(KEYS) - set(rec)
    assert all(isinstance(rec[k], (int, float)) and math.isfinite(rec[k]) for k in FINITE), rec
    assert rec["dataset"] == ("digits" if dataset == "auto" else "ellipses")
    assert rec["n_samples"] == 16 and rec["n_heldout"] == 16 and rec["steps"] == 10
    assert rec["predictor"] == "ancestral" and rec["corrector"] == "langevin"
    assert rec["step"] == 7 and rec["images_seen"] == 224
    assert rec["fd_floor"] >= 0
    # the untrained network's zero-initialised output layer makes its score exactly that of N(0, 0.5^2 I): the
    # record's statistics are those of the saved samples, and they follow that law (clamped at 0: half the pixels;
    # in [-0.25, 1.25] before clamping: Phi(2.5) - Phi(-0.5) = 0.685; measured at these 10 steps: 0.509 and
    # 0.713, the few steps narrowing the law a little)
    assert rec["mean_samples"] == pytest.approx(float(saved.mean()), abs=1e-6)
    assert abs(float((saved == 0).mean()) - 0.5) < 0.03
    assert abs(rec["in_range_fraction"] - 0.685) < 0.05
    # an untrained network's samples are nothing like digits / phantoms: far above the real-vs-real floor
    assert rec["fd_samples"] > 2 * rec["fd_floor"]
    assert rec["fd_samples_train"] > 2 * rec["fd_floor_train"]

    table = subprocess.run([sys.executable, str(BENCH / "checkpoints_table.py"), "--results", str(tmp_path)],
                           capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr[-3000:]
    md = (tmp_path / "checkpoints.md").read_text()
    assert "| ckpt | 7 | 224 |" in md and "| ancestral, langevin, 10 steps |" in md


def test_script_keeps_one_record_per_sampler(tiny_checkpoint, tmp_path):
    """A run replaces the record of its own sampler and keeps the other samplers' records of the same step."""
    common = ("--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path), "--dataset", "ellipses")
    for predictor in ("ancestral", "reverse_diffusion", "ancestral"):
        r = run_script(*common, "--predictor", predictor, "--corrector", "none")
        assert r.returncode == 0, r.stderr[-3000:]
    records = json.loads((tmp_path / "sample_quality_ckpt.json").read_text())["records"]
    assert [r["predictor"] for r in records] == ["reverse_diffusion", "ancestral"]
    # one grid per sampler: the default predictor's under the plain name
    grids = {p.name for p in tmp_path.glob("samples_*.png")}
    assert grids == {"samples_ckpt.png", "samples_ckpt_reverse_diffusion.png"}
    assert all("command" in r and "date" in r for r in records)
    table = subprocess.run([sys.executable, str(BENCH / "checkpoints_table.py"), "--results", str(tmp_path)],
                           capture_output=True, text=True, timeout=60)
    assert table.returncode == 0, table.stderr[-3000:]
    md = (tmp_path / "checkpoints.md").read_text()
    assert "| reverse_diffusion, none, 10 steps |" in md and "| ancestral, none, 10 steps |" in md


def test_training_reference_is_the_augmented_training_distribution():
    """trained_on draws training images through the data set's augment: seeded, not the raw images, and
    for brain (held-out = the mid-brain slabs) far closer to a second draw than to the held-out slices."""
    from sgm_inverse.data import BrainSlices
    raw = prepared(lambda: BrainSlices("train"), "brain").images
    heldout = torch.cat([BrainSlices(s).images for s in ("val", "test")])
    trained_on, train_set = bench_module().trained_on, BrainSlices("train")
    a, a2, b = trained_on(train_set, 128, 1), trained_on(train_set, 128, 1), trained_on(train_set, 128, 2)
    assert a.shape == (128, 1, 64, 64) and torch.equal(a, a2) and not torch.equal(a, b)
    assert 0 <= a.min() and a.max() <= 1
    # augmented: no draw is one of the 162 raw slices (nearest raw slice is > 1e-3 away in mean abs difference)
    nearest = torch.cdist(a.flatten(1), raw.flatten(1), p=1).min(1).values / a[0].numel()
    assert (nearest > 1e-3).all()
    # Measured: draw vs draw 0.0026, draw vs held-out 0.25: the splits differ by construction, so an FD to
    # held-out slices alone would mix sample quality with that shift.
    floor = sample_fd(a, b)
    assert sample_fd(a, heldout) > 20 * floor
    assert sample_fd(a, raw) < sample_fd(a, heldout) / 5


def test_grid_sections_layout(tmp_path):
    """Sections stack top to bottom at the images' pixel size: a black section and a white one land where
    their labels say, with the white gaps of the grid between images."""
    import matplotlib.image

    from sgm_inverse.plotting import grid_canvas, save_grid_sections
    black, white = torch.zeros(16, 1, 20, 20), torch.ones(8, 1, 20, 20)
    canvas = grid_canvas(black, nrow=8)
    assert canvas.shape == (2 * 22 + 2, 8 * 22 + 2, 1)
    assert canvas[2:22, 2:22].max() == 0 and canvas[0].min() == 1 and canvas[22:24, 2:22].min() == 1
    path = tmp_path / "g.png"
    save_grid_sections({"black": black, "white": white}, path, nrow=8, scale=2)
    img = matplotlib.image.imread(str(path))[..., :3].mean(-1)
    assert img.shape == (4 + 20 + 2 * 46 + 20 + 2 * 24, 360)        # label strips + scaled canvases; min width 360
    black_rows = np.flatnonzero((img[:, 4:40] < 0.05).all(1))        # rows crossing the first black image
    assert len(black_rows) >= 2 * 20 - 2 and black_rows.min() > 20   # below the first label strip
    assert img[black_rows.max() + 30:, 4:40].min() > 0.9             # the section after it is white


def test_was_augmented_reads_the_record_then_the_command():
    was_augmented = bench_module().was_augmented
    assert was_augmented({"data": {"augment": "digit_jitter"}})
    assert not was_augmented({"data": {"augment": None}, "command": "sgm-inverse train digits"})
    assert not was_augmented({"data": {"augment": "no_augment"}})
    # checkpoints from before the record: the command says it
    assert was_augmented({"data": {}, "command": "sgm-inverse train digits32 --steps 9"})
    assert not was_augmented({"data": {}, "command": "sgm-inverse train digits --no-augment --init-from digits32"})


def test_data_shift_script_on_digits(tmp_path):
    """benchmarks/data_shift.py: digits' bilinear jitter moves the training digits away from the test digits
    (measured 0.052 against 0.0046 raw), bicubic resampling much less (0.019)."""
    prepared(lambda: Digits("test"), "digits")
    r = subprocess.run([sys.executable, str(BENCH / "data_shift.py"), "--datasets", "digits", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    rec, = json.loads((tmp_path / "data_shift.json").read_text())["records"]
    assert rec["augment"] == "digit_jitter" and rec["n"] == 500
    assert rec["raw_train_vs_heldout"] < rec["heldout_floor"]
    assert rec["augmented_vs_heldout"] > 4 * rec["raw_train_vs_heldout"]
    assert rec["bicubic_vs_heldout"] < rec["augmented_vs_heldout"] / 2
    assert rec["shift_bicubic_vs_heldout"] < rec["shift_bilinear_vs_heldout"] / 2

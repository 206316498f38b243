"""The command line for a user's own data: baselines (fbp, zero-filled, fista-tv) on a file, the checks of a
measured sinogram / k-space (sgm_inverse.io), the tuned-weight table, and `train FOLDER` on FOLDER/train."""
from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from forward_models import SparseViewCT, UndersampledMRI
from sgm_inverse.baselines import fbp, fista_tv, power_method
from sgm_inverse.baselines.fista_tv import LIPSCHITZ_MARGIN
from sgm_inverse.baselines.tuned import FBP_FILTER, FISTA_LAM_OVER_L, tuned_fista_c
from sgm_inverse.cli import main
from sgm_inverse.io import ct_image_size, kspace_problem, sinogram_problem
from sgm_inverse.metrics import psnr

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def run(capsys):
    """`sgm-inverse ARGS` in this process (test_cli.py covers the installed entry point in subprocesses)."""
    def call(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)
    return call


def one_line_error(r, message):
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and message in lines[0] and "Traceback" not in r.stderr, r.stderr


def phantom(n=32):
    """Two rectangles on a faint texture (a texture-free symmetric phantom has k-space columns that are exactly
    0, which "zeros = not acquired" cannot tell from missing lines; measured data never has them)."""
    x = 0.05 * torch.rand(1, 1, n, n, generator=torch.Generator().manual_seed(n))
    x[..., n // 4: 3 * n // 4, n // 3: 2 * n // 3 + 1] = 0.7
    x[..., 3 * n // 8: n // 2, 3 * n // 8: n // 2] = 1.0
    return x


# ----------------------------------------------------------------------------- checks of measured data
@pytest.mark.parametrize("geometry,views,noise", [("parallel", 4, 0.0), ("parallel", 7, 0.0), ("parallel", 8, 0.0),
                                                  ("parallel", 23, 0.05), ("fan", 8, 0.0), ("fan", 9, 0.05)])
@pytest.mark.parametrize("n", [16, 33])
def test_valid_sinograms_pass_and_give_their_geometry(geometry, views, noise, n):
    """What SparseViewCT simulates is accepted (noise included) and the image size is read off the detectors."""
    rng = math.pi if geometry == "parallel" else 2 * math.pi
    op = SparseViewCT(n, views, geometry=geometry, angular_range=rng, noise_std=noise)
    y = op.simulate(phantom(n), generator=torch.Generator().manual_seed(0))[0, 0].numpy()
    assert ct_image_size(y.shape[1], geometry) == n
    fm, yy = sinogram_problem(y, geometry=geometry, noise_std=noise)
    assert fm.image_shape == (1, n, n) and fm.geometry == op.geometry and yy.shape == (1, 1, views, op.n_detectors)
    sinogram_problem(y, geometry=geometry, image_size=n, noise_std=noise)


def _sino(n=32, views=8, **kw):
    return SparseViewCT(n, views, **kw)(phantom(n))[0, 0].numpy()


@pytest.mark.parametrize("make,message", [
    (lambda: _sino().T, "looks transposed"),
    (lambda: _sino()[:, :-1], "45 detectors fit no N x N image"),
    (lambda: 100 * _sino(), "more than the 1024 of a 32x32 image"),
    (lambda: _sino() - 5.0, ">= 0"),
    (lambda: _sino(views=8, angular_range=2 * math.pi), "[0, 2 pi)"),
    (lambda: np.concatenate([_sino(views=4), 0.5 * _sino(views=4)]), "view sums differ by 67%"),
    (lambda: _sino().astype(np.complex64), "must be a real (n_views, n_detectors)"),
    (lambda: np.where(np.arange(46) == 3, np.nan, _sino()), "NaN or Inf"),
])
def test_bad_sinograms_are_refused_with_what_was_expected(make, message):
    with pytest.raises(ValueError) as err:
        sinogram_problem(make())
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_sinogram_of_another_size_than_asked():
    with pytest.raises(ValueError, match=r"46 detectors; a 16x16 parallel-beam scan expects \(8, 23\)"):
        sinogram_problem(_sino(), image_size=16)


@pytest.mark.parametrize("mask_type,accel,noise", [("equispaced", 4, 0.0), ("random", 3, 0.0),
                                                   ("gaussian1d", 4, 0.02), ("equispaced", 2, 0.05)])
def test_valid_kspace_passes_and_gives_its_mask(mask_type, accel, noise):
    op = UndersampledMRI(32, acceleration=accel, mask_type=mask_type, noise_std=noise)
    k = op.simulate(phantom(32).double(), generator=torch.Generator().manual_seed(0))[0, 0].numpy()
    fm, y = kspace_problem(k, noise_std=noise)
    assert torch.equal(fm.mask, op.mask) and y.dtype == torch.complex64 and fm.image_shape == (1, 32, 32)
    # a 2-D (non-column) sampling pattern is taken as it is
    pattern = (np.random.default_rng(0).random((32, 32)) < 0.4) | (np.abs(np.arange(32) - 16) < 3)[None, :]
    fm2, _ = kspace_problem(k * pattern * (op.mask[0].numpy() > 0) + (1e-3 * pattern) * (op.mask[0].numpy() == 0))
    assert fm2.mask.shape == (1, 32, 32) and not bool((fm2.mask[0] == fm2.mask[0, :1]).all())


def _k(**kw):
    return UndersampledMRI(32, acceleration=4, **kw)(phantom(32).double())[0, 0].numpy()


@pytest.mark.parametrize("make,message", [
    (lambda: np.abs(_k()), "must be a complex (N, N) array"),
    (lambda: _k()[:, :30], "square"),
    (lambda: np.fft.fft2(phantom(32)[0, 0].numpy(), norm="ortho") * (np.arange(32) % 4 == 0), "apply np.fft.fftshift"),
    (lambda: 32 * _k(), "divide by 32"),
    (lambda: np.zeros((32, 32), np.complex64), "all zeros"),
])
def test_bad_kspace_is_refused_with_what_was_expected(make, message):
    with pytest.raises(ValueError) as err:
        kspace_problem(make())
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
    with pytest.raises(ValueError, match=r"complex \(16, 16\)"):
        kspace_problem(_k(), image_size=16)


# ----------------------------------------------------------------------------- the tuned table
def _records(path):
    data = json.loads((ROOT / "benchmarks" / "results" / path).read_text())
    return [r for r in data["records"] if r["dataset"] == "brain" and r["method"] in ("fista_tv", "fbp")]


@pytest.mark.skipif(not (ROOT / "benchmarks" / "results").is_dir(), reason="needs the source checkout")
def test_tuned_table_is_what_the_benchmarks_committed():
    ct = FISTA_LAM_OVER_L["ct"]
    for path in ("ct_sparse_view.json", "archive/ct_fan/ct_sparse_view.json",
                 "archive/ct_noisy/ct_sparse_view.json"):
        for r in _records(path):
            key = (r["geometry"], r["views"], r["noise_std"] > 0)
            if r["method"] == "fbp":
                assert FBP_FILTER[key[:2]] == r["filter"], (path, key)
            elif key == ("parallel", 23, False):   # the benchmark's best is its grid's lower edge; the demo's grid
                assert r["lam_at_grid_edge"] and ct[key] < r["lam_over_L"]   # is finer there: 0.003 at this L
                meta = json.loads((ROOT / "sgm_inverse" / "weights" / "demo_brain_slice.json").read_text())
                assert ct[key] == pytest.approx(meta["fista_lambda"] / r["lipschitz"], rel=1e-9)
            else:
                assert ct[key] == r["lam_over_L"], (path, key)
    mri = FISTA_LAM_OVER_L["mri"]
    for path in ("mri_undersampled.json", "archive/mri_noisy/mri_undersampled.json"):
        for r in _records(path):
            assert mri[(r["mask"], r["acceleration"], r["noise_std"] > 0)] == r["lam_over_L"], (path, r["setting"])
    assert tuned_fista_c("ct", views=5)[0] == ct[("parallel", 6, False)]          # nearest on a log scale
    assert tuned_fista_c("mri", acceleration=5, mask_type="random")[0] == mri[("equispaced", 4.0, False)]


# ----------------------------------------------------------------------------- the command line
def test_baselines_on_measured_files(tmp_path, run):
    """fbp / zero-filled are the library's reconstructions of the file (the latter = |centred IFFT| by NumPy);
    fista-tv with --lam equals fista_tv() with that weight, and beats fbp / zero-filled on the phantom."""
    x = phantom(32)
    ct = SparseViewCT(32, 8)
    sino = ct(x)
    np.save(tmp_path / "sino.npy", sino[0, 0].numpy())
    mri = UndersampledMRI(32, acceleration=4)
    k = mri(x.double())[0, 0].numpy()
    np.save(tmp_path / "k.npy", k)
    out = {}
    for task, src, method, extra in [("ct", "sino", "fbp", []), ("ct", "sino", "fista-tv", ["--lam", "0.5"]),
                                     ("mri", "k", "zero-filled", []), ("mri", "k", "fista-tv", [])]:
        path = tmp_path / f"{task}_{method}.npy"
        r = run("solve", task, "--measurement", str(tmp_path / f"{src}.npy"), "--method", method, "--iterations", "20",
                "-o", str(path), "--quiet", *extra)
        assert r.returncode == 0, r.stderr
        out[task, method] = torch.from_numpy(np.load(path))
        assert out[task, method].shape == (1, 1, 32, 32)
        if method == "fista-tv" and not extra:
            assert "validation-tuned for equispaced 4x" in r.stdout, r.stdout
    torch.testing.assert_close(out["ct", "fbp"], fbp(ct, sino, filter="hann").clamp(0, 1))
    ref = np.abs(np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(k), norm="ortho")))
    np.testing.assert_allclose(out["mri", "zero-filled"][0, 0].numpy(), np.clip(ref, 0, 1), atol=1e-6)
    lipschitz = LIPSCHITZ_MARGIN * power_method(ct, (1, 32, 32))
    torch.testing.assert_close(out["ct", "fista-tv"], fista_tv(ct, sino, 0.5, n_iter=20, lipschitz=lipschitz),
                               rtol=1e-4, atol=1e-4)
    score = {key: float(psnr(v, x)[0]) for key, v in out.items()}
    assert score["ct", "fista-tv"] > score["ct", "fbp"] + 3 and score["mri", "fista-tv"] > score["mri", "zero-filled"]


def test_baseline_on_an_image_and_one_line_errors(tmp_path, run):
    np.save(tmp_path / "img.npy", phantom(16)[0, 0].numpy())
    r = run("solve", "ct", str(tmp_path / "img.npy"), "--views", "6", "--method", "fista-tv", "--iterations", "10",
            "-o", str(tmp_path / "ct.png"), "--quiet")
    assert r.returncode == 0 and "validation-tuned for parallel 6 views" in r.stdout, r.stderr
    assert (tmp_path / "ct.png").stat().st_size > 100
    one_line_error(run("solve", "mri", str(tmp_path / "img.npy"), "--method", "fbp", "-o", "x.npy"),
                   "--method fbp is a baseline for ct, not mri")
    np.save(tmp_path / "bright.npy", 2 * phantom(16)[0, 0].numpy())
    one_line_error(run("solve", "ct", str(tmp_path / "bright.npy"), "--method", "fbp", "-o", "x.npy"),
                   "outside [0, 1]")
    np.save(tmp_path / "uncentred.npy", np.fft.fft2(phantom(16)[0, 0].numpy(), norm="ortho"))
    one_line_error(run("solve", "mri", "--measurement", str(tmp_path / "uncentred.npy"), "--method", "zero-filled",
                       "-o", "x.npy"), "apply np.fft.fftshift")
    np.save(tmp_path / "wide.npy", SparseViewCT(16, 8, angular_range=2 * math.pi)(phantom(16))[0, 0].numpy())
    one_line_error(run("solve", "ct", "--measurement", str(tmp_path / "wide.npy"), "--method", "fbp", "-o", "x.npy"),
                   "[0, 2 pi)")


def test_train_folder_trains_on_its_train_split(tmp_path, run):
    """FOLDER with train/ (3 images) and test/ (2 images): training sees the 3 (it used to take test/)."""
    for split, count in (("train", 3), ("test", 2)):
        (tmp_path / "data" / split).mkdir(parents=True)
        for i in range(count):
            image = np.random.default_rng(i).random((16, 16)).astype(np.float32)
            np.save(tmp_path / "data" / split / f"{i}.npy", image)
    r = run("train", str(tmp_path / "data"), "--workdir", str(tmp_path / "run"), "--image-size", "16",
            "--base-channels", "8", "--batch-size", "2", "--steps", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    assert ": 3 images (1, 16, 16)" in r.stdout, r.stdout

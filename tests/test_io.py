"""Image files through `sgm_inverse.io`: what `write_image` writes, `read_image` reads back (NPY exactly, PNG to
8 bits, NIfTI with its affine, a derived DICOM of pydicom's CT_small.dcm in the source's Hounsfield units)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from sgm_inverse.io import check_output, read_image, std_path, write_image


def image(c=1, h=16, w=20, seed=0):
    return torch.rand(1, c, h, w, generator=torch.Generator().manual_seed(seed))


def test_npy_round_trip_is_exact(tmp_path):
    x = image()
    write_image(x, tmp_path / "x.npy")
    y, affine = read_image(tmp_path / "x.npy")
    assert affine is None and y.shape == (1, 1, 16, 20) and y.dtype == torch.float32
    assert torch.equal(y, x)


@pytest.mark.parametrize("channels", [1, 3])
def test_png_round_trip_within_one_grey_level(tmp_path, channels):
    x = image(channels)
    x[0, :, 0, 0], x[0, :, 0, 1] = 0.0, 1.0
    write_image(x, tmp_path / "x.png")
    y, affine = read_image(tmp_path / "x.png")
    assert affine is None and y.shape == x.shape             # the image itself: no grid border, grey stays grey
    assert float((y - x).abs().max()) <= 0.5 / 255 + 1e-6    # 8-bit rounding
    assert float(y[0, 0, 0, 0]) == 0.0 and float(y[0, 0, 0, 1]) == 1.0


def test_nifti_round_trip_keeps_values_and_affine(tmp_path):
    import nibabel as nib
    x = image(h=16, w=16)
    x[0, 0, :2] = 1.0   # 32 of 256 pixels at 1: the 99.5th percentile MR scaling of read_image is then the identity
    affine = np.array([[2.0, 0, 0, -10.0], [0, 2.0, 0, 5.0], [0, 0, 3.0, 7.0], [0, 0, 0, 1]])
    write_image(x, tmp_path / "x.nii.gz", affine=affine)
    img = nib.load(tmp_path / "x.nii.gz")
    np.testing.assert_array_equal(img.affine, affine)
    np.testing.assert_array_equal(img.get_fdata()[..., 0], x[0, 0].numpy())     # stored (H, W, C) in [0, 1]
    y, back = read_image(tmp_path / "x.nii.gz")
    np.testing.assert_array_equal(back, affine)
    torch.testing.assert_close(y, x, rtol=0, atol=1e-6)


def test_nifti_slice_moves_the_origin_and_bad_slices_fail_in_one_line(tmp_path):
    import nibabel as nib
    vol = np.zeros((8, 8, 10), np.float32)
    vol[2:6, 2:6, :] = np.arange(1, 11, dtype=np.float32)       # slice k holds k + 1
    nib.save(nib.Nifti1Image(vol, np.diag([2.0, 2.0, 3.0, 1.0])), tmp_path / "vol.nii")
    x, affine = read_image(tmp_path / "vol.nii", slice=4)
    np.testing.assert_allclose(affine[:3, 3], [0.0, 0.0, 12.0])  # 4 slices x 3 mm
    assert float(x.max()) == 1.0 and float(x[0, 0, 0, 0]) == 0.0
    _, middle = read_image(tmp_path / "vol.nii")
    np.testing.assert_allclose(middle[:3, 3], [0.0, 0.0, 15.0])   # default: slice 10 // 2 = 5
    with pytest.raises(ValueError) as err:
        read_image(tmp_path / "vol.nii", slice=10)
    assert "0 ... 9" in str(err.value) and "\n" not in str(err.value)


def test_dicom_derived_from_ct_small_keeps_hounsfield_units_and_identifiers(tmp_path):
    import pydicom
    from pydicom.data import get_testdata_file

    from sgm_inverse.data.dicom import read_dicom
    source = get_testdata_file("CT_small.dcm")
    hu, info = read_dicom(source)
    x, affine = read_image(source)                # CT: HU window (-1000, 1000) -> [0, 1]
    assert affine is None and x.shape == (1, 1, *hu.shape)
    write_image(x, tmp_path / "out.dcm", source=source)
    back, back_info = read_dicom(tmp_path / "out.dcm")
    inside = (hu > -1000) & (hu < 1000)           # values the window clips cannot come back
    assert inside.mean() > 0.5
    assert float(np.abs(back - hu)[inside].max()) <= 1.0
    assert float(back[hu >= 1000].min()) >= 999.0 and (back_info["slope"], back_info["intercept"]) == \
        (info["slope"], info["intercept"])
    src, out = pydicom.dcmread(source), pydicom.dcmread(tmp_path / "out.dcm")
    assert out.PatientID == src.PatientID and out.StudyInstanceUID == src.StudyInstanceUID
    assert out.SeriesInstanceUID != src.SeriesInstanceUID and "DERIVED" in out.ImageType
    # a reconstruction at another size goes back to the source's: a constant 0.5 is 0 HU everywhere
    write_image(torch.full((1, 1, 32, 32), 0.5), tmp_path / "half.dcm", source=source)
    half, _ = read_dicom(tmp_path / "half.dcm")
    assert half.shape == hu.shape and float(np.abs(half).max()) <= 1.0


def test_bad_outputs_fail_in_one_line(tmp_path):
    with pytest.raises(ValueError, match=r"expected a \.png or \.npy file name"):
        check_output("x.jpg")
    with pytest.raises(ValueError, match="needs a DICOM source"):
        write_image(image(), tmp_path / "x.dcm")
    with pytest.raises(ValueError, match=r"expected a \.png, \.npy, \.dcm, \.nii or \.nii\.gz"):
        write_image(image(), tmp_path / "x.tif")
    assert [std_path(p) for p in ("r.png", "r.nii.gz", "r.dcm")] == ["r_std.png", "r_std.nii.gz", "r_std.npy"]

"""Files in and out: images (PNG, NPY, DICOM, NIfTI) and measured data (a CT sinogram or MRI k-space .npy).

Images are (1, C, H, W) float32 tensors in [0, 1] (`read_image`, `write_image`); a .dcm result is a derived
DICOM of its source (identifiers and HU scaling kept), a NIfTI result keeps the input's affine.

Measured data (`load_measurement`) are checked against the library's conventions, the ones a measurement must
follow (what `forward_models.SparseViewCT` / `UndersampledMRI` simulate):
  CT sinogram  real (n_views, n_detectors): line integrals of an image in [0, 1] in pixel units, detectors
               1 pixel apart at the rotation centre, n_detectors = that of an N x N image
               (`forward_models.ct.default_n_detectors`: ceil(sqrt(2) N) for parallel beams), views
               equispaced over [0, pi) (parallel, astra 'parallel' geometry) or [0, 2 pi) (fan).
  MRI k-space  complex (N, N): the centred orthonormal 2-D FFT fftshift(fft2(ifftshift(x), norm="ortho"))
               of an image x in [0, 1], zeros where nothing was acquired.
Each check fails with one line that says what was expected (ValueError).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

__all__ = ["read_image", "write_image", "write_images", "write_dicom", "check_output", "is_nifti", "std_path",
           "IMAGE_FORMATS", "load_array", "load_measurement", "kspace_summary", "sinogram_problem", "kspace_problem",
           "ct_image_size"]

_MAX_SIZE = 4096


def load_array(path) -> np.ndarray:
    """A .npy array (never unpickled) with leading singleton dims dropped: (1, 1, V, D) -> (V, D)."""
    path = Path(path)
    try:
        a = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001 -- any reading failure is one line
        raise ValueError(f"{path}: cannot read a .npy measurement ({type(err).__name__})") from err
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating)
            or np.issubdtype(a.dtype, np.integer)):
        raise ValueError(f"{path}: a measurement must be a numeric array; got dtype {a.dtype}")
    return a


def ct_image_size(n_detectors: int, geometry: str = "parallel") -> int | None:
    """The N whose N x N image the default detector row of `geometry` covers with n_detectors, or None."""
    from forward_models.ct import default_n_detectors
    guess = int(n_detectors / (math.sqrt(2.0) if geometry == "parallel" else 1.5))
    for n in range(max(2, guess - 3), min(_MAX_SIZE, guess + 4)):
        if default_n_detectors(n, geometry) == n_detectors:
            return n
    return None


def sinogram_problem(sino, *, geometry: str = "parallel", image_size: int | None = None, noise_std: float = 0.0,
                     name: str = "sinogram"):
    """(SparseViewCT, y (1, 1, V, D) float32) for a measured sinogram (V, D); image_size None: from D."""
    from forward_models import SparseViewCT
    from forward_models.ct import default_n_detectors
    a = np.asarray(sino)
    if np.iscomplexobj(a) or a.ndim != 2:
        raise ValueError(f"{name}: a CT sinogram must be a real (n_views, n_detectors) array, got "
                         f"{a.dtype} {a.shape}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: the sinogram contains NaN or Inf")
    views, det = a.shape

    def view_spread(b):   # every view sums to the image's mass (exactly for parallel beams, ~1 % for fan beams)
        sums = b.sum(1)
        return float(sums.max() - sums.min()) / max(abs(float(np.median(sums))), 1e-12)

    tolerance = (0.05 if geometry == "parallel" else 0.1) + 10.0 * noise_std * math.sqrt(det) / max(
        abs(float(np.median(a.sum(1)))), 1e-12)
    if view_spread(a) > tolerance and view_spread(a.T) <= tolerance and ct_image_size(views, geometry):
        raise ValueError(f"{name}: shape {a.shape} looks transposed (its columns sum alike, its rows do not); "
                         f"expected (n_views, n_detectors)")
    if image_size is None:
        image_size = ct_image_size(det, geometry)
        if image_size is None:
            raise ValueError(f"{name}: {det} detectors fit no N x N image: {geometry} beams with 1-pixel detectors "
                             f"need {default_n_detectors(64, geometry)} for 64 x 64, "
                             f"{default_n_detectors(128, geometry)} for 128 x 128 (n_detectors(N), see "
                             f"forward_models.ct.default_n_detectors)")
    n = int(image_size)
    if det != default_n_detectors(n, geometry):
        raise ValueError(f"{name}: {det} detectors; a {n}x{n} {geometry}-beam scan expects "
                         f"({views}, {default_n_detectors(n, geometry)})")
    # intensities: line integrals of an image in [0, 1] are >= 0 and sum, per view, to the image's mass <= N^2
    top = float(np.abs(a).max())
    if a.min() < -(5.0 * noise_std + 1e-3 * top):
        raise ValueError(f"{name}: values down to {a.min():.3g}; line integrals of an image in [0, 1] are >= 0 "
                         f"(log-transformed and normalised data: -log(I / I0) in pixel units)")
    sums = a.sum(1)
    limit = (1.0 if geometry == "parallel" else 1.1) * n * n
    if float(sums.max()) > 1.02 * limit + 5.0 * noise_std * math.sqrt(det):
        raise ValueError(f"{name}: a view sums to {sums.max():.4g}, more than the {n * n} of a {n}x{n} image in "
                         f"[0, 1] with 1-pixel detectors (scale the sinogram to pixel units and [0, 1] intensities)")
    if view_spread(a) > tolerance:
        raise ValueError(f"{name}: the view sums differ by {100 * view_spread(a):.0f}%; every view of a sinogram "
                         f"sums to about the image's mass (rows must be views"
                         f"{'; fan-beam data: --geometry fan' if geometry == 'parallel' else ''})")
    if geometry == "parallel" and views >= 4 and views % 2 == 0:   # views over [0, 2 pi): view k + V/2 mirrors k
        half = views // 2
        ref = np.linalg.norm(a, axis=1).mean()
        mirror = np.linalg.norm(a[half:] - a[:half, ::-1]) / max(np.linalg.norm(a[:half]), 1e-12)
        varies = np.linalg.norm(a - a.mean(0), axis=1).max() / max(ref, 1e-12)
        if mirror < 0.01 + 5 * noise_std * math.sqrt(det) / max(ref, 1e-12) and varies > 0.05:
            raise ValueError(f"{name}: view k + {half} mirrors view k: the views span [0, 2 pi); parallel-beam "
                             f"views must be equispaced over [0, pi) (drop every second view)")
    fm = SparseViewCT(n, views, geometry=geometry, angular_range=math.pi if geometry == "parallel" else 2 * math.pi,
                      noise_std=noise_std)
    return fm, torch.from_numpy(a.astype(np.float32))[None, None]


def kspace_problem(k, *, image_size: int | None = None, noise_std: float = 0.0, name: str = "k-space"):
    """(UndersampledMRI, y (1, 1, N, N) complex64) for measured k-space (N, N), zeros where not acquired.
    The mask is the nonzero pattern: whole columns (phase-encoding lines) where it is column-wise, else 2-D."""
    from forward_models import UndersampledMRI
    a = np.asarray(k)
    if not np.iscomplexobj(a):
        raise ValueError(f"{name}: MRI k-space must be a complex (N, N) array (zeros on the lines not acquired), "
                         f"got real {a.dtype} {a.shape}")
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"{name}: MRI k-space must be a square complex (N, N) array, got {a.shape}")
    n = a.shape[0]
    if image_size is not None and n != int(image_size):
        raise ValueError(f"{name}: MRI k-space must be a complex ({image_size}, {image_size}) array "
                         f"(zeros on the lines not acquired), got {a.dtype} {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError(f"{name}: k-space contains NaN or Inf")
    acquired = np.abs(a) > 0
    if not acquired.any():
        raise ValueError(f"{name}: k-space is all zeros")
    mag = np.abs(a)
    c = n // 2   # the centre (k = 0) after fftshift; for an image >= 0 the largest |k|
    slack = 5.0 * noise_std
    peak = np.unravel_index(int(mag.argmax()), mag.shape)
    near_corner = min(peak[0], n - 1 - peak[0]) <= n // 8 and min(peak[1], n - 1 - peak[1]) <= n // 8
    if near_corner and mag[peak] > 2 * mag[c, c] + slack:
        raise ValueError(f"{name}: the largest value is at {tuple(int(v) for v in peak)}, near a corner, not at the "
                         f"centre ({c}, {c}); expected centred k-space fftshift(fft2(ifftshift(x), norm='ortho')) "
                         f"(apply np.fft.fftshift)")
    # orthonormal FFT of an image in [0, 1]: |k(0)| = sum(x) / N <= N and sum |k|^2 <= sum x^2 <= N^2
    energy = float((mag ** 2).sum())
    if mag[c, c] > n * 1.01 + slack or energy > (n * n) * 1.02 + (slack ** 2) * acquired.sum():
        raise ValueError(f"{name}: |k| at the centre is {mag[c, c]:.4g} and the energy {energy:.4g}, above the {n} "
                         f"and {n * n} an image in [0, 1] gives under the orthonormal FFT (norm='ortho'); a "
                         f"norm='backward' FFT is {n} times larger: divide by {n}")
    # phase-encoding lines: columns that are (nearly: a sampled value may be 0 by chance) all nonzero or all zero
    fraction = acquired.mean(axis=0)
    column_wise = bool(((fraction == 0) | (fraction > 0.5)).all())
    mask = (fraction > 0.5).astype(np.float32) if column_wise else acquired.astype(np.float32)
    fm = UndersampledMRI(n, mask=mask, noise_std=noise_std)
    return fm, torch.from_numpy(a.astype(np.complex64))[None, None] * fm.mask


def load_measurement(path, task: str, *, geometry: str = "parallel", image_size: int | None = None,
                     noise_std: float = 0.0):
    """(forward model, y) from a measured CT sinogram (task 'ct', (n_views, n_detectors)) or MRI k-space
    (task 'mri', complex (N, N)) .npy file, checked by `sinogram_problem` / `kspace_problem`. image_size: the side
    the reconstruction must have (a fixed-size prior's own); None: the size the measurement implies."""
    if task not in ("ct", "mri"):
        raise ValueError(f"measured data are supported for ct (sinogram) and mri (k-space), not {task!r}")
    a = load_array(path)
    if task == "ct":
        return sinogram_problem(a, geometry=geometry, image_size=image_size, noise_std=noise_std, name=str(path))
    return kspace_problem(a, image_size=image_size, noise_std=noise_std, name=str(path))


def kspace_summary(fm, y) -> str:
    """One line on what a k-space measurement holds: acquired phase-encoding lines (or samples) and R."""
    n, mask = y.shape[-1], fm.mask[0]
    if bool((mask == mask[:1]).all()):   # whole columns
        return (f"k-space: {int(mask[0].sum())} of {n} phase-encoding lines acquired "
                f"(R = {fm.acceleration_achieved:.2f})")
    return f"k-space: {int(mask.sum())} of {n * n} samples acquired (R = {fm.acceleration_achieved:.2f})"


# ---------------------------------------------------------------------------------------- image files
IMAGE_FORMATS = (".png", ".npy", ".dcm", ".nii", ".nii.gz")   # what `write_image` writes


def is_nifti(path) -> bool:
    """True for a .nii or .nii.gz file name."""
    return str(path).endswith((".nii", ".nii.gz"))


def check_output(path, formats=(".png", ".npy")) -> None:
    """ValueError unless the file name ends with one of `formats` (checked before any work is done)."""
    formats = tuple(formats)
    if not str(path).endswith(formats):
        listed = formats[0] if len(formats) == 1 else ", ".join(formats[:-1]) + " or " + formats[-1]
        raise ValueError(f"output {str(path)!r}: expected a {listed} file name")


def read_image(path, *, kind: str = "mr", slice: int | None = None):
    """One image file -> (x, affine): x a (1, C, H, W) float32 tensor in [0, 1]; affine the 4 x 4 NIfTI
    voxel-to-world matrix of the image (None for other formats).

    PNG / JPEG / TIFF are scaled by their bit depth, a .npy must hold values in [0, 1], DICOM maps by its
    Modality (CT: the HU window -1000 ... 1000; MR: its 99.5th percentile), as
    `sgm_inverse.data.folder.read_unit_image`. NIfTI (.nii, .nii.gz): a 2-D image, or slice `slice` along the
    last axis of a 3-D volume (default: the middle one), whose affine is the volume's with the origin moved to
    that slice; `kind` says how NIfTI intensities map to [0, 1]: 'mr' (99.5th percentile) or 'ct' (HU window).
    Unreadable files, bad shapes and slices outside the volume raise ValueError (one line).
    """
    from .data.dicom import dicom_to_unit
    from .data.folder import _to_chw, _unit_image, read_unit_image
    if str(path).endswith(".npy"):   # as read_unit_image, and (1, C, H, W) as write_image writes it
        try:
            a = np.load(path, allow_pickle=False)   # never unpickle
        except Exception as err:  # noqa: BLE001 -- any reading failure is one line
            raise ValueError(f"{path}: cannot read image ({type(err).__name__}: {err})") from err
        a = a[0] if a.ndim == 4 and a.shape[0] == 1 else a
        return torch.from_numpy(_unit_image(_to_chw(a, path), path))[None], None
    if not is_nifti(path):
        return torch.from_numpy(read_unit_image(path))[None], None
    if kind not in ("mr", "ct"):
        raise ValueError(f"kind must be 'mr' or 'ct' for a NIfTI image, got {kind!r}")
    import nibabel as nib
    try:
        img = nib.load(str(path))
        vol = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as err:  # noqa: BLE001 -- nibabel raises many types; any reading failure is one line
        raise ValueError(f"{path}: cannot read a NIfTI image ({type(err).__name__})") from err
    if vol.ndim == 3:
        k = vol.shape[2] // 2 if slice is None else slice
        if not 0 <= k < vol.shape[2]:
            raise ValueError(f"slice {k} is outside {path} (0 ... {vol.shape[2] - 1})")
        vol, affine = vol[:, :, k], img.affine.copy()
        affine[:3, 3] = img.affine[:3, :3] @ np.array([0.0, 0.0, k]) + img.affine[:3, 3]
    elif vol.ndim == 2:
        affine = img.affine
    else:
        raise ValueError(f"{path} has shape {vol.shape}; expected a 2-D image or a 3-D volume")
    unit = dicom_to_unit(vol, "CT" if kind == "ct" else "MR")
    return torch.from_numpy(unit)[None, None], affine


def write_image(x, path, *, source=None, affine=None, description: str = "sgm-inverse reconstruction") -> None:
    """Write one image x (1, C, H, W) in [0, 1] units by the extension of `path`:

      .npy          the array as given;
      .png          8-bit grey (C = 1) or RGB (C = 3), clipped to [0, 1] (quantised to 1/255);
      .nii, .nii.gz float32 (H, W, C) in [0, 1] units with `affine` (identity when None), e.g. `read_image`'s;
      .dcm          a derived DICOM of `source` (a DICOM file) in its size and units (`write_dicom`).
    """
    path = str(path)
    check_output(path, IMAGE_FORMATS)
    x = torch.as_tensor(x).detach().cpu()
    if path.endswith(".npy"):
        np.save(path, x.numpy())
        return
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"write_image writes one image (1, C, H, W), got {tuple(x.shape)}; use write_images "
                         f"for a batch")
    if path.endswith(".dcm"):
        write_dicom(x, path, source, description=description)
    elif is_nifti(path):
        import nibabel as nib
        data = x[0].permute(1, 2, 0).numpy().astype(np.float32)     # (H, W, C), in [0, 1] units
        nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else np.asarray(affine)), path)
    else:
        from PIL import Image
        if x.shape[1] not in (1, 3):
            raise ValueError(f"a PNG holds a grey or RGB image; got {x.shape[1]} channels")
        a = np.round(255.0 * x[0].float().clamp(0, 1).permute(1, 2, 0).numpy()).astype(np.uint8)
        Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a).save(path)


def write_images(x, path) -> None:
    """A batch x (B, C, H, W) in [0, 1]: the array as a .npy, or the images tiled into one .png grid."""
    from .plotting import save_grid
    check_output(path)
    if str(path).endswith(".npy"):
        np.save(path, torch.as_tensor(x).detach().cpu().numpy())
    else:
        save_grid(x, path)


def write_dicom(x, path, source, *, description: str = "sgm-inverse reconstruction") -> None:
    """x (1, 1, H, W) in [0, 1] as a derived DICOM of the DICOM file `source`: resampled (bilinear) to the
    source's size, mapped back to its units (HU for CT, its MR scale; `data.dicom.unit_to_dicom`) and written
    with its patient / study identifiers, geometry and stored-value scaling (`data.dicom.write_derived_dicom`)."""
    import torch.nn.functional as F
    from .data.dicom import is_dicom, read_dicom, unit_to_dicom, write_derived_dicom
    if source is None or not is_dicom(source):
        raise ValueError(f"a .dcm output needs a DICOM source image (its identifiers and HU scaling are kept); "
                         f"got {source}")
    original, info = read_dicom(source)
    if tuple(x.shape[-2:]) != tuple(original.shape):
        x = F.interpolate(torch.as_tensor(x).float().cpu(), size=original.shape, mode="bilinear", align_corners=False)
    values = unit_to_dicom(torch.as_tensor(x)[0, 0].cpu().numpy(), original, info["modality"])
    write_derived_dicom(source, values, path, description=description)


def std_path(path) -> str:
    """Where the uncertainty map of a result goes: recon.png -> recon_std.png; a .dcm result's goes to .npy
    (a [0, 1]-unit map, not HU)."""
    path = str(path)
    for ext in (".nii.gz", ".nii", ".png", ".npy", ".dcm"):
        if path.endswith(ext):
            return path[: -len(ext)] + "_std" + (".npy" if ext == ".dcm" else ext)
    return path + "_std.npy"

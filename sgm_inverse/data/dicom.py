"""Reading DICOM slices (CT in Hounsfield units, MR magnitude) and mapping them to [0, 1].

pydicom ships real examples, found offline with
``pydicom.data.get_testdata_file("CT_small.dcm")`` / ``("MR_small.dcm")``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

CT_WINDOW = (-1000.0, 1000.0)  # HU: air ... dense bone, the window of learned-CT papers


def is_dicom(path) -> bool:
    """True when the file has the DICOM preamble magic ``DICM`` at byte 128."""
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def read_dicom(path) -> tuple[np.ndarray, dict]:
    """One DICOM file -> (float32 array (H, W), or (F, H, W) / (H, W, 3) as stored; info).

    The modality LUT is applied, ``stored * RescaleSlope + RescaleIntercept`` (slope 1 and
    intercept 0 when absent), so CT comes out in HU (``info['hu'] = True``); MR comes out as
    its magnitude. ``info``: modality, hu, slope, intercept, pixel_spacing (mm, row/column
    or None), slice_thickness, patient_id, study_uid, series_uid, instance_number, frames, shape, path.
    Raises ValueError naming the path when the file is not a readable DICOM image.
    """
    import pydicom  # only needed here

    try:
        ds = pydicom.dcmread(path)
        stored = ds.pixel_array
    except Exception as err:  # pydicom raises many types (InvalidDicomError, missing plugins, ...)
        raise ValueError(f"{path}: not a readable DICOM image ({type(err).__name__}: {err})") from err
    modality = str(ds.get("Modality", "OT")).upper()
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    array = stored.astype(np.float64) * slope + intercept
    if modality == "MR":
        array = np.abs(array)
    spacing = ds.get("PixelSpacing")
    info = {"modality": modality, "hu": modality == "CT", "slope": slope, "intercept": intercept,
            "pixel_spacing": tuple(float(s) for s in spacing) if spacing else None,
            "slice_thickness": float(ds.SliceThickness) if ds.get("SliceThickness") else None,
            "patient_id": str(ds.get("PatientID", "")), "study_uid": str(ds.get("StudyInstanceUID", "")),
            "series_uid": str(ds.get("SeriesInstanceUID", "")),
            "instance_number": int(ds.InstanceNumber) if ds.get("InstanceNumber") is not None else None,
            "frames": int(ds.get("NumberOfFrames", 1) or 1), "shape": tuple(stored.shape),
            "path": str(Path(path))}
    return array.astype(np.float32), info


def dicom_to_unit(array: np.ndarray, modality: str, window=CT_WINDOW) -> np.ndarray:
    """Map a DICOM array to [0, 1] (float32, same shape).

    CT (HU): ``(clip(x, lo, hi) - lo) / (hi - lo)`` with ``window = (lo, hi)``.
    Anything else (MR magnitude): ``clip(x / p, 0, 1)``, p its 99.5th percentile (robust to
    a few bright voxels); an all-zero image stays zero.
    """
    array = np.asarray(array, dtype=np.float32)
    if str(modality).upper() == "CT":
        lo, hi = map(float, window)
        if not hi > lo:
            raise ValueError(f"CT window must be (low, high) with low < high, got {window}")
        return ((np.clip(array, lo, hi) - lo) / (hi - lo)).astype(np.float32)
    p = float(np.percentile(array, 99.5))
    if p <= 0:
        return np.zeros_like(array)
    return np.clip(array / p, 0, 1).astype(np.float32)


def unit_to_dicom(unit: np.ndarray, original: np.ndarray, modality: str, window=CT_WINDOW) -> np.ndarray:
    """Inverse of `dicom_to_unit` for writing results back: [0, 1] -> HU (CT) or the original MR scale.

    `original` is the array `read_dicom` returned for the input (MR needs its 99.5th percentile).
    """
    unit = np.asarray(unit, dtype=np.float64)
    if str(modality).upper() == "CT":
        lo, hi = map(float, window)
        return lo + unit * (hi - lo)
    return unit * float(np.percentile(np.asarray(original, dtype=np.float64), 99.5))


def write_derived_dicom(source_path, values: np.ndarray, out_path, description: str = "sgm-inverse") -> None:
    """Write `values` (H, W), in the source's units (HU for CT), as a derived DICOM image.

    Patient / study identifiers, geometry and the stored-value scaling (RescaleSlope / Intercept)
    are kept from the source; the series and instance get new UIDs and the image type says DERIVED.
    Values are rounded to the source's integer pixel type and clipped to its range.
    """
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = pydicom.dcmread(source_path)
    stored = ds.pixel_array
    if values.shape != stored.shape:
        raise ValueError(f"values have shape {values.shape}; the source image is {stored.shape}")
    slope = float(ds.get("RescaleSlope", 1.0) or 1.0)
    intercept = float(ds.get("RescaleIntercept", 0.0) or 0.0)
    info = np.iinfo(stored.dtype) if np.issubdtype(stored.dtype, np.integer) else None
    raw = np.round((np.asarray(values, np.float64) - intercept) / slope)
    if info is not None:
        raw = np.clip(raw, info.min, info.max)
    ds.PixelData = raw.astype(stored.dtype).tobytes()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian   # uncompressed, whatever the source was
    ds.SeriesInstanceUID = generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.ImageType = ["DERIVED", "SECONDARY"]
    ds.SeriesDescription = description[:64]
    ds.DerivationDescription = description[:1024]
    ds.save_as(str(out_path), enforce_file_format=True)

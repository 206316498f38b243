"""A folder (searched recursively) of PNG / JPEG / .npy / DICOM images as a data set.

Users bring their own data this way (LIDC / AAPM DICOM series, exported fastMRI slices,
photographs). DICOM files are recognised by extension (.dcm, .dicom, .ima) or, without
an extension, by the ``DICM`` magic; other files are ignored. Sorted paths give a fixed order.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ._files import check_split
from .augment import no_augment
from .dicom import CT_WINDOW, dicom_to_unit, is_dicom, read_dicom

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}
DICOM_EXT = {".dcm", ".dicom", ".ima"}
KINDS = ("auto", "ct", "mr", "image")
LUMA = np.array([0.299, 0.587, 0.114], np.float32)  # ITU-R BT.601, RGB -> grey


def _is_image_file(p: Path) -> bool:
    ext = p.suffix.lower()
    return not p.name.startswith(".") and (ext in IMAGE_EXT | DICOM_EXT | {".npy"}
                                           or (ext == "" and is_dicom(p)))


def _to_chw(a: np.ndarray, path) -> np.ndarray:
    """(H, W), (C, H, W) or (H, W, C) with C in {1, 3, 4 (alpha dropped)} -> (C, H, W)."""
    if a.ndim == 2:
        return a[None]
    if a.ndim == 3 and a.shape[0] in (1, 3):
        return a
    if a.ndim == 3 and a.shape[2] in (1, 3, 4):
        return a[..., :3].transpose(2, 0, 1)
    raise ValueError(f"{path}: cannot use an image of shape {a.shape} (need one 2-D grey or RGB "
                     f"image; split multi-frame files into slices)")


def _unit_image(a: np.ndarray, path) -> np.ndarray:
    """kind='image': integers scaled by their type's maximum; floats must be in [0, 1]."""
    if np.issubdtype(a.dtype, np.bool_):
        return a.astype(np.float32)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float32) / np.iinfo(a.dtype).max
    a = a.astype(np.float32)
    if not np.isfinite(a).all() or a.min() < 0 or a.max() > 1:
        raise ValueError(f"{path}: float image with values outside [0, 1]; pass kind='ct' (HU) "
                         f"or kind='mr' (magnitude) to say how to normalise it")
    return a


def _read_pillow(path) -> np.ndarray:
    """PNG / JPEG / TIFF / BMP -> uint8, uint16 or bool array (H, W) or (H, W, 3|4)."""
    from PIL import Image  # Pillow comes with scikit-image

    with Image.open(path) as im:
        if im.mode in ("P", "PA", "CMYK", "YCbCr", "LAB", "HSV"):
            im = im.convert("RGBA" if im.mode == "PA" or "transparency" in im.info else "RGB")
        elif im.mode == "LA":
            im = im.convert("L")
        a = np.asarray(im)
    if im.mode == "I" and a.min() >= 0 and a.max() <= 65535:  # 16-bit grey opened as int32
        a = a.astype(np.uint16)
    return a


def read_unit_image(path, kind: str = "auto", window=CT_WINDOW) -> np.ndarray:
    """One file -> float32 (C, H, W) in [0, 1]. ``kind``: how intensities map to [0, 1]:
    'ct' HU window, 'mr' 99.5th percentile, 'image' by bit depth, 'auto' from the file
    (DICOM: its Modality, CT or else MR-style; other files: 'image')."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext in DICOM_EXT or (ext == "" and is_dicom(path)):
        a, info = read_dicom(path)
        if kind == "image":
            raise ValueError(f"{path}: kind='image' does not apply to DICOM; use 'ct', 'mr' or 'auto'")
        if info["frames"] > 1:
            raise ValueError(f"{path}: multi-frame DICOM ({info['frames']} frames); split it into slices")
        modality = info["modality"] if kind == "auto" else kind.upper()
        return _to_chw(dicom_to_unit(a, modality, window), path)
    try:
        if ext == ".npy":
            a = np.load(path, allow_pickle=False)  # never unpickle
        else:
            a = _read_pillow(path)
    except Exception as err:
        raise ValueError(f"{path}: cannot read image ({type(err).__name__}: {err})") from err
    a = _to_chw(np.asarray(a), path)
    if kind in ("ct", "mr"):  # e.g. a .npy slice in HU
        if not np.isfinite(a).all():
            raise ValueError(f"{path}: image contains NaN or Inf")
        return dicom_to_unit(a, kind.upper(), window)
    return _unit_image(a, path)


class ImageFolder(Dataset):
    """Images under ``root``; item i: float32 tensor (C, H, W) in [0, 1].

    ``split``: when ``root/split`` is a folder it is used, else ``root`` itself (the split is
    then only a label; keep your own splits in separate folders). ``channels``: 1 or 3;
    default that of the first file, other files are converted (RGB -> luminance, grey ->
    repeated). ``image_size``: int or (H, W) to resize to (bilinear, anti-aliased); without
    it every image must have the first one's size. ``files``: the sorted paths.
    """

    augment = staticmethod(no_augment)

    def __init__(self, root, image_size=None, kind: str = "auto", window=CT_WINDOW,
                 split: str = "test", channels: int | None = None):
        self.split = check_split(split)
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}; expected one of {KINDS}")
        root = Path(root).expanduser()
        if (root / split).is_dir():
            root = root / split
        if not root.is_dir():
            raise FileNotFoundError(f"image folder {root} does not exist")
        self.root, self.kind, self.window = root, kind, tuple(window)
        self.files = sorted(p for p in root.rglob("*") if p.is_file() and _is_image_file(p))
        if not self.files:
            looked = sorted(IMAGE_EXT | DICOM_EXT | {".npy"})
            raise FileNotFoundError(f"no images under {root} (looked for {looked} and for DICOM "
                                    f"files without extension)")
        if channels not in (None, 1, 3):
            raise ValueError(f"channels must be 1, 3 or None, got {channels}")
        self.size = (image_size, image_size) if isinstance(image_size, int) else image_size
        first = read_unit_image(self.files[0], kind, self.window)
        self.channels = channels or first.shape[0]
        self.image_shape = (self.channels, *(self.size or first.shape[1:]))

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        path = self.files[i]
        x = torch.from_numpy(np.ascontiguousarray(read_unit_image(path, self.kind, self.window)))
        if x.shape[0] != self.channels:  # channels are 1 or 3 on both sides
            x = (x * torch.from_numpy(LUMA).view(3, 1, 1)).sum(0, keepdim=True) if x.shape[0] == 3 \
                else x.expand(3, -1, -1).clone()
        if self.size is not None and tuple(x.shape[1:]) != tuple(self.size):
            x = F.interpolate(x[None], size=tuple(self.size), mode="bilinear", antialias=True,
                              align_corners=False)[0].clamp_(0, 1)
        if tuple(x.shape) != self.image_shape:
            raise ValueError(f"{path}: image of shape {tuple(x.shape)} in a folder of {self.image_shape} "
                             f"images; pass image_size=... to resize them all")
        return x

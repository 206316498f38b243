"""2-D slices of the MNI ICBM152 2009a symmetric T1 template (197×233×189, 1 mm, RAS).

The file ships inside the nilearn wheel; ``python data_scripts/prepare_brain.py`` copies it
to ``$SGM_INVERSE_DATA`` (default ``~/.cache/sgm_inverse``). nilearn itself is never imported.

Splits are contiguous slabs per axis (indices into the original volume, half-open):
``SLABS[axis][split]``; the test slab of the axial axis is the mid-brain (MNI z −6…+21 mm,
basal ganglia and ventricles). Training slices keep a gap of more than ``GAP`` slices from
every held-out slice; gap slices belong to no split. The template is exactly left–right
symmetric, so sagittal slice k is the mirror image of slice 196−k: a sagittal slice
whose mirror is held out (or in a gap) is dropped from training too.

Caveat (one volume): a coronal or sagittal training slice crosses the axial test slab, so
the test voxels are seen, in another orientation, by a model trained on all three axes.
For a strictly held-out axial benchmark, train with ``axes=("axial",)``.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from ._files import check_split, locate
from .augment import random_affine_elastic

FILENAME = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
MEMBER = "nilearn/datasets/data/" + FILENAME
PREPARE_CMD = "python data_scripts/prepare_brain.py"
SHAPE = (197, 233, 189)
AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
SLABS = {"axial": {"test": (66, 94), "val": (99, 119)},
         "coronal": {"test": (104, 132), "val": (137, 157)},
         "sagittal": {"test": (84, 113), "val": (59, 79)}}
GAP = 5              # slices between any held-out slice and any training slice: at least this many
MIN_BRAIN = 0.15     # keep a slice when this fraction of its pixels is brain
PERCENTILE = 99.5    # intensity that maps to 1, one number for the whole volume
MARGIN = 4           # voxels of background kept around the brain's bounding box


def _orient(vol: np.ndarray, axis: str, k: int) -> np.ndarray:
    """Slice k, displayed upright: axial anterior up, coronal/sagittal superior up,
    sagittal anterior left; the patient's right is on the image's right (neurological)."""
    if axis == "axial":
        return vol[:, :, k].T[::-1]
    if axis == "coronal":
        return vol[:, k, :].T[::-1]
    return vol[k, :, :].T[::-1, ::-1]


def split_indices(axis: str, kept: np.ndarray, split: str) -> np.ndarray:
    """Original slice indices of ``split`` on ``axis`` among the brain-containing ``kept``."""
    slabs = SLABS[axis]
    if split != "train":
        lo, hi = slabs[split]
        idx = kept[(kept >= lo) & (kept < hi)]
        if axis == "sagittal":  # a slab across the midline holds mirror pairs: keep one of each
            mirror = SHAPE[0] - 1 - idx
            idx = idx[~np.isin(mirror, idx) | (idx >= mirror)]
        return idx
    held = np.concatenate([np.arange(lo, hi) for lo, hi in slabs.values()])
    near = lambda k: np.abs(k[:, None] - held[None]).min(1) <= GAP  # noqa: E731
    bad = near(kept)
    if axis == "sagittal":  # exact L/R symmetry: the mirror slice is the same image
        bad |= near(SHAPE[0] - 1 - kept)
    return kept[~bad]


@lru_cache(maxsize=4)
def load_brain_slices(path: str, image_size: int) -> dict:
    """All brain-containing slices, resized: {axis: (indices (N,), images (N, S, S) float32)}.

    Every axis uses the same square field of view (the brain's bounding box plus
    ``MARGIN``, zero-padded to its largest side), so a pixel has the same size in mm on
    all axes; resizing is anti-aliased (skimage). Cached: the second call is free.
    """
    import nibabel as nib  # only needed here
    from skimage.transform import resize

    vol = nib.load(path).get_fdata(dtype=np.float32)
    if vol.shape != SHAPE:
        raise ValueError(f"{path}: expected the MNI152 2009a volume of shape {SHAPE}, got {vol.shape}")
    scale = float(np.percentile(vol, PERCENTILE))
    brain = vol > 0.1 * scale
    lo = np.argwhere(brain).min(0)
    hi = np.argwhere(brain).max(0) + 2 * MARGIN + 1
    crop = np.pad(vol, MARGIN)[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]]
    side = max(crop.shape)
    out = {}
    for axis, a in AXES.items():
        frac = brain.mean(axis=tuple(d for d in range(3) if d != a))
        kept = np.flatnonzero(frac > MIN_BRAIN)
        stack = np.zeros((len(kept), side, side), np.float32)
        for n, k in enumerate(kept):
            s = _orient(crop, axis, k + MARGIN - lo[a])
            r, c = (side - s.shape[0]) // 2, (side - s.shape[1]) // 2
            stack[n, r:r + s.shape[0], c:c + s.shape[1]] = s
        small = resize(stack, (len(kept), image_size, image_size), order=1, anti_aliasing=True,
                       preserve_range=True)
        out[axis] = (kept, np.clip(small / scale, 0, 1).astype(np.float32))
    return out


class BrainSlices(Dataset):
    """MNI152 T1 slices; item i: float32 tensor (1, image_size, image_size) in [0, 1].

    ``slice_ids[i]`` is ``(axis, index)`` of item i in the original volume. Augment
    training batches with ``BrainSlices.augment(batch, generator)``
    (:func:`random_affine_elastic`).
    """

    augment = staticmethod(random_affine_elastic)

    def __init__(self, split: str = "train", image_size: int = 64,
                 axes=("axial", "coronal", "sagittal"), path=None):
        self.split = check_split(split)
        axes = (axes,) if isinstance(axes, str) else tuple(axes)
        unknown = [a for a in axes if a not in AXES]
        if unknown or not axes:
            raise ValueError(f"unknown axes {unknown}; choose from {tuple(AXES)}")
        self.path = locate(FILENAME, "nilearn", MEMBER, PREPARE_CMD, path)
        self.image_size, self.axes = int(image_size), axes
        self.image_shape = (1, self.image_size, self.image_size)
        slices = load_brain_slices(str(self.path.resolve()), self.image_size)
        ids, images = [], []
        for axis in axes:
            kept, stack = slices[axis]
            idx = split_indices(axis, kept, split)
            ids += [(axis, int(k)) for k in idx]
            images.append(stack[np.searchsorted(kept, idx)])
        self.slice_ids = ids
        self.images = torch.from_numpy(np.concatenate(images))[:, None]  # a copy, not the cache

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i].clone()

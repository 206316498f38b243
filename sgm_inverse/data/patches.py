"""Random RGB crops of the colour photographs that ship with scikit-image (offline).

Whole photographs are held out: ``PHOTOS[split]``. Not used: ``cat`` (the same file as
``chelsea``), the right view of the stereo pair (the same scene as ``motorcycle``),
``retina`` and ``hubble_deep_field`` (mostly flat orange / black, they would dominate the
colour statistics) and the synthetic ``colorwheel`` and ``logo``.
Item i draws from ``np.random.default_rng(SEED_BASE[split] + i)``: a photograph (uniformly),
a scale s ~ U(0.25, 1) and a position, then takes a (patch_size / s)² window and resizes
it to patch_size² (anti-aliased). That equals downscaling the photograph by s before
cropping, so a 32×32 patch shows objects and edges, not only the texture of a 512² photo.
Nearly flat windows (mean per-channel std < ``MIN_STD``, e.g. clear sky) are redrawn, up to
``TRIES`` times, from the same generator, so items stay deterministic.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from torch.utils.data import Dataset

from ._files import check_index, check_split
from .augment import random_hflip

PHOTOS = {"train": ("astronaut", "rocket", "immunohistochemistry"),
          "val": ("motorcycle",),
          "test": ("chelsea", "coffee")}
SEED_SPAN = 1_000_000
SEED_BASE = {"train": 0, "val": SEED_SPAN, "test": 2 * SEED_SPAN}
DEFAULT_LENGTH = {"train": 100_000, "val": 500, "test": 500}
SCALE_RANGE = (0.25, 1.0)
MIN_STD, TRIES = 0.02, 10


@lru_cache(maxsize=None)
def load_photo(name: str) -> np.ndarray:
    """float32 (H, W, 3) in [0, 1], read once from skimage.data's shipped files."""
    import skimage.data

    img = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"skimage.data.{name} is not an RGB photograph: shape {img.shape}")
    img = (img.astype(np.float32) / 255)
    img.setflags(write=False)
    return img


def random_patch(photos: tuple, seed: int, size: int) -> np.ndarray:
    """One crop, float32 (3, size, size) in [0, 1], fixed by ``seed``."""
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    for _ in range(TRIES):
        img = load_photo(photos[rng.integers(len(photos))])
        scale = rng.uniform(*SCALE_RANGE)
        win = min(int(round(size / scale)), *img.shape[:2])
        r, c = rng.integers(img.shape[0] - win + 1), rng.integers(img.shape[1] - win + 1)
        crop = img[r:r + win, c:c + win]
        if crop.std(axis=(0, 1)).mean() >= MIN_STD:
            break
    if win != size:
        crop = resize(crop, (size, size), order=1, anti_aliasing=True, preserve_range=True)
    return np.ascontiguousarray(np.clip(crop, 0, 1).transpose(2, 0, 1), dtype=np.float32)


class ColorPatches(Dataset):
    """RGB patches; item i: float32 tensor (3, patch_size, patch_size) in [0, 1].

    ``photos`` names the skimage photographs of this split. ``length`` defaults to
    100 000 (train, virtual), 500 (val), 500 (test). Augment with horizontal flips.
    """

    augment = staticmethod(random_hflip)

    def __init__(self, split: str = "train", patch_size: int = 32, length: int | None = None):
        self.split = check_split(split)
        self.length = DEFAULT_LENGTH[split] if length is None else int(length)
        if not 0 <= self.length <= SEED_SPAN:
            raise ValueError(f"length must be in [0, {SEED_SPAN}], got {self.length}")
        self.photos, self.patch_size = PHOTOS[split], int(patch_size)
        self.image_shape = (3, self.patch_size, self.patch_size)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        i = check_index(i, self.length, "patches")
        return torch.from_numpy(random_patch(self.photos, SEED_BASE[self.split] + i, self.patch_size))

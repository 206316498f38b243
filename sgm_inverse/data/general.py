"""A diverse grayscale corpus for the general, resolution-free prior: random crops of several sizes.

Sources (all offline, all grey, [0, 1]):

    brain      MNI152 T1 template slices (three orientations) at about 1 mm, the *train* slabs of
               ``BrainSlices`` only, so the brain validation / test slabs stay unseen
    photos     scikit-image's photographs in grey: camera, astronaut, coffee, chelsea, rocket, coins,
               moon, clock, page, text, brick, grass, gravel, motorcycle (left view)
    science    scikit-image's microscopy and astronomy: cell, immunohistochemistry (grey),
               hubble_deep_field (grey), retina (grey), microaneurysms
    phantoms   random-ellipse phantoms (train seeds only; the ellipse val / test seeds stay unseen)
               and the Shepp-Logan phantom

No DICOM file is used: pydicom's test files are evaluation images (benchmarks/real_scans.py) and
the pydicom-data package is reserved for an independent evaluation.

``draw_batch(batch_size, generator)`` is what training calls: it picks one crop size S from
``CROP_SIZES`` per batch (with ``CROP_PROBS``; every item of a batch has the same size) and
returns ``batch_size * (BASE / S)^2`` crops (at least 2), so every batch holds about the same
number of pixels. Each crop picks a source group (``GROUP_PROBS``), an image, a zoom z ~ log-U(0.5, 2)
(an (S / z)² window resized to S², anti-aliased), a position, a dihedral flip / rotation, and a
contrast change x ↦ x^γ (γ ~ log-U(0.7, 1.4)) with probability ½. Nearly flat crops (std < 0.01,
e.g. air) are kept with probability ½ only, so a CT's background is seen but does not dominate.
Like the other data sets, ``__getitem__(i)`` gives a fixed ``BASE``-pixel crop from seed i (the
validation and test splits draw from disjoint seed ranges of the same pool).
"""
from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ._files import check_index, check_split

BASE = 64
CROP_SIZES = (32, 64, 128)
CROP_PROBS = (0.3, 0.5, 0.2)
GROUP_PROBS = {"brain": 0.35, "photos": 0.3, "science": 0.1, "phantoms": 0.25}
ZOOM_RANGE = (0.5, 2.0)
GAMMA_RANGE = (0.7, 1.4)
FLAT_STD, FLAT_KEEP = 0.01, 0.5
N_ELLIPSES = 400           # ellipse phantoms rendered once at 128 px (train seeds 0..N-1); zoom adds variety
BRAIN_SIZE = 192           # brain slices at about 1 mm per pixel
PHOTOS = ("camera", "astronaut", "coffee", "chelsea", "rocket", "coins", "moon", "clock", "page", "text",
          "brick", "grass", "gravel", "motorcycle")
SCIENCE = ("cell", "immunohistochemistry", "hubble_deep_field", "retina", "microaneurysms")
SEED_SPAN = 1_000_000
SEED_BASE = {"train": 0, "val": SEED_SPAN, "test": 2 * SEED_SPAN}
DEFAULT_LENGTH = {"train": 100_000, "val": 256, "test": 256}


def _grey(img: np.ndarray) -> np.ndarray:
    """float32 (H, W) in [0, 1] from a uint8 / bool / float grey or RGB(A) array (ITU-R 601 luma)."""
    a = img.astype(np.float32)
    if img.dtype == np.uint8:
        a /= 255
    if a.ndim == 3:
        a = a[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return np.clip(a, 0, 1)


def _skimage_image(name: str) -> np.ndarray:
    import skimage.data
    img = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    return _grey(img)


@lru_cache(maxsize=1)
def load_sources() -> dict:
    """{group: [float32 (H, W) tensors in [0, 1]]}, built once per process (a few seconds)."""
    from .brain import BrainSlices
    from .ellipses import ellipse_phantom
    from skimage.data import shepp_logan_phantom

    brain = BrainSlices("train", image_size=BRAIN_SIZE)
    sources = {
        "brain": [im[0] for im in brain.images],
        "photos": [torch.from_numpy(_skimage_image(n)) for n in PHOTOS],
        "science": [torch.from_numpy(_skimage_image(n)) for n in SCIENCE],
        "phantoms": [torch.from_numpy(ellipse_phantom(seed, 128)) for seed in range(N_ELLIPSES)]
                    + [torch.from_numpy(_grey(shepp_logan_phantom()))],
    }
    return sources


def _crop(img: torch.Tensor, size: int, rng: np.random.Generator) -> torch.Tensor:
    """One (size, size) crop of img (H, W) at a random zoom, position, flip / rotation and contrast."""
    zoom = math.exp(rng.uniform(math.log(ZOOM_RANGE[0]), math.log(ZOOM_RANGE[1])))
    win = max(4, min(int(round(size / zoom)), *img.shape))
    r, c = int(rng.integers(img.shape[0] - win + 1)), int(rng.integers(img.shape[1] - win + 1))
    crop = img[r:r + win, c:c + win][None, None]
    if win != size:
        crop = F.interpolate(crop, size=(size, size), mode="bilinear", antialias=win > size, align_corners=False)
    crop = crop[0, 0].clamp(0, 1)
    crop = torch.rot90(crop, int(rng.integers(4)))
    if rng.random() < 0.5:
        crop = crop.flip(-1)
    if rng.random() < 0.5:
        crop = crop ** math.exp(rng.uniform(math.log(GAMMA_RANGE[0]), math.log(GAMMA_RANGE[1])))
    return crop


def random_crop(size: int, rng: np.random.Generator) -> torch.Tensor:
    """One crop (1, size, size) of the corpus, drawn with ``rng``."""
    sources = load_sources()
    groups, probs = list(GROUP_PROBS), np.array(list(GROUP_PROBS.values()))
    for _ in range(20):
        pool = sources[groups[int(rng.choice(len(groups), p=probs / probs.sum()))]]
        crop = _crop(pool[int(rng.integers(len(pool)))], size, rng)
        if crop.std() >= FLAT_STD or rng.random() < FLAT_KEEP:
            break
    return crop[None].contiguous()


class GeneralCorpus(Dataset):
    """The general grayscale corpus; item i: float32 (1, BASE, BASE) in [0, 1], fixed by its seed.

    ``resolution_free`` tells `training.train` to draw whole batches with ``draw_batch`` (crops of
    several sizes) and to record the prior mean as one number per channel, not an image.
    """

    resolution_free = True
    image_shape = (1, BASE, BASE)

    def __init__(self, split: str = "train", image_size: int = BASE, length: int | None = None):
        self.split = check_split(split)
        self.image_size = int(image_size)
        self.image_shape = (1, self.image_size, self.image_size)
        self.length = DEFAULT_LENGTH[self.split] if length is None else int(length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        i = check_index(i, self.length, "crops")
        return random_crop(self.image_size, np.random.default_rng(SEED_BASE[self.split] + i))

    def draw_batch(self, batch_size: int, generator: torch.Generator) -> torch.Tensor:
        """(n, 1, S, S) crops with S drawn from CROP_SIZES and n = max(2, batch_size * (BASE / S)^2)."""
        seed = int(torch.randint(2 ** 62, (1,), generator=generator))
        rng = np.random.default_rng(seed)
        size = int(CROP_SIZES[int(rng.choice(len(CROP_SIZES), p=np.array(CROP_PROBS) / sum(CROP_PROBS)))])
        n = max(2, int(round(batch_size * (BASE / size) ** 2)))
        return torch.stack([random_crop(size, rng) for _ in range(n)])

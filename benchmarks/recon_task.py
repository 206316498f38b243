"""What a reconstruction benchmark is made of: the `Task` and its `Setting`s, the images of a split,
the forward models of a setting with their calibrated noise, and the seeded measurements.

A benchmark (ct_sparse_view.py, mri_undersampled.py) is one `Task`: a forward-model family, its
classical baseline, the acquisition settings and the tuning grids. The noise level r of a setting is
relative: noise_std = r * mean|A x| over the measured entries of the VALIDATION images, and the same
absolute sigma is then used for val and test.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

try:  # a checkout without `pip install -e .`: use the package next to benchmarks/
    import sgm_inverse  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgm_inverse.data import get_dataset  # noqa: E402

SCORE_METHODS = ("projection", "dps")


@dataclass
class Setting:
    """One acquisition setting: record fields, noise level and a forward-model factory."""
    key: str                                   # unique within a task, e.g. "parallel-8v-noise0"
    fields: dict                               # views/geometry/angular_range or acceleration/mask
    noise_level: float                         # noise_std as a fraction of mean |A x|
    make_op: Callable[..., torch.nn.Module]    # make_op(noise_std, **options) -> forward model
    reference: bool = False                    # the setting shown in the figure / steps study


@dataclass
class Task:
    name: str                                  # file stem, e.g. "ct_sparse_view"
    task: str                                  # "ct" | "mri"
    baseline: str                              # "fbp" | "zero_filled"
    settings: list                             # [Setting]
    defaults: dict                             # untuned score settings per method
    grids: dict                                # {"default": {...}, "tiny": {...}}
    columns: list                              # setting columns of the table
    datasets: list                             # default data sets
    measured: Callable = None                  # (op, y) -> measured entries (for the noise level)
    notes: list = field(default_factory=list)  # extra markdown notes


def load_images(dataset: str, split: str, n: int, image_size: int):
    """n images evenly spaced over the split's distinct images (index round(linspace(0, len - 1, n))):
    (n, 1, S, S) float32, the split name, the dataset indices. Exact duplicates are dropped first
    (the MNI template is left-right symmetric, so sagittal slices k and 196 - k are the same image)."""
    ds = get_dataset(dataset, split, image_size=image_size)
    images = torch.stack([ds[i] for i in range(len(ds))])
    flat = images.flatten(1)
    dist = torch.cdist(flat, flat)
    keep = [i for i in range(len(ds)) if not bool((dist[i, :i] < 1e-4).any())]
    if n > len(keep):
        raise SystemExit(f"{dataset}/{split} has only {len(keep)} distinct images; asked for {n}")
    pick = [keep[int(j)] for j in np.unique(np.round(np.linspace(0, len(keep) - 1, n)).astype(int))]
    return images[pick], ds.split, pick


class Operators:
    """The forward models of one setting with the calibrated noise_std, built on first use per
    option set (e.g. SparseViewCT's inverse_method "cg" / "fbp" for the projection step)."""

    def __init__(self, setting: Setting, task: Task, x_val: torch.Tensor):
        self.setting, self.cache, self.device = setting, {}, x_val.device
        self.noise_abs = 0.0
        if setting.noise_level > 0:
            op = setting.make_op(0.0).to(self.device)
            with torch.no_grad():
                self.noise_abs = setting.noise_level * float(task.measured(op, op(x_val)).abs().mean())

    def __call__(self, **options):
        key = tuple(sorted(options.items()))
        if key not in self.cache:
            self.cache[key] = self.setting.make_op(self.noise_abs, **options).to(self.device)
        return self.cache[key]


def measure(task: Task, ops: Operators, x: torch.Tensor, seed: int) -> torch.Tensor:
    """y = A x + noise with a fixed seed (val uses seed + 1, test seed); the noise is drawn on the
    CPU generator, so the measurements are the same on every device."""
    return ops().simulate(x, generator=torch.Generator().manual_seed(seed))


def timer(device):
    """time.time() after the device has finished its queued work (CUDA kernels run asynchronously)."""
    def now():
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize(device)
        return time.time()
    return now

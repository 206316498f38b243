"""How far apart the splits and the augmented training images are: the references of sample_quality.py.

    python benchmarks/data_shift.py [--out benchmarks/results]

For each data set, with the same RandomFeatures FD as sample_quality.py (n images each, fixed seeds): the
held-out half-vs-half floor; raw training images vs held-out; training images as augmented in training vs
held-out, vs raw training images, and vs a second augmented draw. For the data sets augmented by
`random_affine_elastic` (brain, digits) also the augmentation with bicubic instead of bilinear resampling,
and a random shift alone with each. A model fitted to the augmented training images cannot be nearer the
held-out set than those images are. Writes <out>/data_shift.json / .md.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

try:
    import sgm_inverse  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sgm_inverse.data import get_dataset
from sgm_inverse.sample_quality import sample_fd

from common import RESULTS, markdown_table, write_results
from sample_quality import heldout_images, load_images, trained_on

SETS = {"brain": (64, 128), "digits": (32, 500), "ellipses": (64, 200), "patches": (32, 500)}
COLUMNS = ["dataset", "n", "augment", "heldout_floor", "raw_train_vs_heldout", "augmented_vs_heldout",
           "augmented_vs_raw_train", "augmented_floor", "bicubic_vs_heldout", "shift_bilinear_vs_heldout",
           "shift_bicubic_vs_heldout", "seconds"]


def measure(name: str, size: int, n: int) -> dict:
    t0 = time.perf_counter()
    heldout, split = heldout_images(name, size, n)
    perm = torch.randperm(len(heldout), generator=torch.Generator().manual_seed(0))
    raw = load_images(name, "train", size, n)
    ds = get_dataset(name, "train", image_size=size)
    a, b = trained_on(ds, n, 1), trained_on(ds, n, 2)
    rec = {"dataset": name, "heldout_split": split, "n": len(heldout), "augment": ds.augment.__name__,
           "heldout_floor": sample_fd(heldout[perm[:len(perm) // 2]], heldout[perm[len(perm) // 2:]]),
           "raw_train_vs_heldout": sample_fd(raw, heldout), "augmented_vs_heldout": sample_fd(a, heldout),
           "augmented_vs_raw_train": sample_fd(a, raw), "augmented_floor": sample_fd(a, b)}
    if ds.augment.__name__ in ("random_affine_elastic", "digit_jitter"):   # the ones that take mode=
        drawn = trained_on(ds, n, 1, augmented=False)

        def variant(**kw):  # the same draw and augmentation seed for every variant
            return sample_fd(ds.augment(drawn, torch.Generator().manual_seed(101), **kw), heldout)

        still = {"max_rotate_deg": 0, "max_scale": 0, "elastic_alpha": 0, "intensity_scale": (1, 1)}
        rec["bicubic_vs_heldout"] = variant(mode="bicubic")
        for mode in ("bilinear", "bicubic"):
            rec[f"shift_{mode}_vs_heldout"] = variant(mode=mode, **still)
    rec["seconds"] = time.perf_counter() - t0
    return rec


def main(argv=None) -> list:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--datasets", nargs="+", default=list(SETS), choices=list(SETS))
    args = ap.parse_args(argv)
    records = [measure(name, *SETS[name]) for name in args.datasets]
    table = markdown_table(records, COLUMNS)
    write_results("data_shift", records, table, out_dir=args.out)
    print(table)
    return records


if __name__ == "__main__":
    main()

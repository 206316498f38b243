"""Put the MNI ICBM152 2009a T1 template where ``sgm_inverse.data.BrainSlices`` finds it.

    python data_scripts/prepare_brain.py [--out DIR]

DIR defaults to ``$SGM_INVERSE_DATA`` or ``~/.cache/sgm_inverse``. The file (1.6 MB) ships
inside the nilearn wheel: it is copied from an installed nilearn when there is one, else
``pip download --no-deps nilearn`` fetches the wheel (11 MB, PyPI) into a temporary folder
and only that one member is extracted. Deterministic; prints the path, sha256 and shape.
Standalone on purpose (no sgm_inverse import): it runs before the package is installed.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

MEMBER = "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
PIN = "nilearn==0.14.1"  # any recent nilearn has the same file; the pin makes the download reproducible
SHA256 = "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6"


def default_out() -> Path:
    return Path(os.environ.get("SGM_INVERSE_DATA") or Path.home() / ".cache" / "sgm_inverse").expanduser()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def fetch(package: str, member: str, out_dir: Path, pin: str, expected: str) -> Path:
    """Put ``member`` (a path inside ``package``'s wheel) in ``out_dir``; return its path.

    Kept if already there with sha256 ``expected``; else copied from the installed
    ``package`` when that copy matches; else extracted from the wheel ``pip download pin``.
    Exits with a message when the result does not match ``expected``.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / Path(member).name
    if dest.is_file() and sha256(dest) == expected:
        print(f"already present: {dest}")
        return dest
    spec = importlib.util.find_spec(package)  # locates without importing the package
    if spec is not None and spec.submodule_search_locations:
        src = Path(list(spec.submodule_search_locations)[0]).joinpath(*member.split("/")[1:])
        if src.is_file() and sha256(src) == expected:
            shutil.copyfile(src, dest)
            print(f"copied from installed {package}: {src}")
            return dest
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--quiet", pin, "-d", tmp]
        print("running:", " ".join(cmd))
        subprocess.run(cmd, check=True)
        wheel = next(Path(tmp).glob(f"{package}-*.whl"))
        with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(dest, "wb") as f:
            shutil.copyfileobj(src, f)
        print(f"extracted {member} from {wheel.name}")
    if sha256(dest) != expected:
        sys.exit(f"{dest}: sha256 {sha256(dest)} differs from the expected {expected}")
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_out(), help="folder to write to")
    args = parser.parse_args()
    dest = fetch("nilearn", MEMBER, args.out.expanduser(), PIN, SHA256)
    import nibabel as nib

    shape = nib.load(dest).shape
    print(f"ready: {dest}\n  sha256 {SHA256}\n  bytes {dest.stat().st_size}\n  shape {shape}")
    if shape != (197, 233, 189):
        sys.exit(f"unexpected shape {shape}, expected (197, 233, 189)")


if __name__ == "__main__":
    main()

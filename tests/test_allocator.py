"""retain_freed_memory: a network's repeated evaluations stop page-faulting their activations back in.

Each measurement runs in a fresh interpreter, since mallopt changes the whole process."""
import subprocess
import sys

import pytest

from sgm_inverse.allocator import MMAP_THRESHOLD_MAX, retain_freed_memory

# Three activations of 16-25 MiB alive at once at 512 x 512, like a U-Net's skip connections, all freed at the
# end of every call: with glibc's adaptive thresholds they go back to the OS (25-31 thousand page faults a call in
# every one of 8 runs on glibc 2.36; a plain chain of convolutions faulted in only 4 of 5).
SCRIPT = """
import resource, sys, torch
from sgm_inverse.allocator import retain_freed_memory
applied = retain_freed_memory() if sys.argv[1] == "1" else False
torch.set_num_threads(1)
torch.manual_seed(0)
conv = lambda i, o: torch.nn.Conv2d(i, o, 3, padding=1)
c1, c2, c3, c4, c5, c6 = conv(1, 16), conv(16, 24), conv(24, 24), conv(24, 1), conv(24, 1), conv(16, 1)
def net(x):
    h1 = c1(x); h2 = c2(h1); h3 = c3(h2)
    return c4(h3) + c5(h2) + c6(h1)
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
    # two interpreters per setting (the fault count of one varies with where the kernel places the heap): the
    # most faults of the default, the fewest with the memory retained
    default = max(faults_per_call(False)[1] for _ in range(2))
    runs = [faults_per_call(True) for _ in range(2)]
    applied, retained = runs[0][0], min(r[1] for r in runs)
    if not applied:
        pytest.skip("this C library has no mallopt (not glibc)")
    if default < 1000:
        pytest.skip(f"this allocator already keeps the activations ({default} faults per call)")
    assert retained <= default // 10, (default, retained)


def test_checks_thresholds():
    with pytest.raises(ValueError, match="mmap_threshold"):
        retain_freed_memory(mmap_threshold=MMAP_THRESHOLD_MAX + 1)
    with pytest.raises(ValueError, match="trim_threshold"):
        retain_freed_memory(trim_threshold=-1)

"""The training commands' allocator setting (mnist_common.allocator): freed blocks are reused, not faulted in again.

Counted in page faults (the kernel's count for the process), not seconds: a fresh process runs the same work again
and again, and each repeat touches only memory the one before freed, so with the setting it faults in (almost)
nothing, and with glibc's defaults every page of every block above its mmap threshold again.
"""

from __future__ import annotations

import statistics
import subprocess
import sys

import pytest

PAGE_BYTES = 4096

SCRIPT = """
import resource, sys
from mnist_common.allocator import keep_freed_memory
assert sys.argv[1] in ("kept", "default")
if sys.argv[1] == "kept":
    assert keep_freed_memory(), "not applied"
import torch
torch.set_num_threads(1)  # every block from this thread: the pool's threads keep heaps of their own
from mnist_common.architecture import DEFAULT_PRESET
from mnist_common.model_files import load_architecture
from lightning_mnist.models.network import KerasNetwork

network = KerasNetwork(load_architecture(DEFAULT_PRESET)).eval()
images = torch.rand(500, 1, 28, 28)  # a validation batch of the data module's default size


def work():
    if sys.argv[2] == "blocks":  # 64 MiB blocks: above the largest mmap threshold glibc takes (32 MiB)
        for _ in range(4):
            block = torch.ones(16 * 1024 * 1024)
            del block
    else:  # the forward pass of a validation batch (activations of 50 MB)
        with torch.inference_mode():
            network(images)


def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


work()  # the first time faults the memory in, whatever the setting
for _ in range(15):
    before = faults()
    work()
    print(faults() - before)
"""


def repeated_work_faults(setting: str, work: str) -> int:
    """The median page faults of 15 repeats of ``work`` after a first one, in a fresh process (with the setting, now
    and then a repeat grows the heap by a few megabytes where its free blocks do not fit a new one)."""
    done = subprocess.run([sys.executable, "-c", SCRIPT, setting, work], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return int(statistics.median(int(count) for count in done.stdout.split()))


@pytest.mark.parametrize("work, pages", [("blocks", 4 * 64 * 2**20 // PAGE_BYTES),
                                         ("validation", 50_000_000 // PAGE_BYTES)])
def test_freed_memory_is_reused_without_page_faults(work: str, pages: int) -> None:
    default = repeated_work_faults("default", work)
    kept = repeated_work_faults("kept", work)
    assert default > pages // 2, f"glibc's defaults faulted in only {default} pages: the comparison says nothing"
    # the 64 MiB blocks, or the validation batch's 50 MB of activations, are not faulted in again
    assert kept < pages // 20, f"{kept} page faults with the setting, {default} without"

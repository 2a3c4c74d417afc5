"""Keep freed memory in the process instead of giving it back to the kernel after every step.

A training step on CPU allocates and frees the same few megabytes of activations
and gradients over and over. glibc's malloc serves blocks that large with fresh
``mmap`` calls and returns them on ``free``, so every step pays page faults to
touch memory it just released: about 15 % of a step of this CNN at batch 32
(A/B timing of the bare training step, 2 CPU cores). Raising glibc's trim threshold and
serving every block from the heap (no ``mmap`` at all) keeps those blocks for reuse; it
changes no result.

Raising the mmap threshold alone is not enough: glibc takes none above 32 MiB, and a validation
batch of 500 images holds activations of 50 MB (32 channels of 28 x 28 floats each), so every
validation and test batch faulted in ~12,000 fresh pages a tensor: about 250,000 faults and 2.4x
the seconds of a validation pass over 6,000 images (0.48 s against 0.20 s, 2-core AMD EPYC,
``tests/test_allocator.py`` counts the faults). With mmap off, a block too large for the heap's
free space grows the heap (glibc falls back to mmap only where the heap cannot grow), and the
trim threshold keeps up to 1 GiB of freed memory at its top. This is what
``MALLOC_MMAP_MAX_=0`` / ``MALLOC_TRIM_THRESHOLD_`` would do from the shell, done in-process by
the Lightning training commands (and the plain loop the benchmarks compare them with).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters from glibc's <malloc.h>
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4  # how many blocks glibc may serve with mmap at once: 0, none
TRIM_THRESHOLD_BYTES = 1024 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Serve every block from the heap and keep freed ones; True when applied (Linux with glibc), False elsewhere."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    applied = mallopt(M_MMAP_MAX, 0) and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    return bool(applied)

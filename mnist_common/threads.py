"""How the training commands wait for their CPU threads, so that sharing the cores does not stall them.

PyTorch's CPU kernels run on an OpenMP pool (GNU libgomp in the Linux wheels), one thread per
core. Each operator splits its work between the threads and ends at a barrier, where a thread
that finished first *spins* (libgomp's default, about 300,000 polls) for the others. Alone on the
machine that is the fastest hand-off. When another busy process shares the cores, the kernel
deschedules one of the pool's threads for a whole time slice (milliseconds) while its partner
spins on the core it could have used, at every one of the hundreds of operators of a training
step: measured on 2 shared cores (``benchmarks/shared_machine.py``, docs/benchmarks.md), a step
of the notebook's CNN took 200-500 ms instead of 20-50 ms, and an epoch minutes instead of
seconds. ``OMP_WAIT_POLICY=PASSIVE`` makes a waiting thread sleep at once, giving the core back.

:func:`configure_threads` sets that before torch starts its pool (libgomp reads its environment
once, when it is loaded: after ``import torch`` it is too late, and the call changes nothing).
Whatever the user set wins: any of ``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT`` or ``KMP_BLOCKTIME``
in the environment leaves the policy alone, and ``OMP_NUM_THREADS`` (or ``threads``) sets
the pool's size. ``OMP_WAIT_POLICY=ACTIVE`` restores libgomp's spinning.
"""

from __future__ import annotations

import os
import sys

WAIT_POLICY = "PASSIVE"
# What a user (or a launcher) may already have chosen about waiting: any of them leaves ours unset.
WAIT_SETTINGS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
THREADS_ENV = "OMP_NUM_THREADS"


def configure_threads(threads: int | None = None) -> dict[str, str]:
    """Set the OpenMP wait policy (unless the environment has one) and, if given, the thread count.

    Returns the settings in effect for the pool torch will start. Call it before torch is
    imported; once torch is imported it returns what was set and changes nothing, since the pool's
    settings are read when the OpenMP library loads (``torch.set_num_threads`` still works then).
    """
    if "torch" not in sys.modules:
        if not any(name in os.environ for name in WAIT_SETTINGS):
            os.environ["OMP_WAIT_POLICY"] = WAIT_POLICY
        if threads is not None:
            os.environ[THREADS_ENV] = str(threads)
    return {name: os.environ[name] for name in (*WAIT_SETTINGS, THREADS_ENV) if name in os.environ}

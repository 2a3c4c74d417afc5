"""How many CPU threads the training commands use: all the cores when they are free, fewer when others are busy.

PyTorch's CPU kernels run on an OpenMP pool (GNU libgomp in the Linux wheels), one thread per
core. Each operator splits its work between the threads and ends at a barrier, where a thread
that finished first *spins* for the others. Alone on the machine that is the fastest hand-off.
When another busy process shares the cores, the kernel deschedules one of the pool's threads for
a whole time slice while its partner spins on the core it needs, at every one of the hundreds of
operators of a step, and an epoch takes many times as long (``benchmarks/shared_machine.py``'s
``all-cores`` rows in docs/benchmarks.md). Letting waiting threads sleep
(``OMP_WAIT_POLICY=PASSIVE``) avoids that but costs a wake-up per operator, which made a lone
step of the notebook's CNN slower than one thread's: so the pool keeps libgomp's spinning, and is
sized to the cores that are free when the command starts, where spinning costs nothing.

:func:`configure_threads` measures how busy the cores are (``/proc/stat``, over
:data:`SAMPLE_SECONDS`, before this process does any work of its own) and sets
``OMP_NUM_THREADS`` to the cores left free, at least one. It must run before torch is imported:
the pool's size and policy are read once, when the OpenMP library loads. Whatever the user set
wins: an ``OMP_NUM_THREADS`` in the environment is kept as it is, and so is any wait policy
(``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``, ``KMP_BLOCKTIME``), which this module never sets.
Work that starts after the command has started is not seen (the pool's size is fixed by then).
"""

from __future__ import annotations

import os
import re
import sys
import time

from mnist_common.errors import UserError

THREADS_ENV = "OMP_NUM_THREADS"
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
SAMPLE_SECONDS = 0.25


def check_thread_settings(environ: dict[str, str] | None = None) -> None:
    """Refuse an ``OMP_NUM_THREADS`` or ``OMP_WAIT_POLICY`` that OpenMP cannot read, in one line, before any work.

    libgomp only warns about such a value ("Invalid value for environment variable") and runs with
    its default, so the run would quietly use every core when the user meant to limit it.
    """
    environ = os.environ if environ is None else environ
    threads = environ.get(THREADS_ENV)
    if threads is not None and not re.fullmatch(r"\s*[1-9]\d*(\s*,\s*[1-9]\d*)*\s*", threads):
        raise UserError(f"{THREADS_ENV}={threads!r}: not a number of threads; give a whole number from 1 (e.g. "
                        f"{THREADS_ENV}=1), or unset it")
    policy = environ.get(WAIT_POLICY_ENV)
    if policy is not None and policy.strip().lower() not in ("active", "passive"):
        raise UserError(f"{WAIT_POLICY_ENV}={policy!r}: OpenMP knows ACTIVE and PASSIVE; give one, or unset it")


def cpu_times() -> tuple[float, float] | None:
    """(busy, total) clock ticks of all cores since boot, from ``/proc/stat``; None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle and iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def busy_cores(seconds: float = SAMPLE_SECONDS) -> float | None:
    """How many cores other work keeps busy, measured over ``seconds`` while this process sleeps."""
    before = cpu_times()
    if before is None:
        return None
    time.sleep(seconds)
    after = cpu_times()
    if after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)


def free_cores(busy: float | None, cores: int | None = None) -> int:
    """Cores left for this process when others keep ``busy`` of them busy: at least one."""
    cores = cores or os.cpu_count() or 1
    return cores if busy is None else max(1, min(cores, round(cores - busy)))


def configure_threads(threads: int | None = None) -> dict[str, str]:
    """Size torch's pool, before torch is imported: ``threads`` if given, else the user's ``OMP_NUM_THREADS``,
    else the cores that are free now.

    Returns the settings in effect. Once torch is imported it changes nothing (torch's own
    ``set_num_threads`` still works then) and returns what is set.
    """
    if "torch" not in sys.modules:
        if threads is not None:
            os.environ[THREADS_ENV] = str(threads)
        elif THREADS_ENV not in os.environ:
            os.environ[THREADS_ENV] = str(free_cores(busy_cores()))
    names = (THREADS_ENV, WAIT_POLICY_ENV, "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
    return {name: os.environ[name] for name in names if name in os.environ}

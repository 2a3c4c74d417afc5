"""The one place that imports Keras: TensorFlow backend, quiet start-up, torch only if already there.

A process that only needs Keras never imports torch here (torch costs seconds and hundreds
of MiB, and would inflate every Keras figure).

A process that already imported torch is about to use both frameworks. With a torch that
ships triton (Linux CUDA wheels), importing TensorFlow and then anything that loads triton
(torch's compiler, which ``torch.optim``'s first step and ``torch.compile`` load) aborts the process ("LLVM
ERROR: inconsistency in registered CommandLine options"), while the opposite order works;
so in that process triton's half of torch is imported first. (``lightning_mnist`` refuses
to be imported after TensorFlow in one line: ``lightning_mnist/frameworks.py``.)

TensorFlow's start-up logging (CUDA probes, oneDNN notices, absl's "before InitializeLog"
banner) is printed by native code straight to the process's stderr while TensorFlow is
imported, before any log level applies (absl's banner and its "I0000" lines even with
``TF_CPP_MIN_LOG_LEVEL=3``); so unless the user asked TensorFlow for more (``TF_CPP_MIN_LOG_LEVEL``
0 to 2; 0 shows everything), file descriptor 2 points at /dev/null for the import only.
Python errors raised by the import still reach the user.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import sys

QUIET_TF_LOG_LEVEL = "3"  # C++ INFO, WARNING and ERROR lines at start-up; Python exceptions still surface


def triton_installed() -> bool:
    """Whether torch would load triton (a module set to None in sys.modules counts as absent)."""
    if "triton" in sys.modules:
        return sys.modules["triton"] is not None
    try:
        return importlib.util.find_spec("triton") is not None
    except (ImportError, ValueError):
        return False


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True):
    """Point file descriptor 2 at /dev/null inside the block (Python's own sys.stderr is untouched): for native
    code (TensorFlow's start-up, LiteRT's converter) that writes there whatever the log level says."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_keras():
    """Return the ``keras`` module on the TensorFlow backend."""
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    asked = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
    quiet = asked in (None, QUIET_TF_LOG_LEVEL) and "tensorflow" not in sys.modules
    set_here = quiet and asked is None
    if "torch" in sys.modules and "tensorflow" not in sys.modules and triton_installed():
        # torch.compiler's public entry points import torch's compiler and with it triton, which must precede
        # TensorFlow (see above); disabling compilation of a no-op function has no other effect
        sys.modules["torch"].compiler.disable(lambda: None)
    if set_here:  # only for the import: processes this one starts decide for themselves
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = QUIET_TF_LOG_LEVEL
    try:
        with native_stderr_silenced(quiet):
            import keras
            import tensorflow  # noqa: F401  (its native start-up lines are the ones silenced)
    finally:
        if set_here:
            os.environ.pop("TF_CPP_MIN_LOG_LEVEL", None)
    return keras

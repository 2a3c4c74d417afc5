"""Stop torch asking the NVIDIA driver for its GPUs at every optimizer step of a run that has none.

Importing Lightning sets ``PYTORCH_NVML_BASED_CUDA_CHECK=1`` (so that checking for a GPU never
initialises CUDA, which would break forked workers). With it, ``torch.cuda.is_available()`` asks
NVML for the device count on every call, and nothing caches the answer until CUDA is initialised,
which on a machine without a GPU never happens: it loads ``libnvidia-ml.so.1`` again (or fails to
find it) each time. torch's ``Adam.step`` and ``AdamW.step`` call it once per step to check for
graph capture: about 0.15-0.2 ms a step on a 2-core CPU, 3 % of a step at batch 32
(docs/benchmarks.md). A plain PyTorch program without Lightning does not pay it: torch caches the
CUDA runtime's count.

When no GPU is usable, making none visible (``CUDA_VISIBLE_DEVICES`` empty) answers the same
question at once, without the driver: nothing a run can use changes. A ``CUDA_VISIBLE_DEVICES`` of
the user's is left as it is.
"""

from __future__ import annotations

import os

import torch

VISIBLE_DEVICES = "CUDA_VISIBLE_DEVICES"


def stop_probing_for_cuda() -> bool:
    """Where no CUDA device is usable and the user has not chosen devices, hide them all; True if hidden."""
    if VISIBLE_DEVICES in os.environ or torch.cuda.is_available():
        return False
    os.environ[VISIBLE_DEVICES] = ""
    return True

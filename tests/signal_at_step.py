"""A callback for tests: a real signal (SIGINT as Ctrl-C sends it, or SIGKILL) to its own process, mid-step.

Given on a ``fit`` command line (``--trainer.callbacks+=...``, with ``tests/`` on ``PYTHONPATH``), it
lands at a known place: after the chosen step's backward pass, before its optimizer step, where an
interrupted run used to save weights no resume could continue exactly.
"""

from __future__ import annotations

import os
import signal

from lightning.pytorch import Callback


class SignalAtStep(Callback):
    def __init__(self, step: int, signal_name: str = "SIGINT") -> None:
        self.step = step
        self.signal = signal.Signals[signal_name]

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signal)

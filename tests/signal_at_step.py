"""Callbacks for tests: a real signal (SIGINT as Ctrl-C sends it, or SIGKILL) to its own process, mid-step.

Given on a ``fit`` command line (``--trainer.callbacks+=...``, with ``tests/`` on ``PYTHONPATH``), it
lands at a known place: after the chosen step's backward pass, before its optimizer step, where an
interrupted run used to save weights no resume could continue exactly. ``SignalAtTestBatch`` sends it as a
test batch starts (fit's final test, or the test command's).
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


class SignalAtTestBatch(Callback):
    """``fold``: only in that fold's test, of a k-fold run (cv)."""

    def __init__(self, batch: int, signal_name: str = "SIGINT", fold: int | None = None) -> None:
        self.batch, self.fold = batch, fold
        self.signal = signal.Signals[signal_name]

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx == self.batch and self.fold in (None, trainer.datamodule.hparams.fold):
            os.kill(os.getpid(), self.signal)

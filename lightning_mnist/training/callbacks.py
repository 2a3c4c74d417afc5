"""Callbacks the CLI always adds: per-epoch history (kept in checkpoints) and a resume hint."""

from __future__ import annotations

import sys
import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from mnist_common.results import HISTORY_KEYS


class EpochHistory(Callback):
    """Collects ``train/loss``, ``train/acc``, ``val/loss``, ``val/acc`` per epoch.

    Its state (the history and the training seconds so far) is saved in every
    checkpoint, so a resumed run still ends with complete curves and timings.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self.seconds = 0.0
        self._started = 0.0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.seconds += time.perf_counter() - self._started
        metrics = trainer.callback_metrics
        row: dict[str, float] = {"epoch": trainer.current_epoch, "seconds": round(self.seconds, 3)}
        for key in HISTORY_KEYS:
            value = metrics.get(key.replace("_", "/"))
            if value is not None:
                row[key] = float(value)
        self.history.append(row)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])
        self.seconds = float(state_dict["seconds"])


class ResumeHint(Callback):
    """Tells the user, on Ctrl-C or a crash, how to pick the run up again."""

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if trainer.is_global_zero and trainer.state.fn == "fit":
            print("fit interrupted: a checkpoint was saved; add --ckpt_path last to the same command to resume",
                  file=sys.stderr)

"""Callbacks: per-epoch history (kept in checkpoints) and a resume hint, which the CLI always adds;
an EMA of the weights that a config can add (``configs/best.yaml``)."""

from __future__ import annotations

import sys
import time
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMAWeightAveraging
from lightning.pytorch.trainer.states import TrainerFn

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


class EMAWeightAveraging(LightningEMAWeightAveraging):
    """Lightning's exponential moving average of the weights, whose averaged weights are also the tested ones.

    Lightning's callback validates with the averaged weights and saves them as every checkpoint's
    ``state_dict`` (the training weights go to ``current_model_state``, for resuming). But when the
    same trainer then tests a checkpoint (``fit`` tests ``ckpt_path="best"``), its ``on_load_checkpoint``
    puts the *training* weights back into the model. Outside ``fit`` this one skips that, so ``test``
    and ``validate`` score the averaged weights the checkpoint was chosen on. Use it in a config as::

        trainer:
          callbacks:
            - class_path: lightning_mnist.training.callbacks.EMAWeightAveraging
              init_args: {decay: 0.999}
    """

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        if trainer.state.fn == TrainerFn.FITTING:  # resuming: restore both the training and the averaged weights
            super().on_load_checkpoint(trainer, pl_module, checkpoint)
        # testing or validating: the model already holds the checkpoint's state_dict, the averaged weights

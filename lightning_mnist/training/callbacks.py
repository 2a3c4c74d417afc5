"""Callbacks the CLI adds to every fit (the per-epoch history, the random generators, where Ctrl-C
stops, the run's checkpoints, a progress bar that costs no step time), and an EMA of the weights that a config can add (``configs/best.yaml``).

They keep what they know in every checkpoint, so a run that is interrupted (Ctrl-C, SIGTERM,
SIGKILL) and resumed ends with the same history, timings, weights and best checkpoint as one
that never stopped.
"""

from __future__ import annotations

import errno
import io
import logging
import random
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMAWeightAveraging
from lightning.pytorch.callbacks import ModelCheckpoint, RichProgressBar
from lightning.pytorch.cli import SaveConfigCallback
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mnist_common.errors import Terminated, UserError, escaped
from mnist_common.files import write_atomically
from mnist_common.results import HISTORY_KEYS


class EpochHistory(Callback):
    """``train/loss``, ``train/acc``, ``val/loss``, ``val/acc`` per epoch, training seconds, wall seconds.

    Seconds count across processes: a checkpoint records the training seconds of the
    finished epochs, those already spent in the current one, and the run's wall time, and
    a resumed run (which skips ``on_train_epoch_start`` when it restarts mid-epoch) carries
    them on. Work after the last checkpoint is done again, and counted again.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        self.seconds = 0.0  # training seconds of the finished epochs (validation included)
        self.epoch_seconds_before = 0.0  # seconds the current epoch had run before an interruption
        self.wall_seconds_before = 0.0  # wall seconds of earlier processes of this run
        self._fit_started = time.perf_counter()
        self._epoch_started: float | None = None  # None between epochs

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._fit_started = time.perf_counter()

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._epoch_started = time.perf_counter() - self.epoch_seconds_before  # also right mid-epoch

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.epoch_seconds_before = 0.0
        self._epoch_started = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self.seconds += time.perf_counter() - self._epoch_started
        self._epoch_started = None
        metrics = trainer.callback_metrics
        row: dict[str, float] = {"epoch": trainer.current_epoch, "seconds": round(self.seconds, 3)}
        for key in HISTORY_KEYS:
            value = metrics.get(key.replace("_", "/"))
            if value is not None:
                row[key] = float(value)
        self.history.append(row)

    def wall_seconds(self) -> float:
        """Wall seconds of the whole run so far, earlier processes included."""
        return self.wall_seconds_before + time.perf_counter() - self._fit_started

    def state_dict(self) -> dict[str, Any]:
        in_epoch = time.perf_counter() - self._epoch_started if self._epoch_started is not None else 0.0
        return {"history": self.history, "seconds": self.seconds, "wall_seconds": self.wall_seconds(),
                "epoch_seconds": in_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict["history"])
        self.seconds = float(state_dict["seconds"])
        self.wall_seconds_before = float(state_dict.get("wall_seconds", 0.0))
        # a checkpoint written inside an epoch (an interruption) carries that epoch's seconds so far
        self.epoch_seconds_before = float(state_dict.get("epoch_seconds", 0.0))


class RandomState(Callback):
    """Every random generator a run's future draws from, saved in each checkpoint and restored on resume.

    A resumed run must go on exactly as the run that never stopped: the order of the next batches
    (the sampler draws its seed from torch's generator), the augmentation's transforms and
    dropout's masks (torch's), and anything drawn from numpy's or Python's generators. A checkpoint
    records their states when it is written (at the end of an epoch, or between two batches), which
    is the state the run goes on from. They are put back as soon as Lightning restores the callbacks,
    before anything of the run draws (a OneCycle schedule has the training loader built, which draws,
    while the optimizers are configured), and only when fitting: ``fit`` and ``cv`` test a best
    checkpoint at the end, which must not rewind the generators of the process (``cv``'s next fold
    draws its fresh weights from them). Stored as plain tensors, lists and numbers, so a weights-only
    load reads them.
    """

    def __init__(self) -> None:
        self._trainer: Trainer | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._trainer = trainer  # set up before a checkpoint is restored, for every stage

    def state_dict(self) -> dict[str, Any]:
        numpy_state = np.random.get_state(legacy=False)
        state = {"torch": torch.get_rng_state(), "python": random.getstate(),
                 "numpy": {"bit_generator": numpy_state["bit_generator"],
                           "key": torch.from_numpy(numpy_state["state"]["key"].astype(np.int64)),
                           "pos": int(numpy_state["state"]["pos"]), "has_gauss": int(numpy_state["has_gauss"]),
                           "gauss": float(numpy_state["gauss"])}}
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._trainer is None or self._trainer.state.fn != TrainerFn.FITTING or not state_dict:
            return
        self.restore(state_dict)
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])

    @staticmethod
    def restore(state_dict: dict[str, Any], torch_set: Callable = torch.set_rng_state,
                python_set: Callable = random.setstate, numpy_set: Callable = np.random.set_state) -> None:
        """Put :meth:`state_dict`'s states into the process's generators, or into the ones whose ``set_state``
        functions are given (generators of their own: what tells whether a checkpoint's states are states)."""
        torch_set(state_dict["torch"])
        version, internal, gauss = state_dict["python"]
        python_set((version, tuple(internal), gauss))
        saved = state_dict["numpy"]
        numpy_set({"bit_generator": saved["bit_generator"], "has_gauss": saved["has_gauss"], "gauss": saved["gauss"],
                   "state": {"key": saved["key"].numpy().astype(np.uint32), "pos": saved["pos"]}})


SIGNAL_LOGGER = "lightning.pytorch.trainer.connectors.signal_connector"  # where Lightning logs the signals it takes


class StopBetweenBatches(Callback):
    """Ctrl-C while training stops the run between two batches, where its checkpoint resumes exactly.

    A KeyboardInterrupt lands anywhere, in the middle of a step (weights updated, the scheduler not
    yet stepped, half the batch's random draws made): no checkpoint of that moment can be resumed
    exactly. Lightning stops cleanly on SIGTERM instead: it raises ``SIGTERMException`` after a
    batch is done (optimizer and scheduler stepped, counters and logs up to date) or after an
    epoch, where :class:`RunCheckpoint` saves ``last.ckpt``. While training, this callback turns
    Ctrl-C into that request: it calls the SIGTERM handler Lightning installs while fitting, and
    says so. Validation is finished first (it checks for SIGTERM between its own batches, a point
    training cannot resume from). A second Ctrl-C stops at once, as a plain KeyboardInterrupt: the
    last checkpoint written whole stays the run's resume point.

    Only in the main thread, and only where Ctrl-C would raise KeyboardInterrupt (a process started
    with SIGINT ignored keeps ignoring it).
    """

    def __init__(self) -> None:
        self._previous: Any = None  # the SIGINT handler while not training; None when not installed
        self._trainer: Trainer | None = None
        self._requested = False  # Ctrl-C pressed once
        self._pending = False  # ... during validation: passed on when it ends

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._trainer, self._requested, self._pending = trainer, False, False
        if (threading.current_thread() is threading.main_thread()
                and signal.getsignal(signal.SIGINT) is signal.default_int_handler):
            self._previous = signal.signal(signal.SIGINT, self._ctrl_c)

    def _ctrl_c(self, signum: int, frame: Any) -> None:
        if self._requested:
            self._restore()
            raise KeyboardInterrupt
        self._requested = True
        print("\nCtrl-C: stopping at the end of this batch (Ctrl-C again to stop at once)", file=sys.stderr,
              flush=True)
        if self._trainer.validating:
            self._pending = True
        else:
            self._stop(frame)

    def _stop(self, frame: Any = None) -> None:
        self._pending = False
        lightning_handler = signal.getsignal(signal.SIGTERM)
        if callable(lightning_handler):
            quiet = logging.getLogger(SIGNAL_LOGGER)  # its "Received SIGTERM: 15" for the Ctrl-C said above
            was, quiet.disabled = quiet.disabled, True
            try:
                lightning_handler(signal.SIGTERM, frame)
            finally:
                quiet.disabled = was
        if not self._trainer.received_sigterm:  # no handler of Lightning's to ask: stop as Ctrl-C always did
            self._restore()
            raise KeyboardInterrupt

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pending:
            self._stop()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        if self._pending:  # pressed as a validation ended
            self._stop()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._pending:  # pressed as the epoch's validation ended: Lightning stops when the epoch is done
            self._stop()

    def _restore(self) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        self._restore()


class BesideCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing each file beside its destination and renaming it there.

    Lightning's own writes through an fsspec transaction, which puts the bytes in the system's
    temporary folder and then *moves* them: a copy, not an atomic rename, when the run folder is
    on another filesystem, so a full disk leaves a truncated checkpoint a resume would read.
    :func:`mnist_common.files.write_atomically` writes a temporary file in the destination's
    folder and renames it in one step: a checkpoint is whole at its name, or absent (a failed
    write removes its temporary file). Remote paths (``s3://``...) stay with Lightning's writer.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        serialized = io.BytesIO()
        torch.save(checkpoint, serialized)  # serialized first: a full disk then fails as an OSError, not in torch
        write_atomically(path, lambda tmp: tmp.write_bytes(serialized.getbuffer()), make_parents=True)


def disk_full(error: BaseException | None) -> OSError | None:
    """The write refused for want of space that ``error`` is, or was raised while handling; else None."""
    while error is not None:
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return error
        error = error.__cause__ or error.__context__
    return None


class RunCheckpoint(ModelCheckpoint):
    """Lightning's ModelCheckpoint, as a run folder needs it.

    * When a fit stops between two batches (Ctrl-C through :class:`StopBetweenBatches`, or
      SIGTERM: Lightning's ``SIGTERMException``) it saves ``last.ckpt``, the file ``--ckpt_path
      last`` resumes from, and says so. On any other exception (a second Ctrl-C, an error, a
      SIGTERM during validation) the run is in the middle of a step or of a validation, which no
      resume could continue exactly: nothing is written, and ``last.ckpt`` stays the last whole
      resume point. (Lightning's
      ``save_on_exception`` saves on every exception, and also writes a file named like a top-k
      checkpoint, with the previous epoch's metric in its name, that top-k never removes.)
    * ``resume_hint`` says how to resume; k-fold runs, which cannot be resumed, turn it off.
    * A checkpoint records absolute paths; when the project was moved or copied, the
      resumed run's best and last checkpoints are found again in its own folder instead of
      the old one.
    """

    resume_hint = True

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        super().setup(trainer, pl_module, stage)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # Lightning's default; a user's own stays
            trainer.strategy.checkpoint_io = BesideCheckpointIO()

    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        # Only while fitting (an interrupted final test holds the best weights, not the run's last ones), never
        # during the sanity check or a fast dev run. Written through the Trainer's public save_checkpoint.
        if (not (self.save_last and self.save_on_exception) or trainer.state.fn != TrainerFn.FITTING
                or trainer.sanity_checking or trainer.fast_dev_run):
            return
        # Lightning's clean stop, between two training batches or after an epoch; not one between two validation
        # batches (a SIGTERM during validation), which training cannot go on from exactly
        if not isinstance(exception, SIGTERMException) or trainer.validating:  # mid-step, mid-validation, disk full
            if trainer.is_global_zero and self.resume_hint and isinstance(exception, (KeyboardInterrupt,
                                                                                      SIGTERMException)):
                print(f"fit stopped at once: run the same command with --ckpt_path last to resume from "
                      f"{self.last_model_path}, its last whole checkpoint" if self.last_model_path else
                      "fit stopped at once, before its first checkpoint: there is nothing to resume",
                      file=sys.stderr, flush=True)
            return
        self.last_model_path = self.format_checkpoint_name({}, self.CHECKPOINT_NAME_LAST)  # recorded in the file
        trainer.save_checkpoint(self.last_model_path, weights_only=self.save_weights_only)
        if trainer.is_global_zero and self.resume_hint:
            print(f"fit interrupted: saved {escaped(self.last_model_path)}; run the same command with --ckpt_path last "
                  f"to resume", file=sys.stderr, flush=True)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old = state_dict.get("dirpath")
        if old and self.dirpath and Path(old) != Path(self.dirpath):
            state_dict = self._moved(state_dict, Path(old), Path(self.dirpath))
        super().load_state_dict(self._within(state_dict))

    def _within(self, state_dict: dict[str, Any]) -> dict[str, Any]:
        """The state without the files it names outside this run's checkpoint folder: a tampered (or copied)
        checkpoint could name any file as the run's best, which fit would then read and test."""
        if not self.dirpath:
            return state_dict
        folder = Path(self.dirpath).resolve()

        def inside(path: Any) -> bool:
            try:
                return isinstance(path, str) and bool(path) and Path(path).resolve().is_relative_to(folder)
            except (OSError, ValueError):  # a NUL in it, a loop of links
                return False

        kept = dict(state_dict)
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            if key in kept and not inside(kept[key]):
                kept[key] = ""
        best = state_dict.get("best_k_models")
        kept["best_k_models"] = {path: score for path, score in best.items() if inside(path)} if isinstance(
            best, dict) else {}
        if not kept.get("best_model_path"):
            kept["best_model_score"] = None
        return kept

    @staticmethod
    def _moved(state_dict: dict[str, Any], old: Path, new: Path) -> dict[str, Any]:
        """The state with paths under ``old`` re-rooted under ``new`` where those files exist."""
        def here(path: str) -> str:
            if not path or not Path(path).is_relative_to(old):
                return path
            candidate = new / Path(path).relative_to(old)
            return str(candidate) if candidate.exists() else path

        moved = dict(state_dict, dirpath=str(new))
        for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
            moved[key] = here(state_dict.get(key, ""))
        moved["best_k_models"] = {here(k): v for k, v in (state_dict.get("best_k_models") or {}).items()}
        return moved


class ProgressBar(RichProgressBar):
    """Lightning's Rich progress bar, brought up to date a few times a second instead of after every batch.

    ``RichProgressBar`` redraws its ``refresh_rate`` times a second, but after *every* batch it
    still updates its task and gathers the logged metrics: about 1 ms of the training loop's own
    thread, 15 % of a 2-core step at batch 32 (docs/benchmarks.md). This one does that work at most
    ``updates_per_second`` times a second (and at each epoch's last batch, so the bar ends full), so
    it reads the same and costs a few microseconds a batch. ``fit``, ``validate``, ``test`` and ``cv``
    use it unless the Trainer is given a progress bar of its own or ``enable_progress_bar: false``.
    """

    def __init__(self, updates_per_second: float = 10.0, leave: bool = False) -> None:
        super().__init__(leave=leave)
        if not updates_per_second > 0:
            raise ValueError(f"updates_per_second must be above 0, got {updates_per_second}")
        self.updates_per_second = updates_per_second
        self._due = 0.0  # time.monotonic() after which the next batch updates the bar

    def _now_due(self, batch_idx: int, total: Callable[[], int | float | None], always: bool = False) -> bool:
        """Whether this batch updates the bar (``always``: whenever it is drawn); never on a disabled bar (another
        process than the first of a multi-process run), whose batch counts Lightning does not keep."""
        if self.is_disabled:
            return False
        if always:
            return True
        now = time.monotonic()
        if now >= self._due or batch_idx + 1 == total():
            self._due = now + 1.0 / self.updates_per_second
            return True
        return False

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._now_due(batch_idx, lambda: self.total_train_batches):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._now_due(batch_idx, lambda: self.total_val_batches_current_dataloader, always=trainer.sanity_checking):
            super().on_validation_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if self._now_due(batch_idx, lambda: self.total_test_batches_current_dataloader):
            super().on_test_batch_end(trainer, pl_module, outputs, batch, batch_idx, dataloader_idx)


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


def refuse_diverged(trainer: Trainer) -> None:
    """A run whose best checkpoint holds no model (the loss went to nan) has nothing to test: said so in one line,
    before loading weights that are nan.

    Monitoring a loss, the best score is then nan too (Lightning's checkpoint keeps a nan score as the
    worst possible). Monitoring an accuracy, nan weights still score a finite one (every image gets
    class 0): where a logged figure went to nan, the best checkpoint's weights are looked at (read weights-only).
    """
    checkpoint = trainer.checkpoint_callback
    score, path = checkpoint.best_model_score, checkpoint.best_model_path
    went_nan = any(not torch.isfinite(torch.as_tensor(value)).all() for value in trainer.callback_metrics.values())
    if score is not None and not torch.isfinite(score).all():
        what = f"has no finite {checkpoint.monitor}"
    elif went_nan and path and not finite_weights(path):
        scored = f" ({checkpoint.monitor} {float(score):.4g})" if score is not None else ""
        what = f"holds nan or infinite weights{scored}"
    else:
        return
    raise UserError(f"training diverged: the best checkpoint ({Path(path).name}) {what} (the loss went to nan or "
                    f"infinity), so there is no model to test; lower the learning rate (the run's metrics.csv has "
                    f"every epoch's figures)")


def finite_weights(path: str | Path) -> bool:
    """Whether every floating-point tensor of the checkpoint's ``state_dict`` is finite (read weights-only)."""
    contents = torch.load(path, map_location="cpu", weights_only=True)
    return all(torch.isfinite(value).all() for value in contents.get("state_dict", {}).values()
               if isinstance(value, torch.Tensor) and value.is_floating_point())


class RunConfig(SaveConfigCallback):
    """LightningCLI's ``config.yaml`` of a run, without the checkpoint it started from (``ckpt_path``): the file
    reruns the run, a new one in a folder of its own (docs/runs.md), where a recorded ``ckpt_path`` made the rerun of
    a resumed run resume it in place and replace its results (hostile round 6), and ``test --config`` test the
    checkpoint a run resumed from."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.config.get("ckpt_path") is not None:
            self.config = self.config.clone()
            self.config.ckpt_path = None
        super().setup(trainer, pl_module, stage)


def by_sigterm(err: BaseException) -> bool:
    """Whether ``err`` is the project's Terminated (SIGTERM), or Lightning's way out of one (:func:`interrupted`)."""
    return isinstance(err, Terminated) or isinstance(err.__context__, Terminated)


def interrupted(err: BaseException) -> bool:
    """Whether ``err`` is Lightning's way out of a Ctrl-C it caught (outside training, where
    :class:`StopBetweenBatches` stops between batches; or a second Ctrl-C): ``sys.exit(1)``, raised while it
    handled the KeyboardInterrupt, after its "Detected KeyboardInterrupt" line. The commands exit with 130 instead,
    as the shell does for a Ctrl-C."""
    return isinstance(err, SystemExit) and err.code == 1 and isinstance(err.__context__, KeyboardInterrupt)

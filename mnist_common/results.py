"""The results files both frameworks write: ``results.json``, ``cv_results.json`` and curves.

One schema for Lightning and Keras, so a user can put two runs side by side.
``history`` is a list with one dict per epoch:
``{"epoch", "seconds", "train_loss", "train_acc", "val_loss", "val_acc"}``, where
``seconds`` counts training (validation included) from the start of the first epoch.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from mnist_common.files import write_text


RESULTS_FILE = "results.json"
CV_RESULTS_FILE = "cv_results.json"
CURVES_FILE = "curves.png"
CV_CURVES_FILE = "cv_curves.png"
HISTORY_KEYS = ("train_loss", "train_acc", "val_loss", "val_acc")


@dataclass
class RunResults:
    """One training run: what ``fit`` / ``keras_reference train`` write to ``results.json``."""

    framework: str  # "lightning" or "keras"
    test_acc: float
    test_loss: float
    model_path: str  # best Lightning checkpoint or saved .keras file
    epochs: int  # epochs trained
    best_epoch: int | None
    wall_seconds: float
    history: list[dict[str, float]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    peak_memory_mb: float = field(default_factory=lambda: peak_memory_mb())
    confusion_matrix: list[list[int]] | None = None  # rows: true class, columns: predicted class
    mistakes: int | None = None  # misclassified test images (listed in mistakes.json beside this file)
    # the threads torch's CPU kernels ran on (the torch commands choose them at their start, mnist_common.threads);
    # None for Keras, whose TensorFlow sizes its own pools
    threads: int | None = None


def peak_memory_mb() -> float:
    """Peak resident memory of this process so far, in MiB."""
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 2**10), 1)  # bytes on macOS, KiB on Linux


@dataclass
class FoldResult:
    fold: int
    val_acc: float
    val_loss: float
    epochs: int
    model_path: str
    test_acc: float | None = None
    test_loss: float | None = None
    history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class CVResults:
    """A k-fold run: what both ``cv`` commands write to ``cv_results.json``."""

    framework: str
    num_folds: int
    folds: list[FoldResult]
    wall_seconds: float
    ensemble_test_acc: float | None = None
    ensemble_test_loss: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    ensemble_confusion_matrix: list[list[int]] | None = None
    ensemble_mistakes: int | None = None
    val_acc_mean: float = 0.0
    val_acc_std: float = 0.0
    val_loss_mean: float = 0.0
    val_loss_std: float = 0.0

    def __post_init__(self) -> None:
        accs = [f.val_acc for f in self.folds]
        losses = [f.val_loss for f in self.folds]
        self.val_acc_mean, self.val_acc_std = _mean_std(accs)
        self.val_loss_mean, self.val_loss_std = _mean_std(losses)


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.pstdev(values)


def write_json(obj: RunResults | CVResults | Any, path: str | Path) -> Path:
    """Write a results dataclass (or plain data) as indented JSON, atomically."""
    data = asdict(obj) if is_dataclass(obj) else obj
    return write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())

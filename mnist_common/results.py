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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


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


def write_json(obj: RunResults | CVResults, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(obj), indent=2, default=str) + "\n")
    return path


def read_json(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def pyplot():
    """matplotlib's pyplot drawing to files only (no display), imported on first use:
    reading or writing results must not pay for matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    """The notebook's figure: accuracy and loss per epoch, training vs validation."""
    return _plot({"": history}, path, title)


def plot_cv_curves(histories: list[list[dict[str, float]]], path: str | Path, title: str = "") -> Path:
    """One line pair per fold: validation solid, training dashed."""
    return _plot({f"fold {k} ": h for k, h in enumerate(histories)}, path, title)


def _plot(histories: dict[str, list[dict[str, float]]], path: str | Path, title: str) -> Path:
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("acc", "loss")):
        for i, (label, history) in enumerate(histories.items()):
            epochs = [row["epoch"] + 1 for row in history]
            color = f"C{i}"
            for stage, style in (("train", "--"), ("val", "-")):
                values = [row.get(f"{stage}_{metric}", math.nan) for row in history]
                ax.plot(epochs, values, style, color=color if len(histories) > 1 else None,
                        marker="o", markersize=3, label=f"{label}{stage}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("accuracy" if metric == "acc" else "loss")
        ax.set_title(f"{'Accuracy' if metric == 'acc' else 'Loss'}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path

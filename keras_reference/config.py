"""Settings of the ``train`` and ``cv`` commands, checked before anything heavy is imported.

Framework-free on purpose: the command line validates flags, data files and
output directories here first, so bad input fails in a fraction of a second
with one line instead of after TensorFlow has loaded (or after training).
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from mnist_common.architecture import DEFAULT_PRESET, Architecture
from mnist_common.errors import UserError
from mnist_common.mnist import resolve_data_dir
from mnist_common.splits import DEFAULT_NUM_FOLDS, DEFAULT_SPLIT_SEED, DEFAULT_VAL_FRACTION

# The notebook's training settings.
EPOCHS = 10
BATCH_SIZE = 32
LEARNING_RATE = 1e-4  # Adam(learning_rate=0.0001); epsilon stays Keras' 1e-7
PATIENCE = 3


@dataclass
class Config:
    """What both commands share; stored in the results file as it was used."""

    epochs: int = EPOCHS
    batch_size: int = BATCH_SIZE
    lr: float = LEARNING_RATE
    patience: int = PATIENCE
    subset: int | None = None  # train on a stratified subset of this many training images
    seed: int = 42  # weights, shuffling, dropout and augmentation
    split_seed: int = DEFAULT_SPLIT_SEED  # subset, hold-out and folds: the same indices as Lightning
    augment: bool = False
    data_dir: str | None = None  # None: $MNIST_DATA_DIR, else ./data
    output_dir: str = "runs/keras"
    architecture: str = DEFAULT_PRESET  # a preset, or a YAML/JSON description or .keras file

    def validate(self) -> None:
        """Raise :class:`UserError` for values no run can use (the subset's upper bound is the data's)."""
        Architecture.load(self.architecture).require_mnist("training on MNIST")
        self._validate_numbers()

    def _validate_numbers(self) -> None:
        _at_least("epochs", self.epochs, 1)
        _at_least("batch size", self.batch_size, 1)
        _at_least("patience", self.patience, 0)
        if self.subset is not None:
            _at_least("subset", self.subset, 1)
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"learning rate must be a positive number, got {self.lr}")

    def as_dict(self) -> dict:
        return {**asdict(self), "data_dir": str(resolve_data_dir(self.data_dir))}


@dataclass
class TrainConfig(Config):
    val_fraction: float = DEFAULT_VAL_FRACTION  # stratified hold-out of the training images
    output_dir: str = "runs/keras/train"
    model_path: str = "checkpoints/keras/model.keras"

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.val_fraction < 1.0:
            raise UserError(f"val fraction must be between 0 and 1 (exclusive), got {self.val_fraction}")
        if Path(self.model_path).suffix != ".keras":
            raise UserError(f"model path must end in .keras (Keras 3's file format), got {self.model_path}")


@dataclass
class CVConfig(Config):
    folds: int = DEFAULT_NUM_FOLDS
    augment: bool = True  # the notebook augmented every fold's training part
    output_dir: str = "runs/keras/cv"
    checkpoint_dir: str = "checkpoints/keras/cv"  # fold_<k>.keras

    def validate(self) -> None:
        super().validate()
        _at_least("folds", self.folds, 2)


def _at_least(name: str, value: int, minimum: int) -> None:
    if value < minimum:
        raise UserError(f"{name} must be at least {minimum}, got {value}")


def writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Create ``path`` if needed and prove a file can be written there, before any training."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise UserError(f"{what} {path} is not writable: {err.strerror or err}") from None
    return path

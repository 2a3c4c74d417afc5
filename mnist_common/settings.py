"""Checks of the data settings both frameworks share, so a bad value is refused the same way by both.

Both command lines spell these settings alike (``--data.batch_size``, ``--data.subset``,
``--data.num_folds``...), and both check them here before anything is built or read.
"""

from __future__ import annotations

import math
import numbers
import os
from pathlib import Path

from mnist_common.errors import UserError, escaped, path_text
from mnist_common.mnist import TRAIN_IMAGES
from mnist_common.splits import DEFAULT_VAL_FRACTION, SMALLEST_SUBSET

SEED_RANGE = (0, 2**32 - 1)  # what numpy's generator (and so Lightning's and Keras' seeding) accepts
# Adam moves each weight by about lr per step: above 1 a step overshoots any weight this network has,
# and the run ends in NaN after a whole epoch of work; refused before it starts.
MAX_LR = 1.0
# Folds of a k-fold run: each trains a model and an ensemble holds them all (the notebook's 5, a user's 10 or 20); a
# k-fold cv_results.json naming thousands was minutes and gigabytes of loading before any prediction
MAX_FOLDS = 100
# The notebook's augmentation ranges, the defaults of --data.rotation, ... in both frameworks
AUGMENT_DEFAULTS = {"rotation": 5.0, "zoom": 0.05, "shift": 0.05, "shear": 0.05, "elastic_alpha": 0.0,
                    "elastic_sigma": 4.0}


def check_data_settings(*, batch_size: int, eval_batch_size: int, val_fraction: float, subset: int | None,
                        num_folds: int | None, fold: int | None, rotation: float, zoom: float, shift: float,
                        shear: float, elastic_alpha: float = 0.0, elastic_sigma: float = 4.0,
                        split_seed: int = 42, steps_per_execution: int = 1) -> None:
    """Raise a one-line :class:`UserError` for settings no run can use, before any data is read.

    The messages name the flags as both command lines spell them (``--data.batch_size``). The types are checked too:
    a checkpoint's recorded values reach here unparsed (``num_folds: "two"`` was a traceback, hostile round 13).
    """
    for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size), ("subset", subset),
                        ("num_folds", num_folds), ("fold", fold), ("split_seed", split_seed),
                        ("steps_per_execution", steps_per_execution)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
            raise UserError(f"--data.{name} must be a whole number, got {escaped(repr(value))[:100]}")
    for name, value in (("val_fraction", val_fraction), ("rotation", rotation), ("zoom", zoom), ("shift", shift),
                        ("shear", shear), ("elastic_alpha", elastic_alpha), ("elastic_sigma", elastic_sigma)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise UserError(f"--data.{name} must be a number, got {escaped(repr(value))[:100]}")
    for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size),
                        ("steps_per_execution", steps_per_execution)):
        if value < 1:
            raise UserError(f"--data.{name} must be at least 1, got {value}")
        if value > TRAIN_IMAGES:  # more than every training image at once is all of them (and 2**63 a traceback)
            raise UserError(f"--data.{name} must be at most {TRAIN_IMAGES:,} (the training images), got {value:,}")
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"--data.val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    check_subset("--data.subset", subset)
    if num_folds is not None and not 2 <= num_folds <= MAX_FOLDS:
        raise UserError(f"--data.num_folds must be between 2 and {MAX_FOLDS} (or null for the hold-out split), got "
                        f"{num_folds}")
    if fold is not None and num_folds is None:
        raise UserError(f"--data.fold {fold} needs --data.num_folds (the k-fold split it is a fold of)")
    if fold is not None and not 0 <= fold < num_folds:
        raise UserError(f"--data.fold must be between 0 and {num_folds - 1}, got {fold}")
    for name, value, high in (("rotation", rotation, 180.0), ("zoom", zoom, 0.9), ("shift", shift, 1.0),
                              ("shear", shear, 80.0), ("elastic_alpha", elastic_alpha, 100.0)):
        if not (math.isfinite(value) and 0.0 <= value <= high):
            raise UserError(f"--data.{name} must be a number from 0 to {high:g}, got {value}")
    if not (math.isfinite(elastic_sigma) and 0.5 <= elastic_sigma <= 20.0):
        raise UserError(f"--data.elastic_sigma must be a number from 0.5 to 20 (pixels), got {elastic_sigma}")
    check_seed_range("--data.split_seed", split_seed)


def optimizer_steps(images: int, batch_size: int, steps_per_execution: int, loader_batches: int) -> int:
    """The optimizer steps of an epoch's first ``loader_batches`` training batches, each holding
    ``steps_per_execution`` batches of ``batch_size`` (``--data.steps_per_execution``), the epoch's last
    batch what is left of its ``images``: what the data module trains on and what ``fit``'s checks count."""
    return min(loader_batches * steps_per_execution, math.ceil(images / batch_size))


def check_optimizer_settings(lr: float, label_smoothing: float = 0.0, weight_decay: float = 0.0) -> None:
    """The optimizer's and the loss' settings (``--model.lr``, ``--model.label_smoothing``,
    ``--model.weight_decay``), refused in the same words by both frameworks before anything is built."""
    if not (math.isfinite(lr) and 0 < lr <= MAX_LR):
        raise UserError(f"--model.lr must be a positive number up to {MAX_LR:g} (Adam's step size), got {lr}")
    if not (math.isfinite(label_smoothing) and 0.0 <= label_smoothing < 1.0):
        raise UserError(f"--model.label_smoothing must be at least 0 and below 1, got {label_smoothing}")
    if not (math.isfinite(weight_decay) and weight_decay >= 0.0):
        raise UserError(f"--model.weight_decay must be 0 or more, got {weight_decay}")


def check_training_length(*, max_epochs: int | None, patience: int) -> None:
    """Refuse an epoch limit or a patience no run can mean, the same way in both frameworks.

    Lightning reads ``max_epochs -1`` as "train forever" and takes a negative patience as "stop
    after the first epoch without improvement"; neither is what a user typing them wants.
    """
    if max_epochs is not None and max_epochs < 1:
        raise UserError(f"--trainer.max_epochs must be at least 1, got {max_epochs}")
    if patience < 0:
        raise UserError(f"--early_stopping.patience must be at least 0 (epochs without improvement), got {patience}")


def check_subset(flag: str, subset: int | None) -> None:
    """A stratified subset's size (a flag of the commands and of the scripts that run them): from
    :data:`SMALLEST_SUBSET` to all the training images, or None for all of them."""
    if subset is not None and not SMALLEST_SUBSET <= subset <= TRAIN_IMAGES:
        raise UserError(f"{flag} must be between {SMALLEST_SUBSET} and {TRAIN_IMAGES} images (or null for all), "
                        f"got {subset}")


def check_seed_range(flag: str, seed: int) -> None:
    """A seed flag's value numpy (and torch's generators) accept."""
    if not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise UserError(f"{flag} must be from {SEED_RANGE[0]} to {SEED_RANGE[1]}, got {seed}")


def check_cv_folds(num_folds: int | None, fold: int | None = None,
                   val_fraction: float = DEFAULT_VAL_FRACTION) -> None:
    """``cv`` trains every fold of a k-fold split: it needs the folds, takes no single one, and no hold-out
    fraction (each fold validates on its own part: another fraction would be silently ignored)."""
    if num_folds is None:
        raise UserError("--data.num_folds: cv needs at least 2 folds")
    if fold is not None:
        raise UserError(f"--data.fold {fold}: cv trains every fold; to train one fold, use fit "
                        f"--data.num_folds {num_folds} --data.fold {fold}")
    if val_fraction != DEFAULT_VAL_FRACTION:
        raise UserError(f"--data.val_fraction {val_fraction}: cv validates each fold on its own part of the images, "
                        f"not on a hold-out (use --data.num_folds)")


def check_augment_ranges(augment: bool, **ranges: float) -> None:
    """Ranges of an augmentation that is off would be silently ignored: refused unless they are the defaults."""
    if augment:
        return
    for name, value in ranges.items():
        if value != AUGMENT_DEFAULTS[name]:
            raise UserError(f"--data.{name} {value:g}: the augmentation is off, so its ranges are not used; add "
                            f"--data.augment true (or leave the range out)")


def check_seed(seed: int | bool | None) -> None:
    """``--seed_everything``: a seed numpy accepts (Lightning also takes true for a random one, false for none).

    Out of range, numpy raises only when the run seeds its generators, with a traceback.
    """
    if isinstance(seed, int) and not isinstance(seed, bool) and not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise UserError(f"--seed_everything {seed}: a seed must be from {SEED_RANGE[0]} to {SEED_RANGE[1]} "
                        f"(or true for a random one, false for none)")


def check_folder_name(flag: str, value: str | None) -> None:
    """Refuse an empty folder name (``--output_dir ''``, ``--data.data_dir ''``): an empty path is the current folder,
    so a run would write its folders among whatever is there (and an empty data folder would quietly mean the
    default)."""
    if value is not None and not str(value).strip():
        raise UserError(f"{flag} {str(value)!r}: an empty name; give a folder (or leave the flag out for its default)")


# The longest path a run writes below its output folder, in bytes: <framework>/version_<n>/checkpoints/ and a
# checkpoint's name (epoch07-val_loss0.0262-v1.ckpt), or a temporary name beside a file it writes atomically
RUN_PATH_ROOM = 160
PATH_MAX = 4096  # Linux's, where the system does not say


def check_output_room(flag: str, value: str | None) -> None:
    """Refuse an output folder whose path leaves no room for a run's files below it: such a run trained a whole
    epoch, then failed writing its first checkpoint, and removed its folder (hostile round 6)."""
    if value is None or not str(value).strip():
        return
    path = os.path.abspath(value)
    existing = next((p for p in (path, *map(str, Path(path).parents)) if os.path.isdir(p)), "/")
    try:
        limit = os.pathconf(existing, "PC_PATH_MAX")
    except (OSError, ValueError):
        limit = PATH_MAX
    size = len(os.fsencode(path))
    if size + RUN_PATH_ROOM > limit:
        raise UserError(f"{flag} {path_text('...' + str(value)[-40:])}: a path of {size:,} bytes leaves no room for "
                        f"a run's files below it (they add up to {RUN_PATH_ROOM} bytes; the system allows "
                        f"{limit:,} a path): give a shorter one")


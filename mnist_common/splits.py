"""Index sets into the 60,000 MNIST training images, identical for both frameworks.

All splits are stratified (class proportions kept) and seeded, and are computed
with scikit-learn so that ``lightning_mnist`` and ``keras_reference`` train and
validate on exactly the same images.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedKFold, train_test_split

from mnist_common.errors import UserError
from mnist_common.mnist import load_train_labels

DEFAULT_SPLIT_SEED = 42  # the notebook's random_state
DEFAULT_VAL_FRACTION = 0.1
DEFAULT_NUM_FOLDS = 5
SMALLEST_SUBSET = 20  # two images of each digit: the fewest a stratified split into training and validation takes


@dataclass(frozen=True)
class Split:
    """Sorted indices of the training and validation images."""

    train: np.ndarray
    val: np.ndarray


def stratified_subset(labels: np.ndarray, size: int | None, seed: int = DEFAULT_SPLIT_SEED) -> np.ndarray:
    """Sorted indices of a stratified random subset of ``size`` images (all when ``None``)."""
    n = len(labels)
    if size is None or size == n:
        return np.arange(n)
    if not SMALLEST_SUBSET <= size <= n:
        raise UserError(f"subset must be between {SMALLEST_SUBSET} and {n} images, got {size}")
    chosen, _ = train_test_split(np.arange(n), train_size=size, stratify=labels, random_state=seed)
    return np.sort(chosen)


def holdout_split(labels: np.ndarray, val_fraction: float = DEFAULT_VAL_FRACTION,
                  seed: int = DEFAULT_SPLIT_SEED) -> Split:
    """Stratified train/validation hold-out of positions ``0 .. len(labels)-1``."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val_fraction must be between 0 and 1, got {val_fraction}")
    check_holdout_sizes(len(labels), len(np.unique(labels)), val_fraction)
    train, val = train_test_split(np.arange(len(labels)), test_size=val_fraction,
                                  stratify=labels, random_state=seed)
    return Split(np.sort(train), np.sort(val))


def check_holdout_sizes(images: int, classes: int, val_fraction: float) -> None:
    """Refuse (ValueError) a hold-out of ``val_fraction`` of ``images`` that leaves either side fewer images than
    ``classes``, which a stratified split needs one of each of, naming the fraction that would do: scikit-learn's own
    refusal said "The test_size = 1 should be greater or equal to the number of classes = 10". Its sizes: the held-out
    images rounded up, the kept ones down."""
    held, kept = math.ceil(val_fraction * images), math.floor((1.0 - val_fraction) * images)
    if held < classes:
        least = math.floor(1000 * (classes - 1) / images) / 1000
        while math.ceil(least * images) < classes:
            least += 0.001
        raise ValueError(f"{held} validation image{'s' if held != 1 else ''}, fewer than the {classes} classes (a "
                         f"stratified split holds out one of each at least); give --data.val_fraction "
                         f"{round(least, 3)} or more")
    if kept < classes:
        most = math.ceil(1000 * (1.0 - classes / images)) / 1000
        while most > 0 and math.floor((1.0 - most) * images) < classes:
            most -= 0.001
        raise ValueError(f"{kept} training image{'s' if kept != 1 else ''}, fewer than the {classes} classes (a "
                         f"stratified split keeps one of each at least); give --data.val_fraction "
                         f"{round(most, 3)} or less")


def kfold_splits(labels: np.ndarray, num_folds: int = DEFAULT_NUM_FOLDS,
                 seed: int = DEFAULT_SPLIT_SEED) -> list[Split]:
    """The notebook's ``StratifiedKFold(num_folds, shuffle=True, random_state=seed)``."""
    if num_folds < 2:
        raise UserError(f"num_folds must be at least 2, got {num_folds}")
    folds = StratifiedKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    return [Split(train, val) for train, val in folds.split(np.zeros(len(labels)), labels)]


def make_split(labels: np.ndarray, *, subset: int | None = None, val_fraction: float = DEFAULT_VAL_FRACTION,
               num_folds: int | None = None, fold: int = 0, seed: int = DEFAULT_SPLIT_SEED) -> Split:
    """Training/validation indices into ``labels`` (the full training set).

    ``subset`` first draws a stratified subset; then either fold ``fold`` of a
    stratified ``num_folds``-fold split of it, or a stratified hold-out of
    ``val_fraction`` of it.
    """
    if num_folds and not 0 <= fold < num_folds:
        raise UserError(f"fold must be between 0 and {num_folds - 1}, got {fold}")
    try:
        pool = stratified_subset(labels, subset, seed)
        if num_folds:
            split = kfold_splits(labels[pool], num_folds, seed)[fold]
        else:
            split = holdout_split(labels[pool], val_fraction, seed)
    except ValueError as err:  # scikit-learn: too few images per class for this split
        how = f"into --data.num_folds {num_folds} stratified folds" if num_folds else \
            f"with --data.val_fraction {val_fraction}"
        raise UserError(f"cannot split {subset or len(labels)} images {how}: {err}") from None
    return Split(pool[split.train], pool[split.val])


def check_split(data_dir, *, subset: int | None, val_fraction: float, num_folds: int | None, seed: int) -> Split:
    """Make the split a run will make (its first fold), so one that cannot be made is refused before any work.

    Too few images per class for ``num_folds`` stratified folds (``--data.subset 20`` in 5 folds,
    ``--data.num_folds 501``) is only found by drawing the split; only the labels are read for it.
    Returns the split, whose sizes the Trainer's per-epoch settings are checked against.
    """
    return make_split(load_train_labels(data_dir, download=False), subset=subset, val_fraction=val_fraction,
                      num_folds=num_folds, fold=0, seed=seed)

"""MNIST for Keras: the project's shared loader and splits, in the notebook's array format.

Indices come from :func:`mnist_common.splits.make_split`, so the Keras reference
trains and validates on exactly the images the Lightning side uses. Validation
images come from the training set; the test set is only for the final test.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import numpy as np

from keras_reference.augment import notebook_augmentation
from keras_reference.config import DataSettings
from keras_bridge.backend import import_keras
from mnist_common.architecture import MNIST_INPUT_SHAPE as IMAGE_SHAPE
from mnist_common.architecture import fixed_input_shape
from mnist_common.mnist import MNIST, NUM_CLASSES, load_mnist
from mnist_common.splits import DEFAULT_SPLIT_SEED, DEFAULT_VAL_FRACTION, Split, make_split

keras = import_keras()
import tensorflow as tf  # noqa: E402  (Keras' backend, with its logging settings)


@dataclass(frozen=True)
class Data:
    """Inputs (N, 28, 28, 1) float32 in [0, 1] (or another layout of the same pixels, :meth:`for_model`) and
    one-hot float32 targets (N, 10)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    split: Split  # indices of x_train / x_val into the 60,000 training images

    def for_model(self, model: "keras.Model", pixel_scale: float = 1.0) -> Data:
        """The same pixels in the model's own input layout, (N, 28, 28, 1), (N, 28, 28), (N, 784) or (N, 784, 1),
        and scale (``pixel_scale``: 255 for a model that rescales 0-255 pixels itself,
        :attr:`Architecture.pixel_scale`); a size the model leaves open (None) is MNIST's (``fixed_input_shape``)."""
        shape = fixed_input_shape(model.input_shape[1:])
        return dataclasses.replace(self, **{name: getattr(self, name).reshape(-1, *shape) * np.float32(pixel_scale)
                                            for name in ("x_train", "x_val", "x_test")})


def to_inputs(images: np.ndarray) -> np.ndarray:
    """uint8 (N, 28, 28) -> float32 (N, 28, 28, 1) in [0, 1], as the notebook scales pixels."""
    return (images.astype(np.float32) / 255.0)[..., np.newaxis]


def to_targets(labels: np.ndarray) -> np.ndarray:
    """Class ids -> one-hot rows, what categorical cross-entropy expects."""
    return np.eye(NUM_CLASSES, dtype=np.float32)[labels]


def load_data(data_dir: str | os.PathLike | None = None, *, mnist: MNIST | None = None,
              subset: int | None = None, val_fraction: float = DEFAULT_VAL_FRACTION,
              num_folds: int | None = None, fold: int = 0, seed: int = DEFAULT_SPLIT_SEED) -> Data:
    """The hold-out split (or fold ``fold`` of ``num_folds``) of ``subset`` training images, plus the test set.

    Pass ``mnist`` to reuse arrays already loaded (k-fold loads the files once).
    """
    if mnist is None:
        mnist = load_mnist(data_dir)
    split = make_split(mnist.train_labels, subset=subset, val_fraction=val_fraction,
                       num_folds=num_folds, fold=fold, seed=seed)
    return Data(
        x_train=to_inputs(mnist.train_images[split.train]), y_train=to_targets(mnist.train_labels[split.train]),
        x_val=to_inputs(mnist.train_images[split.val]), y_val=to_targets(mnist.train_labels[split.val]),
        x_test=to_inputs(mnist.test_images), y_test=to_targets(mnist.test_labels),
        split=split,
    )


def train_dataset(x: np.ndarray, y: np.ndarray, settings: DataSettings, seed: int) -> tf.data.Dataset:
    """Shuffled (reshuffled every epoch) training batches, augmented batch-wise when the settings ask."""
    ds = tf.data.Dataset.from_tensor_slices((x, y))
    ds = ds.shuffle(len(x), seed=seed, reshuffle_each_iteration=True).batch(settings.batch_size)
    if settings.augment:
        augment = notebook_augmentation(seed, settings.rotation, settings.zoom, settings.shift, settings.shear,
                                        settings.elastic_alpha, settings.elastic_sigma)
        layout = x.shape[1:]

        def augmented(inputs, targets):  # the augmentation works on (28, 28, 1) pictures, whatever the model takes
            pictures = augment(tf.reshape(inputs, (-1, *IMAGE_SHAPE)))
            return tf.reshape(pictures, (-1, *layout)), targets

        # One call at a time: the generator's state then advances in batch order, so a
        # seeded run is reproducible; prefetch still overlaps augmentation with training.
        ds = ds.map(augmented)
    return ds.prefetch(tf.data.AUTOTUNE)

"""The notebook's ``ImageDataGenerator`` augmentation in TensorFlow ops: one affine warp per picture.

The notebook used ``ImageDataGenerator(rotation_range=5, zoom_range=0.05,
width_shift_range=0.05, height_shift_range=0.05, shear_range=0.05)``, which Keras 3
keeps only in ``keras.src.legacy``. What it does, and what this does for every picture of a batch:

- draw a rotation in [-5, 5] degrees, a shear in [-0.05, 0.05] degrees, an x and a y zoom
  factor independently from [0.95, 1.05], and x and y shifts in [-0.05, 0.05] of the size;
- compose them into one matrix in Keras' order (rotation, shift, shear, zoom):
  :func:`mnist_common.affine.affine_terms`, which Lightning's augmentation uses too;
- resample the picture once, bilinearly, edge pixels repeated (fill_mode "nearest").

Keras' preprocessing layers (``RandomRotation``, ``RandomTranslation``, ``RandomShear``,
``RandomZoom``) would each resample the picture, four bilinear passes that blur the digits a
little more each time (and ``RandomShear`` shears about a corner): the model would train on softer
pictures than Lightning's and than the test set's. One warp keeps Keras' and Lightning's training
pictures the same kind of picture; tests/test_recipes_keras.py checks that for the same parameters
the two warps agree pixel for pixel.

Beyond the notebook, the elastic distortion Lightning's augmentation offers (``--data.elastic_alpha``,
``--data.elastic_sigma``; Simard et al. 2003): every image gets its own field of displacements, drawn
uniformly from [-1, 1] per pixel and axis, smoothed by the Gaussian of
:func:`mnist_common.elastic.gaussian_matrix` (Lightning's filter: a test compares them), scaled by alpha
pixels, and added to the affine warp's sampling positions, so the picture is still resampled once,
as Lightning does.
"""

from __future__ import annotations

import math

from keras_bridge.backend import import_keras
from mnist_common.affine import affine_terms
from mnist_common.elastic import gaussian_matrix

import_keras()  # TensorFlow as the Keras reference starts it (quiet start-up, the import order torch needs)
import tensorflow as tf  # noqa: E402

PARAMETERS = 6  # rotation, shear, x zoom, y zoom, x shift, y shift: one uniform draw each per picture


def affine_positions(rotation: "tf.Tensor", shear: "tf.Tensor", zoom_x: "tf.Tensor", zoom_y: "tf.Tensor",
                     shift_x: "tf.Tensor", shift_y: "tf.Tensor", height: int,
                     width: int) -> tuple["tf.Tensor", "tf.Tensor"]:
    """(N, H, W) rows and columns, in pixels, each output pixel is sampled from; one parameter per picture.

    ``rotation`` and ``shear`` in degrees, zooms as factors, shifts as fractions of the size (as
    Lightning's :func:`~lightning_mnist.data.augment.affine_matrices` takes them); pixel centres
    normalised as torch's ``affine_grid(align_corners=False)`` places them.
    """
    angle, angle_shear = rotation * (math.pi / 180), (rotation + shear) * (math.pi / 180)
    (a, b, c), (d, e, f) = [[term[:, None, None] for term in row] for row in affine_terms(
        tf.cos(angle), tf.sin(angle), tf.cos(angle_shear), tf.sin(angle_shear), zoom_x, zoom_y, shift_x, shift_y)]
    y, x = tf.meshgrid((2 * tf.range(height, dtype=tf.float32) + 1) / height - 1,
                       (2 * tf.range(width, dtype=tf.float32) + 1) / width - 1, indexing="ij")
    at_x, at_y = a * x + b * y + c, d * x + e * y + f  # normalised input positions
    return (at_y + 1) * (height / 2) - 0.5, (at_x + 1) * (width / 2) - 0.5


def notebook_augmentation(seed: int | None = None, rotation: float = 5.0, zoom: float = 0.05, shift: float = 0.05,
                          shear: float = 0.05, elastic_alpha: float = 0.0, elastic_sigma: float = 4.0):
    """A function augmenting a batch of (N, H, W, C) pictures, each with its own draws; safe inside ``tf.data``.

    The ranges mean what ``ImageDataGenerator``'s do (degrees, fractions, degrees); the defaults are
    the notebook's; ``elastic_alpha`` > 0 adds the elastic distortion. Draws come from a
    ``tf.random.Generator`` seeded with ``seed`` (fresh draws each call, reproducible in order).
    """
    generator = tf.random.Generator.from_seed(seed) if seed is not None \
        else tf.random.Generator.from_non_deterministic_state()

    def augment(pictures: "tf.Tensor") -> "tf.Tensor":
        height, width = pictures.shape[1], pictures.shape[2]
        n = tf.shape(pictures)[0]
        draws = generator.uniform((PARAMETERS, n), -1.0, 1.0)
        rows, cols = affine_positions(draws[0] * rotation, draws[1] * shear, 1 + draws[2] * zoom, 1 + draws[3] * zoom,
                                      draws[4] * shift, draws[5] * shift, height, width)
        if elastic_alpha:
            moved = elastic_displacements(generator, n, height, width, elastic_alpha, elastic_sigma)
            rows, cols = rows + moved[..., 0], cols + moved[..., 1]
        return bilinear_at(pictures, rows, cols)

    return augment


def elastic_displacements(generator: "tf.random.Generator", n, height: int, width: int, alpha: float,
                          sigma: float) -> "tf.Tensor":
    """(N, H, W, 2) random displacements in pixels, (dy, dx): Simard et al.'s field, drawn as Lightning draws it."""
    field = generator.uniform((n, 2, height, width), -1.0, 1.0)
    smoothed = tf.einsum("ij,ncjk,kl->ncil", gaussian_matrix(height, sigma), field, gaussian_matrix(width, sigma))
    return tf.transpose(smoothed, (0, 2, 3, 1)) * alpha


def bilinear_at(pictures: "tf.Tensor", rows: "tf.Tensor", cols: "tf.Tensor") -> "tf.Tensor":
    """(N, H, W, C) pictures sampled at (N, H, W) fractional pixel positions, bilinearly; positions beyond the edge
    take the edge's value (torch's ``grid_sample(padding_mode="border")``, Keras' fill_mode "nearest").

    ``keras.ops.image.map_coordinates`` does this for one array of static shape; a tf.data batch's size is not
    static (the last batch is short), so the four neighbours are gathered here.
    """
    height, width = pictures.shape[1], pictures.shape[2]
    rows = tf.clip_by_value(rows, 0.0, height - 1.0)
    cols = tf.clip_by_value(cols, 0.0, width - 1.0)
    top, left = tf.floor(rows), tf.floor(cols)
    down, right = rows - top, cols - left  # the weights of the lower and the right neighbours
    top, left = tf.cast(top, tf.int32), tf.cast(left, tf.int32)
    bottom, far = tf.minimum(top + 1, height - 1), tf.minimum(left + 1, width - 1)

    def at(r, c):
        return tf.gather_nd(pictures, tf.stack([r, c], -1), batch_dims=1)

    down, right = down[..., None], right[..., None]
    return ((1 - down) * ((1 - right) * at(top, left) + right * at(top, far))
            + down * ((1 - right) * at(bottom, left) + right * at(bottom, far)))

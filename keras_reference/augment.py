"""The notebook's ``ImageDataGenerator`` augmentation, rebuilt from Keras 3 preprocessing layers.

The notebook used ``ImageDataGenerator(rotation_range=5, zoom_range=0.05,
width_shift_range=0.05, height_shift_range=0.05, shear_range=0.05)``, which Keras 3
keeps only in ``keras.src.legacy``. Its meaning, mapped onto the layers:

- rotation_range=5 is in degrees: ``RandomRotation`` takes a fraction of a full
  turn, so the factor is 5/360 (angles uniform in [-5, 5] degrees);
- zoom_range=0.05 draws the x and y zoom independently from [0.95, 1.05]:
  ``RandomZoom`` with an explicit ``width_factor`` does the same;
- the shifts are fractions of the 28-pixel image, as in ``RandomTranslation``;
- shear_range=0.05 is in degrees too (a slope of sin(0.05 deg) = 8.7e-4, a
  horizontal shear): ``RandomShear`` takes the slope itself;
- fill_mode "nearest" (edge pixels repeated) and bilinear interpolation on every layer.

Beyond the notebook, the elastic distortion Lightning's augmentation offers (``--data.elastic_alpha``,
``--data.elastic_sigma``; Simard et al. 2003): every image gets its own field of displacements, drawn
uniformly from [-1, 1] per pixel and axis, smoothed by the Gaussian of
:func:`mnist_common.elastic.gaussian_matrix` (Lightning's filter: a test compares them), scaled by alpha pixels,
and the picture is resampled there (bilinear, edge pixels repeated).
Lightning adds the field to its affine grid and resamples once; here it is one more resampling after
the affine layers, like them.

Approximations: ``ImageDataGenerator`` composes one affine matrix and resamples
once; here each layer resamples (bilinear), so images come out a little softer.
``RandomShear`` shears about the image corner rather than the centre, which adds
a shift of at most 0.02 pixel. The layers run in the order of the notebook's matrix
product (rotation, shift, shear, zoom), which matters little at these magnitudes.
"""

from __future__ import annotations

import math

from keras_bridge.backend import import_keras
from mnist_common.elastic import gaussian_matrix

keras = import_keras()
import tensorflow as tf  # noqa: E402  (Keras' backend, with its logging settings)

FILL_MODE = "nearest"


def notebook_augmentation(seed: int | None = None, rotation: float = 5.0, zoom: float = 0.05, shift: float = 0.05,
                          shear: float = 0.05) -> "keras.Sequential":
    """Random affine augmentation for batches of (N, H, W, C) images; safe inside ``tf.data``.

    The ranges mean what ``ImageDataGenerator``'s do (degrees, fractions, degrees); the
    defaults are the notebook's. A range of 0 leaves its layer out.
    """
    seeds = [None] * 4 if seed is None else [seed + i for i in range(4)]  # decorrelate the layers
    layers = [
        rotation and keras.layers.RandomRotation(rotation / 360.0, fill_mode=FILL_MODE, seed=seeds[0]),
        shift and keras.layers.RandomTranslation(shift, shift, fill_mode=FILL_MODE, seed=seeds[1]),
        shear and keras.layers.RandomShear(x_factor=math.sin(math.radians(shear)), y_factor=0.0, fill_mode=FILL_MODE,
                                           seed=seeds[2]),
        zoom and keras.layers.RandomZoom(height_factor=(-zoom, zoom), width_factor=(-zoom, zoom), fill_mode=FILL_MODE,
                                         seed=seeds[3]),
    ]
    return keras.Sequential([layer for layer in layers if layer], name="notebook_augmentation")


def elastic_displacements(generator: "tf.random.Generator", n, height: int, width: int, alpha: float,
                          sigma: float) -> "tf.Tensor":
    """(N, H, W, 2) random displacements in pixels, (dy, dx): Simard et al.'s field, drawn as Lightning draws it."""
    field = generator.uniform((n, 2, height, width), -1.0, 1.0)
    smoothed = tf.einsum("ij,ncjk,kl->ncil", gaussian_matrix(height, sigma), field, gaussian_matrix(width, sigma))
    return tf.transpose(smoothed, (0, 2, 3, 1)) * alpha


def elastic_distortion(seed: int | None, alpha: float, sigma: float):
    """A function distorting a batch of (N, H, W, C) pictures elastically, each with its own field; safe in tf.data.

    Draws from a ``tf.random.Generator`` seeded with ``seed`` (fresh draws each call, reproducible in order).
    """
    generator = tf.random.Generator.from_seed(seed) if seed is not None \
        else tf.random.Generator.from_non_deterministic_state()

    def distort(pictures: "tf.Tensor") -> "tf.Tensor":
        height, width = pictures.shape[1], pictures.shape[2]
        moved = elastic_displacements(generator, tf.shape(pictures)[0], height, width, alpha, sigma)
        rows, cols = tf.meshgrid(tf.range(height, dtype=pictures.dtype), tf.range(width, dtype=pictures.dtype),
                                 indexing="ij")
        return bilinear_at(pictures, rows + moved[..., 0], cols + moved[..., 1])

    return distort


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

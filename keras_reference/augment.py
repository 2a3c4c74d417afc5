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

Approximations: ``ImageDataGenerator`` composes one affine matrix and resamples
once; here each layer resamples (bilinear), so images come out a little softer.
``RandomShear`` shears about the image corner rather than the centre, which adds
a shift of at most 0.02 pixel. The layers run in the order of the notebook's matrix
product (rotation, shift, shear, zoom), which matters little at these magnitudes.
"""

from __future__ import annotations

import math

from keras_bridge.backend import import_keras

keras = import_keras()

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

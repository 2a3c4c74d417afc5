"""The notebook's affine augmentation as one matrix, in one place for both frameworks.

``ImageDataGenerator(rotation_range, width/height_shift_range, shear_range, zoom_range)`` draws, per
image, a rotation and a shear in degrees, an x and a y zoom factor and two shifts (fractions of the
size), composes them into one matrix in Keras' order (rotation, shift, shear, zoom) and resamples
the picture once, bilinearly, edge pixels repeated. Lightning's augmentation
(``lightning_mnist/data/augment.py``: torch's ``affine_grid`` and ``grid_sample``) and the Keras
reference's (``keras_reference/augment.py``: TensorFlow ops) both take the matrix from
:func:`affine_terms` and resample once, so the two frameworks train on the same distribution of
pictures (tests compare them with each other and with Keras' ``ImageDataGenerator.apply_transform``).

Framework-free, as the core must be: the terms are built with arithmetic only, so the same code
runs on torch tensors, TensorFlow tensors or numpy arrays, one value per image.
"""

from __future__ import annotations

from typing import Any


def affine_terms(cos_angle: Any, sin_angle: Any, cos_angle_shear: Any, sin_angle_shear: Any, zoom_x: Any,
                 zoom_y: Any, shift_x: Any, shift_y: Any) -> tuple[tuple[Any, Any, Any], tuple[Any, Any, Any]]:
    """The (2, 3) matrix mapping an output pixel to the input pixel it is sampled from, row by row.

    Coordinates are normalised as ``affine_grid``'s (``align_corners=False``): x and y run from -1 to
    1 across the image, the centre at 0. ``angle`` is the rotation and ``angle_shear`` the rotation
    plus the shear (radians; the caller takes their cosines and sines); zooms are factors; shifts
    are fractions of the width and the height. The matrix is rotation @ shear @ zoom with Keras'
    shear matrix ``[[1, -sin s], [0, cos s]]``; Keras shifts before shearing and zooming, so the
    shift is rotated too. One value per image in every argument gives one matrix per image.
    """
    shift_x, shift_y = shift_x * 2, shift_y * 2  # the image spans 2 normalised units
    return ((cos_angle * zoom_x, -sin_angle_shear * zoom_y, cos_angle * shift_x - sin_angle * shift_y),
            (sin_angle * zoom_x, cos_angle_shear * zoom_y, sin_angle * shift_x + cos_angle * shift_y))

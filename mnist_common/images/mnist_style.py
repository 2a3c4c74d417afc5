"""The two preprocessings of a decoded picture into the (28, 28) float32 image the models read (1 = ink).

``mnist`` (the default) does what was done to the MNIST digits themselves, so that any picture
looks to the model like what it was trained on: the digit's ink (:mod:`mnist_common.images.ink`)
is scaled to fit a 20x20 box, keeping its aspect ratio (area averaging when shrinking), its
strongest stroke brought to full intensity, strokes much finer than MNIST's first widened
(:mod:`mnist_common.images.strokes`, at 4x the final scale), and pasted into a 28x28 field so
that its centre of mass is at the centre.

``notebook`` reproduces the original notebook: grayscale, plain resize to 28x28, always invert.
It is kept for comparison; it fails on most real pictures.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from scipy import ndimage

from mnist_common.images.decoding import ImageError, upright
from mnist_common.images.grayscale import float_image, to_gray, working_gray
from mnist_common.images.ink import extract_ink
from mnist_common.images.strokes import stroke_width, widen

SIZE = 28  # the MNIST field
BOX = 20  # the digit is scaled to fit a BOX x BOX box, as in MNIST
CENTRE = 14.0  # MNIST's mean centre of mass in pixel-index coordinates (13.99, 14.01 on the test set)
WORK_BOX = 4 * BOX  # the crop is first scaled to fit this box, where strokes are measured
# Stroke widths (2 * area / perimeter of ink > 0.5) of the MNIST test digits scaled to WORK_BOX:
# 1st percentile 4.2 px, 5th 5.1, median 7.5. Finer strokes are widened to TARGET_STROKE.
MIN_STROKE = 4.5
TARGET_STROKE = 6.5


def fit_long_side(a: np.ndarray, long_side: int) -> np.ndarray:
    """``a`` scaled so its longer side is ``long_side`` (aspect kept; area averaging when shrinking), peak 1."""
    h, w = a.shape
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    out = np.clip(np.asarray(float_image(a).resize(size, resample), dtype=np.float32), 0.0, None)
    top = float(out.max())
    return np.clip(out / top, 0.0, 1.0) if top > 0 else out  # thin strokes fade when averaged: restore them


def fit_and_centre(crop: np.ndarray) -> np.ndarray:
    """Scale an ink crop to fit BOX x BOX (aspect kept) and centre its mass in a SIZE x SIZE field.

    Strokes much finer than MNIST's (a pen line on a large canvas) are widened first, at
    4x the final scale, to MNIST's typical width, keeping the digit's loops open (:func:`widen`).
    """
    work = fit_long_side(crop, WORK_BOX)
    width = stroke_width(work)
    if 0 < width < MIN_STROKE:
        work = widen(work, (TARGET_STROKE - width) / 2)
    patch = fit_long_side(work, BOX)
    nh, nw = patch.shape
    if float(patch.sum()) <= 0:
        raise ValueError("empty crop")
    cy, cx = ndimage.center_of_mass(patch)
    top_row = int(np.clip(round(CENTRE - cy), 0, SIZE - nh))
    left_col = int(np.clip(round(CENTRE - cx), 0, SIZE - nw))
    field = np.zeros((SIZE, SIZE), np.float32)
    field[top_row:top_row + nh, left_col:left_col + nw] = patch
    return field


def mnist_preprocess(image: Image.Image, path: str | os.PathLike = "image") -> tuple[np.ndarray, bool]:
    """(28, 28) float32 in [0, 1] the MNIST way, and whether the picture was inverted (dark on light)."""
    crop, inverted = extract_ink(working_gray(upright(image)), path)
    return fit_and_centre(crop), inverted


def notebook_preprocess(image: Image.Image, path: str | os.PathLike = "image") -> tuple[np.ndarray, bool]:
    """The notebook's preprocessing: grayscale, plain resize to 28x28 (nearest, Keras' load_img default), invert.

    The picture is read as the MNIST way reads it (turned as its EXIF orientation says; transparency composited,
    16-bit and float pixels scaled, where Pillow's ``convert("L")`` dropped or clipped them: a digit drawn in the
    alpha channel, or a float TIFF in [0, 1], reached the model as a black square), and a uniform one is refused
    rather than answered; an 8-bit picture gives the notebook's own pixels."""
    gray = to_gray(upright(image))
    if float(gray.max()) - float(gray.min()) < 1e-6:
        raise ImageError(path, "nothing is drawn on it (the image is uniform)")
    small = np.asarray(float_image(gray).resize((SIZE, SIZE), Image.Resampling.NEAREST), dtype=np.float32)
    return 1.0 - small, True


__all__ = ["BOX", "CENTRE", "MIN_STROKE", "SIZE", "TARGET_STROKE", "WORK_BOX", "fit_and_centre", "fit_long_side",
           "mnist_preprocess", "notebook_preprocess"]

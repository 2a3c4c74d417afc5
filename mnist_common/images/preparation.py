"""A picture (a file, bytes or a decoded image) to a :class:`Prepared` 28x28: what ``predict`` and ``serve`` call.

Every way a picture comes in goes through :func:`prepare_image`, so a file given to ``predict``
and the same bytes uploaded to ``serve`` give the very same pixels, and every failure is one
:class:`~mnist_common.images.decoding.ImageError` line naming the picture.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from mnist_common.images.decoding import ImageError, decode_image, file_size, first_line, open_image
from mnist_common.images.grayscale import display_copy
from mnist_common.images.mnist_style import mnist_preprocess, notebook_preprocess

PREPROCESSINGS = ("mnist", "notebook")


@dataclass
class Prepared:
    """One image ready for the model: ``pixels`` (28, 28) float32 in [0, 1], 1 = ink."""

    path: str
    pixels: np.ndarray
    size: tuple[int, int]  # (width, height) of the file's image
    inverted: bool  # the picture had dark strokes on a light background
    display: Image.Image | None = field(default=None, repr=False)  # a small RGB copy of the input, for figures


def prepare(path: str | os.PathLike, mode: str = "mnist", keep_display: bool = False) -> Prepared:
    """Read the file ``path`` and preprocess it (``mode`` "mnist" or "notebook"); :class:`ImageError` if it cannot."""
    return prepare_image(open_image(path), path, mode, keep_display)


def prepare_bytes(data: bytes, name: str = "image", mode: str = "mnist", keep_display: bool = False) -> Prepared:
    """Preprocess image file bytes (an upload, a request body); ``name`` is how errors call it."""
    return prepare_image(decode_image(data, name), name, mode, keep_display)


def prepare_image(image: Image.Image, path: str | os.PathLike = "image", mode: str = "mnist",
                  keep_display: bool = False) -> Prepared:
    """Preprocess a decoded picture; the one function behind every way a picture comes in."""
    if mode not in PREPROCESSINGS:
        raise ValueError(f"unknown preprocessing {mode!r}; choose from {PREPROCESSINGS}")
    if image.mode == "F" and not np.isfinite(np.asarray(image)).all():  # a float TIFF may hold NaN or infinity
        raise ImageError(path, "has pixels that are not numbers (NaN or infinite values); save it with finite ones")
    try:
        if mode == "mnist":
            pixels, inverted = mnist_preprocess(image, path)
        else:
            pixels, inverted = notebook_preprocess(image, path)
        display = display_copy(image) if keep_display else None
    except ImageError:
        raise
    except Exception as err:  # an exotic mode or a decoder error that only shows on conversion
        raise ImageError(path, f"cannot be converted ({type(err).__name__}: {first_line(err)})") from None
    return Prepared(path=str(path), pixels=pixels, size=file_size(image), inverted=inverted, display=display)


__all__ = ["PREPROCESSINGS", "Prepared", "prepare", "prepare_bytes", "prepare_image"]

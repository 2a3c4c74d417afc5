"""A decoded picture of any Pillow mode as float luminance in [0, 1], transparency composited.

Transparent pixels are shown on white, except when most of the picture is transparent and its
visible pixels are light (light strokes drawn for a dark theme): then on black, so the strokes
stay visible. Large pictures are reduced to the working size with Pillow's box reduction.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from mnist_common.images.decoding import WORK_SIDE

EIGHT_BIT_MODES = ("1", "L", "P", "RGB", "CMYK", "YCbCr")


def has_alpha(image: Image.Image) -> bool:
    """Whether ``image`` has transparency (an alpha channel, or a transparent palette entry or colour)."""
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def luminance(image: Image.Image) -> np.ndarray:
    """Float32 luminance in [0, 1] of an image without alpha, for any mode (16-bit and float included)."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image, dtype=np.float32) / 65535.0
    if image.mode in ("I", "F"):  # in float64: a float TIFF's range may be float32's whole range (1e38 - -3e38)
        a = np.asarray(image, dtype=np.float64)
        if not np.isfinite(a).all():  # refused as it is by the caller, in words (no arithmetic's warnings first)
            return a.astype(np.float32)
        low, high = float(a.min(initial=0)), float(a.max(initial=0))
        if low < 0 or high > 65535 or (image.mode == "F" and high > 255):  # no usual scale: the picture's own range
            scaled = (a - low) / (high - low) if high > low else np.zeros_like(a)  # (a float TIFF of 0..1020 was dark)
            return scaled.astype(np.float32)
        top = 1.0 if image.mode == "F" and high <= 1.0 else 255.0 if high <= 255 else 65535.0
        return np.clip(a / top, 0.0, 1.0).astype(np.float32)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    if image.mode == "RGB":
        image = image.convert("L")  # ITU-R 601-2 luma, as Pillow and Keras do
    return np.asarray(image, dtype=np.float32) / 255.0


def background_level(premultiplied: np.ndarray, alpha: np.ndarray) -> float:
    """The level transparent pixels are shown on: white, or black under light strokes on a mostly transparent canvas.

    ``premultiplied``: the luminance times the alpha, which is what a box average of a transparent picture keeps.
    """
    covered = float(alpha.mean())
    if 0.0 < covered < 0.5:  # the opaque pixels are the drawing: pick the background that contrasts with them
        drawn = float(premultiplied.sum() / alpha.sum())
        return 0.0 if drawn > 0.5 else 1.0
    return 1.0


def to_gray(image: Image.Image, factor: int = 1) -> np.ndarray:
    """Luminance in [0, 1] with transparency composited on a contrasting background (:func:`background_level`),
    reduced by ``factor`` (box averaging).

    A transparent picture is reduced as premultiplied colour and alpha (Pillow's "RGBa"), in 8 bits, before any
    float array is made: the composite is linear in them, so it is the box average of the full-size composite,
    and a large one costs a few of its bytes, not gigabytes of floats.
    """
    if not has_alpha(image):
        gray = luminance(image)
        return gray if factor == 1 else np.asarray(float_image(gray).reduce(factor), dtype=np.float32)
    rgba = image if image.mode == "RGBA" else image.convert("RGBA")
    if factor == 1:
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
        gray = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.float32) / 255.0 * alpha
    else:
        *colour, a = rgba.convert("RGBa").reduce(factor).split()
        alpha = np.asarray(a, dtype=np.float32) / 255.0
        gray = np.asarray(Image.merge("RGB", colour).convert("L"), dtype=np.float32) / 255.0
    return gray + background_level(gray, alpha) * (1.0 - alpha)  # gray: the luminance times the alpha


def float_image(a: np.ndarray) -> Image.Image:
    """A float32 array as a Pillow "F" image, for Pillow's resampling."""
    return Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))


def working_gray(image: Image.Image) -> np.ndarray:
    """:func:`to_gray` of ``image`` reduced to at most WORK_SIDE pixels a side (box averaging by an integer factor).

    An 8-bit picture without transparency is reduced before the conversion to floats, which
    is several times faster on a photo; a transparent one is reduced premultiplied (:func:`to_gray`).
    """
    factor = int(np.ceil(max(image.size) / WORK_SIDE))
    if factor > 1 and image.mode in EIGHT_BIT_MODES and not has_alpha(image):
        gray = image if image.mode == "L" else (image if image.mode == "RGB" else image.convert("RGB")).convert("L")
        return np.asarray(gray.reduce(factor), dtype=np.float32) / 255.0
    return to_gray(image, max(factor, 1))


def display_copy(image: Image.Image, side: int = 256) -> Image.Image:
    """A small RGB copy of the picture as the preprocessing sees it (transparency on the same background)."""
    shown = image.convert("RGBA") if has_alpha(image) else image.convert("RGB")
    shown.thumbnail((side, side))
    if shown.mode == "RGBA":
        alpha = np.asarray(shown.getchannel("A"), dtype=np.float32) / 255.0
        gray = np.asarray(shown.convert("L"), dtype=np.float32) / 255.0
        level = round(255 * background_level(gray * alpha, alpha))
        shown = Image.alpha_composite(Image.new("RGBA", shown.size, (level, level, level, 255)), shown).convert("RGB")
    return shown


__all__ = ["background_level", "display_copy", "float_image", "has_alpha", "luminance", "to_gray", "working_gray"]

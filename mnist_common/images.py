"""Turn a picture of a digit (PNG, JPEG, ...) into the 28x28 float image the MNIST models read.

Framework-free (Pillow and numpy only), so the PyTorch and the Keras backend of
``python -m lightning_mnist predict`` see exactly the same pixels.

Two preprocessings are offered:

``mnist`` (the default) does what was done to the MNIST digits themselves, so that
any picture looks to the model like what it was trained on:

1. open with Pillow, refusing absurd dimensions (decompression bombs) before any
   pixel is decoded, and apply the EXIF orientation of photos;
2. composite transparency on a background (white, or black when the opaque
   pixels are light strokes on a transparent canvas), then take the luminance;
3. fit a plane to the border pixels (robustly: the digit may touch the border)
   and subtract it: this removes the background level and a lighting gradient;
4. decide from the image whether the strokes are darker or lighter than the
   background and turn them into "ink" (1 = stroke, 0 = background, the MNIST
   convention), which inverts only dark-on-light pictures;
5. threshold above the noise, drop isolated specks, and crop to the bounding box
   of what is left; an image with nothing in it is refused;
6. scale the crop to fit a 20x20 box, keeping its aspect ratio (area averaging
   when shrinking), and bring its strongest stroke to full intensity;
7. paste it into a 28x28 field so that its centre of mass is at the centre.

``notebook`` reproduces the original notebook: grayscale, plain resize to 28x28,
always invert. It is kept for comparison; it fails on most real pictures.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from mnist_common.errors import UserError

SIZE = 28  # the MNIST field
BOX = 20  # the digit is scaled to fit a BOX x BOX box, as in MNIST
CENTRE = 14.0  # MNIST's mean centre of mass in pixel-index coordinates (13.99, 14.01 on the test set)
MAX_PIXELS = 64_000_000  # larger images are refused unread (a decompression bomb, or far more than a digit needs)
MAX_SIDE = 30_000
WORK_SIDE = 2048  # larger images are box-reduced to about this before the float work
WORK_BOX = 4 * BOX  # the crop is first scaled to fit this box, where strokes are measured
# Stroke widths (2 * area / perimeter of ink > 0.5) of the MNIST test digits scaled to WORK_BOX:
# 1st percentile 4.2 px, 5th 5.1, median 7.5. Finer strokes are widened to TARGET_STROKE.
MIN_STROKE = 4.5
TARGET_STROKE = 6.5
MIN_CONTRAST = 0.06  # a digit must stand out from the background by at least this (about 15 of 255 levels)
MAX_BORDER_NOISE = 0.12  # border pixels spread more than this (sigma) are no background: the digit fills the frame
PREPROCESSINGS = ("mnist", "notebook")



class ImageError(UserError):
    """An image file that cannot be predicted; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{self.path}: {self.reason}")


@dataclass
class Prepared:
    """One image ready for the model: ``pixels`` (28, 28) float32 in [0, 1], 1 = ink."""

    path: str
    pixels: np.ndarray
    size: tuple[int, int]  # (width, height) of the file's image
    inverted: bool  # the picture had dark strokes on a light background
    display: Image.Image | None = field(default=None, repr=False)  # a small RGB copy of the input, for figures


# ---------------------------------------------------------------------------------------------
# Reading a file


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def open_image(path: str | os.PathLike) -> Image.Image:
    """Read and fully decode the file ``path``; :class:`ImageError` for anything that is not a sane image."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except OSError as err:
        raise ImageError(path, f"cannot be read ({err.strerror or _one_line(err)})") from None
    if p.is_dir():
        raise ImageError(path, "is a directory, not an image")
    if st.st_size == 0:
        raise ImageError(path, "is empty (0 bytes)")
    try:
        data = p.read_bytes()
    except OSError as err:
        raise ImageError(path, f"cannot be read ({err.strerror or _one_line(err)})") from None
    return decode_image(data, path)


def decode_image(data: bytes, name: str | os.PathLike = "image") -> Image.Image:
    """Decode image file bytes (a file's, or an HTTP request's); :class:`ImageError` naming ``name`` if not sane.

    Dimensions are checked before any pixel is decoded, so a decompression bomb costs nothing.
    """
    if not data:
        raise ImageError(name, "is empty (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked below
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ImageError(name, f"refused: {_one_line(err)}") from None
    except UnidentifiedImageError:
        raise ImageError(name, "is not an image (or not in a format Pillow can read)") from None
    except Exception as err:  # Pillow raises many types (SyntaxError, ValueError, struct.error, ...) on damaged headers
        raise ImageError(name, f"is not a readable image ({type(err).__name__}: {_one_line(err)})") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(name, f"has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS or max(width, height) > MAX_SIDE:
        raise ImageError(name, f"refused: {width}x{height} pixels ({width * height / 1e6:.0f} megapixels) is more "
                               f"than the limit of {MAX_PIXELS // 1_000_000} megapixels and {MAX_SIDE} pixels a side "
                               f"(a decompression bomb?)")
    try:
        if image.format == "JPEG" and max(width, height) > 2 * WORK_SIDE:
            image.draft(image.mode, (WORK_SIDE, WORK_SIDE))  # let libjpeg decode at a reduced scale
        image.load()
    except Exception as err:  # OSError("image file is truncated"), zlib/CRC errors, ValueError, ...
        raise ImageError(name, f"is truncated or corrupt ({type(err).__name__}: {_one_line(err)})") from None
    return image


# ---------------------------------------------------------------------------------------------
# Colour handling


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info


def _luminance(image: Image.Image) -> np.ndarray:
    """Float32 luminance in [0, 1] of an image without alpha, for any mode (16-bit and float included)."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(image, dtype=np.float32) / 65535.0
    if image.mode in ("I", "F"):
        a = np.asarray(image, dtype=np.float32)
        top = 1.0 if image.mode == "F" and a.max(initial=0) <= 1.0 else 255.0 if a.max(initial=0) <= 255 else 65535.0
        return np.clip(a / top, 0.0, 1.0)
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    if image.mode == "RGB":
        image = image.convert("L")  # ITU-R 601-2 luma, as Pillow and Keras do
    return np.asarray(image, dtype=np.float32) / 255.0


def to_gray(image: Image.Image) -> np.ndarray:
    """Luminance in [0, 1] with transparency composited on a contrasting background.

    Normally the background is white. When most of the picture is transparent and
    the visible pixels are light (light strokes on a transparent canvas, as drawn
    for a dark theme), it is black, so the strokes stay visible.
    """
    if not _has_alpha(image):
        return _luminance(image)
    rgba = image.convert("RGBA")
    alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255.0
    gray = np.asarray(rgba.convert("RGB").convert("L"), dtype=np.float32) / 255.0
    background = 1.0
    covered = float(alpha.mean())
    if 0.0 < covered < 0.5:  # the opaque pixels are the drawing: pick the background that contrasts with them
        drawn = float((gray * alpha).sum() / alpha.sum())
        background = 0.0 if drawn > 0.5 else 1.0
    return gray * alpha + background * (1.0 - alpha)


# ---------------------------------------------------------------------------------------------
# The MNIST preprocessing


def _border_plane(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """A plane fitted robustly to the border ring (the background level and gradient), and the noise sigma."""
    h, w = gray.shape
    ring = max(1, round(0.02 * min(h, w)))
    mask = np.zeros((h, w), bool)
    mask[:ring], mask[-ring:], mask[:, :ring], mask[:, -ring:] = True, True, True, True
    ys, xs = np.nonzero(mask)
    step = max(1, len(ys) // 20000)
    ys, xs = ys[::step], xs[::step]
    v = gray[ys, xs].astype(np.float64)
    u, t = xs / max(w - 1, 1) * 2 - 1, ys / max(h - 1, 1) * 2 - 1
    design = np.stack([np.ones_like(u), u, t], 1)
    # Start from the median and its MAD (robust while less than half the ring is digit), then fit
    # the plane to the pixels that look like background and refine.
    coef = np.array([np.median(v), 0.0, 0.0])
    keep = np.ones(len(v), bool)
    for _ in range(4):
        residual = v - design @ coef
        sigma = 1.4826 * float(np.median(np.abs(residual[keep] - np.median(residual[keep]))))
        new_keep = np.abs(residual) <= max(3.0 * sigma, 0.02)  # digit pixels touching the border are outliers
        if new_keep.sum() < 3:
            break
        keep = new_keep
        coef = np.linalg.lstsq(design[keep], v[keep], rcond=None)[0]
    residual = (v - design @ coef)[keep]
    sigma = 1.4826 * float(np.median(np.abs(residual - np.median(residual))))
    gy = np.linspace(-1.0, 1.0, h, dtype=np.float32)[:, None] if h > 1 else np.zeros((1, 1), np.float32)
    gx = np.linspace(-1.0, 1.0, w, dtype=np.float32)[None, :] if w > 1 else np.zeros((1, 1), np.float32)
    plane = np.float32(coef[0]) + np.float32(coef[1]) * gx + np.float32(coef[2]) * gy
    return plane, sigma


def _isolated_removed(mask: np.ndarray) -> np.ndarray:
    """``mask`` without pixels that have fewer than 2 of their 8 neighbours set (noise specks)."""
    padded = np.pad(mask, 1).astype(np.uint8)
    h, w = mask.shape
    count = np.zeros((h, w), np.uint8)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy != 1 or dx != 1:
                count += padded[dy:dy + h, dx:dx + w]
    return mask & (count >= 2)


def _float_image(a: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))


def _reduce_large(gray: np.ndarray) -> np.ndarray:
    factor = int(np.ceil(max(gray.shape) / WORK_SIDE))
    if factor <= 1:
        return gray
    return np.asarray(_float_image(gray).reduce(factor), dtype=np.float32)


def extract_ink(gray: np.ndarray, path: str | os.PathLike = "image") -> tuple[np.ndarray, bool]:
    """Ink map (1 = stroke, 0 = background) cropped to the digit, and whether the picture was dark-on-light.

    Raises :class:`ImageError` when nothing stands out from the background.
    """
    if float(gray.max()) - float(gray.min()) < 1e-6:
        raise ImageError(path, "nothing is drawn on it (the image is uniform)")
    plane, sigma = _border_plane(gray)
    diff = gray - plane
    if sigma > MAX_BORDER_NOISE:
        raise ImageError(path, "cannot tell the digit from the background: the picture's border is not a plain "
                               "background (crop it with a margin around the digit)")
    significant = max(5.0 * sigma, MIN_CONTRAST)
    dark = float(-diff[diff < -significant].sum())
    light = float(diff[diff > significant].sum())
    if dark == 0.0 and light == 0.0:
        raise ImageError(path, f"nothing is drawn on it (nothing stands out from the background by more than "
                               f"{significant * 255:.0f} of 255 levels)")
    inverted = dark > light
    ink = -diff if inverted else diff
    peak = float(ink.max())
    threshold = max(4.0 * sigma, 0.25 * peak)
    mask = _isolated_removed(ink > threshold)
    if not mask.any():
        raise ImageError(path, "nothing is drawn on it (only isolated specks stand out from the background)")
    level = max(float(np.percentile(ink[mask], 95)), threshold * 1.01)
    floor = min(3.0 * sigma, 0.5 * threshold)
    ink = np.clip((ink - floor) / (level - floor), 0.0, 1.0)
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    pad = 2
    y0, y1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, ink.shape[0])
    x0, x1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, ink.shape[1])
    crop, kept = ink[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    # Keep only ink near what survived the speck filter (drops specks inside the box, keeps anti-aliasing).
    gate = Image.fromarray(kept.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(5))
    crop = crop * (np.asarray(gate) > 0)
    # The box is that of the thresholded strokes; trim the margin again to where the ink really is.
    rows, cols = np.nonzero((crop > 0.05).any(1))[0], np.nonzero((crop > 0.05).any(0))[0]
    crop = crop[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    return crop.astype(np.float32), inverted


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels of an ink image: 2 * area / perimeter of its strokes (ink > 0.5)."""
    mask = ink > 0.5
    area = int(mask.sum())
    if not area:
        return 0.0
    perimeter = (int((mask[:, 1:] != mask[:, :-1]).sum()) + int((mask[1:] != mask[:-1]).sum())
                 + int(mask[:, 0].sum() + mask[:, -1].sum() + mask[0].sum() + mask[-1].sum()))
    return 2.0 * area / perimeter


def _resize(a: np.ndarray, long_side: int) -> np.ndarray:
    """``a`` scaled so its longer side is ``long_side`` (aspect kept; area averaging when shrinking), peak 1."""
    h, w = a.shape
    scale = long_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    resample = Image.Resampling.BOX if scale < 1 else Image.Resampling.BILINEAR
    out = np.clip(np.asarray(_float_image(a).resize(size, resample), dtype=np.float32), 0.0, None)
    top = float(out.max())
    return np.clip(out / top, 0.0, 1.0) if top > 0 else out  # thin strokes fade when averaged: restore them


def fit_and_centre(crop: np.ndarray) -> np.ndarray:
    """Scale an ink crop to fit BOX x BOX (aspect kept) and centre its mass in a SIZE x SIZE field.

    Strokes much finer than MNIST's (a pen line on a large canvas) are thickened first,
    at 4x the final scale, to MNIST's typical width.
    """
    work = _resize(crop, WORK_BOX)
    width = stroke_width(work)
    if 0 < width < MIN_STROKE:
        size = 2 * round((TARGET_STROKE - width) / 2) + 1  # a k x k max filter widens a stroke by k - 1
        work = np.asarray(_float_image(work).filter(ImageFilter.MaxFilter(size)), dtype=np.float32)
    patch = _resize(work, BOX)
    nh, nw = patch.shape
    total = float(patch.sum())
    if total <= 0:
        raise ValueError("empty crop")
    cy = float((patch.sum(1) * np.arange(nh)).sum() / total)
    cx = float((patch.sum(0) * np.arange(nw)).sum() / total)
    top_row = int(np.clip(round(CENTRE - cy), 0, SIZE - nh))
    left_col = int(np.clip(round(CENTRE - cx), 0, SIZE - nw))
    field_ = np.zeros((SIZE, SIZE), np.float32)
    field_[top_row:top_row + nh, left_col:left_col + nw] = patch
    return field_


def _oriented(image: Image.Image, path) -> Image.Image:
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a damaged EXIF block must not stop the prediction
        return image


def mnist_preprocess(image: Image.Image, path: str | os.PathLike = "image") -> tuple[np.ndarray, bool]:
    """(28, 28) float32 in [0, 1] the MNIST way, and whether the picture was inverted (dark on light)."""
    gray = _reduce_large(to_gray(_oriented(image, path)))
    crop, inverted = extract_ink(gray, path)
    return fit_and_centre(crop), inverted


def notebook_preprocess(image: Image.Image, path: str | os.PathLike = "image") -> tuple[np.ndarray, bool]:
    """The notebook's preprocessing: grayscale, plain resize to 28x28 (nearest, Keras' load_img default), invert."""
    gray = image if image.mode == "L" else image.convert("L")
    small = np.asarray(gray.resize((SIZE, SIZE), Image.Resampling.NEAREST), dtype=np.float32)
    return (255.0 - small) / 255.0, True


def _display_copy(image: Image.Image, side: int = 256) -> Image.Image:
    shown = image.convert("RGBA") if _has_alpha(image) else image.convert("RGB")
    if shown.mode == "RGBA":
        white = Image.new("RGBA", shown.size, (255, 255, 255, 255))
        shown = Image.alpha_composite(white, shown).convert("RGB")
    shown.thumbnail((side, side))
    return shown


def prepare(path: str | os.PathLike, mode: str = "mnist", keep_display: bool = False) -> Prepared:
    """Read the file ``path`` and preprocess it (``mode`` "mnist" or "notebook"); :class:`ImageError` if it cannot be."""
    return prepare_image(open_image(path), path, mode, keep_display)


def prepare_bytes(data: bytes, name: str = "image", mode: str = "mnist", keep_display: bool = False) -> Prepared:
    """Preprocess image file bytes (an upload, a request body); ``name`` is how errors call it."""
    return prepare_image(decode_image(data, name), name, mode, keep_display)


def prepare_image(image: Image.Image, path: str | os.PathLike = "image", mode: str = "mnist",
                  keep_display: bool = False) -> Prepared:
    """Preprocess a decoded picture; the one function behind every way a picture comes in."""
    if mode not in PREPROCESSINGS:
        raise ValueError(f"unknown preprocessing {mode!r}; choose from {PREPROCESSINGS}")
    try:
        if mode == "mnist":
            pixels, inverted = mnist_preprocess(image, path)
        else:
            pixels, inverted = notebook_preprocess(image, path)
        display = _display_copy(image) if keep_display else None
    except ImageError:
        raise
    except Exception as err:  # an exotic mode or a decoder error that only shows on conversion
        raise ImageError(path, f"cannot be converted ({type(err).__name__}: {_one_line(err)})") from None
    return Prepared(path=str(path), pixels=pixels, size=image.size, inverted=inverted, display=display)


__all__ = ["ImageError", "Prepared", "PREPROCESSINGS", "MAX_PIXELS", "decode_image", "open_image", "to_gray",
           "extract_ink", "fit_and_centre", "mnist_preprocess", "notebook_preprocess", "prepare", "prepare_bytes",
           "prepare_image"]

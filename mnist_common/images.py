"""Turn a picture of a digit (PNG, JPEG, ...) into the 28x28 float image the MNIST models read.

Framework-free (Pillow and numpy only), so the PyTorch and the Keras backend of
``python -m lightning_mnist predict`` see exactly the same pixels.

Two preprocessings are offered:

``mnist`` (the default) does what was done to the MNIST digits themselves, so that
any picture looks to the model like what it was trained on:

1. open with Pillow, refusing absurd dimensions (decompression bombs) before any
   pixel is decoded, and apply the EXIF orientation of photos; large pictures are
   reduced to at most WORK_SIDE pixels a side (JPEGs while decoding);
2. composite transparency on a background (white, or black when the opaque
   pixels are light strokes on a transparent canvas), then take the luminance;
3. fit a plane to the border pixels (robustly: the digit may touch the border)
   and subtract it: this removes the background level and a lighting gradient;
4. decide from the image whether the strokes are darker or lighter than the
   background and turn them into "ink" (1 = stroke, 0 = background, the MNIST
   convention), which inverts only dark-on-light pictures;
5. threshold above the noise and drop isolated specks; then keep only the ink that
   belongs to the digit: of the connected pieces of ink, objects along the picture's
   edge (a band of table or fabric, a shadow, a page edge, a ruled line running from
   side to side, a neighbouring digit cut by the border) and pieces far from the
   digit (show-through, stray marks) are dropped, and the threshold is taken again
   from the digit's own ink; an image with nothing in it is refused;
6. crop to the digit, scale the crop to fit a 20x20 box, keeping its aspect ratio
   (area averaging when shrinking), and bring its strongest stroke to full
   intensity; strokes much finer than MNIST's are first widened (with a round pen,
   at 4x the final scale) without closing the digit's loops;
7. paste it into a 28x28 field so that its centre of mass is at the centre.

``notebook`` reproduces the original notebook: grayscale, plain resize to 28x28,
always invert. It is kept for comparison; it fails on most real pictures.
"""

from __future__ import annotations

import functools
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
FILE_SIZE = "lightning_mnist.file_size"  # image.info key: a JPEG decoded at a reduced scale keeps its (width, height)
WORK_SIDE = 1024  # larger images are reduced (by an integer factor) to at most this a side before the float work
WORK_BOX = 4 * BOX  # the crop is first scaled to fit this box, where strokes are measured
# Stroke widths (2 * area / perimeter of ink > 0.5) of the MNIST test digits scaled to WORK_BOX:
# 1st percentile 4.2 px, 5th 5.1, median 7.5. Finer strokes are widened to TARGET_STROKE.
MIN_STROKE = 4.5
TARGET_STROKE = 6.5
STROKE_LEVEL = 0.1  # at WORK_BOX scale, ink above this is stroke when widening keeps strokes apart and loops open
# Which pieces of ink are the digit (sizes relative to the working image, masses to the heaviest piece):
EDGE_CONTACT = 0.15  # a piece touching the picture's border along this fraction of its shorter side is an edge object
MAIN_SHARE = 0.1  # the digit is the heaviest piece that is no edge object, if it has this share of the heaviest's mass
NEAR = 0.25  # pieces within this fraction of the digit's longer side from its box are part of it (a detached bar, a dot)
BORDER_SHARE = 0.25  # ... unless they touch the border and weigh less than this share of the digit's main piece
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
    except Image.DecompressionBombError:  # Pillow's own ceiling (twice its warning limit) is above ours: say ours
        raise ImageError(name, f"refused: more than the limit of {MAX_PIXELS // 1_000_000} megapixels "
                               f"(a decompression bomb?)") from None
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
        if image.format == "JPEG" and max(width, height) > WORK_SIDE:
            # let libjpeg decode at a reduced scale (1/2, 1/4, 1/8) that still has WORK_SIDE pixels on the long side
            scale = WORK_SIDE / max(width, height)
            image.draft(image.mode, (max(1, int(np.ceil(width * scale))), max(1, int(np.ceil(height * scale)))))
            image.info[FILE_SIZE] = (width, height)  # what Prepared.size reports: the file's, not the draft's
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


def _background(gray: np.ndarray, alpha: np.ndarray) -> float:
    """The level transparent pixels are shown on: white, or black under light strokes on a mostly transparent canvas."""
    covered = float(alpha.mean())
    if 0.0 < covered < 0.5:  # the opaque pixels are the drawing: pick the background that contrasts with them
        drawn = float((gray * alpha).sum() / alpha.sum())
        return 0.0 if drawn > 0.5 else 1.0
    return 1.0


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
    return gray * alpha + _background(gray, alpha) * (1.0 - alpha)


EIGHT_BIT_MODES = ("1", "L", "P", "RGB", "CMYK", "YCbCr")


def working_gray(image: Image.Image) -> np.ndarray:
    """:func:`to_gray` of ``image`` reduced to at most WORK_SIDE pixels a side (box averaging by an integer factor).

    An 8-bit picture without transparency is reduced before the conversion to floats, which
    is several times faster on a photo; others are reduced after compositing.
    """
    factor = int(np.ceil(max(image.size) / WORK_SIDE))
    if factor > 1 and image.mode in EIGHT_BIT_MODES and not _has_alpha(image):
        gray = image if image.mode == "L" else (image if image.mode == "RGB" else image.convert("RGB")).convert("L")
        return np.asarray(gray.reduce(factor), dtype=np.float32) / 255.0
    gray = to_gray(image)
    if factor > 1:
        gray = np.asarray(_float_image(gray).reduce(factor), dtype=np.float32)
    return gray


# ---------------------------------------------------------------------------------------------
# The MNIST preprocessing


def _border_plane(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """A plane fitted robustly to the border ring (the background level and gradient), and the noise sigma."""
    h, w = gray.shape
    ring = max(1, round(0.02 * min(h, w)))
    if 2 * ring >= min(h, w):
        ys, xs = np.nonzero(np.ones((h, w), bool))
    else:  # the ring's coordinates: top and bottom strips, then the left and right ones between them
        rows, cols = np.r_[0:ring, h - ring:h], np.r_[0:ring, w - ring:w]
        ys = np.concatenate([np.repeat(rows, w), np.repeat(np.arange(ring, h - ring), len(cols))])
        xs = np.concatenate([np.tile(np.arange(w), len(rows)), np.tile(cols, h - 2 * ring)])
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


# ---------------------------------------------------------------------------------------------
# Connected pieces of ink, and which of them are the digit


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean image: (labels, count); labels int32, 0 = background, 1..count.

    Works on runs of set pixels (a few thousand in a picture of a digit, not millions of
    pixels): runs in consecutive rows that touch are joined by label propagation with
    pointer jumping, all in numpy.
    """
    h, w = mask.shape
    edges = np.diff(np.pad(np.asarray(mask, bool), ((0, 0), (1, 1))).view(np.int8), axis=1)
    rows, starts = np.nonzero(edges == 1)
    ends = np.nonzero(edges == -1)[1]  # exclusive; runs come in row-major order, so starts and ends pair up
    if not len(rows):
        return np.zeros((h, w), np.int32), 0
    stride = w + 2  # keys row * stride + column sort runs in row-major order
    key_start, key_end = rows * stride + starts, rows * stride + ends
    below = np.nonzero(rows > 0)[0]
    # the runs of the row above that touch (8-connected) a run [s, e) are those with end >= s and start <= e
    lo = np.searchsorted(key_end, (rows[below] - 1) * stride + starts[below], side="left")
    hi = np.searchsorted(key_start, (rows[below] - 1) * stride + ends[below], side="right")
    count = np.maximum(hi - lo, 0)
    a = np.repeat(below, count)
    b = np.repeat(lo, count) + np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    parent = np.arange(len(rows))
    while len(a):
        smaller = np.minimum(parent[a], parent[b])
        new = parent.copy()
        for index in (a, b, parent[a], parent[b]):  # hook both runs and their current roots
            np.minimum.at(new, index, smaller)
        while True:  # pointer jumping: every run points at its root
            jumped = new[new]
            if np.array_equal(jumped, new):
                break
            new = jumped
        if np.array_equal(new, parent):
            break
        parent = new
    roots, run_label = np.unique(parent, return_inverse=True)
    run_label = run_label.astype(np.int64) + 1
    delta = np.zeros(h * w + 1, np.int64)  # each run adds its label from its start to its end
    np.add.at(delta, rows * w + starts, run_label)
    np.add.at(delta, rows * w + ends, -run_label)
    return np.cumsum(delta[:-1]).astype(np.int32).reshape(h, w), len(roots)


def _component_stats(labels: np.ndarray, count: int, ink: np.ndarray) -> dict[str, np.ndarray]:
    """Per component 1..count (index 0 unused): mass (sum of ink), box (y0, y1, x0, x1, end exclusive),
    border contact (pixels on the picture's outermost rows and columns) and which sides it touches."""
    h, w = labels.shape
    n = count + 1
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=n)
    ys, xs = np.nonzero(labels)
    lab = labels[ys, xs]
    y0, x0 = np.full(n, h), np.full(n, w)
    y1, x1 = np.zeros(n, int), np.zeros(n, int)
    np.minimum.at(y0, lab, ys)
    np.minimum.at(x0, lab, xs)
    np.maximum.at(y1, lab, ys + 1)
    np.maximum.at(x1, lab, xs + 1)
    sides = {side: np.bincount(line.ravel(), minlength=n) for side, line in
             (("top", labels[0]), ("bottom", labels[-1]), ("left", labels[:, 0]), ("right", labels[:, -1]))}
    contact = sides["top"] + sides["bottom"] + sides["left"] + sides["right"]
    return {"mass": mass, "y0": y0, "y1": y1, "x0": x0, "x1": x1, "contact": contact,
            **{side: counts > 0 for side, counts in sides.items()}}


def digit_components(labels: np.ndarray, count: int, ink: np.ndarray) -> np.ndarray:
    """The labels (1..count) of the pieces of ink that make the digit.

    An *edge object* touches the picture's border along EDGE_CONTACT of its shorter side, or
    touches two opposite sides (a band of table or fabric along an edge, a shadow, the page's
    edge, a ruled line across the page). The digit's main piece is the heaviest piece that is
    no edge object, if it has MAIN_SHARE of the heaviest piece's mass (else, as when the digit
    itself fills the frame, simply the heaviest piece). Pieces within NEAR of the digit's box
    join it (a detached bar or foot, a broken pen line), except edge objects and light pieces
    that touch the border (a neighbouring digit cut by the frame); the rest (show-through,
    stray marks, text elsewhere) is not the digit.
    """
    if count <= 1:
        return np.arange(1, count + 1)
    h, w = labels.shape
    p = _component_stats(labels, count, ink)
    mass = p["mass"]
    touches = p["top"] | p["bottom"] | p["left"] | p["right"]
    edge = (p["contact"] >= EDGE_CONTACT * min(h, w)) | (p["top"] & p["bottom"]) | (p["left"] & p["right"])
    edge[0] = True
    heaviest = float(mass[1:].max())
    candidates = np.nonzero(~edge & (mass >= MAIN_SHARE * heaviest))[0]
    main = int(candidates[np.argmax(mass[candidates])]) if len(candidates) else int(np.argmax(mass[1:])) + 1
    joinable = ~edge & (~touches | (mass >= BORDER_SHARE * mass[main]))
    joinable[main] = False
    kept = [main]
    box = [p["y0"][main], p["y1"][main], p["x0"][main], p["x1"][main]]
    while True:
        reach = NEAR * max(box[1] - box[0], box[3] - box[2])
        gap_y = np.maximum(np.maximum(box[0] - p["y1"], p["y0"] - box[1]), 0)
        gap_x = np.maximum(np.maximum(box[2] - p["x1"], p["x0"] - box[3]), 0)
        near = joinable & (np.hypot(gap_y, gap_x) <= reach)
        if not near.any():
            return np.array(sorted(kept))
        joinable &= ~near
        for k in np.nonzero(near)[0]:
            kept.append(int(k))
            box = [min(box[0], p["y0"][k]), max(box[1], p["y1"][k]), min(box[2], p["x0"][k]), max(box[3], p["x1"][k])]


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
    for attempt in range(2):
        peak = float(ink.max())
        threshold = max(4.0 * sigma, 0.25 * peak)
        mask = _isolated_removed(ink > threshold)
        if not mask.any():
            raise ImageError(path, "nothing is drawn on it (only isolated specks stand out from the background)")
        labels, count = connected_components(mask)
        digit = digit_components(labels, count, np.clip(ink, 0.0, None))
        mask = np.isin(labels, digit) if len(digit) < count else mask
        if len(digit) == count or attempt:
            break
        # What is not the digit (and its blurred rim) is background; the threshold is taken again
        # from the digit's own ink, which may be much fainter than a dark band was.
        others = Image.fromarray(((labels > 0) & ~mask).astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(5))
        ink = np.where(np.asarray(others) > 0, np.float32(0.0), ink)
    level = max(float(np.percentile(ink[mask], 95)), threshold * 1.01)
    floor = min(3.0 * sigma, 0.5 * threshold)
    ink = np.clip((ink - floor) / (level - floor), 0.0, 1.0)
    rows, cols = np.nonzero(mask.any(1))[0], np.nonzero(mask.any(0))[0]
    pad = 2
    y0, y1 = max(rows[0] - pad, 0), min(rows[-1] + pad + 1, ink.shape[0])
    x0, x1 = max(cols[0] - pad, 0), min(cols[-1] + pad + 1, ink.shape[1])
    crop, kept = ink[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    # Keep only ink near the digit's thresholded strokes (drops specks and other pieces inside the box,
    # keeps anti-aliasing).
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


def _disk(radius: float) -> list[tuple[int, int]]:
    """The (dy, dx) offsets of a round pen of ``radius`` pixels."""
    r = int(np.floor(radius))
    return [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy * dy + dx * dx <= radius * radius]


def _dilate(a: np.ndarray, radius: float) -> np.ndarray:
    """Grey dilation of ``a`` by a disk: every stroke widened by 2 * ``radius`` in every direction (a round pen)."""
    r = int(np.floor(radius))
    h, w = a.shape
    padded = np.pad(a, r)
    out = a.copy()
    for dy, dx in _disk(radius):
        np.maximum(out, padded[r + dy:r + dy + h, r + dx:r + dx + w], out=out)
    return out


# The 8 neighbours of a pixel, in order around it; bit k of a neighbourhood code is neighbour k.
_NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))


@functools.lru_cache(maxsize=1)
def _simple_codes() -> np.ndarray:
    """For each of the 256 neighbourhoods, whether a background pixel there can become stroke without
    changing the picture's topology (a *simple point*, strokes 8-connected, background 4-connected):
    its stroke neighbours form one piece and its background neighbours one piece that touches it.
    Adding such a pixel never joins two strokes, closes a gap into a loop, or fills a loop."""
    table = np.zeros(256, bool)
    for code in range(256):
        strokes = [cell for k, cell in enumerate(_NEIGHBOURS) if code >> k & 1]
        background = [cell for k, cell in enumerate(_NEIGHBOURS) if not code >> k & 1]
        touching = [piece for piece in _neighbour_groups(background, diagonal=False)
                    if any(abs(y) + abs(x) == 1 for y, x in piece)]
        table[code] = len(_neighbour_groups(strokes, diagonal=True)) == 1 and len(touching) == 1
    return table


def _neighbour_groups(cells: list[tuple[int, int]], diagonal: bool) -> list[set[tuple[int, int]]]:
    """The connected groups of a few cells (4-connected, or 8-connected with ``diagonal``)."""
    left, groups = set(cells), []
    while left:
        stack = [left.pop()]
        group = set(stack)
        while stack:
            y, x = stack.pop()
            for cell in [c for c in left if abs(c[0] - y) + abs(c[1] - x) == 1
                         or (diagonal and abs(c[0] - y) == abs(c[1] - x) == 1)]:
                left.discard(cell)
                group.add(cell)
                stack.append(cell)
        groups.append(group)
    return groups


def _codes(mask: np.ndarray) -> np.ndarray:
    """Each pixel's neighbourhood code (see :data:`_NEIGHBOURS`) in a boolean image."""
    h, w = mask.shape
    padded = np.pad(mask, 1).astype(np.uint8)
    code = np.zeros((h, w), np.uint8)
    for k, (dy, dx) in enumerate(_NEIGHBOURS):
        code |= padded[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] << k
    return code


def _grow_keeping_topology(strokes: np.ndarray, radius: float) -> np.ndarray:
    """``strokes`` (boolean) grown by up to ``radius`` pixels, one layer at a time, adding only simple points.

    Unlike a plain dilation, strokes that do not touch stay apart (by at least one pixel) and
    loops stay open: the fronts growing from two strokes stop where they meet.
    """
    grown = strokes.copy()
    h, w = strokes.shape
    parity = [(np.add.outer(np.arange(h) % 2 == py, np.zeros(w, bool)) & (np.arange(w) % 2 == px)[None, :])
              for py in (0, 1) for px in (0, 1)]  # no two pixels of one class are neighbours
    simple = _simple_codes()
    for step in [*np.arange(1.0, radius, 1.0), radius]:
        reach = _dilate(strokes.astype(np.float32), float(step)) > 0
        while True:
            added = False
            for cls in parity:
                candidates = reach & ~grown & cls
                if not candidates.any():
                    continue
                new = candidates & simple[_codes(grown)]
                if new.any():
                    grown |= new
                    added = True
            if not added:
                break
    return grown


def widen(work: np.ndarray, radius: float) -> np.ndarray:
    """``work`` with its strokes widened by a round pen of ``radius``, without joining strokes or closing loops.

    A plain dilation would bridge a narrow gap (a thin-pen 4 whose top is open, an 8 drawn
    with two near strokes) and fill small loops. Here the pen grows the strokes (drawn one
    pixel wider first, so a faint line's anti-aliasing breaks count as closed) one layer at a
    time and stops where two fronts meet; the pixels it leaves out there, and their
    neighbours, stay background, so the gap or loop is still about 3 pixels wide (close to a
    pixel at the final scale).
    """
    widened = _dilate(work, radius)
    strokes = _dilate(work, 1.0) > STROKE_LEVEL
    grown = _grow_keeping_topology(strokes, radius)
    reach = _dilate(strokes.astype(np.float32), radius) > 0
    kept_apart = _dilate((reach & ~grown).astype(np.float32), 1.0) > 0
    return np.where(kept_apart & (work <= STROKE_LEVEL), work, widened)


def fit_and_centre(crop: np.ndarray) -> np.ndarray:
    """Scale an ink crop to fit BOX x BOX (aspect kept) and centre its mass in a SIZE x SIZE field.

    Strokes much finer than MNIST's (a pen line on a large canvas) are widened first, at
    4x the final scale, to MNIST's typical width, keeping the digit's loops open (:func:`widen`).
    """
    work = _resize(crop, WORK_BOX)
    width = stroke_width(work)
    if 0 < width < MIN_STROKE:
        work = widen(work, (TARGET_STROKE - width) / 2)
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
    gray = working_gray(_oriented(image, path))
    crop, inverted = extract_ink(gray, path)
    return fit_and_centre(crop), inverted


def notebook_preprocess(image: Image.Image, path: str | os.PathLike = "image") -> tuple[np.ndarray, bool]:
    """The notebook's preprocessing: grayscale, plain resize to 28x28 (nearest, Keras' load_img default), invert."""
    gray = image if image.mode == "L" else image.convert("L")
    small = np.asarray(gray.resize((SIZE, SIZE), Image.Resampling.NEAREST), dtype=np.float32)
    return (255.0 - small) / 255.0, True


def _display_copy(image: Image.Image, side: int = 256) -> Image.Image:
    """A small RGB copy of the picture as the preprocessing sees it (transparency on the same background)."""
    shown = image.convert("RGBA") if _has_alpha(image) else image.convert("RGB")
    shown.thumbnail((side, side))
    if shown.mode == "RGBA":
        alpha = np.asarray(shown.getchannel("A"), dtype=np.float32) / 255.0
        level = round(255 * _background(np.asarray(shown.convert("L"), dtype=np.float32) / 255.0, alpha))
        shown = Image.alpha_composite(Image.new("RGBA", shown.size, (level, level, level, 255)), shown).convert("RGB")
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
    return Prepared(path=str(path), pixels=pixels, size=tuple(image.info.get(FILE_SIZE, image.size)), inverted=inverted,
                    display=display)


__all__ = ["ImageError", "Prepared", "PREPROCESSINGS", "MAX_PIXELS", "decode_image", "open_image", "to_gray",
           "extract_ink", "fit_and_centre", "mnist_preprocess", "notebook_preprocess", "prepare", "prepare_bytes",
           "prepare_image"]

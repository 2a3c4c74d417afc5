"""From a grayscale picture to the digit's ink (1 = stroke, 0 = background, the MNIST convention), cropped.

1. fit a plane to the border pixels (robustly: the digit may touch the border) and subtract it:
   this removes the background level and a lighting gradient;
2. decide from the image whether the strokes are darker or lighter than the background and turn
   them into ink, which inverts only dark-on-light pictures;
3. threshold above the noise and drop isolated specks; keep only the pieces of ink that are the
   digit (:mod:`mnist_common.images.components`) and take the threshold again from the digit's own
   ink; an image with nothing in it is refused;
4. crop to the digit, keeping the anti-aliasing around its strokes.
"""

from __future__ import annotations

import os

import numpy as np
from scipy import ndimage

from mnist_common.images.components import connected_components, digit_components
from mnist_common.images.decoding import ImageError

MIN_CONTRAST = 0.06  # a digit must stand out from the background by at least this (about 15 of 255 levels)
MAX_BORDER_NOISE = 0.12  # border pixels spread more than this (sigma) are no background: the digit fills the frame
RIM = np.ones((5, 5), bool)  # the blurred rim of a thresholded stroke reaches 2 pixels beyond it
EIGHT_NEIGHBOURS = np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1]], np.uint8)


def border_plane(gray: np.ndarray) -> tuple[np.ndarray, float]:
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


def without_specks(mask: np.ndarray) -> np.ndarray:
    """``mask`` without pixels that have fewer than 2 of their 8 neighbours set (noise specks)."""
    neighbours = ndimage.correlate(mask.astype(np.uint8), EIGHT_NEIGHBOURS, mode="constant")
    return mask & (neighbours >= 2)


def bounding_box(mask: np.ndarray) -> tuple[slice, slice]:
    """The (rows, columns) slices of the smallest box holding every set pixel of a non-empty ``mask``."""
    return ndimage.find_objects(mask.astype(np.uint8))[0]


def extract_ink(gray: np.ndarray, path: str | os.PathLike = "image") -> tuple[np.ndarray, bool]:
    """Ink map (1 = stroke, 0 = background) cropped to the digit, and whether the picture was dark-on-light.

    Raises :class:`ImageError` when nothing stands out from the background.
    """
    if float(gray.max()) - float(gray.min()) < 1e-6:
        raise ImageError(path, "nothing is drawn on it (the image is uniform)")
    plane, sigma = border_plane(gray)
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
        mask = without_specks(ink > threshold)
        if not mask.any():
            raise ImageError(path, "nothing is drawn on it (only isolated specks stand out from the background)")
        labels, count = connected_components(mask)
        digit = digit_components(labels, count, np.clip(ink, 0.0, None))
        mask = np.isin(labels, digit) if len(digit) < count else mask
        if len(digit) == count or attempt:
            break
        # What is not the digit (and its blurred rim) is background; the threshold is taken again
        # from the digit's own ink, which may be much fainter than a dark band was.
        others = ndimage.binary_dilation((labels > 0) & ~mask, structure=RIM)
        ink = np.where(others, np.float32(0.0), ink)
    level = max(float(np.percentile(ink[mask], 95)), threshold * 1.01)
    floor = min(3.0 * sigma, 0.5 * threshold)
    ink = np.clip((ink - floor) / (level - floor), 0.0, 1.0)
    pad = 2
    rows, cols = bounding_box(mask)
    rows = slice(max(rows.start - pad, 0), min(rows.stop + pad, ink.shape[0]))
    cols = slice(max(cols.start - pad, 0), min(cols.stop + pad, ink.shape[1]))
    crop, kept = ink[rows, cols], mask[rows, cols]
    # Keep only ink near the digit's thresholded strokes (drops specks and other pieces inside the box,
    # keeps anti-aliasing).
    crop = crop * ndimage.binary_dilation(kept, structure=RIM)
    # The box is that of the thresholded strokes; trim the margin again to where the ink really is.
    crop = crop[bounding_box(crop > 0.05)]
    return crop.astype(np.float32), inverted


__all__ = ["MAX_BORDER_NOISE", "MIN_CONTRAST", "border_plane", "bounding_box", "extract_ink", "without_specks"]

"""Which connected pieces of ink are the digit, and which are a table edge, a shadow, a ruled line or a stray mark.

The pieces are scipy.ndimage's 8-connected components (:func:`scipy.ndimage.label`), measured with
:func:`scipy.ndimage.find_objects` (bounding boxes) and :func:`scipy.ndimage.sum_labels` (masses,
contact with the picture's border); only the rules that pick the digit's pieces are this module's own.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

# Which pieces of ink are the digit (sizes relative to the working image, masses to the heaviest piece):
EDGE_CONTACT = 0.15  # a piece touching the picture's border along this fraction of its shorter side is an edge object
MAIN_SHARE = 0.1  # the digit is the heaviest piece that is no edge object, if it has this share of the heaviest's mass
NEAR = 0.25  # pieces this close to the digit's box (a fraction of its longer side) are part of it (a detached bar)
BORDER_SHARE = 0.25  # ... unless they touch the border and weigh less than this share of the digit's main piece

EIGHT_CONNECTED = np.ones((3, 3), bool)  # diagonal neighbours join pieces: a pen line drawn at 45 degrees is one piece


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean image: (labels, count); labels int32, 0 = background, 1..count.

    Labels are numbered in the order of each piece's first pixel in row-major order.
    """
    labels, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
    return labels, int(count)


@dataclass(frozen=True)
class Pieces:
    """Measurements of components 1..count, one array element each (element i is label i + 1)."""

    mass: np.ndarray  # the sum of ink over the piece
    y0: np.ndarray  # bounding box, end exclusive
    y1: np.ndarray
    x0: np.ndarray
    x1: np.ndarray
    contact: np.ndarray  # pixels on the picture's outermost rows and columns (a corner pixel counts twice)
    top: np.ndarray  # which sides of the picture the piece touches
    bottom: np.ndarray
    left: np.ndarray
    right: np.ndarray


def measure(labels: np.ndarray, count: int, ink: np.ndarray) -> Pieces:
    """Mass, bounding box and border contact of each labelled piece."""
    h, w = labels.shape
    index = np.arange(1, count + 1)
    boxes = ndimage.find_objects(labels, max_label=count)
    y0, y1, x0, x1 = (np.array([getattr(box[axis], end) for box in boxes], int)
                      for axis, end in ((0, "start"), (0, "stop"), (1, "start"), (1, "stop")))
    # how many of the four outermost lines each pixel lies on (a corner pixel is on two)
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    border_lines = (rows == 0).astype(int) + (rows == h - 1) + (cols == 0) + (cols == w - 1)
    return Pieces(mass=ndimage.sum_labels(ink, labels, index), y0=y0, y1=y1, x0=x0, x1=x1,
                  contact=ndimage.sum_labels(border_lines, labels, index),
                  top=y0 == 0, bottom=y1 == h, left=x0 == 0, right=x1 == w)


def digit_components(labels: np.ndarray, count: int, ink: np.ndarray) -> np.ndarray:
    """The labels (1..count, sorted) of the pieces of ink that make the digit.

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
    p = measure(labels, count, ink)
    mass = p.mass
    touches = p.top | p.bottom | p.left | p.right
    edge = (p.contact >= EDGE_CONTACT * min(h, w)) | (p.top & p.bottom) | (p.left & p.right)
    candidates = np.nonzero(~edge & (mass >= MAIN_SHARE * float(mass.max())))[0]
    main = int(candidates[np.argmax(mass[candidates])]) if len(candidates) else int(np.argmax(mass))
    joinable = ~edge & (~touches | (mass >= BORDER_SHARE * mass[main]))
    joinable[main] = False
    kept = [main]
    box = [p.y0[main], p.y1[main], p.x0[main], p.x1[main]]
    while True:  # pieces near the digit's box join it, which widens the box: repeat until none is near
        reach = NEAR * max(box[1] - box[0], box[3] - box[2])
        gap_y = np.maximum(np.maximum(box[0] - p.y1, p.y0 - box[1]), 0)
        gap_x = np.maximum(np.maximum(box[2] - p.x1, p.x0 - box[3]), 0)
        near = joinable & (np.hypot(gap_y, gap_x) <= reach)
        if not near.any():
            return np.array(sorted(kept)) + 1
        joinable &= ~near
        for k in np.nonzero(near)[0]:
            kept.append(int(k))
            box = [min(box[0], p.y0[k]), max(box[1], p.y1[k]), min(box[2], p.x0[k]), max(box[3], p.x1[k])]


__all__ = ["BORDER_SHARE", "EDGE_CONTACT", "MAIN_SHARE", "NEAR", "Pieces", "connected_components",
           "digit_components", "measure"]

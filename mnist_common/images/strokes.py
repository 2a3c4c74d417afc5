"""Stroke width, and widening strokes much finer than MNIST's with a round pen without closing the digit's loops.

The pen is a disk-shaped structuring element for scipy.ndimage's dilations. What the library has
no word for is growing strokes without changing the digit's topology: that adds only *simple
points* (pixels whose addition joins no two strokes and closes or fills no loop), decided from
each pixel's 3x3 neighbourhood with a table of the 256 neighbourhoods.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy import ndimage

STROKE_LEVEL = 0.1  # at WORK_BOX scale, ink above this is stroke when widening keeps strokes apart and loops open

# The 8 neighbours of a pixel, in order around it; bit k of a neighbourhood code is neighbour k.
NEIGHBOURS = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
NEIGHBOUR_BITS = np.zeros((3, 3), np.uint8)  # correlating a mask with this gives each pixel's neighbourhood code
NEIGHBOUR_BITS[tuple(np.add(NEIGHBOURS, 1).T)] = 1 << np.arange(len(NEIGHBOURS))


def stroke_width(ink: np.ndarray) -> float:
    """Mean stroke width in pixels of an ink image: 2 * area / perimeter of its strokes (ink > 0.5)."""
    mask = ink > 0.5
    area = int(mask.sum())
    if not area:
        return 0.0
    perimeter = (int((mask[:, 1:] != mask[:, :-1]).sum()) + int((mask[1:] != mask[:-1]).sum())
                 + int(mask[:, 0].sum() + mask[:, -1].sum() + mask[0].sum() + mask[-1].sum()))
    return 2.0 * area / perimeter


def disk(radius: float) -> np.ndarray:
    """A round pen of ``radius`` pixels: the boolean footprint of the offsets within ``radius`` of its centre."""
    r = int(np.floor(radius))
    dy, dx = np.ogrid[-r:r + 1, -r:r + 1]
    return dy * dy + dx * dx <= radius * radius


def neighbourhood_codes(mask: np.ndarray) -> np.ndarray:
    """Each pixel's neighbourhood code in a boolean image (bit k set: its neighbour :data:`NEIGHBOURS` [k] is set)."""
    return ndimage.correlate(mask.astype(np.uint8), NEIGHBOUR_BITS, mode="constant")


@functools.lru_cache(maxsize=1)
def simple_point_table() -> np.ndarray:
    """For each of the 256 neighbourhood codes, whether a background pixel there can become stroke without
    changing the picture's topology (a *simple point*, strokes 8-connected, background 4-connected):
    its stroke neighbours form one piece and its background neighbours one piece that touches it.
    Adding such a pixel never joins two strokes, closes a gap into a loop, or fills a loop."""
    table = np.zeros(256, bool)
    edge_neighbours = ([0, 1, 1, 2], [1, 0, 2, 1])  # the 4 neighbours that share a side with the centre
    for code in range(256):
        strokes = (NEIGHBOUR_BITS & code) > 0  # the centre itself is neither stroke nor background
        background = ~strokes
        background[1, 1] = False
        _, stroke_pieces = ndimage.label(strokes, structure=np.ones((3, 3), bool))
        background_pieces, _ = ndimage.label(background)  # 4-connected
        touching = set(background_pieces[edge_neighbours].tolist()) - {0}
        table[code] = stroke_pieces == 1 and len(touching) == 1
    return table


def grow_keeping_topology(strokes: np.ndarray, radius: float) -> np.ndarray:
    """``strokes`` (boolean) grown by up to ``radius`` pixels, one layer at a time, adding only simple points.

    Unlike a plain dilation, strokes that do not touch stay apart (by at least one pixel) and
    loops stay open: the fronts growing from two strokes stop where they meet.
    """
    grown = strokes.copy()
    ys, xs = np.indices(strokes.shape)
    parity = [(ys % 2 == py) & (xs % 2 == px) for py in (0, 1) for px in (0, 1)]  # no two pixels of one class touch
    simple = simple_point_table()
    for step in [*np.arange(1.0, radius, 1.0), radius]:
        reach = ndimage.binary_dilation(strokes, structure=disk(float(step)))
        while True:
            added = False
            for cls in parity:  # pixels of one class can be added together: none is another's neighbour
                candidates = reach & ~grown & cls
                if not candidates.any():
                    continue
                new = candidates & simple[neighbourhood_codes(grown)]
                if new.any():
                    grown |= new
                    added = True
            if not added:
                break
    return grown


def widen(work: np.ndarray, radius: float) -> np.ndarray:
    """``work`` (ink >= 0) with its strokes widened by a round pen of ``radius``, without joining strokes or
    closing loops.

    A plain dilation would bridge a narrow gap (a thin-pen 4 whose top is open, an 8 drawn
    with two near strokes) and fill small loops. Here the pen grows the strokes (drawn one
    pixel wider first, so a faint line's anti-aliasing breaks count as closed) one layer at a
    time and stops where two fronts meet; the pixels it leaves out there, and their
    neighbours, stay background, so the gap or loop is still about 3 pixels wide (close to a
    pixel at the final scale).
    """
    pen = disk(radius)
    widened = ndimage.grey_dilation(work, footprint=pen, mode="constant", cval=0.0)  # ink >= 0: the outside is 0
    strokes = ndimage.binary_dilation(work > STROKE_LEVEL, structure=disk(1.0))
    grown = grow_keeping_topology(strokes, radius)
    reach = ndimage.binary_dilation(strokes, structure=pen)
    kept_apart = ndimage.binary_dilation(reach & ~grown, structure=disk(1.0))
    return np.where(kept_apart & (work <= STROKE_LEVEL), work, widened)


__all__ = ["NEIGHBOURS", "STROKE_LEVEL", "disk", "grow_keeping_topology", "neighbourhood_codes",
           "simple_point_table", "stroke_width", "widen"]

"""The parts of the MNIST preprocessing (mnist_common.images) whose rules are the project's own, on small pictures.

Whole pictures are tested in test_predict.py and test_real_digits.py; these pin the rules that pick
the digit's pieces of ink and that widen a pen without changing the digit's shape.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw
from scipy import ndimage

from mnist_common.images.components import connected_components, digit_components, measure
from mnist_common.images.ink import without_specks
from mnist_common.images.strokes import (NEIGHBOURS, disk, grow_keeping_topology, neighbourhood_codes,
                                         simple_point_table, widen)


def _code(*neighbours: tuple[int, int]) -> int:
    return sum(1 << NEIGHBOURS.index(n) for n in neighbours)


def test_pieces_are_8_connected_and_measured_on_the_border():
    mask = np.zeros((6, 8), bool)
    mask[0, 0] = mask[1, 1] = mask[2, 2] = True  # a diagonal line from the corner: one piece
    mask[3:6, 6:8] = True  # a block in the bottom right corner
    labels, count = connected_components(mask)
    assert count == 2 and labels[0, 0] == labels[2, 2] == 1 and labels[5, 7] == 2
    pieces = measure(labels, count, mask.astype(np.float32))
    assert pieces.mass.tolist() == [3, 6]
    assert (pieces.y0.tolist(), pieces.y1.tolist(), pieces.x0.tolist(), pieces.x1.tolist()) == ([0, 3], [3, 6],
                                                                                                 [0, 6], [3, 8])
    assert pieces.contact.tolist() == [2, 5]  # the corner pixel lies on two border lines
    assert pieces.top.tolist() == [True, False] and pieces.bottom.tolist() == [False, True]
    assert pieces.left.tolist() == [True, False] and pieces.right.tolist() == [False, True]


def test_the_digit_keeps_its_near_pieces_and_drops_edge_bands_and_far_marks():
    ink = np.zeros((100, 100), np.float32)
    ink[30:70, 45:52] = 1  # the digit's stem
    ink[26:29, 40:58] = 1  # a detached bar just above it
    ink[:, :4] = 1  # a dark band down the whole left edge (a table), heavier than the digit
    ink[90:93, 90:93] = 1  # a speck far from the digit
    ink[0:20, 47:50] = 0.2  # a faint mark near the digit, touching the top border (a neighbour cut by the frame)
    labels, count = connected_components(ink > 0)
    kept = digit_components(labels, count, ink)
    assert sorted(labels[y, x] for y, x in ((50, 48), (27, 50))) == kept.tolist()
    assert count == 5


def test_specks_go_and_strokes_stay():
    mask = np.zeros((9, 9), bool)
    mask[1, 1] = True  # a lone pixel
    mask[4:7, 4:7] = True  # a 3x3 blot
    cleaned = without_specks(mask)
    assert not cleaned[1, 1] and cleaned[4:7, 4:7].all() and cleaned.sum() == 9


def test_simple_points_neither_join_nor_close():
    table = simple_point_table()
    assert not table[0]  # no stroke around: a new pixel would be a new piece
    assert table[_code((-1, 0))] and table[_code((-1, -1), (-1, 0), (-1, 1))]  # the end or the side of a stroke
    assert not table[_code((-1, 0), (1, 0))]  # between two strokes: it would join them
    assert table[_code(*[n for n in NEIGHBOURS if n != (0, 1)])]  # a dent in a stroke: filled
    assert not table[255]  # a one-pixel hole: it would fill it
    mask = np.zeros((3, 3), bool)
    mask[0, 1] = mask[2, 1] = True
    assert neighbourhood_codes(mask)[1, 1] == _code((-1, 0), (1, 0))


def test_growing_strokes_keeps_them_apart_and_loops_open_where_a_dilation_does_not():
    eight = np.ones((3, 3), bool)
    lines = np.zeros((30, 30), bool)
    lines[5:25, 10] = lines[5:25, 14] = True  # two pen lines 3 pixels apart
    ring = np.zeros((30, 30), bool)
    ring[10:17, 10:17] = disk(3.5) & ~np.pad(disk(1.0), 2)  # a small loop around a 5-pixel hole
    assert ndimage.label(ndimage.binary_dilation(lines, structure=disk(2.0)), structure=eight)[1] == 1  # joined
    assert ndimage.label(~ndimage.binary_dilation(ring, structure=disk(2.0)))[1] == 1  # the hole is filled
    for strokes in (lines, ring):
        grown = grow_keeping_topology(strokes, 2.0)
        assert ndimage.label(grown, structure=eight)[1] == ndimage.label(strokes, structure=eight)[1]  # still apart
        assert ndimage.label(~grown)[1] == ndimage.label(~strokes)[1]  # the same holes: the loop is still open
        assert (grown >= strokes).all() and grown.sum() > 1.5 * strokes.sum()  # and the strokes did grow


def test_widening_keeps_the_gap_between_two_faint_strokes():
    work = np.zeros((40, 40), np.float32)
    work[5:35, 12] = work[5:35, 17] = 0.8  # two thin strokes, four pixels apart
    assert (ndimage.grey_dilation(work, footprint=disk(2.0))[20, 12:18] > 0.1).all()  # a plain dilation joins them
    widened = widen(work, 2.0)
    assert (widened[5:35, 10:15] >= 0.8).sum() > 2 * (work[5:35, 10:15] >= 0.8).sum()  # wider strokes
    assert (widened[20, 12:18] <= 0.1).any()  # still apart: background between them


@pytest.mark.parametrize("canvas", [(0, 0, 0, 0), (255, 255, 255, 0), (255, 255, 255, 255)])
def test_a_large_transparent_picture_is_reduced_before_its_float_work(canvas):
    """A 7999x7999 RGBA PNG of a few hundred KB cost serve 2 GB of floats a request; it is now reduced as 8-bit
    premultiplied colour and alpha first. Its composite is the box average of the full-size one, to 8-bit rounding."""
    from mnist_common.images.grayscale import float_image, to_gray, working_gray

    picture = Image.new("RGBA", (3000, 2500), canvas)
    draw = ImageDraw.Draw(picture)
    draw.line([(800, 400), (1500, 2000), (2200, 500)], fill=(20, 20, 20, 255), width=120)
    draw.ellipse([1000, 800, 1900, 1700], outline=(0, 0, 0, 128), width=60)  # half transparent
    full_size = np.asarray(float_image(to_gray(picture)).reduce(3), dtype=np.float32)
    reduced = working_gray(picture)
    assert reduced.shape == full_size.shape == (834, 1000)
    assert np.abs(reduced - full_size).max() <= 1 / 255
    assert full_size.min() < 0.2 and full_size.max() > 0.8  # strokes on a light canvas, in both

"""What real pictures need from the preprocessing, and the script that scores a folder of them.

The real-image set itself (benchmarks/real_digits.csv) is other people's files and stays out of
the repository; these tests build the same troubles from MNIST digits: a table edge or a page
border along the picture's side, stray marks far from the digit, strokes much finer than MNIST's.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import REPO, module_env
from mnist_common.figures import mistake_digit_box
from mnist_common.images.mnist_style import SIZE
from mnist_common.images.preparation import prepare_image
from mnist_common.renderings import write_renderings

SIDE, CANVAS = 300, (600, 500)  # the digit's size and the paper's, in pixels


def _paper_with_digit(digit: np.ndarray, at=(60, 150)) -> np.ndarray:
    """An MNIST digit drawn dark on light-grey paper at ``at`` (row, column), as a photo would show it:
    (H, W) in [0, 1], 1 = white. The digit's box is rows 60-360, columns 150-450."""
    ink = np.asarray(Image.fromarray(digit).resize((SIDE, SIDE), Image.Resampling.BICUBIC), np.float32) / 255
    paper = np.full(CANVAS[::-1], 0.85, np.float32)
    y, x = at
    paper[y:y + SIDE, x:x + SIDE] -= 0.75 * np.clip(ink, 0, 1)
    return paper


def _prepared(gray: np.ndarray) -> np.ndarray:
    return prepare_image(Image.fromarray(np.round(np.clip(gray, 0, 1) * 255).astype(np.uint8), "L")).pixels


@pytest.mark.parametrize("index", [0, 1, 2, 7, 11])
def test_a_table_edge_and_stray_marks_do_not_move_or_shrink_the_digit(mnist, index):
    clean = _paper_with_digit(mnist.test_images[index])
    cluttered = clean.copy()
    cluttered[-60:, :] = 0.25  # the dark table below the sheet, along the whole bottom edge
    cluttered[:250, :20] = 0.3  # a shadow down the upper left side (with the table: 40 % of the border)
    cluttered[30:38, 520:528] = 0.1  # a dot of ink far from the digit
    cluttered[420:426, 520:590] = 0.2  # a stray stroke at the bottom right, away from the digit
    expected, got = _prepared(clean), _prepared(cluttered)
    assert np.abs(got - expected).mean() < 0.02, np.abs(got - expected).mean()


def _ink_width(pixels: np.ndarray) -> float:
    """Mean stroke width in pixels: 2 x ink area / ink perimeter (ink > 0.5)."""
    ink = pixels > 0.5
    edges = (ink[:, 1:] != ink[:, :-1]).sum() + (ink[1:, :] != ink[:-1, :]).sum()
    return 2 * ink.sum() / max(edges, 1)


def test_a_hairline_pen_is_widened_towards_mnists_strokes_without_closing_loops(mnist, monkeypatch):
    from mnist_common.images import mnist_style

    canvas = Image.new("L", (800, 800), 255)
    ImageDraw.Draw(canvas).ellipse((250, 100, 550, 700), outline=0, width=3)  # a zero in a 3-pixel pen at 800x800
    widened = prepare_image(canvas).pixels
    monkeypatch.setattr(mnist_style, "MIN_STROKE", 0.0)  # widening off: what the model would see otherwise
    hairline = prepare_image(canvas).pixels
    mnist_widths = [_ink_width(digit / 255.0) for digit in mnist.test_images[:2000]]
    assert _ink_width(widened) >= np.percentile(mnist_widths, 1) > _ink_width(hairline)
    assert _ink_width(widened) >= 1.25 * _ink_width(hairline)
    assert widened[SIZE // 2, SIZE // 2] < 0.1  # the loop is still open in the middle


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory, mnist):
    """Renderings of 40 MNIST test digits (labels as first characters), an unreadable picture and a stray file."""
    folder = tmp_path_factory.mktemp("labelled")
    for rendering in write_renderings(mnist.test_images[:40], mnist.test_labels[:40], folder, count=40):
        path = folder / rendering.path
        path.rename(folder / f"{rendering.label}_{path.name}")  # the label first, as fetch_real_digits.py names
    (folder / "3_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not a picture")
    return folder


def test_score_script_counts_every_picture_and_draws_exactly_the_misses(labelled_folder, seed_keras, mnist_dir,
                                                                        tmp_path):
    out = tmp_path / "scores"
    proc = subprocess.run([sys.executable, REPO / "benchmarks" / "score_real_digits.py", labelled_folder,
                           "--weights", seed_keras, "--backend", "torch", "--output_dir", out, "--tag", "run"],
                          env=module_env(mnist_dir), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((out / "run.json").read_text())
    files = sorted(p.name for p in labelled_folder.iterdir() if p.name[0].isdigit())
    assert [r["file"] for r in report["results"]] == files and report["skipped"] == ["notes.txt"]
    assert all(r["label"] == int(r["file"][0]) for r in report["results"])
    right = [r for r in report["results"] if r["right"]]
    assert report["right"] == len(right) and report["accuracy"] == len(right) / len(files)
    assert report["accuracy"] >= 0.85  # the seed's weights on rendered MNIST digits
    broken = next(r for r in report["results"] if r["file"] == "3_broken.png")
    assert not broken["right"] and "not an image" in broken["error"]
    misses = [r["file"] for r in report["results"] if not r["right"]]
    assert sorted(report["misses"]) == sorted(misses) and report["misses"][-1] == "3_broken.png"  # unreadable last
    assert f"{len(right)}/{len(files)} right" in proc.stdout
    for name in misses:
        assert f"miss {name}:" in proc.stdout
    # the grid has one panel per miss, in the report's order: a panel's digit field holds ink, the next is blank
    grid = np.asarray(Image.open(out / "run_misses.png").convert("L"))
    for i in range(len(misses)):
        left, top, right_edge, bottom = mistake_digit_box(i, pictures=True)
        field = grid[top:bottom, left:right_edge]
        assert field.shape == (bottom - top, right_edge - left)
        if misses[i] != "3_broken.png":
            assert field.min() < 128  # a prepared digit is drawn there
    left, top, right_edge, bottom = mistake_digit_box(len(misses), pictures=True)
    assert top >= grid.shape[0] or left >= grid.shape[1] or (grid[top:bottom, left:right_edge] == 255).all()


def test_score_script_refuses_a_bad_folder_in_one_line(seed_keras, mnist_dir, tmp_path):
    from conftest import assert_one_line_error

    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, fragment in ((tmp_path / "missing", "not a folder"), (empty, "no file whose name starts with a digit")):
        proc = subprocess.run([sys.executable, REPO / "benchmarks" / "score_real_digits.py", folder,
                               "--weights", seed_keras, "--output_dir", tmp_path / "out"],
                              env=module_env(mnist_dir), capture_output=True, text=True, timeout=300)
        assert_one_line_error(proc, fragment)
        assert proc.returncode == 2


def test_a_large_photo_is_decoded_reduced_but_reports_its_own_size():
    import io

    from mnist_common.images.decoding import WORK_SIDE
    from mnist_common.images.preparation import prepare_bytes

    photo = Image.new("RGB", (3000, 2000), "white")
    ImageDraw.Draw(photo).line([(1500, 400), (1500, 1600)], fill="black", width=60)  # a "1"
    data = io.BytesIO()
    photo.save(data, "JPEG")
    decoded = Image.open(io.BytesIO(data.getvalue()))
    decoded.draft("RGB", (WORK_SIDE, WORK_SIDE * 2 // 3))  # the file's shape, WORK_SIDE long
    assert max(decoded.size) < 3000  # libjpeg can decode it at a reduced scale ...
    prepared = prepare_bytes(data.getvalue(), "photo.jpg")
    assert prepared.size == (3000, 2000) and prepared.pixels.max() == 1.0  # ... and the file's size is reported

"""Figures both frameworks write (training curves) and the ones people look at (predictions, mistakes).

matplotlib is imported on first use and draws to files only (Agg): reading or writing
results must not pay for it, and no display is needed. Figures are saved atomically.
"""

from __future__ import annotations

import math
from pathlib import Path

from mnist_common.errors import escaped
from mnist_common.files import write_atomically


def save_figure(fig, path: str | Path, dpi: int = 80) -> Path:
    """Save ``fig`` to ``path`` (its suffix picks the format) atomically, then close it."""
    path = Path(path)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as file:  # closed here whatever matplotlib's writer does (its PDF writer, failing on a
            fig.savefig(file, dpi=dpi, format=path.suffix[1:].lower() or "png")  # full disk, left its file open)

    try:
        write_atomically(path, write, make_parents=True)
    finally:
        pyplot().close(fig)
    return path


def pyplot():
    """matplotlib's pyplot drawing to files only (no display), imported on first use:
    reading or writing results must not pay for matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(history: list[dict[str, float]], path: str | Path, title: str = "") -> Path:
    """The notebook's figure: accuracy and loss per epoch, training vs validation."""
    return _plot({"": history}, path, title)


def plot_cv_curves(histories: list[list[dict[str, float]]], path: str | Path, title: str = "") -> Path:
    """One line pair per fold: validation solid, training dashed."""
    return _plot({f"fold {k} ": h for k, h in enumerate(histories)}, path, title)


def _plot(histories: dict[str, list[dict[str, float]]], path: str | Path, title: str) -> Path:
    from matplotlib.ticker import MaxNLocator

    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("acc", "loss")):
        for i, (label, history) in enumerate(histories.items()):
            epochs = [row["epoch"] + 1 for row in history]
            color = f"C{i}"
            for stage, style in (("train", "--"), ("val", "-")):
                values = [row.get(f"{stage}_{metric}", math.nan) for row in history]
                ax.plot(epochs, values, style, color=color if len(histories) > 1 else None,
                        marker="o", markersize=3, label=f"{label}{stage}")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel("accuracy" if metric == "acc" else "loss")
        ax.set_title(f"{'Accuracy' if metric == 'acc' else 'Loss'}")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(shown(title))
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)


def shown(text: str) -> str:
    """``text`` (a file's or a run's name) as a figure shows it: escaped as the terminal shows it (a name whose bytes
    are not UTF-8 was a traceback in the font's renderer, after every prediction: hostile round 8), its dollar signs
    as themselves (matplotlib reads text between two as mathematics, and refuses what is not)."""
    return escaped(text).replace("$", r"\$")


def predictions_figure(rows: list[tuple[str, object, object, object]], path: str | Path, title: str) -> Path:
    """One row per image: the input picture, the 28x28 image the model saw, the class probabilities.

    ``rows`` holds (label, picture or None, (28, 28) pixels, probabilities) per image.
    """
    import numpy as np

    plt = pyplot()
    fig, axes = plt.subplots(len(rows), 3, figsize=(10, 2.4 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 2]})
    for (ax_in, ax_seen, ax_bar), (label, picture, pixels, probabilities) in zip(axes, rows):
        probabilities = np.asarray(probabilities)
        digit = int(probabilities.argmax())
        if picture is not None:
            ax_in.imshow(picture)
        ax_in.set_title(shown(label), fontsize=9)
        ax_seen.imshow(pixels, cmap="gray", vmin=0.0, vmax=1.0)
        ax_seen.set_title("28x28 the model saw", fontsize=9)
        for ax in (ax_in, ax_seen):
            ax.set_xticks([])
            ax.set_yticks([])
        ax_bar.bar(range(len(probabilities)), probabilities,
                   color=["C1" if k == digit else "C0" for k in range(len(probabilities))])
        ax_bar.set_xticks(range(len(probabilities)))
        ax_bar.set_ylim(0, 1)
        ax_bar.set_title(f"predicted {digit} (probability {probabilities[digit]:.4f})", fontsize=9)
    fig.suptitle(shown(title), fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path)


# The mistakes grid: drawn with Pillow at fixed pixel positions (digit i at mistake_digit_box(i)),
# so what it shows can be checked pixel for pixel. With the original pictures (real photos and
# scans), each panel shows the picture's thumbnail left of the 28x28 the model saw, both larger.
MAX_MISTAKES_SHOWN = 200
GRID_COLUMNS = 10
DIGIT_SCALE = 2  # each 28x28 digit drawn 56x56
PICTURE_COLUMNS, PICTURE_DIGIT_SCALE = 5, 4  # with pictures: fewer, larger panels (digit 112x112)
PANEL_MARGIN, CAPTION_HEIGHT, HEADER_HEIGHT = 6, 18, 30
CAPTION_FONT_SIZE = 13


def _layout(side: int, pictures: bool) -> tuple[int, int, int, int]:
    """(columns, digit scale, picture width, caption lines) of a grid's panels."""
    if pictures:
        return PICTURE_COLUMNS, PICTURE_DIGIT_SCALE, side * PICTURE_DIGIT_SCALE + PANEL_MARGIN, 2
    return GRID_COLUMNS, DIGIT_SCALE, 0, 1


def _panel_size(side: int, pictures: bool = False) -> tuple[int, int]:
    _, scale, picture, lines = _layout(side, pictures)
    return picture + side * scale + 2 * PANEL_MARGIN, side * scale + lines * CAPTION_HEIGHT + 2 * PANEL_MARGIN


def mistake_digit_box(i: int, side: int = 28, pictures: bool = False) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the ``i``-th digit in a mistakes grid of ``side``-pixel digits."""
    columns, scale, picture, _ = _layout(side, pictures)
    width, height = _panel_size(side, pictures)
    left = (i % columns) * width + PANEL_MARGIN + picture
    top = HEADER_HEIGHT + (i // columns) * height + PANEL_MARGIN
    return left, top, left + side * scale, top + side * scale


def mistakes_grid(images, mistakes: list[dict], path: str | Path, title: str, pictures: list | None = None) -> Path:
    """Misclassified digits in order (at most :data:`MAX_MISTAKES_SHOWN`), each captioned "true -> predicted p".

    ``images``: (N, H, W) floats in [0, 1], 1 = ink (drawn dark on white, as people write);
    ``mistakes``: N dicts with ``label``, ``predicted``, ``probability`` (and optionally ``name``, a
    second caption line, and ``caption``, which replaces the first);
    ``pictures``: None, or N original pictures (PIL images, or None where there is none), each
    drawn as a thumbnail left of its digit.
    """
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    shown = min(len(mistakes), MAX_MISTAKES_SHOWN)
    side = int(np.asarray(images).shape[-1]) if shown else 28
    with_pictures = pictures is not None
    columns, _, picture_width, _ = _layout(side, with_pictures)
    width, height = _panel_size(side, with_pictures)
    rows = max(1, math.ceil(shown / columns))
    canvas = Image.new("RGB", (columns * width, HEADER_HEIGHT + rows * height), "white")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default(size=CAPTION_FONT_SIZE)
    more = f" (the {shown} most confident shown)" if shown < len(mistakes) else ""
    draw.text((PANEL_MARGIN, 8), title + more if mistakes else f"{title}: no mistakes", fill="black", font=font)
    for i in range(shown):
        ink = np.clip(np.asarray(images[i], dtype=np.float32), 0.0, 1.0)
        digit = Image.fromarray(np.round((1.0 - ink) * 255).astype(np.uint8), "L")
        left, top, right, bottom = mistake_digit_box(i, side, with_pictures)
        canvas.paste(digit.resize((right - left, bottom - top), Image.Resampling.NEAREST).convert("RGB"), (left, top))
        picture = pictures[i] if with_pictures else None
        if with_pictures:
            draw.rectangle((left - 1, top - 1, right, bottom), outline="lightgray")  # the 28x28 field's edge
        if picture is not None:
            thumb = picture.convert("RGB")
            thumb.thumbnail((picture_width - PANEL_MARGIN, bottom - top))
            canvas.paste(thumb, (left - picture_width + (picture_width - PANEL_MARGIN - thumb.width) // 2,
                                 top + (bottom - top - thumb.height) // 2))
        m = mistakes[i]
        caption = m.get("caption") or f"{m['label']}->{m['predicted']} {m['probability']:.2f}"
        draw.text((left - picture_width, bottom + 2), caption, fill="firebrick", font=font)
        if with_pictures and m.get("name"):
            name = str(m["name"])
            limit = (width - PANEL_MARGIN) // 7  # characters that fit at this font size
            name = name if len(name) <= limit else name[:limit - 3] + "..."
            draw.text((left - picture_width, bottom + 2 + CAPTION_HEIGHT), name, fill="dimgray", font=font)
    path = Path(path)
    write_atomically(path, lambda tmp: canvas.save(tmp, format="PNG"), make_parents=True)
    return path

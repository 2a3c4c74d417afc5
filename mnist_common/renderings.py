"""Pictures of MNIST digits as users draw, scan or photograph them: test images for ``predict``.

Framework-free (Pillow and numpy only). Each MNIST test digit is upscaled into
a smooth pen stroke and rendered in one of :data:`STYLES` (seeded, so the same
arguments give the same files):

============  =====================================================================
style         what it is
============  =====================================================================
canvas        black digit on a large white RGB canvas (like the notebook's imagen.png)
offcentre     the same, pushed towards a corner of the canvas
thick         bold strokes (dilated with a max filter)
thin          fine strokes (eroded with a min filter)
rgba          dark strokes on a fully transparent canvas (RGBA PNG)
palette       coloured ink on coloured paper, saved as a palette ("P") PNG
jpeg          black on white, saved as a lossy JPEG
noisy         dark ink on grey paper with Gaussian noise and dust specks
small         a small digit on a big canvas
inverted      a white digit on a black canvas (chalkboard)
lowcontrast   dark grey on light grey under a lighting gradient
gray16        a 16-bit grayscale PNG
============  =====================================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

STYLES = ("canvas", "offcentre", "thick", "thin", "rgba", "palette", "jpeg", "noisy", "small", "inverted",
          "lowcontrast", "gray16")


@dataclass(frozen=True)
class Rendering:
    path: str
    label: int
    style: str
    index: int  # the MNIST test image it was made from


def stroke(digit: np.ndarray, side: int) -> np.ndarray:
    """The 28x28 uint8 digit upscaled to ``side`` x ``side`` float ink in [0, 1] with crisp pen-like edges."""
    big = Image.fromarray(np.ascontiguousarray(digit, dtype=np.uint8)).resize((side, side), Image.Resampling.BICUBIC)
    ink = np.asarray(big, dtype=np.float32) / 255.0
    return np.clip((ink - 0.25) / 0.4, 0.0, 1.0)


def _morph(ink: np.ndarray, filt: type, size: int) -> np.ndarray:
    im = Image.fromarray((ink * 255).astype(np.uint8)).filter(filt(size))
    return np.asarray(im, dtype=np.float32) / 255.0


def _compose(ink: np.ndarray, canvas: tuple[int, int], at: tuple[int, int], paper, colour) -> np.ndarray:
    """An (H, W, C) float canvas of ``paper`` with ``ink`` (h, w) laid at ``at`` = (x, y) in ``colour``."""
    w, h = canvas
    paper = np.asarray(paper, np.float32).reshape(1, 1, -1)
    colour = np.asarray(colour, np.float32).reshape(1, 1, -1)
    out = np.broadcast_to(paper, (h, w, paper.shape[-1])).copy()
    x, y = at
    ih, iw = ink.shape
    a = ink[..., None]
    out[y:y + ih, x:x + iw] = out[y:y + ih, x:x + iw] * (1 - a) + colour * a
    return out


def _to_uint8(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def _place(rng: np.random.Generator, canvas: tuple[int, int], side: int, corner: bool = False) -> tuple[int, int]:
    w, h = canvas
    if corner:
        fx, fy = rng.choice([0.05, 0.95]), rng.choice([0.05, 0.95])
        return int(fx * (w - side)), int(fy * (h - side))
    return int(rng.uniform(0.2, 0.8) * (w - side)), int(rng.uniform(0.2, 0.8) * (h - side))


def render(digit: np.ndarray, style: str, rng: np.random.Generator) -> tuple[Image.Image, str]:
    """One picture of the 28x28 uint8 ``digit`` in ``style``; returns (image, file format)."""
    canvas = (int(rng.integers(600, 1400)), int(rng.integers(500, 1100)))
    side = int(rng.integers(250, min(canvas) - 20))
    black, white = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if style in ("canvas", "offcentre", "jpeg"):
        ink = stroke(digit, side)
        rgb = _compose(ink, canvas, _place(rng, canvas, side, corner=style == "offcentre"), white, black)
        return Image.fromarray(_to_uint8(rgb)), "JPEG" if style == "jpeg" else "PNG"
    if style in ("thick", "thin"):
        side = int(rng.integers(250, 400))
        ink = stroke(digit, side)
        k = 2 * int(rng.integers(side // 60, side // 35)) + 1  # odd filter size, scaled to the digit
        ink = _morph(ink, ImageFilter.MaxFilter if style == "thick" else ImageFilter.MinFilter, k)
        if style == "thin" and ink.max() < 0.5:  # eroded away: keep a finer version instead
            ink = _morph(stroke(digit, side), ImageFilter.MinFilter, 3)
        rgb = _compose(ink, canvas, _place(rng, canvas, side), white, black)
        return Image.fromarray(_to_uint8(rgb)), "PNG"
    if style == "rgba":
        ink = stroke(digit, side)
        alpha = _compose(ink, canvas, _place(rng, canvas, side), (0.0,), (1.0,))[..., 0]
        colour = rng.uniform(0.0, 0.3, 3)  # dark ink; the transparent pixels are (0, 0, 0, 0)
        rgba = np.zeros(alpha.shape + (4,), np.uint8)
        rgba[..., :3] = _to_uint8(np.broadcast_to(colour, alpha.shape + (3,))) * (alpha[..., None] > 0)
        rgba[..., 3] = _to_uint8(alpha)
        return Image.fromarray(rgba), "PNG"
    if style == "palette":
        ink = stroke(digit, side)
        paper = rng.uniform(0.75, 1.0, 3)
        colour = rng.uniform(0.0, 0.45, 3)
        rgb = _compose(ink, canvas, _place(rng, canvas, side), paper, colour)
        image = Image.fromarray(_to_uint8(rgb)).quantize(colors=int(rng.integers(8, 64)))
        return image, "PNG"
    if style == "noisy":
        ink = stroke(digit, side)
        paper = float(rng.uniform(0.7, 0.9))
        gray = _compose(ink, canvas, _place(rng, canvas, side), (paper,), (0.1,))[..., 0]
        gray = gray + rng.normal(0.0, float(rng.uniform(0.03, 0.08)), gray.shape).astype(np.float32)
        specks = rng.random(gray.shape) < 2e-4
        gray[specks] = 0.0
        return Image.fromarray(_to_uint8(gray)), "PNG"
    if style == "small":
        side = int(rng.integers(28, 56))
        canvas = (int(rng.integers(500, 1000)), int(rng.integers(400, 800)))
        ink = stroke(digit, side)
        rgb = _compose(ink, canvas, _place(rng, canvas, side), white, black)
        return Image.fromarray(_to_uint8(rgb)), "PNG"
    if style == "inverted":
        ink = stroke(digit, side)
        gray = _compose(ink, canvas, _place(rng, canvas, side), (float(rng.uniform(0.0, 0.2)),), (1.0,))[..., 0]
        return Image.fromarray(_to_uint8(gray)), "PNG"
    if style == "lowcontrast":
        ink = stroke(digit, side)
        paper = float(rng.uniform(0.7, 0.85))
        gray = _compose(ink, canvas, _place(rng, canvas, side), (paper,), (paper - rng.uniform(0.25, 0.4),))[..., 0]
        h, w = gray.shape
        slope = rng.uniform(-0.12, 0.12, 2)
        gray = gray + slope[0] * np.linspace(-1, 1, w)[None, :] + slope[1] * np.linspace(-1, 1, h)[:, None]
        return Image.fromarray(_to_uint8(gray)), "PNG"
    if style == "gray16":
        ink = stroke(digit, side)
        gray = _compose(ink, canvas, _place(rng, canvas, side), (1.0,), (0.0,))[..., 0]
        return Image.fromarray((np.clip(gray, 0, 1) * 65535).astype(np.uint16)), "PNG"
    raise ValueError(f"unknown style {style!r}; choose from {STYLES}")


def save(image: Image.Image, fmt: str, path: str | os.PathLike, rng: np.random.Generator | None = None) -> None:
    if fmt == "JPEG":
        quality = int(rng.integers(40, 85)) if rng is not None else 75
        image.save(path, "JPEG", quality=quality)
    else:
        image.save(path, fmt)


def write_renderings(images: np.ndarray, labels: np.ndarray, directory: str | os.PathLike, count: int = 1000,
                     seed: int = 0, styles: tuple[str, ...] = STYLES) -> list[Rendering]:
    """Render ``count`` seeded-random digits of ``images`` (N, 28, 28 uint8), cycling through ``styles``.

    Files are named ``<i>_<style>_<label>.<png|jpg>`` in ``directory``.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(images), size=count, replace=False)
    out = []
    for i, index in enumerate(chosen):
        style = styles[i % len(styles)]
        image, fmt = render(images[index], style, rng)
        path = directory / f"{i:04d}_{style}_{int(labels[index])}.{'jpg' if fmt == 'JPEG' else 'png'}"
        save(image, fmt, path, rng)
        out.append(Rendering(str(path), int(labels[index]), style, int(index)))
    return out


__all__ = ["STYLES", "Rendering", "render", "save", "stroke", "write_renderings"]

"""``python -m lightning_mnist augment-preview OUT.png``: look at what the augmentation does.

Row 1 shows training digits as they are; each further row shows the same digits
through the notebook's augmentation, drawn afresh, so a person can check that
the digits stay legible and the transforms vary from image to image.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mnist_common.cli import run
from mnist_common.errors import UserError, exit_on_user_error
from mnist_common.files import check_output_file
from mnist_common.mnist import check_data_dir
from mnist_common.settings import check_seed_range

PROG = "python -m lightning_mnist augment-preview"
SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
MAX_COUNT, MAX_ROWS = 40, 20


def _check(name: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise UserError(f"--{name} must be a number from {low:g} to {high:g}, got {value}")


def augment_preview(output: Path, data_dir: str | None = None, count: int = 10, rows: int = 4, seed: int = 0,
                    rotation: float = 5.0, zoom: float = 0.05, shift: float = 0.05, shear: float = 0.05,
                    elastic_alpha: float = 0.0, elastic_sigma: float = 4.0, overwrite: bool = False) -> None:
    """Draw training digits and augmented copies of them (the notebook's ImageDataGenerator ranges by default).

    Args:
        output: the figure to write (.png, .pdf, .svg, .jpg); its folder must exist.
        data_dir: the folder holding MNIST/raw (default $MNIST_DATA_DIR, else ./data).
        count: digits per row, 1 to 40.
        rows: augmented rows under the originals, 1 to 20.
        seed: seed of the random transforms (0 to 2**32 - 1).
        rotation: rotation range in degrees (0 to 180).
        zoom: zoom range as a fraction (0 to 0.9).
        shift: shift range as a fraction of the image size (0 to 1).
        shear: shear range in degrees (0 to 80).
        elastic_alpha: elastic distortion's scale in pixels (0, the default, leaves it off; 0 to 100).
        elastic_sigma: its smoothing in pixels (0.5 to 20).
        overwrite: replace the output file if it exists (otherwise an existing file is refused).
    """
    check_preview_settings(output, count, rows, seed, rotation, zoom, shift, shear, elastic_alpha, elastic_sigma)
    check_output_file(output, "output", overwrite)
    check_data_dir(data_dir)

    import torch

    from mnist_common.figures import pyplot, save_figure
    from mnist_common.mnist import load_mnist
    from lightning_mnist.data.augment import NotebookAugmentation
    from lightning_mnist.data.datamodule import to_tensor

    torch.manual_seed(seed)
    images = to_tensor(load_mnist(data_dir).train_images[:count])
    augment = NotebookAugmentation(rotation, zoom, shift, shear, elastic_alpha, elastic_sigma)
    grid = [images] + [augment(images) for _ in range(rows)]
    plt = pyplot()
    fig, axes = plt.subplots(len(grid), count, figsize=(count, len(grid) + 0.4), squeeze=False)
    for r, row in enumerate(grid):
        for c, image in enumerate(row):
            axes[r][c].imshow(image[0].numpy(), cmap="gray_r", vmin=0, vmax=1)
            axes[r][c].set_axis_off()
        axes[r][0].set_title("original" if r == 0 else f"augmented {r}", fontsize=8, loc="left")
    elastic = f", elastic alpha {elastic_alpha} sigma {elastic_sigma}" if elastic_alpha else ""
    fig.suptitle(f"rotation ±{rotation}°, zoom ±{zoom}, shift ±{shift}, shear ±{shear}°{elastic}")
    save_figure(fig, output)
    print(f"augmentation preview: {output}")


def check_preview_settings(output: Path, count: int, rows: int, seed: int, rotation: float, zoom: float, shift: float,
                           shear: float, elastic_alpha: float, elastic_sigma: float, **_others: Any) -> None:
    """What ``augment-preview`` refuses before touching a file (and ``--print_config`` too)."""
    if Path(output).suffix.lower() not in SUFFIXES:
        raise UserError(f"{output}: name a {', '.join(SUFFIXES)} file")
    if not 1 <= count <= MAX_COUNT:
        raise UserError(f"--count must be between 1 and {MAX_COUNT}, got {count}")
    if not 1 <= rows <= MAX_ROWS:
        raise UserError(f"--rows must be between 1 and {MAX_ROWS}, got {rows}")
    for name, value, low, high in (("rotation", rotation, 0, 180), ("zoom", zoom, 0, 0.9), ("shift", shift, 0, 1),
                                   ("shear", shear, 0, 80), ("elastic_alpha", elastic_alpha, 0, 100),
                                   ("elastic_sigma", elastic_sigma, 0.5, 20)):
        _check(name, value, low, high)
    check_seed_range("--seed", seed)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(augment_preview, argv, PROG, positional=("output",), check_values=check_preview_settings)

"""``python -m lightning_mnist augment-preview OUT.png``: look at what the augmentation does.

Row 1 shows training digits as they are; each further row shows the same digits
through the notebook's augmentation, drawn afresh, so a person can check that
the digits stay legible and the transforms vary from image to image.
"""

from __future__ import annotations

import torch

from mnist_common.errors import ArgumentParser
from mnist_common.mnist import load_mnist
from mnist_common.results import pyplot
from lightning_mnist.data.augment import NotebookAugmentation
from lightning_mnist.data.datamodule import to_tensor


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="python -m lightning_mnist augment-preview", description=__doc__)
    parser.add_argument("output", help="PNG file to write")
    parser.add_argument("--data_dir", default=None, help="MNIST folder (default $MNIST_DATA_DIR, else ./data)")
    parser.add_argument("--count", type=int, default=10, help="digits per row")
    parser.add_argument("--rows", type=int, default=4, help="augmented rows under the originals")
    parser.add_argument("--seed", type=int, default=0)
    for name, default, unit in (("rotation", 5.0, "degrees"), ("zoom", 0.05, "fraction"),
                                ("shift", 0.05, "fraction of the size"), ("shear", 0.05, "degrees")):
        parser.add_argument(f"--{name}", type=float, default=default, help=f"range in {unit} (default {default})")
    args = parser.parse_args(argv)

    plt = pyplot()
    torch.manual_seed(args.seed)
    images = to_tensor(load_mnist(args.data_dir).train_images[: args.count])
    augment = NotebookAugmentation(args.rotation, args.zoom, args.shift, args.shear)
    grid = [images] + [augment(images) for _ in range(args.rows)]
    fig, axes = plt.subplots(len(grid), args.count, figsize=(args.count, len(grid) + 0.4), squeeze=False)
    for r, row in enumerate(grid):
        for c, image in enumerate(row):
            axes[r][c].imshow(image[0].numpy(), cmap="gray_r", vmin=0, vmax=1)
            axes[r][c].set_axis_off()
        axes[r][0].set_title("original" if r == 0 else f"augmented {r}", fontsize=8, loc="left")
    fig.suptitle(f"rotation ±{args.rotation}°, zoom ±{args.zoom}, shift ±{args.shift}, shear ±{args.shear}°")
    fig.savefig(args.output, dpi=80)
    plt.close(fig)
    print(f"augmentation preview: {args.output}")

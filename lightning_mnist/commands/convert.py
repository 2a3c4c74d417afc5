"""``python -m lightning_mnist convert SRC DST``: a model file to another format, proven.

The destination's suffix names its format, which the registry (:mod:`lightning_mnist.formats`)
looks up with what it can be written from: ``.keras -> .ckpt``, ``.ckpt -> .keras``, and any
model (``.ckpt``, ``.keras``, a k-fold ``cv_results.json``) to ``.pt2``, ``.onnx`` or ``.tflite``. Any
architecture of the supported layers converts (see ``mnist_common.architecture``). Every
conversion proves itself before the file appears.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from mnist_common.cli import run
from mnist_common.errors import UserError, escaped, exit_on_user_error
from mnist_common.files import check_output_file, check_readable
from mnist_common.keras_file import check_file
from mnist_common.mnist import check_data_dir
from mnist_common.settings import check_folder_name

MAX_CHECK_IMAGES = 10_000
PROG = "python -m lightning_mnist convert"


def convert(src: str, dst: str, check_images: int = MAX_CHECK_IMAGES, data_dir: str | None = None,
            overwrite: bool = False) -> None:
    """Convert a model file to another format, proven; the destination's suffix names the format.

    .keras -> .ckpt, .ckpt -> .keras, and .ckpt, .keras or a k-fold cv_results.json -> .pt2 (torch.export),
    .onnx (ONNX, opset 18) or .tflite (LiteRT, Keras' export); the exported files take the Keras model's input
    and give probabilities.

    Args:
        src: the .ckpt, .keras or cv_results.json file to read (or the k-fold run's folder holding the last).
        dst: the .keras, .ckpt, .pt2, .onnx or .tflite file to write (its folder must exist).
        check_images: prove the conversion on this many inputs, 1 to 10000: MNIST test images for a network
            that takes 28x28x1 and gives 10 classes, seeded random ones otherwise.
        data_dir: the folder holding MNIST/raw (default $MNIST_DATA_DIR, else ./data).
        overwrite: replace dst if it exists (otherwise an existing file is refused).
    """
    from lightning_mnist.checkpoints import fold_model_paths, load_networks
    from lightning_mnist.formats import format_for  # torch loads here; Keras only for .ckpt <-> .keras and .tflite

    check_convert_settings(dst=dst, check_images=check_images, data_dir=data_dir)
    if Path(src).is_dir():  # a k-fold run's folder, as predict and serve take it: its cv_results.json
        src = fold_model_paths(src)[0]
    destination_format = format_for(src, dst)
    src, dst = check_readable(check_file(src), str(src)), Path(dst)  # a missing, unreadable or remote source
    check_output_file(dst, "dst", overwrite, inputs=[src])
    if any(network.architecture.takes_mnist for network in load_networks(src)):  # proven on MNIST test images
        check_data_dir(data_dir)

    started = time.perf_counter()
    for line in destination_format.write(src, dst, check_images, data_dir):
        print(escaped(line))  # names in them on one line, a terminal escape sequence in a name shown, not obeyed
    print(f"wrote {escaped(dst)}, {destination_format.what} ({time.perf_counter() - started:.1f} s)")


def check_convert_settings(dst: str, check_images: int, data_dir: str | None = None, **_others: Any) -> None:
    """What ``convert`` refuses before reading any file (and ``--print_config`` too)."""
    if "://" in str(dst):
        raise UserError(f"dst {dst}: a URL; convert writes a local file (upload it afterwards)")
    if not str(dst).strip():
        raise UserError(f"dst {str(dst)!r}: an empty name; name the file to write, e.g. model.keras")
    if str(dst).endswith(("/", os.sep)):
        raise UserError(f"dst {dst}: names a folder; name the file to write in it, e.g. {Path(dst) / 'model.keras'}")
    try:
        folder = Path(dst).is_dir()
    except (OSError, ValueError):
        folder = False  # a name the system refuses: check_output_file says why
    if folder:  # said before the suffix is asked for (a folder has none)
        raise UserError(f"dst {dst}: is a folder; name the file to write")
    check_folder_name("--data_dir", data_dir)
    if not 1 <= check_images <= MAX_CHECK_IMAGES:
        raise UserError(f"--check_images must be between 1 and {MAX_CHECK_IMAGES}, got {check_images}")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(convert, argv, PROG, positional=("src", "dst"), check_values=check_convert_settings)

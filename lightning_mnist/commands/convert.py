"""``python -m lightning_mnist convert SRC DST``: a Lightning checkpoint <-> a Keras 3 model file, proven.

The direction follows the file types (``.keras -> .ckpt`` or ``.ckpt -> .keras``); any
architecture of the supported layers converts (see ``mnist_common.architecture``). Every
conversion proves itself before the file appears (:mod:`lightning_mnist.conversion`).
"""

from __future__ import annotations

import time
from pathlib import Path

from mnist_common.cli import run
from mnist_common.errors import UserError, exit_on_user_error
from mnist_common.files import check_output_file, check_readable
from mnist_common.keras_file import KERAS_SUFFIX, check_file

CKPT_SUFFIX = ".ckpt"
MAX_CHECK_IMAGES = 10_000
PROG = "python -m lightning_mnist convert"


def convert(src: str, dst: str, check_images: int = MAX_CHECK_IMAGES, data_dir: str | None = None,
            overwrite: bool = False) -> None:
    """Convert a Lightning checkpoint (.ckpt) to a Keras model (.keras) or back; the direction follows the suffixes.

    Args:
        src: the .ckpt or .keras file to read.
        dst: the .keras or .ckpt file to write (its folder must exist).
        check_images: prove the conversion on this many inputs, 1 to 10000: MNIST test images for a network
            that takes 28x28x1 and gives 10 classes, seeded random ones otherwise.
        data_dir: the folder holding MNIST/raw (default $MNIST_DATA_DIR, else ./data).
        overwrite: replace dst if it exists (otherwise an existing file is refused).
    """
    pair = (Path(src).suffix.lower(), Path(dst).suffix.lower())
    if pair not in ((CKPT_SUFFIX, KERAS_SUFFIX), (KERAS_SUFFIX, CKPT_SUFFIX)):
        raise UserError(f"cannot convert {pair[0] or 'a file without extension'} to "
                        f"{pair[1] or 'a file without extension'}: use .ckpt -> .keras or .keras -> .ckpt")
    src, dst = check_readable(check_file(src), str(src)), Path(dst)  # a missing, unreadable or remote source
    if not 1 <= check_images <= MAX_CHECK_IMAGES:
        raise UserError(f"--check_images must be between 1 and {MAX_CHECK_IMAGES}, got {check_images}")
    if dst.exists() and dst.resolve() == src.resolve():
        raise UserError("source and destination are the same file")
    check_output_file(dst, "dst", overwrite)

    from lightning_mnist.conversion import checkpoint_to_keras, keras_to_checkpoint  # Keras and torch load here

    started = time.perf_counter()
    if pair[0] == KERAS_SUFFIX:
        report, info = keras_to_checkpoint(src, dst, check_images, data_dir)
        print(info.describe())
        print(info.architecture.summary())
    else:
        report = checkpoint_to_keras(src, dst, check_images, data_dir)
    print(report.describe())
    print(f"wrote {dst} ({time.perf_counter() - started:.1f} s)")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(convert, argv, PROG, positional=("src", "dst"))

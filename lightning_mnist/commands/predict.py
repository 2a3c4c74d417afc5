"""``python -m lightning_mnist predict IMAGE [IMAGE ...] --weights FILE``: the digit in pictures.

The notebook's last cell, for any number of pictures, with either framework: each image
is prepared the MNIST way (:mod:`mnist_common.images`, the same pixels for both
backends), all go through the model as one batch (:mod:`lightning_mnist.predictors`),
and each gets its digit, its probability and the class probabilities (``--json``: one
JSON object a line, failed images included). An image that cannot be used gets one
``error: FILE: reason`` line; the others are still predicted and the exit code is 2.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mnist_common.cli import run
from mnist_common.errors import EXIT_USER_ERROR, UserError, error_line, escaped, exit_on_user_error
from mnist_common.files import check_output_file
from mnist_common.images.decoding import ImageError, pictures_in
from mnist_common.images.preparation import Prepared, prepare
from mnist_common.predictions import record

PROG = "python -m lightning_mnist predict"
SHOW_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
MAX_SHOWN = 40  # rows of a --show figure


@dataclass
class Timings:
    """Seconds spent in each phase of one command (``--timings``)."""

    startup: float | None = None  # interpreter start to the command (Python and the CLI's imports)
    preprocess: float = 0.0
    imports: float = 0.0  # importing the framework
    weights: float = 0.0  # reading (and converting) the model files
    inference: float = 0.0
    output: float = 0.0
    total: float = 0.0

    def describe(self) -> str:
        parts = [f"{name} {value:.3f} s" for name, value in (
            ("start-up before predict", self.startup), ("preprocessing", self.preprocess),
            ("framework imports", self.imports), ("loading weights", self.weights),
            ("inference", self.inference), ("output", self.output), ("predict total", self.total),
        ) if value is not None]
        if self.startup is not None:
            parts.append(f"since process start {self.startup + self.total:.3f} s")
        return "timings: " + ", ".join(parts)


def seconds_since_process_start() -> float | None:
    """Seconds since this process started (Linux; None elsewhere), to include Python's own start-up."""
    try:
        with open(f"/proc/{os.getpid()}/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19]) / os.sysconf("SC_CLK_TCK")
        with open("/proc/uptime") as f:
            return max(float(f.read().split()[0]) - started, 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def predict(images: list[str], weights: str, backend: Literal["auto", "torch", "keras", "onnx"] = "auto",
            preprocess: Literal["mnist", "notebook"] = "mnist", json: bool = False, show: Path | None = None,
            timings: bool = False, overwrite: bool = False) -> int:
    """Predict the digit in pictures (PNG, JPEG, ...) with a checkpoint, a Keras model or a k-fold ensemble.

    Args:
        images: pictures of one digit each, or folders of them (each picture in a folder, by name).
        weights: a Lightning checkpoint (.ckpt), a Keras model (.keras), a k-fold run's cv_results.json (or its
            folder): the mean of its fold models, or an ONNX model (.onnx) of an MNIST model's shapes.
        backend: the framework that runs the model; auto: PyTorch for a checkpoint, Keras for a .keras file,
            ONNX Runtime for an .onnx file (which runs on it only); onnx runs any other model exported to ONNX in
            memory first.
        preprocess: mnist: crop, fit 20x20, centre of mass, invert only dark-on-light pictures; notebook: the
            notebook's plain resize to 28x28 and invert.
        json: print one JSON object per image and line (failed images get {"image", "error"}).
        show: save a figure (.png, .pdf, .svg, .jpg): each input, the 28x28 image the model saw, the probabilities.
        timings: print where the time went (imports, weights, inference) to stderr.
        overwrite: replace the --show figure if the file exists (otherwise an existing file is refused).
    """
    from lightning_mnist.predictors import load_predictor, resolve

    clock = Timings(startup=seconds_since_process_start())
    started = time.perf_counter()
    check_predict_settings(show, images)
    resolve(weights, backend)  # a bad --weights fails before any image is read
    found = pictures_in(images)
    if show is not None:
        check_output_file(show, "--show", overwrite, inputs=[*images, *(p for p in found if isinstance(p, str)),
                                                             weights])

    prepared: list[Prepared] = []
    failures: list[ImageError] = []
    t0 = time.perf_counter()
    for path in found:
        try:
            if isinstance(path, ImageError):
                raise path
            prepared.append(prepare(path, preprocess, keep_display=show is not None))
        except ImageError as err:
            failures.append(err)
            print(error_line(err), file=sys.stderr, flush=True)
    clock.preprocess = time.perf_counter() - t0

    probabilities = np.zeros((0, 10), np.float32)
    predictor = None
    if prepared:
        t0 = time.perf_counter()
        _import_framework(backend if backend != "auto" else resolve(weights)[2])
        clock.imports = time.perf_counter() - t0
        predictor = load_predictor(weights, backend)
        clock.weights = time.perf_counter() - t0 - clock.imports
        t0 = time.perf_counter()
        probabilities = predictor.predict_proba(np.stack([p.pixels for p in prepared]))
        clock.inference = time.perf_counter() - t0
        if not np.isfinite(probabilities).all():
            raise UserError(f"weights {weights}: the model gives non-finite probabilities")

    t0 = time.perf_counter()
    for image, row in zip(prepared, probabilities):
        if json:
            print(_json(record(image.path, row, backend=predictor.backend, weights=str(predictor.source),
                               models=len(predictor.paths), preprocess=preprocess, inverted=image.inverted,
                               size=list(image.size))))
        else:
            classes = "  ".join(f"{k}: {p:.4f}" for k, p in enumerate(row))
            print(f"{escaped(image.path)}: {int(row.argmax())} (probability {row.max():.4f})\n  {classes}")
    if json:
        for err in failures:
            print(_json(record(err.path, error=err.reason)))
    sys.stdout.flush()
    if show is not None and prepared:
        if len(prepared) > MAX_SHOWN:
            print(f"note: --show draws the first {MAX_SHOWN} of {len(prepared)} images", file=sys.stderr)
        from mnist_common.figures import predictions_figure

        rows = [(Path(p.path).name, p.display, p.pixels, row) for p, row in zip(prepared[:MAX_SHOWN], probabilities)]
        predictions_figure(rows, show, f"{predictor.describe()}, {preprocess} preprocessing")
        if not json:
            print(f"figure: {show}")
    clock.output = time.perf_counter() - t0
    clock.total = time.perf_counter() - started
    if timings:
        print(clock.describe(), file=sys.stderr)
    return EXIT_USER_ERROR if failures else 0


def check_predict_settings(show: Path | None = None, images: list[str] | None = None, **_others: Any) -> None:
    """What ``predict`` refuses before reading any file (and ``--print_config`` too)."""
    if images is not None and not images:  # a config's ``images: []``: it answered nothing, with exit 0
        raise UserError("images: an empty list; give one or more pictures, or folders of them")
    if show is not None and Path(show).suffix.lower() not in SHOW_SUFFIXES:
        raise UserError(f"--show {show}: name a {', '.join(SHOW_SUFFIXES)} file")


def _json(obj: dict) -> str:
    import json as json_module  # the parameter named json shadows the module in predict()

    return json_module.dumps(obj)


def _import_framework(backend: str) -> None:
    if backend == "torch":
        import torch  # noqa: F401
    elif backend == "onnx":
        import onnxruntime  # noqa: F401
    else:
        from lightning_mnist.frameworks import import_keras

        import_keras()


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    code = run(predict, argv, PROG, positional=("images",), check_values=check_predict_settings)
    if code:
        sys.exit(code)

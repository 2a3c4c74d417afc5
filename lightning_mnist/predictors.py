"""Digit probabilities from any model file the project accepts, on PyTorch, Keras or ONNX Runtime.

What ``predict`` and ``serve`` run: :func:`load_predictor` takes a ``.ckpt``, a ``.keras``
file or a k-fold run's ``cv_results.json`` (the mean of its fold models) and a backend;
each backend runs each of these files, converting it in memory (the ``onnx`` backend exports
it to ONNX as ``convert`` writes it, leaving no file). The torch backend imports
neither Lightning nor Keras (a ``.keras`` file's weights are read straight from the
file), so it answers fast. An ``.onnx`` file runs on the ``onnx`` backend only, with ONNX
Runtime (:func:`lightning_mnist.formats.onnx_model.mnist_runner`: an MNIST model's shapes, or refused).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_common.architecture import (
    MNIST_CLASSES, MNIST_LAYOUTS, Architecture, ArchitectureError, is_mnist_layout, shape_text,
)
from mnist_common.errors import UserError
from mnist_common.keras_file import check_file
from mnist_common.predictions import softmax
from lightning_mnist.checkpoints import ACCEPTED, TORCH_LOADERS, load_keras_models, load_networks, model_files
from lightning_mnist.formats import FORMATS, runnable_format
from lightning_mnist.formats.onnx_model import exported_bytes, mnist_runner
from lightning_mnist.interop.proof import batch_size_for

BACKENDS = ("torch", "keras", "onnx")
PREDICT_BATCH = 256  # images run at once (a folder of thousands: one batch after another)


@dataclass
class Predictor:
    """Class probabilities of (N, 28, 28) images from one model, or the mean of several."""

    backend: str  # "torch", "keras" or "onnx"
    source: Path  # the file named (a model, or a cv_results.json)
    paths: list[Path]  # the model files behind it
    architectures: list[Architecture]  # one per model (none for an .onnx file: it records none)
    models: list = field(default_factory=list, repr=False)
    # Keras only: run the models through their compiled predict function (Model.predict_on_batch), traced
    # on the first calls (~0.1 s each for batch sizes 1 and 2, then any size) and ~10x faster after
    # (0.5 ms against 5 ms for one image on 2 CPU cores): for a server, not for a one-shot command.
    graph: bool = False

    @property
    def architecture(self) -> Architecture:
        return self.architectures[0]

    @property
    def ensemble(self) -> bool:
        return self.source not in self.paths

    def describe(self) -> str:
        what = f"the {len(self.paths)} fold models of {self.source}" if self.ensemble else str(self.source)
        return f"{self.backend} backend, {what}"

    @property
    def batch_size(self) -> int:
        """How many images run at once: :data:`PREDICT_BATCH`, fewer for networks of large activations (a folder of
        images in one batch took 10 GB of a network of 13 million activations an image)."""
        return batch_size_for(*self.architectures, most=PREDICT_BATCH)

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        """(N, 28, 28) float32 ink in [0, 1] (1 = stroke) -> (N, classes) float32 probabilities (each model gets
        them in its own scale, :attr:`Architecture.pixel_scale`), :attr:`batch_size` images at a time."""
        pixels = np.ascontiguousarray(pixels, dtype=np.float32)
        if len(pixels) > self.batch_size:
            return np.concatenate([self.predict_proba(pixels[i:i + self.batch_size])
                                   for i in range(0, len(pixels), self.batch_size)])
        if self.backend == "onnx":
            probs = np.mean([run(pixels) for run in self.models], axis=0)
        elif self.backend == "torch":
            import torch

            x = torch.from_numpy(pixels[:, None])  # (N, 1, 28, 28)
            with torch.inference_mode():
                probs = torch.stack([torch.softmax(net(net.architecture.model_pixels(x)), dim=1)
                                     for net in self.models]).mean(0).numpy()
        else:
            from lightning_mnist.interop.keras_models import call_eagerly

            def run(model, architecture):  # each model gets the pixels in its own layout and scale
                x = architecture.model_pixels(pixels.reshape(len(pixels), *architecture.input_shape))
                return model.predict_on_batch(x) if self.graph else call_eagerly(model, x)

            outputs = [np.asarray(run(m, a), dtype=np.float32) for m, a in zip(self.models, self.architectures)]
            probs = np.mean([o if a.outputs_probabilities else softmax(o)  # else the model gives logits
                             for o, a in zip(outputs, self.architectures)], axis=0)
        return probs.astype(np.float32)


def resolve(weights: str | os.PathLike, backend: str = "auto") -> tuple[Path, list[Path], str]:
    """(source, model files, backend) for ``weights``, checked without importing a framework's model code."""
    if backend not in ("auto", *BACKENDS):
        raise UserError(f"backend must be auto, {', '.join(BACKENDS)}, got {backend!r}")
    runnable = runnable_format(weights)  # a deploy file a backend runs as it is (.onnx), the registry says
    if runnable is not None:
        if backend not in ("auto", runnable.backend):
            raise UserError(f"weights {weights}: an {runnable.suffix} file runs on the {runnable.backend} backend "
                            f"(auto or {runnable.backend}), not {backend}")
        path = check_file(weights, "model")
        return path, [path], runnable.backend
    deployed = FORMATS.get(Path(weights).suffix.lower())
    runs = " or ".join(f"an {f.suffix} file (--backend {f.backend})" for f in FORMATS.values()
                       if f.backend and f.suffix not in TORCH_LOADERS)
    if deployed is not None and deployed.suffix not in TORCH_LOADERS:  # .pt2, .tflite: for deploying elsewhere
        raise UserError(f"{weights}: {deployed.what} is a file for deploying, which predict and serve do not run; give "
                        f"{ACCEPTED}, or {runs}")
    try:
        source, paths, default = model_files(weights, accepted=f"{ACCEPTED}, or {runs}")
    except OSError as err:  # permissions, I/O errors
        raise UserError(f"weights {weights}: cannot be read ({err.strerror or err})") from None
    return source, paths, default if backend == "auto" else backend


def load_predictor(weights: str | os.PathLike, backend: str = "auto", graph: bool = False,
                   threads: int | None = None, onnx_model: bytes | None = None) -> Predictor:
    """The model(s) of ``weights`` on ``backend`` (auto: torch for a checkpoint, Keras for a ``.keras`` file).

    ``graph``: Keras runs traced graphs instead of eager calls (see :attr:`Predictor.graph`).
    ``threads``: ONNX Runtime's threads (None: its default); torch and Keras are sized by their caller.
    ``onnx_model``: the ONNX graph ``weights`` was exported to already (:func:`exported_bytes`), for ONNX Runtime.
    """
    source, paths, backend = resolve(weights, backend)
    if backend == "onnx":
        runnable = runnable_format(source)
        if runnable is not None:
            runner = runnable.read(source, threads)
        else:  # a .ckpt, .keras or k-fold run: exported in memory, one graph of the mean as convert writes it
            runner = mnist_runner(source, threads, model=exported_bytes(source) if onnx_model is None else onnx_model)
        return Predictor(backend=backend, source=source, paths=paths, architectures=[], models=[runner])
    if backend == "torch":
        models = load_networks(source)
        architectures = [network.architecture for network in models]
    else:
        models, architectures = map(list, zip(*load_keras_models(source)))
    architecture = architectures[0]
    if not is_mnist_layout(architecture.input_shape):
        raise ArchitectureError(f"{source}: its network takes {shape_text(architecture.input_shape)} inputs; "
                                f"predict prepares 28x28 grayscale digits ({MNIST_LAYOUTS})")
    classes = sorted({a.num_classes for a in architectures})
    if classes != [MNIST_CLASSES]:  # the answer is a digit, 0 to 9 (ONNX Runtime's backend checks its own graph)
        raise ArchitectureError(f"{source}: its network gives {' and '.join(map(str, classes))} classes; predict and "
                                f"serve answer with a digit, 0 to 9, from a network of {MNIST_CLASSES} classes")
    for each in architectures:
        each.require_one_distribution(f"{source}: predict and serve")
    # a model whose names TensorFlow refuses in a graph runs eagerly (Keras' own predict fails on it)
    graph = graph and all(a.graph_unsafe_name is None for a in architectures)
    return Predictor(backend=backend, source=source, paths=paths, architectures=architectures, models=models,
                     graph=graph)


def probe_pictures() -> np.ndarray:
    """(3, 28, 28) inputs a working model gives finite probabilities for: a blank picture, a centred stroke (a
    "1") and seeded noise. A file whose weights are finite can still overflow (a kernel row of 3e38): ``serve``
    runs these before it starts, as ``predict`` checks what it answers."""
    stroke = np.zeros((28, 28), np.float32)
    stroke[4:24, 13:16] = 1.0
    noise = np.random.default_rng(0).random((28, 28), dtype=np.float32)
    return np.stack([np.zeros((28, 28), np.float32), stroke, noise])

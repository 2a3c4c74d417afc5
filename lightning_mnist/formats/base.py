"""What a model file format is, and the proof an exported file gives before it appears.

A :class:`Format` is one kind of model file: its suffix, what it is, the files it is written
from, and how it is written from one of them, proven. The deploy formats (``.pt2``, ``.onnx``, ``.tflite``)
share one way of writing (:func:`export_proven`): the source's networks as one
:class:`~lightning_mnist.models.network.Probabilities` module (softmax in the graph, as the
Keras model has it), its input in the model's own layout with a dynamic batch axis, written
beside the destination, loaded back by its own runtime, run on the check inputs and compared
with the source; above 1e-5 on any probability nothing is left. An :class:`Export` says only
how its format saves a module and runs a saved file, so a new deploy format is those two
functions and a row in the registry.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from mnist_common.architecture import layer_label
from mnist_common.errors import DISK_FULL, UserError, one_line
from mnist_common.files import temporary_folder, write_atomically
from mnist_common.legacy_h5 import LEGACY_SUFFIXES
from lightning_mnist.checkpoints import load_networks
from lightning_mnist.interop.proof import (BATCH_SIZE, ConversionCheckFailed, ParityReport, batch_size_for,
                                          check_inputs, compare_probabilities, float32_rounding, keras_inputs,
                                          proven, torch_logits)
from lightning_mnist.models.layers.layout import to_torch_layout
from lightning_mnist.models.network import KerasNetwork, Probabilities

# (source, destination, check inputs, data folder) -> the lines to print; the destination appears only proven
Writer = Callable[[Path, Path, int, "str | os.PathLike | None"], list[str]]
# a saved file -> a function from inputs (the model's layout, float32) to its outputs
Runner = Callable[[np.ndarray], np.ndarray]
INPUT_NAME, OUTPUT_NAME = "input", "probabilities"
# what a deploy format is written from: any model file (a checkpoint, a Keras file, a legacy Keras .h5, a k-fold run)
DEPLOY_SOURCES = (".ckpt", ".keras", *LEGACY_SUFFIXES, ".json")


@dataclass(frozen=True)
class Format:
    """One kind of model file the project writes: ``write`` makes it from a file of a ``sources`` suffix."""

    suffix: str
    what: str  # a phrase: "a Lightning checkpoint"
    sources: tuple[str, ...]  # the suffixes of the files it is written from (".json": a k-fold cv_results.json)
    write: Writer
    # a deploy file that predict and serve run as it is: the backend that runs it ("onnx") and how it is read
    # (path, threads -> digit probabilities of (N, 28, 28) pixels, or a one-line UserError); None: not run as a file
    backend: str | None = None
    read: Callable[[Path, int | None], Runner] | None = None


@dataclass(frozen=True)
class Export:
    """A deploy format: how it saves a module (its example inputs given, the batch axis dynamic) and runs a file."""

    suffix: str
    runtime: str  # what runs the file in the proof: "torch.export.load", "ONNX Runtime"
    save: Callable[[nn.Module, tuple[torch.Tensor, ...], Path], None]
    load: Callable[[Path], Runner]
    details: str = ""  # what else a user must know of the file (an opset)
    # (module, example in the Keras layout) -> the first layer it cannot save on its own, else None;
    # None here: the torch network's layers are saved one by one (exporters that trace torch modules)
    find_layer: Callable[[Probabilities, torch.Tensor], "str | None"] | None = None


def _example(x: torch.Tensor) -> torch.Tensor:
    """Two inputs to trace with: a batch of one would let a tracer fix the batch axis at 1."""
    return torch.cat([x[:1], x[:1]]) if len(x) < 2 else x[:2]


def _layer_inputs(network: KerasNetwork, example: torch.Tensor) -> dict[str, tuple[torch.Tensor, ...]]:
    """Each layer's inputs when the network runs ``example``, recorded by forward hooks."""
    seen: dict[str, tuple[torch.Tensor, ...]] = {}

    def record(name: str):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            seen[name] = args  # returning None keeps the output (a hook's non-None result would replace it)
        return hook

    hooks = [module.register_forward_hook(record(name)) for name, module in network.named_children()]
    try:
        with torch.no_grad():  # not inference_mode: its tensors cannot be traced by an exporter afterwards
            network(example)
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def _unexportable_layer(export: Export, network: KerasNetwork, example: torch.Tensor) -> str | None:
    """The first layer that ``export`` cannot save on its own ("layer 3 (conv2d_1, Conv2D)"), else None.

    A whole-graph failure names a traced operation, not the Keras layer a user wrote; saving
    the layers one by one, each on the inputs it saw, finds the one to name.
    """
    inputs = _layer_inputs(network, example)
    with temporary_folder() as folder:
        for index, node in enumerate(network.architecture.nodes):
            if node.name not in inputs:
                continue
            try:
                export.save(getattr(network, node.name).eval(), inputs[node.name],
                            Path(folder) / f"layer{export.suffix}")
            except Exception:  # the exporter's own errors are of many kinds
                return layer_label(index, node.layer)
    return None


def _save(export: Export, module: Probabilities, example: torch.Tensor, path: Path, source: Path) -> None:
    try:
        export.save(module, (example,), path)
    except UserError as err:  # the export's own one-line refusal
        raise UserError(f"{source}: {err}") from None
    except OSError as err:
        if err.errno in DISK_FULL:  # the disk's, not the network's: said of the file being written
            raise
        raise _unexportable(export, module, example, source, err) from None
    except Exception as err:
        raise _unexportable(export, module, example, source, err) from None


def _unexportable(export: Export, module: Probabilities, example: torch.Tensor, source: Path,
                  err: Exception) -> UserError:
    """The refusal of an export that failed, naming the first layer that cannot be exported on its own."""
    layer = export.find_layer(module, example) if export.find_layer else \
        _unexportable_layer(export, module.networks[0], to_torch_layout(example))
    where = f"{layer} cannot be exported to {export.suffix}" if layer else \
        f"its network cannot be exported to {export.suffix}"
    return UserError(f"{source}: {where} ({error_cause(err)})")


COMPILER_OP_ERROR = re.compile(r"'([\w.]+)' op ([^\n]+)")


def error_cause(err: Exception) -> str:
    """The exporter's error in one line. A compiler's (LiteRT's MLIR converter) starts with the locations of the
    traced operations, often longer than the line: its operation and what it says of it come first instead."""
    found = COMPILER_OP_ERROR.search(str(err))
    if found:
        return f"{type(err).__name__}: '{found.group(1)}' op {found.group(2)}"[:300]
    return one_line(err)


def run_in_batches(runner: Runner, x: torch.Tensor, batch: int = BATCH_SIZE) -> np.ndarray:
    return np.concatenate([np.asarray(runner(x[i:i + batch].numpy()), dtype=np.float32)
                           for i in range(0, len(x), batch)])


def export_proven(export: Export, source: Path, destination: Path, check_images: int,
                  data_dir: str | os.PathLike | None = None) -> list[str]:
    """Write ``source``'s model (a file, or a k-fold run's mean) as ``export``'s file, proven (module docstring)."""
    networks = load_networks(source)
    for network in networks:
        network.architecture.require_one_distribution(f"{source}: {export.suffix} files")
    module = Probabilities(networks).eval()
    x_torch, labels, inputs = check_inputs(module.architecture, check_images, data_dir)
    # the source as the project runs it (torch's layout, softmax outside the network) ...
    p_source = np.mean([torch.softmax(torch_logits(network, x_torch), 1).numpy() for network in networks], axis=0)
    x = torch.from_numpy(keras_inputs(module.architecture, x_torch))  # ... the file on the Keras model's inputs

    def check(tmp: Path) -> ParityReport:
        try:
            p_file = run_in_batches(export.load(tmp), x, batch_size_for(module.architecture))
        except Exception as err:  # the runtime's own errors: the written file is not what a user could run
            raise ConversionCheckFailed(f"conversion check failed, {destination} not written: {export.runtime} "
                                        f"cannot run it ({one_line(err)})") from None
        if p_file.shape != p_source.shape:
            raise ConversionCheckFailed(f"conversion check failed, {destination} not written: it gives "
                                        f"{p_file.shape[1:]} per input, the source {p_source.shape[1:]}")
        report = compare_probabilities(p_source, p_file, labels, inputs, sides=("source", export.suffix[1:]),
                                       names=("source", f"{export.suffix} ({export.runtime})"))
        return proven(report, destination, lambda: float32_rounding(networks, x_torch))

    report = write_atomically(destination, lambda tmp: _save(export, module, _example(x), tmp, source), check)
    classes = module.architecture.num_classes
    taken = ("0-255 whole bytes as float32, where the Keras model takes uint8"
             if module.architecture.input_dtype == "uint8" else "as the Keras model takes it")
    signature = (f"{export.suffix}: input {INPUT_NAME!r} float32 (batch, {', '.join(map(str, module.input_shape))}) "
                 f"{taken}, output {OUTPUT_NAME!r} (batch, {classes}) probabilities{export.details}")
    return [signature, report.describe()]

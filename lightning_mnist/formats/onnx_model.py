"""``.onnx``: an ONNX model (opset 18), run by ONNX Runtime in the proof, as it runs in a product.

Written by torch's own exporter (``torch.onnx.export(dynamo=True)``, which builds the graph
with onnxscript) from the same ``torch.export`` trace as ``.pt2``; the weights are inside the
file (no external data), the batch axis is dynamic, the input is ``input`` in the Keras model's
layout and the output ``probabilities``. Opset 18 is torch's exporter's own default: every
layer of the table exports to it (exact gelu becomes its erf formula), and ONNX Runtime 1.14
and later run it.
"""

from __future__ import annotations

import inspect
import logging
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lightning_mnist.formats.base import INPUT_NAME, OUTPUT_NAME, Export, Format, Runner, export_proven

SUFFIX = ".onnx"
OPSET = 18


def save(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    """Export ``module`` on ``inputs`` to ONNX with the batch axis dynamic, weights inside the file."""
    names = [INPUT_NAME] if len(inputs) == 1 else [f"{INPUT_NAME}_{i}" for i in range(len(inputs))]
    axes = tuple({0: "batch"} for _ in inputs)  # a named axis: the file's inputs and output say "batch"
    variadic = any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(module.forward).parameters.values())
    quiet = logging.getLogger("torch.onnx")  # the exporter logs each step of a successful export
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        torch.onnx.export(module, inputs, path, input_names=names, output_names=[OUTPUT_NAME], opset_version=OPSET,
                          dynamo=True, external_data=False, verbose=False,
                          dynamic_shapes=(axes,) if variadic else axes)  # as forward takes them: Add(*inputs)
    finally:
        quiet.setLevel(level)


def session(path: Path):
    """An ONNX Runtime session of a file on the CPU (the runtime checks the file as it reads it; no code runs)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def load(path: Path) -> Runner:
    """Run a saved model as its users will: ONNX Runtime on its single input."""
    runtime = session(path)
    [given] = runtime.get_inputs()

    def run(x: np.ndarray) -> np.ndarray:
        return runtime.run(None, {given.name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    return run


EXPORT = Export(suffix=SUFFIX, runtime="ONNX Runtime", save=save, load=load, details=f", opset {OPSET}")
FORMAT = Format(suffix=SUFFIX, what="an ONNX model", sources=(".ckpt", ".keras", ".json"),
                write=partial(export_proven, EXPORT))

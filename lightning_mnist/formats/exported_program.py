"""``.pt2``: a ``torch.export`` ExportedProgram, PyTorch's format for deploying a model (TorchScript's successor).

The program holds the graph and its weights, no Python code: ``torch.export.load(path).module()``
runs it with torch alone, no project code. Its batch axis is dynamic (any batch of one or more).
"""

from __future__ import annotations

import io
from functools import partial
from pathlib import Path

import numpy as np
import torch
from torch import nn

from lightning_mnist.formats.base import DEPLOY_SOURCES, Export, Format, Runner, export_proven

SUFFIX = ".pt2"


def batch_dynamic(inputs: tuple[torch.Tensor, ...]) -> torch.export.ShapesCollection:
    """``dynamic_shapes`` for a trace of ``inputs``: axis 0 of each, one shared batch of one or more.

    Given per tensor, not per argument, so modules called with several inputs (``Add(*inputs)``) take it too.
    """
    batch = torch.export.Dim("batch", min=1)
    shapes = torch.export.ShapesCollection()
    for tensor in inputs:
        shapes[tensor] = {0: batch}
    return shapes


def save(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    """Export ``module`` on ``inputs`` with the batch axis dynamic, and save the program: written in memory, then to
    ``path`` by Python (torch's own file writer aborts the process in C++ on a full disk)."""
    program = torch.export.export(module, inputs, dynamic_shapes=batch_dynamic(inputs))
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    path.write_bytes(buffer.getbuffer())


def load(path: Path) -> Runner:
    """Run a saved program as its users will: ``torch.export.load``, then its module."""
    module = torch.export.load(path).module()

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x)).numpy()

    return run


EXPORT = Export(suffix=SUFFIX, runtime="torch.export.load", save=save, load=load)
FORMAT = Format(suffix=SUFFIX, what="a torch.export program", sources=DEPLOY_SOURCES,
                write=partial(export_proven, EXPORT))

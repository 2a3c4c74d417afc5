"""A torch network built from an architecture description: Keras' layers, in order, under Keras' names.

``KerasNetwork(Architecture.load("notebook"))`` is the notebook's CNN; any description
of supported layers builds the same way (see ``mnist_common.architecture``). Modules are
named as Keras names the layers inside ``model.weights.h5`` (``conv2d``,
``batch_normalization``, ``conv2d_1``...), so ``conv2d_1.weight`` in a checkpoint is
``layers/conv2d_1/vars/0`` of the ``.keras`` file, transposed.

The network returns logits: a final softmax (a ``Dense(..., activation="softmax")`` or a
``Softmax`` layer) is left out, because cross-entropy on logits is the stable form; the
classifier applies the softmax where users see probabilities.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

import torch
from torch import nn

from mnist_common.architecture import Architecture, Softmax, applies_softmax
from lightning_mnist.models.layers import BUILDERS


def _without_final_softmax(architecture: Architecture) -> list:
    layers = list(architecture.layers)
    if architecture.ends_in_softmax:
        last = layers[-1]
        layers[-1] = None if isinstance(last, Softmax) else dataclasses.replace(last, activation="linear")
    return layers


class KerasNetwork(nn.Sequential):
    """The layers of ``architecture`` as torch modules; ``forward`` gives logits (see the module docstring)."""

    def __init__(self, architecture: Architecture) -> None:
        modules = OrderedDict()
        for index, (layer, name) in enumerate(zip(_without_final_softmax(architecture), architecture.keras_names)):
            modules[name] = nn.Identity() if layer is None else \
                BUILDERS[layer.type](layer, architecture.input_shape_of(index))
        super().__init__(modules)
        self.architecture = architecture

    @property
    def outputs_probabilities(self) -> bool:
        """Whether the Keras model's outputs are ``softmax(self(x))`` (else they are ``self(x)`` itself)."""
        return applies_softmax(self.architecture.layers[-1])

    def keras_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the Keras model of the same architecture outputs for ``x`` (NCHW)."""
        logits = self(x)
        return torch.softmax(logits, dim=1) if self.outputs_probabilities else logits


def keras_parameter_count(model: nn.Module) -> tuple[int, int]:
    """(trainable, non-trainable) counted as Keras does: BatchNorm moving statistics are weights.

    For the notebook's network: (225226, 192), 225,418 in all.
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    moving = sum(b.numel() for name, b in model.named_buffers() if name.endswith(("running_mean", "running_var")))
    return trainable, frozen + moving

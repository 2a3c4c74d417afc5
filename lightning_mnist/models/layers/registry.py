"""The converter registry: for each Keras layer kind, its torch module and its Keras <-> torch weight mapping.

A converter is registered beside its module, in the module's family file::

    @converter(keras.Conv2D, kernel=WeightMap("weight", (3, 2, 0, 1)), bias=WeightMap("bias"))
    class Conv2D(nn.Module):
        def __init__(self, spec: keras.Conv2D, shape: Shape) -> None: ...

The module class (or any callable) takes the layer's description and its input shapes
(Keras', channels last) and returns the torch module with its parameters and buffers
allocated; each Keras weight (``kernel``, ``bias``, ``gamma``, ``moving_mean``, ...) names
the attribute that holds it and how Keras' axes become torch's (a permutation, then
optionally a reshape: a depthwise kernel (kh, kw, in, m) is torch's (in * m, 1, kh, kw)).
Every mapping is a transpose and a reshape, so ``.keras -> .ckpt -> .keras`` is bit-identical.

:func:`build` makes the module and fills its weights with the layer's Keras initializers,
drawn in Keras' own layout (so fans are Keras', whatever torch's layout), then mapped.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from lightning_mnist.models.initializers import initialize_
from mnist_common.architecture.layers import Layer, Shape


@dataclass(frozen=True)
class WeightMap:
    """Where one Keras weight lives in the torch module, and how its axes move."""

    attribute: str  # the module's parameter or buffer
    permutation: tuple[int, ...] | None = None  # Keras axes in torch's order
    reshape: Callable[[tuple[int, ...]], tuple[int, ...]] | None = None  # of the permuted Keras shape

    def tensor_of(self, module: nn.Module) -> torch.Tensor:
        """The parameter or buffer in ``module`` (a dotted path reaches into a submodule: ``forward_layer.bias``)."""
        return operator.attrgetter(self.attribute)(module)

    def torch_shape(self, keras_shape: Shape) -> tuple[int, ...]:
        shape = tuple(keras_shape[i] for i in self.permutation) if self.permutation else tuple(keras_shape)
        return self.reshape(shape) if self.reshape else shape

    def to_torch(self, array: np.ndarray, dtype: str = "float32") -> np.ndarray:
        """A fresh C-ordered array of ``dtype`` (the weight's, :meth:`Layer.weight_dtype`) in torch's layout (never
        a view of ``array``)."""
        value = array.transpose(self.permutation) if self.permutation else array
        value = value.reshape(self.torch_shape(array.shape)) if self.reshape else value
        return np.array(value, dtype=dtype, order="C", copy=True)

    def keras_view(self, weight: torch.Tensor, keras_shape: Shape) -> torch.Tensor:
        """The torch ``weight`` in Keras' layout (a view where torch can give one), e.g. to apply a Keras
        constraint along Keras' axes; :meth:`torch_view` maps it back."""
        permuted = tuple(keras_shape[i] for i in self.permutation) if self.permutation else tuple(keras_shape)
        value = weight.reshape(permuted)
        return value.permute(*np.argsort(self.permutation).tolist()) if self.permutation else value

    def torch_view(self, value: torch.Tensor, keras_shape: Shape) -> torch.Tensor:
        """A tensor in Keras' layout, in the torch weight's (the inverse of :meth:`keras_view`)."""
        value = value.permute(*self.permutation) if self.permutation else value
        return value.reshape(self.torch_shape(keras_shape))

    def to_keras(self, array: np.ndarray, keras_shape: Shape, dtype: str = "float32") -> np.ndarray:
        permuted = tuple(keras_shape[i] for i in self.permutation) if self.permutation else tuple(keras_shape)
        value = array.reshape(permuted)
        value = value.transpose(np.argsort(self.permutation)) if self.permutation else value
        return np.array(value, dtype=dtype, order="C", copy=True)


@dataclass(frozen=True)
class Converter:
    description: type[Layer]
    module: Callable[..., nn.Module]  # (description, *input shapes) -> module
    weights: dict[str, WeightMap] = field(default_factory=dict)  # Keras weight name -> where it goes
    # A wrapper's mappings are those of the layer it wraps, reached through it: (its description) -> mappings
    wrapped_weights: Callable[[Layer], dict[str, WeightMap]] | None = None


CONVERTERS: dict[str, Converter] = {}


def converter(description: type[Layer], wrapped_weights: Callable[[Layer], dict[str, WeightMap]] | None = None,
              **weights: WeightMap) -> Callable:
    """Register the decorated module class (or factory) as the torch side of ``description``'s kind (a wrapper's
    weights: ``wrapped_weights``, its layer's mappings moved under it)."""
    def register(module: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        CONVERTERS[description.type_name()] = Converter(description, module, dict(weights), wrapped_weights)
        return module
    return register


def converter_of(layer: Layer) -> Converter:
    """The converter of ``layer``'s kind; a wrapper's with the mappings of the layer it wraps."""
    try:
        found = CONVERTERS[layer.type]
    except KeyError:
        raise NotImplementedError(f"no torch converter is registered for {layer.type}") from None
    return found if found.wrapped_weights is None else dataclasses.replace(found, weights=found.wrapped_weights(layer))


def moved_under(attribute: str, weights: dict[str, WeightMap]) -> dict[str, WeightMap]:
    """``weights`` of a module held as ``attribute`` of another: each one's path prefixed with it."""
    return {name: dataclasses.replace(mapping, attribute=f"{attribute}.{mapping.attribute}")
            for name, mapping in weights.items()}


@torch.no_grad()
def build(layer: Layer, *shapes: Shape) -> nn.Module:
    """The torch module of ``layer`` for these input shapes, initialised as Keras initialises the layer; the
    parameters of a frozen layer (``trainable: false``) do not require gradients."""
    found = converter_of(layer)
    module = found.module(layer, *shapes)
    for weight_name, keras_shape in layer.weights(*shapes):
        mapping = found.weights[weight_name]
        drawn = torch.empty(layer.initial_shape(weight_name, keras_shape))  # an EinsumDense kernel: as a matrix
        value = initialize_(drawn, layer.initializer_of(weight_name)).reshape(keras_shape)
        value = layer.finish_initial(weight_name, value)
        tensor = mapping.tensor_of(module)
        tensor.copy_(torch.from_numpy(mapping.to_torch(value.numpy(), layer.weight_dtype(weight_name))))
        if isinstance(tensor, nn.Parameter):  # a frozen layer's weights take no gradient (Keras: not trainable)
            tensor.requires_grad_(layer.trains(weight_name))
    return module

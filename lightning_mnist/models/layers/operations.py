"""Keras operations in torch (``x + y``, ``x * 2.0``, ``ops.relu``, ``ops.mean``, ``ops.concatenate``, ``x[:, 1:]``).

An operation's tensors are of one rank (the description refuses others), so they broadcast in
torch's layout as in Keras' (the same axes, permuted alike); its numbers are Python numbers, as
Keras has them, on whichever side the code put them. A reduction works in Keras' layout, whose
axes the description names, and gives its result back in torch's. The operations that are a layer's
computation (concatenate, reshape, expand_dims, squeeze, transpose) take that layer's module.
"""

from __future__ import annotations

import math
import operator
from functools import partial
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lightning_mnist.models.layers.activations import (ACTIVATIONS, ELU, LeakyReLU, LogSoftmax, Softmax, celu,
                                                      squareplus)
from lightning_mnist.models.layers.layout import to_keras_layout, to_torch_layout
from lightning_mnist.models.layers.merging import Concatenate
from lightning_mnist.models.layers.reshaping import Permute, Reshape
from lightning_mnist.models.layers.registry import converter
from mnist_common.architecture.layers import Shape, operations as ops


def _maximum(a: torch.Tensor | float, b: torch.Tensor | float) -> torch.Tensor:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.maximum(a, b)
    return torch.clamp_min(a, b) if isinstance(a, torch.Tensor) else torch.clamp_min(b, a)


def _minimum(a: torch.Tensor | float, b: torch.Tensor | float) -> torch.Tensor:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return torch.minimum(a, b)
    return torch.clamp_max(a, b) if isinstance(a, torch.Tensor) else torch.clamp_max(b, a)


# Each binary operation's description -> its function of two operands, a tensor and a tensor or a Python number
# either side (Python's operators take a number on the left of a tensor: 1.0 - x, 2.0 ** x).
BINARY: dict[type[ops.BinaryOperation], Callable] = {
    ops.Add: operator.add, ops.Subtract: operator.sub, ops.Multiply: operator.mul, ops.Divide: operator.truediv,
    ops.TrueDivide: operator.truediv, ops.Power: operator.pow, ops.Maximum: _maximum, ops.Minimum: _minimum,
}


class BinaryOperation(nn.Module):
    """``x1 <op> x2``, each operand a tensor it is called on or the description's number."""

    def __init__(self, spec: ops.BinaryOperation, *shapes: Shape) -> None:
        super().__init__()
        self.function = BINARY[type(spec)]
        self.x1, self.x2 = spec.x1, spec.x2

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        if self.x1 is not None:
            return self.function(self.x1, xs[0])
        return self.function(xs[0], xs[1] if self.x2 is None else self.x2)


for _description in BINARY:
    converter(_description)(BinaryOperation)


@converter(ops.Matmul)
class Matmul(nn.Module):
    """``ops.matmul`` in Keras' layout: its last two axes are Keras' (an image's (W, C) for each row)."""

    def __init__(self, spec: ops.Matmul, *shapes: Shape) -> None:
        super().__init__()

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return to_torch_layout(torch.matmul(to_keras_layout(x1), to_keras_layout(x2)))


def log2(x: torch.Tensor) -> torch.Tensor:
    """Keras' ``log2`` (and ``log10`` below) as its TensorFlow backend computes it: ``log(x) / log(2)``."""
    return torch.log(x) / math.log(2.0)


def log10(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x) / math.log(10.0)


def exp2(x: torch.Tensor) -> torch.Tensor:
    return torch.pow(2.0, x)


def cbrt(x: torch.Tensor) -> torch.Tensor:
    """Keras' cube root: ``sign(x) * |x| ** (1 / 3)``, which torch has no function for."""
    return torch.sign(x) * torch.pow(torch.abs(x), 1.0 / 3.0)


# The element-wise operations of one tensor that are no Keras activation; the others are ACTIVATIONS'.
UNARY: dict[type[ops.UnaryOperation], Callable[[torch.Tensor], torch.Tensor]] = {
    ops.Negative: torch.neg, ops.Absolute: torch.abs, ops.Square: torch.square, ops.Sqrt: torch.sqrt,
    ops.Log: torch.log, ops.Log1p: torch.log1p, ops.Expm1: torch.expm1, ops.Reciprocal: torch.reciprocal,
    ops.Rsqrt: torch.rsqrt, ops.Sign: torch.sign, ops.Floor: torch.floor, ops.Ceil: torch.ceil, ops.Trunc: torch.trunc,
    ops.Sin: torch.sin, ops.Cos: torch.cos, ops.Tan: torch.tan, ops.Sinh: torch.sinh, ops.Cosh: torch.cosh,
    ops.Arcsin: torch.asin, ops.Arccos: torch.acos, ops.Arctan: torch.atan, ops.Arcsinh: torch.asinh,
    ops.Arccosh: torch.acosh, ops.Arctanh: torch.atanh, ops.Erf: torch.erf,
    ops.Log2: log2, ops.Log10: log10, ops.Exp2: exp2, ops.Cbrt: cbrt,
}


@converter(ops.Exp)
@converter(ops.Tanh)
@converter(ops.Relu)
@converter(ops.Relu6)
@converter(ops.Sigmoid)
@converter(ops.Silu)
@converter(ops.Softplus)
@converter(ops.Softsign)
@converter(ops.Selu)
@converter(ops.HardSigmoid)
@converter(ops.HardSilu)
@converter(ops.SparseSigmoid)
@converter(ops.LogSigmoid)
@converter(ops.HardTanh)
@converter(ops.TanhShrink)
@converter(ops.SparsePlus)
class UnaryOperation(nn.Module):
    """An element-wise function: Keras' activation of the same name (:data:`ACTIVATIONS`), or one of :data:`UNARY`."""

    def __init__(self, spec: ops.UnaryOperation, shape: Shape) -> None:
        super().__init__()
        self.function = UNARY.get(type(spec)) or ACTIVATIONS[spec.activation]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)


for _description in UNARY:
    converter(_description)(UnaryOperation)
converter(ops.LeakyRelu)(LeakyReLU)  # the layers' modules: the same computation
converter(ops.Elu)(ELU)
converter(ops.Softmax)(Softmax)  # over any one axis, as the layer
converter(ops.LogSoftmax)(LogSoftmax)


def round_to(x: torch.Tensor, decimals: float) -> torch.Tensor:
    """Keras' ``round``: halves to the even neighbour (torch's and TensorFlow's rule); with decimals, Keras multiplies
    by ``10 ** decimals`` (a float32 number), rounds and divides back."""
    if decimals == 0:
        return torch.round(x)
    factor = torch.tensor(10.0 ** decimals, dtype=x.dtype, device=x.device)
    return torch.round(x * factor) / factor


# The element-wise operations with one setting -> (their function of a tensor and that setting, the setting's name)
WITH_A_SETTING: dict[type[ops.UnaryOperation], tuple[Callable[[torch.Tensor, float], torch.Tensor], str]] = {
    ops.Celu: (celu, "alpha"), ops.HardShrink: (F.hardshrink, "threshold"), ops.SoftShrink: (F.softshrink, "threshold"),
    ops.Squareplus: (squareplus, "b"), ops.Round: (round_to, "decimals"),
}


class OperationWithASetting(nn.Module):
    """``function(x, setting)``, the setting the description's (celu's alpha, a shrink's threshold, squareplus' b)."""

    def __init__(self, spec: ops.UnaryOperation, shape: Shape) -> None:
        super().__init__()
        self.function, name = WITH_A_SETTING[type(spec)]
        self.setting = float(getattr(spec, name))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x, self.setting)


for _description in WITH_A_SETTING:
    converter(_description)(OperationWithASetting)


@converter(ops.Gelu)
class Gelu(nn.Module):
    """Keras' ``ops.gelu``: the tanh approximation by default (torch's ``approximate="tanh"``), else exact."""

    def __init__(self, spec: ops.Gelu, shape: Shape) -> None:
        super().__init__()
        self.approximate = "tanh" if spec.approximate else "none"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self.approximate)


def prod(x: torch.Tensor, dim: list[int], keepdim: bool) -> torch.Tensor:
    """The product over several dims (torch's ``prod`` takes one), the last first so the others keep their place."""
    for axis in sorted(dim, reverse=True):
        x = torch.prod(x, dim=axis, keepdim=keepdim)
    return x


# Each reduction's description -> torch's reduction over dims, keeping them or not (max and min: the values only).
REDUCTIONS: dict[type[ops.Reduction], Callable[..., torch.Tensor]] = {
    ops.Mean: torch.mean, ops.Sum: torch.sum, ops.Max: torch.amax, ops.Min: torch.amin, ops.Logsumexp: torch.logsumexp,
    ops.Var: partial(torch.var, correction=0), ops.Std: partial(torch.std, correction=0), ops.Prod: prod,
}


class Reduction(nn.Module):
    """A reduction over Keras' axes, in Keras' layout (batch axis 0), the result back in torch's."""

    def __init__(self, spec: ops.Reduction, shape: Shape) -> None:
        super().__init__()
        self.function = REDUCTIONS[type(spec)]
        self.dims = [axis + 1 for axis in spec.reduced_axes(len(shape))]
        self.keepdims = spec.keepdims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_torch_layout(self.function(to_keras_layout(x), dim=self.dims, keepdim=self.keepdims))


for _description in REDUCTIONS:
    converter(_description)(Reduction)
converter(ops.ConcatenateOperation)(Concatenate)  # the Concatenate layer's module: the same join
for _description in (ops.ReshapeOperation, ops.ExpandDims, ops.Squeeze):
    converter(_description)(Reshape)  # the Reshape layer's module: a row-major reshape to the output shape
converter(ops.Transpose)(Permute)  # the Permute layer's module, with the operation's axes after the batch's
converter(ops.Cast)(lambda spec, shape: nn.Identity())  # to float32, which every value already is


@converter(ops.Clip)
class Clip(nn.Module):
    def __init__(self, spec: ops.Clip, shape: Shape) -> None:
        super().__init__()
        self.low, self.high = spec.x_min, spec.x_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x, self.low, self.high)


@converter(ops.GetItem)
class GetItem(nn.Module):
    """``x[key]`` on the tensor in Keras' layout, whose axes the key names; the result back in torch's."""

    def __init__(self, spec: ops.GetItem, shape: Shape) -> None:
        super().__init__()
        self.key = spec.index()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return to_torch_layout(to_keras_layout(x)[self.key])


def mirror(x: torch.Tensor, axis: int, before: int, after: int, edge: int) -> torch.Tensor:
    """``x`` padded along ``axis`` with its own values mirrored: about the edge value (``edge`` 0, reflect: d c b |
    a b c d) or about the edge itself (``edge`` 1, symmetric: c b a | a b c d)."""
    size = x.shape[axis]
    head = x.narrow(axis, 1 - edge, before).flip(axis)
    tail = x.narrow(axis, size - after - 1 + edge, after).flip(axis)
    return torch.cat([head, x, tail], dim=axis)


@converter(ops.Pad)
class Pad(nn.Module):
    """A border around the axes ``pad_width`` names, in Keras' layout: a constant (``F.pad``, which takes the last
    axis first), or the tensor's own values mirrored, one axis after another, as numpy pads (slices, flips and a
    concatenation: no index tensor, which an average of the weights would try to average)."""

    def __init__(self, spec: ops.Pad, shape: Shape) -> None:
        super().__init__()
        self.pad = tuple(size for before, after in reversed(spec.pad_width[1:]) for size in (before, after))
        self.value = float(spec.constant_values or 0)
        widths = enumerate(spec.pad_width[1:], start=1)
        self.mirrored = None if spec.mode == "constant" else [(axis, *pair) for axis, pair in widths if any(pair)]
        self.edge = int(spec.mode == "symmetric")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_keras_layout(x)
        if self.mirrored is None:
            return to_torch_layout(F.pad(x, self.pad, value=self.value))
        for axis, before, after in self.mirrored:
            x = mirror(x, axis, before, after, self.edge)
        return to_torch_layout(x)

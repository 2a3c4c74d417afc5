"""Keras' recurrent layers in torch: ``SimpleRNN``, ``LSTM``, ``GRU``, step by step as Keras' cells compute them;
``Bidirectional``; ``TimeDistributed``, the layer it wraps run on every step at once.

torch's ``nn.LSTM`` and ``nn.GRU`` are not used: they fix the activations (Keras lets both be
chosen), keep two biases where Keras' LSTM has one, and order GRU's gates otherwise (reset, update
against Keras' update, reset). Here each kernel is Keras' transposed, gates in Keras' order, so the
mapping is a transpose and nothing else (``weight_ih``: (gates * units, features), ``weight_hh``:
(gates * units, units), ``bias`` as Keras has it). Every step's input product is one matrix
product over the whole sequence; the loop then runs over the steps, a few operators each (28 for
MNIST's rows), which exports to ONNX and ``torch.export`` as an unrolled graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_mnist.models.layers.activations import ACTIVATIONS
from lightning_mnist.models.layers.layout import to_keras_layout, to_torch_layout
from lightning_mnist.models.layers.registry import WeightMap, converter, converter_of, moved_under
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape
from mnist_common.architecture.layers.recurrent import SIDES

WEIGHTS = dict(kernel=WeightMap("weight_ih", (1, 0)), recurrent_kernel=WeightMap("weight_hh", (1, 0)),
               bias=WeightMap("bias"))


def dropout_mask(like: torch.Tensor, rate: float) -> torch.Tensor:
    """Keras' RNN dropout mask for a (N, features) step: kept with probability 1 - rate, survivors scaled."""
    return torch.bernoulli(torch.full_like(like, 1.0 - rate)) / (1.0 - rate)


class Recurrent(nn.Module):
    """The loop the three share: dropout masks (one per sample for every step), reading backwards, zero initial
    states, the last output or all of them. A subclass gives ``step``: (the step's input product, the states, the
    recurrent dropout mask or None) -> the new states, the first of them being the step's output."""

    def __init__(self, spec: keras.SimpleRNN | keras.LSTM | keras.GRU, shape: Shape) -> None:
        super().__init__()
        rows = spec.GATES * spec.units
        self.units, self.activation = spec.units, ACTIVATIONS[spec.activation]
        self.dropout, self.recurrent_dropout = spec.dropout, spec.recurrent_dropout
        self.return_sequences, self.go_backwards = spec.return_sequences, spec.go_backwards
        self.weight_ih = nn.Parameter(torch.empty(rows, shape[-1]))
        self.weight_hh = nn.Parameter(torch.empty(rows, spec.units))
        self.bias = nn.Parameter(torch.empty(spec.bias_shape())) if spec.use_bias else None

    def input_bias(self) -> torch.Tensor | None:
        return self.bias

    def initial_states(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (x.new_zeros(x.shape[0], self.units),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.dropout > 0:
            x = x * dropout_mask(x[:, :1], self.dropout)
        if self.go_backwards:
            x = x.flip(1)
        products = F.linear(x, self.weight_ih, self.input_bias())
        states = self.initial_states(x)
        state_mask = dropout_mask(states[0], self.recurrent_dropout) \
            if self.training and self.recurrent_dropout > 0 else None
        outputs = []
        for t in range(products.shape[1]):
            states = self.step(products[:, t], states, state_mask)
            outputs.append(states[0])
        return torch.stack(outputs, dim=1) if self.return_sequences else outputs[-1]

    def step(self, product: torch.Tensor, states: tuple[torch.Tensor, ...],
             state_mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError


@converter(keras.SimpleRNN, **WEIGHTS)
class SimpleRNN(Recurrent):
    def step(self, product, states, state_mask):
        h = states[0] if state_mask is None else states[0] * state_mask
        return (self.activation(product + F.linear(h, self.weight_hh)),)


@converter(keras.LSTM, **WEIGHTS)
class LSTM(Recurrent):
    """``c = f * c + i * activation(z_c)``, ``h = o * activation(c)``; the gates ``recurrent_activation`` of
    ``x @ kernel + h @ recurrent_kernel + bias``, split in four."""

    def __init__(self, spec: keras.LSTM, shape: Shape) -> None:
        super().__init__(spec, shape)
        self.gate = ACTIVATIONS[spec.recurrent_activation]

    def initial_states(self, x):
        return x.new_zeros(x.shape[0], self.units), x.new_zeros(x.shape[0], self.units)

    def step(self, product, states, state_mask):
        h, c = states
        i, f, z, o = (product + F.linear(h, self.weight_hh)).chunk(4, dim=1)
        c = self.gate(f) * c + self.gate(i) * self.activation(z)
        return self.gate(o) * self.activation(c), c


@converter(keras.GRU, **WEIGHTS)
class GRU(Recurrent):
    """``h = u * h + (1 - u) * activation(candidate)``, the update gate ``u`` and reset gate ``r`` of the input's and
    the state's products; the candidate's state product taken after the reset gate (``reset_after``, its own bias,
    the bias' second row) or of the reset state."""

    def __init__(self, spec: keras.GRU, shape: Shape) -> None:
        super().__init__(spec, shape)
        self.gate, self.reset_after = ACTIVATIONS[spec.recurrent_activation], spec.reset_after

    def input_bias(self):
        return self.bias[0] if self.bias is not None and self.reset_after else self.bias

    def step(self, product, states, state_mask):
        h = states[0]
        x_u, x_r, x_c = product.chunk(3, dim=1)
        if self.reset_after:
            state_bias = None if self.bias is None else self.bias[1]
            h_u, h_r, h_c = F.linear(h, self.weight_hh, state_bias).chunk(3, dim=1)
            u, r = self.gate(x_u + h_u), self.gate(x_r + h_r)
            candidate = x_c + r * h_c
        else:
            h_u, h_r = F.linear(h, self.weight_hh[:2 * self.units]).chunk(2, dim=1)
            u, r = self.gate(x_u + h_u), self.gate(x_r + h_r)
            candidate = x_c + F.linear(r * h, self.weight_hh[2 * self.units:])
        return (u * h + (1 - u) * self.activation(candidate),)


@converter(keras.Bidirectional, **{f"{side}_{name}": WeightMap(f"{side}_layer.{mapping.attribute}", mapping.permutation)
                                   for side in SIDES for name, mapping in WEIGHTS.items()})
class Bidirectional(nn.Module):
    """The two recurrent modules on the same input; the backward one's outputs flipped back into the steps' order
    when it gives every step's, then merged as Keras merges them."""

    def __init__(self, spec: keras.Bidirectional, shape: Shape) -> None:
        super().__init__()
        self.forward_layer = converter_of(spec.layer).module(spec.layer, shape)
        self.backward_layer = converter_of(spec.backward_layer).module(spec.backward_layer, shape)
        self.merge_mode, self.return_sequences = spec.merge_mode, spec.layer.return_sequences

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, y_rev = self.forward_layer(x), self.backward_layer(x)
        if self.return_sequences:
            y_rev = y_rev.flip(1)
        if self.merge_mode == "concat":
            return torch.cat([y, y_rev], dim=-1)
        if self.merge_mode == "sum":
            return y + y_rev
        if self.merge_mode == "ave":
            return (y + y_rev) / 2
        return y * y_rev


@converter(keras.TimeDistributed, wrapped_weights=lambda spec: moved_under("layer", converter_of(spec.layer).weights))
class TimeDistributed(nn.Module):
    """The wrapped layer's module on the (N * steps) slices of the batch in one call, which is what Keras computes
    one step at a time: no supported kind inside one mixes the samples of a batch (BatchNormalization is refused).
    A step has at most two axes, laid out alike in both frameworks; the input of three (an image's rows) is put in
    Keras' layout to be cut into steps, and the output back into torch's."""

    def __init__(self, spec: keras.TimeDistributed, shape: Shape) -> None:
        super().__init__()
        self.layer = converter_of(spec.layer).module(spec.layer, spec.step_shape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = to_keras_layout(x)
        out = self.layer(steps.flatten(0, 1))
        return to_torch_layout(out.unflatten(0, (-1, steps.shape[1])))  # -1: a batch export leaves open

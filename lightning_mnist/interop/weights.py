"""The weight mapping between a :class:`~lightning_mnist.models.network.KerasNetwork` and its Keras model.

Each layer kind's converter (``lightning_mnist.models.layers``) says which torch parameter
or buffer each of its Keras weights is and how the axes move (a Conv2D kernel (kh, kw, in,
out) is torch's (out, in, kh, kw); a Dense kernel is transposed; BatchNorm's gamma, beta and
moving statistics are as they are). Every mapping is a transpose and a reshape, so
``.keras -> .ckpt -> .keras`` is bit-identical.

Layers are matched by name, never by position: a torch state dict's keys are
``<Keras layer name>.<attribute>`` (``conv2d_1.weight``); the Keras side is
``{Keras layer name: [arrays in Keras' order]}``, as ``layer.get_weights()`` gives them.
A ``.keras`` file stores them under other names (``layers/<class-numbered name>/vars/i``,
:attr:`~mnist_common.architecture.Architecture.storage_names`), which
:func:`mnist_common.keras_file.read_keras_file` translates back to layer names.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch

from mnist_common.architecture import Architecture
from mnist_common.errors import UserError
from lightning_mnist.models.layers import WeightMap, converter_of

TorchWeights = dict[str, torch.Tensor]
KerasWeights = dict[str, list[np.ndarray]]


def _rows(architecture: Architecture) -> Iterator[tuple[str, tuple[int, ...], str, WeightMap, str]]:
    """(Keras layer name, Keras shape, torch key, mapping, dtype) for every weight, in Keras' order per layer."""
    for node, _, weights in architecture.weight_shapes():
        mappings = converter_of(node.layer).weights
        for weight_name, shape in weights:
            mapping = mappings[weight_name]
            yield node.name, shape, f"{node.name}.{mapping.attribute}", mapping, node.layer.weight_dtype(weight_name)


def torch_shapes(architecture: Architecture) -> dict[str, tuple[int, ...]]:
    """The state dict a network of ``architecture`` has: key -> shape."""
    return {key: mapping.torch_shape(shape) for _, shape, key, mapping, _ in _rows(architecture)}


def check_state_dict(architecture: Architecture, state_dict: Mapping[str, torch.Tensor],
                     source: str = "checkpoint") -> TorchWeights:
    """``state_dict`` (keys without any prefix) checked against ``architecture``: keys, shapes, values.

    Raises :class:`UserError` naming what differs: another network, wrong shapes, another
    dtype, NaN or infinite values, negative variances.
    """
    expected = torch_shapes(architecture)
    dtypes = {key: getattr(torch, dtype) for _, _, key, _, dtype in _rows(architecture)}
    # str(): a hostile file's keys may be numbers (or any other key a weights-only load allows)
    missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(map(str, set(state_dict) - set(expected)))
    if missing or unexpected:
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}" if missing else "",
            f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}" if unexpected else "",
        ) if part)
        raise UserError(f"{source} does not hold the weights of its architecture {architecture.name} ({detail})")
    checked = {}
    for key, shape in expected.items():
        value = state_dict[key]
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{source}: {key} is a {type(value).__name__}, not a tensor")
        if value.layout != torch.strided or value.is_nested or value.device.type != "cpu":  # what torch.load gives
            kind = "nested" if value.is_nested else str(value.layout).removeprefix("torch.")
            raise UserError(f"{source}: {key} is a {kind} tensor on the {value.device.type} device; a weight is a "
                            f"dense (strided) tensor of values, read onto the cpu")
        if tuple(value.shape) != shape:
            raise UserError(f"{source}: {key} has shape {tuple(value.shape)}, but its architecture needs {shape}")
        if value.dtype != dtypes[key]:
            raise UserError(f"{source}: {key} is {value.dtype}, expected {dtypes[key]}")
        if not torch.isfinite(value).all():
            raise UserError(f"{source}: {key} holds NaN or infinite values")
        if key.endswith(".count") and (value < 0).any():
            raise UserError(f"{source}: {key} is negative, a count of examples")
        if key.endswith(("running_var", ".variance")) and (value < 0).any():
            raise UserError(f"{source}: {key} holds negative variances")
        checked[key] = value
    return checked


def keras_to_torch(architecture: Architecture, weights: KerasWeights) -> TorchWeights:
    """A network's state dict from Keras weights by layer name (as ``read_keras_file`` or ``layer_weights`` give)."""
    out: TorchWeights = {}
    position: dict[str, int] = {}
    for name, _, key, mapping, dtype in _rows(architecture):
        i = position[name] = position.get(name, -1) + 1
        out[key] = torch.from_numpy(mapping.to_torch(np.asarray(weights[name][i]), dtype))
    return out


def torch_to_keras(architecture: Architecture, state_dict: Mapping[str, torch.Tensor]) -> KerasWeights:
    """Keras weights by layer name (``layer.set_weights`` order) from a network's checked state dict."""
    out: KerasWeights = {}
    for name, shape, key, mapping, dtype in _rows(architecture):
        out.setdefault(name, []).append(mapping.to_keras(state_dict[key].detach().cpu().numpy(), shape, dtype))
    return out

"""The weight mapping between a :class:`~lightning_mnist.models.network.KerasNetwork` and its Keras model.

One row per Keras layer kind that has weights: which torch parameter or buffer each
Keras weight is, and the axis permutation from Keras' layout to torch's.

==================  ==================  ==================  =====================================
Keras layer         Keras weight        torch (module.)     mapping
==================  ==================  ==================  =====================================
Conv2D              kernel (kh,kw,i,o)  weight (o,i,kh,kw)  transpose
Conv2D              bias                bias                as is
Dense               kernel (in, out)    weight (out, in)    transpose (no row reordering: the
                                                            network flattens in Keras' h, w, c)
Dense               bias                bias                as is
BatchNormalization  gamma, beta         weight, bias        as is
BatchNormalization  moving_mean, _var   running_mean, _var  as is (epsilon and momentum are
                                                            settings of the description)
==================  ==================  ==================  =====================================

Every mapping is a transpose, so ``.keras -> .ckpt -> .keras`` is bit-identical. Keys of a
torch state dict are ``<Keras layer name>.<attribute>`` (``conv2d_1.weight``); the Keras
side is ``{Keras layer name: [arrays in Keras' order]}``, as ``model.weights.h5`` holds them.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from mnist_common.architecture import Architecture
from mnist_common.errors import UserError

# Keras layer type -> {Keras weight name: (torch attribute, permutation from Keras' axes to torch's)}
MAPPINGS: dict[str, dict[str, tuple[str, tuple[int, ...] | None]]] = {
    "Conv2D": {"kernel": ("weight", (3, 2, 0, 1)), "bias": ("bias", None)},
    "Dense": {"kernel": ("weight", (1, 0)), "bias": ("bias", None)},
    "BatchNormalization": {"gamma": ("weight", None), "beta": ("bias", None),
                           "moving_mean": ("running_mean", None), "moving_variance": ("running_var", None)},
}
TorchWeights = dict[str, torch.Tensor]
KerasWeights = dict[str, list[np.ndarray]]


def _rows(architecture: Architecture):
    """(Keras layer name, Keras weight name, Keras shape, torch key, permutation) for every weight."""
    for index, name, weights in architecture.weight_shapes():
        mapping = MAPPINGS[architecture.layers[index].type]
        for weight_name, shape in weights:
            attribute, permutation = mapping[weight_name]
            yield name, weight_name, shape, f"{name}.{attribute}", permutation


def torch_shapes(architecture: Architecture) -> dict[str, tuple[int, ...]]:
    """The state dict a network of ``architecture`` has: key -> shape."""
    return {key: tuple(shape[i] for i in permutation) if permutation else tuple(shape)
            for _, _, shape, key, permutation in _rows(architecture)}


def _copy(array: np.ndarray, permutation: tuple[int, ...] | None) -> np.ndarray:
    value = array.transpose(permutation) if permutation else array
    return np.array(value, dtype=np.float32, order="C", copy=True)  # never a view of the source


def check_state_dict(architecture: Architecture, state_dict: Mapping[str, torch.Tensor],
                     source: str = "checkpoint") -> TorchWeights:
    """``state_dict`` (keys without any prefix) checked against ``architecture``: keys, shapes, values.

    Raises :class:`UserError` naming what differs: another network, wrong shapes, another
    dtype, NaN or infinite values, negative variances.
    """
    expected = torch_shapes(architecture)
    missing, unexpected = sorted(set(expected) - set(state_dict)), sorted(set(state_dict) - set(expected))
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
        if tuple(value.shape) != shape:
            raise UserError(f"{source}: {key} has shape {tuple(value.shape)}, but its architecture needs {shape}")
        if value.dtype != torch.float32:
            raise UserError(f"{source}: {key} is {value.dtype}, expected torch.float32")
        if not torch.isfinite(value).all():
            raise UserError(f"{source}: {key} holds NaN or infinite values")
        if key.endswith("running_var") and (value < 0).any():
            raise UserError(f"{source}: {key} holds negative variances")
        checked[key] = value
    return checked


def keras_to_torch(architecture: Architecture, weights: KerasWeights) -> TorchWeights:
    """A network's state dict from Keras weights (as :func:`mnist_common.keras_file.read_keras_file` reads them)."""
    out: TorchWeights = {}
    position: dict[str, int] = {}
    for name, _, _, key, permutation in _rows(architecture):
        i = position[name] = position.get(name, -1) + 1
        out[key] = torch.from_numpy(_copy(np.asarray(weights[name][i]), permutation))
    return out


def torch_to_keras(architecture: Architecture, state_dict: Mapping[str, torch.Tensor]) -> KerasWeights:
    """Keras weights (``layer.set_weights`` order per layer) from a network's checked state dict."""
    out: KerasWeights = {}
    for name, _, _, key, permutation in _rows(architecture):
        inverse = tuple(np.argsort(permutation)) if permutation else None
        out.setdefault(name, []).append(_copy(state_dict[key].detach().cpu().numpy(), inverse))
    return out

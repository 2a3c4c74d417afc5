"""The weight mapping between :class:`MnistCNN` and the notebook's Keras ``Sequential``, pure numpy.

Nothing here imports Keras. The six layers that hold weights, in Keras' layer order:

==========================  ======================================  ================================
Keras layer (weights)        torch state_dict key (``network.``)     mapping
==========================  ======================================  ================================
Conv2D kernel (3,3,1,32)     conv1.weight (32,1,3,3)                 (out,in,kh,kw) <-> (kh,kw,in,out)
Conv2D bias (32,)            conv1.bias                              as is
BatchNormalization gamma     bn1.weight                              as is
BatchNormalization beta      bn1.bias                                as is
moving_mean                  bn1.running_mean                        as is
moving_variance              bn1.running_var                         as is
Conv2D_1 / BN_1              conv2.*, bn2.* (64 channels)            as conv1, bn1
Dense kernel (1600,128)      dense1.weight (128,1600)                transpose (no row reordering:
                                                                     MnistCNN flattens in Keras'
                                                                     h, w, c order)
Dense_1 kernel (128,10)      dense2.weight (10,128)                  transpose
==========================  ======================================  ================================

``bnX.num_batches_tracked`` has no Keras counterpart: it is only read when torch's
BatchNorm momentum is ``None`` (MnistCNN uses 0.01), and is written as 0.

Every mapping is a pure transpose, so a round trip is bit-exact.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from mnist_common.errors import UserError

PREFIX = "network."

# (torch module name, Keras layer kind) for the six layers with weights, in Keras' order.
WEIGHTED_LAYERS: tuple[tuple[str, str], ...] = (
    ("conv1", "conv"), ("bn1", "bn"), ("conv2", "conv"), ("bn2", "bn"), ("dense1", "dense"), ("dense2", "dense"),
)
# torch parameter/buffer names of each kind, in the order Keras keeps the layer's weights.
KIND_KEYS = {
    "conv": ("weight", "bias"),
    "bn": ("weight", "bias", "running_mean", "running_var"),
    "dense": ("weight", "bias"),
}
KERAS_WEIGHT_NAMES = {
    "conv": ("kernel", "bias"),
    "bn": ("gamma", "beta", "moving_mean", "moving_variance"),
    "dense": ("kernel", "bias"),
}
# MnistCNN's state_dict: key -> shape.
EXPECTED_SHAPES: dict[str, tuple[int, ...]] = {
    "conv1.weight": (32, 1, 3, 3), "conv1.bias": (32,),
    "bn1.weight": (32,), "bn1.bias": (32,), "bn1.running_mean": (32,), "bn1.running_var": (32,),
    "bn1.num_batches_tracked": (),
    "conv2.weight": (64, 32, 3, 3), "conv2.bias": (64,),
    "bn2.weight": (64,), "bn2.bias": (64,), "bn2.running_mean": (64,), "bn2.running_var": (64,),
    "bn2.num_batches_tracked": (),
    "dense1.weight": (128, 1600), "dense1.bias": (128,),
    "dense2.weight": (10, 128), "dense2.bias": (10,),
}


def _to_keras(kind: str, key: str, value: np.ndarray) -> np.ndarray:
    if key == "weight" and kind == "conv":
        value = value.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
    elif key == "weight" and kind == "dense":
        value = value.T  # (out, in) -> (in, out)
    return np.array(value, dtype=np.float32, order="C", copy=True)  # never a view of the source


def _to_torch(kind: str, key: str, value: np.ndarray) -> np.ndarray:
    if key == "weight" and kind == "conv":
        value = value.transpose(3, 2, 0, 1)  # (kh, kw, in, out) -> (out, in, kh, kw)
    elif key == "weight" and kind == "dense":
        value = value.T
    return np.array(value, dtype=np.float32, order="C", copy=True)  # never a view of the source


def network_state_dict(state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The MnistCNN weights of ``state_dict`` (a MnistClassifier's, or a bare MnistCNN's), checked.

    Keys are returned without the ``network.`` prefix. Raises :class:`UserError`
    naming the missing/unexpected keys or wrong shapes when it is another model.
    """
    keys = list(state_dict)
    if keys and all(k.startswith(PREFIX) for k in keys):
        state_dict = {k[len(PREFIX):]: v for k, v in state_dict.items()}
    missing = sorted(set(EXPECTED_SHAPES) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(EXPECTED_SHAPES))
    if missing or unexpected:
        detail = "; ".join(part for part in (
            f"missing {', '.join(missing[:4])}{' ...' if len(missing) > 4 else ''}" if missing else "",
            f"unexpected {', '.join(unexpected[:4])}{' ...' if len(unexpected) > 4 else ''}" if unexpected else "",
        ) if part)
        raise UserError(f"{source} is not a checkpoint of MnistClassifier/MnistCNN ({detail})")
    out = {}
    for key, shape in EXPECTED_SHAPES.items():
        value = state_dict[key]
        if not isinstance(value, torch.Tensor):
            raise UserError(f"{source}: {key} is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != shape:
            raise UserError(f"{source} is not a checkpoint of MnistClassifier/MnistCNN "
                            f"({key} has shape {tuple(value.shape)}, expected {shape})")
        if key.endswith("num_batches_tracked"):
            out[key] = value
            continue
        if value.dtype != torch.float32:
            raise UserError(f"{source}: {key} is {value.dtype}, expected torch.float32")
        if not torch.isfinite(value).all():
            raise UserError(f"{source}: {key} holds NaN or infinite values")
        if key.endswith("running_var") and (value < 0).any():
            raise UserError(f"{source}: {key} holds negative variances")
        out[key] = value
    return out


def state_dict_to_keras(state_dict: Mapping[str, torch.Tensor], source: str = "checkpoint") -> list[list[np.ndarray]]:
    """Keras weights of the six weighted layers (``layer.set_weights`` order) from a checked state_dict."""
    weights = network_state_dict(state_dict, source)
    return [[_to_keras(kind, key, weights[f"{name}.{key}"].detach().cpu().numpy()) for key in KIND_KEYS[kind]]
            for name, kind in WEIGHTED_LAYERS]


def keras_to_state_dict(layer_weights: list[list[np.ndarray]]) -> dict[str, torch.Tensor]:
    """MnistCNN's state_dict (without the ``network.`` prefix) from the six layers' Keras weights."""
    if len(layer_weights) != len(WEIGHTED_LAYERS):
        raise UserError(f"expected weights of {len(WEIGHTED_LAYERS)} layers, got {len(layer_weights)}")
    out: dict[str, torch.Tensor] = {}
    for (name, kind), weights in zip(WEIGHTED_LAYERS, layer_weights):
        if len(weights) != len(KIND_KEYS[kind]):
            raise UserError(f"layer {name} needs {len(KIND_KEYS[kind])} weight arrays, got {len(weights)}")
        for key, value in zip(KIND_KEYS[kind], weights):
            out[f"{name}.{key}"] = torch.from_numpy(_to_torch(kind, key, np.asarray(value)))
        if kind == "bn":
            out[f"{name}.num_batches_tracked"] = torch.tensor(0, dtype=torch.long)
    network_state_dict(out, "converted weights")  # shapes, dtypes, finiteness
    return out


def keras_weight_shapes() -> list[list[tuple[int, ...]]]:
    """The Keras shapes of the six weighted layers' weights, derived from :data:`EXPECTED_SHAPES`."""
    return [[_to_keras(kind, key, np.zeros(EXPECTED_SHAPES[f"{name}.{key}"], np.float32)).shape
             for key in KIND_KEYS[kind]] for name, kind in WEIGHTED_LAYERS]

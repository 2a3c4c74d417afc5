"""An architecture description: an input shape and an ordered chain of supported Keras layers.

Both frameworks build from it (``lightning_mnist.models.network`` a torch module,
``keras_reference.model`` a Keras ``Sequential``), checkpoints record it, and a ``.keras``
file is read into it (:mod:`mnist_common.architecture.keras_config`). In YAML it reads like
a Keras model::

    input_shape: [28, 28, 1]
    layers:
      - {type: Conv2D, filters: 32, kernel_size: 3, activation: relu}
      - {type: MaxPooling2D, pool_size: 2}
      - {type: Flatten}
      - {type: Dense, units: 10, activation: softmax}

The number of classes is what the last layer gives; every shape is inferred (channels
last, as Keras has them) and checked when the description is made, so a layer that cannot
work is named before any framework is imported.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from mnist_common.architecture.layers import LAYER_TYPES, Layer, LayerError, Shape, applies_softmax
from mnist_common.errors import UserError

PRESETS_DIR = Path(__file__).with_name("presets")
DEFAULT_PRESET = "notebook"
MNIST_INPUT_SHAPE = (28, 28, 1)
MNIST_CLASSES = 10
DESCRIPTION_SUFFIXES = (".yaml", ".yml", ".json")


class ArchitectureError(UserError):
    """A description that cannot be built; the message names the layer (index, name, type) at fault."""


def keras_snake_case(class_name: str) -> str:
    """Keras' ``to_snake_case``: ``MaxPooling2D`` -> ``max_pooling2d``, ``ReLU`` -> ``re_lu``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", class_name))
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def presets() -> dict[str, Path]:
    """Preset name -> its YAML file (``mnist_common/architecture/presets``)."""
    return {path.stem: path for path in sorted(PRESETS_DIR.glob("*.yaml"))}


def _shape(value: Any, source: str) -> tuple[int, int, int]:
    if (not isinstance(value, (list, tuple)) or len(value) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
        raise ArchitectureError(f"{source}: input_shape must be [height, width, channels] of positive integers "
                                f"(channels last, as Keras has it), got {value!r}")
    return tuple(int(v) for v in value)  # type: ignore[return-value]


def layer_label(index: int, layer: Layer | dict[str, Any]) -> str:
    """How refusals name a layer: ``layer 3 (conv2d_1, Conv2D)``; index 0 is the first after the input."""
    if isinstance(layer, Layer):
        name, kind = layer.name, layer.type
    else:
        name, kind = layer.get("name"), layer.get("type") or layer.get("class_name")
    return f"layer {index} ({name}, {kind})" if name else f"layer {index} ({kind})"


@dataclass(frozen=True)
class Architecture:
    """``input_shape`` (H, W, C) and ``layers`` applied in order; ``name`` says where it came from."""

    input_shape: tuple[int, int, int]
    layers: tuple[Layer, ...]
    name: str = "custom"
    source: str = field(default="", compare=False)  # a file or preset the description was read from

    def __post_init__(self) -> None:
        where = self.source or self.name
        object.__setattr__(self, "input_shape", _shape(self.input_shape, where))
        object.__setattr__(self, "layers", tuple(self.layers))
        if not self.layers:
            raise ArchitectureError(f"{where}: the description has no layers")
        if len(self.shapes[-1]) != 1:
            raise ArchitectureError(f"{where}: the last layer gives a {'x'.join(map(str, self.shapes[-1]))} "
                                    f"output; a classifier must end in one score per class (add Flatten or "
                                    f"global pooling, then Dense)")

    # --- shapes ----------------------------------------------------------------------------
    @cached_property
    def shapes(self) -> tuple[Shape, ...]:
        """The output shape of every layer (channels last, no batch axis)."""
        shapes, shape = [], tuple(self.input_shape)
        for index, layer in enumerate(self.layers):
            try:
                shape = layer.output_shape(shape)
            except LayerError as err:
                raise ArchitectureError(f"{self._where()}{layer_label(index, layer)}: {err}") from None
            shapes.append(shape)
        return tuple(shapes)

    def input_shape_of(self, index: int) -> Shape:
        return tuple(self.input_shape) if index == 0 else self.shapes[index - 1]

    @property
    def num_classes(self) -> int:
        return self.shapes[-1][0]

    @property
    def ends_in_softmax(self) -> bool:
        """The model's outputs are probabilities: the torch side returns the softmax's input instead."""
        return applies_softmax(self.layers[-1])

    @property
    def takes_mnist(self) -> bool:
        """Takes 28x28x1 images and gives 10 classes, so it can train and be scored on MNIST."""
        return tuple(self.input_shape) == MNIST_INPUT_SHAPE and self.num_classes == MNIST_CLASSES

    def same_network(self, other: Architecture) -> bool:
        """The same layers with the same settings and input, whatever the model and its layers are called."""
        def unnamed(architecture: Architecture) -> tuple:
            return tuple(dataclasses.replace(layer, name=None) for layer in architecture.layers)

        return tuple(self.input_shape) == tuple(other.input_shape) and unnamed(self) == unnamed(other)

    def require_mnist(self, what: str) -> None:
        if not self.takes_mnist:
            raise ArchitectureError(f"{what} needs a network that takes 28x28x1 images and gives 10 classes; "
                                    f"{self.name} takes {'x'.join(map(str, self.input_shape))} and gives "
                                    f"{self.num_classes}")

    # --- weights ---------------------------------------------------------------------------
    @cached_property
    def keras_names(self) -> tuple[str, ...]:
        """Each layer's name inside ``model.weights.h5``: Keras numbers them by class, whatever they are called.

        The torch network names its modules the same way, so ``conv2d_1.weight`` in a
        checkpoint is ``layers/conv2d_1/vars/0`` in the Keras file, transposed.
        """
        counts: dict[str, int] = {}
        names = []
        for layer in self.layers:
            base = keras_snake_case(layer.type)
            counts[base] = counts.get(base, -1) + 1
            names.append(base if counts[base] == 0 else f"{base}_{counts[base]}")
        return tuple(names)

    def weight_shapes(self) -> list[tuple[int, str, tuple[tuple[str, Shape], ...]]]:
        """(layer index, Keras name, ((weight name, Keras shape), ...)) for every layer that has weights."""
        out = []
        for index, (layer, name) in enumerate(zip(self.layers, self.keras_names)):
            weights = layer.weights(self.input_shape_of(index))
            if weights:
                out.append((index, name, weights))
        return out

    def parameter_count(self) -> tuple[int, int]:
        """(trainable, non-trainable) as Keras counts them: BatchNorm moving statistics are non-trainable."""
        trainable = frozen = 0
        for _, _, weights in self.weight_shapes():
            for weight_name, shape in weights:
                if weight_name.startswith("moving_"):
                    frozen += math.prod(shape)
                else:
                    trainable += math.prod(shape)
        return trainable, frozen

    # --- text forms ------------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        """Every setting spelled out (what checkpoints record); :meth:`from_config` reads it back."""
        return {"name": self.name, "input_shape": list(self.input_shape),
                "layers": [layer.to_config() for layer in self.layers]}

    def summary(self) -> str:
        """A Keras ``model.summary()``-like table: layer, output shape, parameters."""
        rows = [("input", "x".join(map(str, self.input_shape)), "")]
        for index, (layer, name, shape) in enumerate(zip(self.layers, self.keras_names, self.shapes)):
            count = sum(math.prod(s) for _, s in layer.weights(self.input_shape_of(index)))
            rows.append((f"{name} ({layer.type})", "x".join(map(str, shape)), f"{count:,}" if count else "0"))
        width = max(len(r[0]) for r in rows)
        trainable, frozen = self.parameter_count()
        lines = [f"{self.name}: {self.num_classes} classes"]
        lines += [f"  {a:<{width}}  {b:>10}  {c:>9}" for a, b, c in rows]
        lines.append(f"  {trainable + frozen:,} parameters as Keras counts them ({trainable:,} trainable + "
                     f"{frozen:,} BatchNorm moving statistics)")
        return "\n".join(lines)

    def _where(self) -> str:
        return f"{self.source}: " if self.source else f"{self.name}: " if self.name != "custom" else ""

    # --- reading ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Any, source: str = "") -> Architecture:
        """From ``{"input_shape": [...], "layers": [{"type": ..., ...}], "name"?: ..., "num_classes"?: ...}``."""
        where = source or "architecture"
        if not isinstance(config, dict):
            raise ArchitectureError(f"{where}: an architecture is a mapping with input_shape and layers, "
                                    f"got {type(config).__name__}")
        unknown = sorted(set(config) - {"name", "input_shape", "layers", "num_classes"})
        if unknown:
            raise ArchitectureError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                                    f"(an architecture has name, input_shape, layers, num_classes)")
        if "input_shape" not in config or "layers" not in config:
            raise ArchitectureError(f"{where}: an architecture needs input_shape and layers")
        layers_config = config["layers"]
        if not isinstance(layers_config, list):
            raise ArchitectureError(f"{where}: layers must be a list, got {type(layers_config).__name__}")
        prefix = f"{source}: " if source else ""
        layers = []
        for index, entry in enumerate(layers_config):
            if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
                raise ArchitectureError(f"{prefix}layer {index}: each layer is a mapping with a type, "
                                        f"got {entry!r}")
            layer_class = LAYER_TYPES.get(entry["type"])
            if layer_class is None:
                raise ArchitectureError(f"{prefix}{layer_label(index, entry)}: not a supported layer type "
                                        f"(supported: {', '.join(LAYER_TYPES)})")
            try:
                layers.append(layer_class.from_settings({k: v for k, v in entry.items() if k != "type"}))
            except LayerError as err:
                raise ArchitectureError(f"{prefix}{layer_label(index, entry)}: {err}") from None
            except TypeError as err:  # a required setting is missing
                missing = re.findall(r"'(\w+)'", str(err))
                raise ArchitectureError(f"{prefix}{layer_label(index, entry)}: needs "
                                        f"{', '.join(missing) or 'more settings'}") from None
        name = config.get("name") or (Path(source).stem if source else "custom")
        architecture = cls(input_shape=config["input_shape"], layers=tuple(layers), name=str(name), source=source)
        expected = config.get("num_classes")
        if expected is not None and expected != architecture.num_classes:
            raise ArchitectureError(f"{where}: num_classes is {expected!r} but the last layer gives "
                                    f"{architecture.num_classes}")
        return architecture

    @classmethod
    def load(cls, value: str | os.PathLike | dict | Architecture | None = None) -> Architecture:
        """A preset name, a YAML/JSON description file, a ``.keras`` file (its architecture), or a mapping."""
        if isinstance(value, Architecture):
            return value
        if value is None:
            value = DEFAULT_PRESET
        if isinstance(value, dict):
            return cls.from_config(value)
        text = str(value)
        known = presets()
        if text in known:
            return cls.from_config(_read_description(known[text]), source=f"preset {text}")
        path = Path(text)
        if path.suffix.lower() == ".keras":
            from mnist_common.keras_file import read_keras_file

            return read_keras_file(path).architecture
        if path.suffix.lower() in DESCRIPTION_SUFFIXES:
            return cls.from_config(_read_description(path), source=str(path))
        raise ArchitectureError(f"architecture {text!r}: not a preset ({', '.join(known)}), nor a "
                                f"{'/'.join(DESCRIPTION_SUFFIXES)} description file, nor a .keras model")


def _read_description(path: Path) -> Any:
    import yaml

    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ArchitectureError(f"architecture file {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ArchitectureError(f"architecture file {path}: cannot be read ({err})") from None
    try:
        return json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArchitectureError(f"architecture file {path}: not valid {path.suffix[1:].upper()} ({first})") from None

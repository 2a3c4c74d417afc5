"""A Keras model's ``config.json`` read into an :class:`Architecture`, without Keras.

Reads what ``model.get_config()`` / a ``.keras`` file's ``config.json`` holds: a
``Sequential``, or a ``Functional`` model that is one chain from its input to its output.
Every layer must be one of :data:`~mnist_common.architecture.layers.LAYER_TYPES`, from
Keras itself, with settings the bridge mirrors; anything else (a ``Lambda``, an ``LSTM``,
a custom class, a dilated convolution, a branch) is refused in one line that names the
layer's index, name and class.
"""

from __future__ import annotations

from typing import Any

from mnist_common.architecture.description import Architecture, ArchitectureError
from mnist_common.architecture.layers import LAYER_TYPES, LayerError

MODEL_CLASSES = ("Sequential", "Functional", "Model")
INPUT_CLASS = "InputLayer"
KERAS_LAYER_MODULES = ("keras.layers", "keras")
# Call arguments a functional chain may record that change nothing at inference.
HARMLESS_CALL_KWARGS = {"training", "mask"}


def _describe(entry: dict[str, Any]) -> tuple[str, str]:
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    return str(entry.get("name") or config.get("name") or "?"), str(entry.get("class_name") or "?")


def _input_shape(entry: dict[str, Any] | None, model_config: dict[str, Any], source: str) -> tuple[int, ...]:
    config = (entry or {}).get("config") or {}
    shape = config.get("batch_shape") or config.get("batch_input_shape") or model_config.get("build_input_shape")
    if not isinstance(shape, (list, tuple)) or len(shape) < 2:
        raise ArchitectureError(f"{source}: the model's input shape is not recorded (build the model, or "
                                f"start it with keras.Input(shape=...))")
    dims = shape[1:]
    if len(dims) != 3 or not all(isinstance(d, int) and d >= 1 for d in dims):
        raise ArchitectureError(f"{source}: the model takes inputs of shape {tuple(dims)}; only fixed-size "
                                f"(height, width, channels) images are supported")
    dtype = config.get("dtype")
    if dtype not in (None, "float32") and not isinstance(dtype, dict):
        raise ArchitectureError(f"{source}: the model's input is {dtype}; only float32 is supported")
    return tuple(dims)


def _functional_chain(layers: list[dict[str, Any]], model_config: dict[str, Any], source: str) -> list[dict]:
    """The layers of a Functional model in call order, if they form one chain from input to output."""
    by_name = {entry.get("name"): entry for entry in layers}

    def endpoint(key: str) -> str:
        spec = model_config.get(key)
        if isinstance(spec, list) and spec and isinstance(spec[0], list):
            if len(spec) != 1:
                raise ArchitectureError(f"{source}: the model has {len(spec)} {key.split('_')[0]}s; only a "
                                        f"single-input, single-output chain is supported")
            spec = spec[0]
        if not isinstance(spec, list) or not spec or spec[0] not in by_name:
            raise ArchitectureError(f"{source}: the model's {key} are not readable")
        return spec[0]

    start, current = endpoint("input_layers"), endpoint("output_layers")
    chain: list[dict] = []
    while current != start:
        entry = by_name[current]
        nodes = entry.get("inbound_nodes") or []
        arguments = nodes[0].get("args", []) if len(nodes) == 1 and isinstance(nodes[0], dict) else []
        tensors = [a for a in arguments if isinstance(a, dict) and a.get("class_name") == "__keras_tensor__"]
        kwargs = nodes[0].get("kwargs", {}) if len(nodes) == 1 and isinstance(nodes[0], dict) else {}
        extra = sorted(k for k, v in (kwargs or {}).items() if k not in HARMLESS_CALL_KWARGS and v is not None)
        if len(nodes) != 1 or len(tensors) != 1 or len(arguments) != 1 or extra:
            name, cls = _describe(entry)
            raise ArchitectureError(f"{source}: {name} ({cls}) is not part of a single chain (it is called "
                                    f"{len(nodes)} times, on {len(tensors)} tensors"
                                    f"{', with ' + ', '.join(extra) if extra else ''}); only chains of layers "
                                    f"are supported")
        previous = (tensors[0].get("config") or {}).get("keras_history", [None])[0]
        if previous not in by_name or any(e is by_name[previous] for e in chain):
            raise ArchitectureError(f"{source}: the model's graph is not a chain from its input to its output")
        chain.insert(0, entry)
        current = previous
    unused = [e for e in layers if e is not by_name[start] and not any(e is c for c in chain)]
    if unused:
        name, cls = _describe(unused[0])
        raise ArchitectureError(f"{source}: {name} ({cls}) is not on the path from input to output; only a "
                                f"single chain of layers is supported")
    return [by_name[start], *chain]


def _layer(index: int, entry: dict[str, Any], source: str):
    """One layer's description from its config entry; refusals name its index, name and class."""
    name, cls = _describe(entry)
    label = f"{source}: layer {index} ({name}, {cls})"
    layer_class = LAYER_TYPES.get(cls)
    if cls in MODEL_CLASSES:
        raise ArchitectureError(f"{label} is a nested model; only a flat chain of layers is supported")
    if layer_class is None:
        reason = "holds Python code" if cls == "Lambda" else "is not a supported layer"
        raise ArchitectureError(f"{label} {reason} (supported: {', '.join(LAYER_TYPES)})")
    if entry.get("module") not in KERAS_LAYER_MODULES or entry.get("registered_name") not in (None, cls):
        raise ArchitectureError(f"{label} is {entry.get('registered_name') or cls!r} from module "
                                f"{entry.get('module')!r}, not Keras' own layer; refusing it")
    try:
        return layer_class.from_keras(entry.get("config") or {})
    except LayerError as err:
        joined = f"{label} {err}" if str(err).startswith(("is ", "has ", "sets ", "computes ")) else f"{label}: {err}"
        raise ArchitectureError(joined) from None


def architecture_from_keras_config(config: Any, source: str = "model") -> Architecture:
    """The :class:`Architecture` of a Keras model config; :class:`ArchitectureError` for anything unsupported."""
    if not isinstance(config, dict) or config.get("class_name") not in MODEL_CLASSES:
        kind = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise ArchitectureError(f"{source} holds a {kind}, not a Keras Sequential or Functional model")
    model_config = config.get("config") if isinstance(config.get("config"), dict) else {}
    layers = model_config.get("layers")
    if not isinstance(layers, list) or not all(isinstance(entry, dict) for entry in layers):
        raise ArchitectureError(f"{source} is corrupt (its config has no layer list)")
    if config["class_name"] != "Sequential":
        layers = _functional_chain(layers, model_config, source)
    inputs = [entry for entry in layers if entry.get("class_name") == INPUT_CLASS]
    if len(inputs) > 1 or (inputs and layers[0] is not inputs[0]):
        raise ArchitectureError(f"{source}: the model has an input layer inside its chain")
    specs = [_layer(index, entry, source)
             for index, entry in enumerate(e for e in layers if e.get("class_name") != INPUT_CLASS)]
    input_shape = _input_shape(inputs[0] if inputs else None, model_config, source)
    return Architecture(input_shape=input_shape, layers=tuple(specs), name=str(model_config.get("name") or "keras"),
                        source=source)

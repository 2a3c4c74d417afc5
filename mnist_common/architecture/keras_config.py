"""A Keras model's ``config.json`` read into an :class:`Architecture`, without Keras.

Reads what a ``.keras`` file's ``config.json`` holds: a ``Sequential``, or a ``Functional``
graph with one input and one output (each call of a layer, its ``inbound_nodes``, names the
layers it takes, as the description's ``inputs`` do; a layer called again is one layer, its
later calls nodes that share it). A model may hold other such models
(a ``Sequential`` block inside a Functional graph, a Functional block inside a
``Sequential``): their layers are read into the one graph, each taking what its model was
called on, and :func:`read_keras_config` says where each layer's weights are stored
(``sequential/layers/conv2d``: a nested model's own numbering, under its place in the
outer model's). Every layer must be one of
:data:`~mnist_common.architecture.layers.LAYER_TYPES`, from Keras itself, with settings the
bridge mirrors; anything else (a ``Lambda``, a ``ConvLSTM1D``, a custom class, a nested model
called twice or a layer called twice beside one, a second input or output) is refused in one line that
names the layer's index, name and class.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NamedTuple

from mnist_common.architecture.description import (DEFAULT_INPUT_NAME, INPUT_DTYPES, MAX_BATCH, MAX_LAYERS,
                                                   Architecture, ArchitectureError, SharedCall, auto_names, call_name,
                                                   keras_order)
from mnist_common.architecture.layers import KERAS_LAYERS, LAYER_TYPES, MAX_RANK, LayerError, Operation
from mnist_common.architecture.layers.base import DTYPE_POLICY_CLASSES
from mnist_common.architecture.layers.operations import ELLIPSIS, TENSOR, slice_text
from mnist_common.errors import escaped

MODEL_CLASSES = ("Sequential", "Functional", "Model")
# Where Keras' own model classes serialise from (a nested Functional names its module)
KERAS_MODEL_MODULES = ("keras", "keras.models", "keras.src.models.functional", "keras.src.models.sequential",
                       "keras.src.models.model")
MAX_NESTING = 8  # models inside models inside ...: deeper is a crafted file, refused before it is walked
INPUT_CLASS = "InputLayer"
# The names Keras gives an input its author did not name: Keras 3's ``input_layer_1``, Keras 2's ``input_1`` and,
# in a Sequential, ``<first layer>_input``
KERAS_INPUT_NAME = re.compile(r"input(_layer)?(_\d+)?|.+_input(_\d+)?")
KERAS_TENSOR = "__keras_tensor__"
SLICE, ELLIPSIS_OBJECT = "__slice__", "__ellipsis__"  # how Keras serialises a slice and ... in an x[...] key
KERAS_LAYER_MODULES = ("keras.layers", "keras")
# Call arguments a functional chain may record that change nothing the bridge mirrors: Keras' fit, predict and
# evaluate pass their own training flag to every layer, which replaces a recorded ``training`` (even
# ``base(x, training=False)``'s), so a recorded one is read as a plain call.
HARMLESS_CALL_KWARGS = {"training", "mask"}
# Keras operations (``x + y``, ``keras.ops.mean``) by where Keras 3 serialises them from and their class.
OPERATIONS = {(cls.KERAS_MODULE, cls.keras_class_name()): cls for cls in LAYER_TYPES.values()
              if issubclass(cls, Operation)}


def _is_operation(entry: dict[str, Any]) -> bool:
    """A graph entry of a Keras operation, not a layer (Keras 3 serialises them from its ``keras.src.ops`` modules)."""
    return str(entry.get("module")).startswith("keras.src.ops.")


def _is_tensor(value: Any) -> bool:
    return isinstance(value, dict) and value.get("class_name") == KERAS_TENSOR


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _index_item(value: Any) -> Any:
    """One item of an ``x[...]`` key as Keras serialises it (a slice and ``...`` as objects of their own), in the
    description's form (:func:`~mnist_common.architecture.layers.operations.index_item` checks it); None where the
    value is no such item."""
    if isinstance(value, dict) and value.get("class_name") == SLICE:
        config = value.get("config") if isinstance(value.get("config"), dict) else {}
        return slice_text(*(config.get(part) for part in ("start", "stop", "step")))
    if isinstance(value, dict) and value.get("class_name") == ELLIPSIS_OBJECT:
        return ELLIPSIS
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _index_key(value: Any) -> Any:
    """An ``x[...]`` key (a list of items, or one item) in the description's form; None where it is no key."""
    if isinstance(value, (list, tuple)):
        items = [_index_item(v) for v in value]
        return None if any(item is None and v is not None for item, v in zip(items, value)) else items
    return _index_item(value) if isinstance(value, dict) else None


def _operation_arguments(arguments: list[Any]) -> list[Any] | None:
    """An operation's positional arguments with each tensor :data:`TENSOR` (a list of tensors, as
    ``ops.concatenate`` takes, a list of them; an ``x[...]`` key in the description's form); None where one is
    neither a tensor, a number, such a list nor such a key."""
    pattern: list[Any] = []
    for value in arguments:
        if _is_tensor(value):
            pattern.append(TENSOR)
        elif _is_number(value):
            pattern.append(value)
        elif isinstance(value, (list, tuple)) and value and all(_is_tensor(v) for v in value):
            pattern.append([TENSOR] * len(value))
        elif _index_key(value) is not None:
            pattern.append(_index_key(value))
        else:
            return None
    return pattern


def _describe(entry: dict[str, Any]) -> tuple[str, str]:
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    return str(entry.get("name") or config.get("name") or "?"), str(entry.get("class_name") or "?")


def _input_shape(entry: dict[str, Any] | None, model_config: dict[str, Any], source: str) -> tuple[int | None, ...]:
    config = (entry or {}).get("config") or {}
    shape = config.get("batch_shape") or config.get("batch_input_shape") or model_config.get("build_input_shape")
    if not isinstance(shape, (list, tuple)) or len(shape) < 2:
        raise ArchitectureError(f"{source}: the model's input shape is not recorded (build the model, or "
                                f"start it with keras.Input(shape=...))")
    dims = shape[1:]
    if not 1 <= len(dims) <= MAX_RANK or not all(d is None or (isinstance(d, int) and not isinstance(d, bool)
                                                                and d >= 1) for d in dims) or dims[-1] is None:
        raise ArchitectureError(f"{source}: the model takes inputs of shape {tuple(dims)}; only (height, width, "
                                f"channels), (height, width) or (features,) inputs are supported, the channels or "
                                f"features fixed (a height, width or length may be None: it is built at MNIST's 28, "
                                f"or as many steps as hold its 784 pixels)")
    return tuple(dims)


def _input_batch_size(entry: dict[str, Any] | None, model_config: dict[str, Any], source: str) -> int | None:
    """The batch the model's input declares (``keras.Input(..., batch_size=32)``, or the first batch a Sequential was
    built by), None where it is open: the first size of the shape :func:`_input_shape` reads."""
    config = (entry or {}).get("config") or {}
    shape = config.get("batch_shape") or config.get("batch_input_shape") or model_config.get("build_input_shape")
    size = shape[0] if isinstance(shape, (list, tuple)) and shape else None
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_BATCH):
        raise ArchitectureError(f"{source}: the model's input declares a batch of {escaped(repr(size))[:100]}; a "
                                f"batch is a whole number from 1 to {MAX_BATCH:,}, or None (any)")
    return size


def _input_dtype(entry: dict[str, Any] | None, source: str) -> str:
    """The dtype Keras casts the input to: float32, or uint8 (a model fed raw bytes, rescaled inside); a sparse or
    ragged input (which Keras keeps so, and the bridge would write back dense) is refused."""
    config = (entry or {}).get("config") or {}
    for kind in ("sparse", "ragged"):
        if config.get(kind):
            raise ArchitectureError(f"{source}: the model's input is {kind} (keras.Input({kind}=True)); only dense "
                                    f"inputs are supported")
    if config.get("input_tensor") is not None:  # Keras' get_config never writes it, and its loader refuses it
        raise ArchitectureError(f"{source}: the model's InputLayer holds an input_tensor, which Keras cannot load "
                                f"from a file (it writes none); only an input of a shape and dtype is supported")
    dtype = config.get("dtype")
    if isinstance(dtype, dict):  # a serialised policy, whose name Keras casts the input to (int32, float16, ...)
        settings = dtype.get("config")
        dtype = settings.get("name") if dtype.get("class_name") in DTYPE_POLICY_CLASSES and isinstance(
            settings, dict) else f"a {escaped(str(dtype.get('class_name')))[:100]} policy"
    if dtype not in (None, *INPUT_DTYPES):
        raise ArchitectureError(f"{source}: the model's input is {escaped(str(dtype))[:100]}; only "
                                f"{' and '.join(INPUT_DTYPES)} inputs are supported")
    return dtype or INPUT_DTYPES[0]


def _endpoint(model_config: dict[str, Any], key: str, names: set[str], source: str,
              models: frozenset[str] = frozenset()) -> str:
    """The one layer named by ``input_layers`` or ``output_layers`` (``[name, 0, 0]`` or ``[[name, 0, 0]]``).

    A nested Functional model that gives the outputs is named with the index of its call among all its calls, its
    own construction included (``[name, 1, 0]``); ``models`` are those names (each called once here)."""
    spec = model_config.get(key)
    what = key.split("_")[0]
    if isinstance(spec, list) and spec and isinstance(spec[0], list):
        if len(spec) != 1:
            raise ArchitectureError(f"{source}: the model has {len(spec)} {what}s; only single-input, "
                                    f"single-output models are supported")
        spec = spec[0]
    if isinstance(spec, dict) and len(spec) == 1:  # Keras 3's record of a model built on a dict of one input (or
        spec = next(iter(spec.values()))  # output): that tensor, which Keras also takes alone
    if isinstance(spec, dict):  # Keras 3 writes a dict when the model was called on a dict of inputs
        raise ArchitectureError(f"{source}: the model's {what}s are a mapping of {len(spec)}; only single-input, "
                                f"single-output models are supported")
    if isinstance(spec, list) and len(spec) == 3 and spec[0] in models and spec[2] != 0:
        raise ArchitectureError(f"{source}: the model's output is output {spec[2]} of the nested model {spec[0]}; "
                                f"only nested models of one output are supported")
    node = spec[1:] if isinstance(spec, list) and spec and spec[0] in models else None
    if node is not None and len(node) == 2 and isinstance(node[0], int) and node[0] >= 0 and node[1] == 0:
        return spec[0]
    if isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str) and isinstance(spec[1], int) \
            and spec[1] > 0 and spec[2] == 0 and call_name(spec[0], spec[1]) in names:  # a shared layer's later call
        return call_name(spec[0], spec[1])
    if not isinstance(spec, list) or not spec or spec[0] not in names or spec[1:] not in ([], [0, 0]):
        raise ArchitectureError(f"{source}: the model's {key} are not readable")
    return spec[0]


def _endpoint_key(model_config: dict[str, Any], key: str) -> str | int | None:
    """How a Functional model was given its one input or output (``key``: ``input_layers`` or ``output_layers``):
    :attr:`Architecture.input_key`'s None (the tensor, ``[name, 0, 0]``), a dict's key (``{key: [name, 0, 0]}``) or
    0 (a list of one, ``[[name, 0, 0]]``)."""
    spec = model_config.get(key)
    if isinstance(spec, dict) and len(spec) == 1:
        return str(next(iter(spec)))
    return 0 if isinstance(spec, list) and len(spec) == 1 and isinstance(spec[0], list) else None


def _calls(entry: dict[str, Any], source: str, shared: bool) -> list[tuple[list[str], tuple[str, ...]]]:
    """Each call of ``entry``'s layer (:func:`_called_on`), in Keras' order of its nodes; with ``shared``, a layer
    may be called more than once (one layer, its weights shared by its calls), else only once."""
    name, cls = _describe(entry)
    nodes = entry.get("inbound_nodes") or []
    if not nodes or not all(isinstance(node, dict) for node in nodes):
        calls = "never called" if not nodes else "recorded in an old format"
        raise ArchitectureError(f"{source}: {name} ({cls}) is {calls}; only layers called on other layers' outputs "
                                f"are supported")
    if len(nodes) > 1 and (_is_operation(entry) or cls in MODEL_CLASSES or not shared):
        what = ("a Keras operation called more than once" if _is_operation(entry) else
                "a nested model called more than once" if cls in MODEL_CLASSES else
                "a layer called more than once in a model that holds another model (or in a nested model)")
        raise ArchitectureError(f"{source}: {name} ({cls}) is called {len(nodes)} times; {what} is not supported "
                                f"(a layer of a Functional model that holds no other model may be)")
    settings = getattr(LAYER_TYPES.get(cls), "CALL_SETTINGS", ())
    differ = [key for key in settings if len({repr((node.get("kwargs") or {}).get(key)) for node in nodes}) > 1]
    if differ:  # read from its first call (use_causal_mask): one layer, one setting
        raise ArchitectureError(f"{source}: {name} ({cls}) is called with different {', '.join(differ)}; a shared "
                                f"layer's calls must agree in them")
    return [_called_on(entry, node, source) for node in nodes]


def _called_on(entry: dict[str, Any], node: dict[str, Any], source: str) -> tuple[list[str], tuple[str, ...]]:
    """The names of the layers whose outputs ``entry``'s layer is called on in its call ``node``, in order (the
    later calls of a shared layer named as :func:`call_name` names them), and where a call by keyword has Keras
    walk them in another order, that order (:attr:`Node.walk`; else empty)."""
    name, cls = _describe(entry)
    arguments, kwargs = node.get("args") or [], node.get("kwargs") or {}
    if not isinstance(arguments, (list, tuple)) or not isinstance(kwargs, dict):  # a crafted file's
        raise ArchitectureError(f"{source}: {name} ({cls}) is corrupt: its call's arguments are not a list")
    if not arguments and "inputs" in kwargs and not _is_operation(entry):  # layer(inputs=x): its first argument
        arguments, kwargs = [kwargs["inputs"]], {k: v for k, v in kwargs.items() if k != "inputs"}
    extra = _unread_keywords(LAYER_TYPES.get(cls), kwargs)
    if _is_operation(entry):  # numbers among its arguments, each where the code had it (1.0 - x)
        # an unsupported one named first, whatever its arguments
        keywords = _operation_class(f"{source}: {name} ({cls})", entry).KEYWORDS
        extra = [k for k in extra if k not in keywords]
        pattern = _operation_arguments(arguments)
        tensors = [] if pattern is None else [v for a in arguments for v in (a if isinstance(a, (list, tuple))
                                                                              else [a]) if _is_tensor(v)]
        if extra or pattern is None or not tensors:
            constant = next((_constant_shape(a) for a in arguments if _constant_shape(a)), None)
            detail = (f"with {', '.join(extra)}" if extra else
                      f"on a constant array of shape {constant} (a tensor the code computed while it built the model, "
                      f"such as a position embedding of ops.arange: not a layer's output, and it never trains)"
                      if constant else "on arguments other than tensors and numbers")
            raise ArchitectureError(f"{source}: {name} ({cls}) is called {detail}; only operations on the outputs "
                                    f"of layers, and numbers, are supported")
    elif getattr(LAYER_TYPES.get(cls), "CALL_TENSORS", ()):  # mha(query, value, key=...)
        tensors, extra = _call_tensors(LAYER_TYPES[cls], arguments, kwargs)
        if extra or not tensors or not all(_is_tensor(t) for t in tensors):
            detail = f"with {', '.join(extra)}" if extra else "on arguments that are not layer outputs"
            raise ArchitectureError(f"{source}: {name} ({cls}) is called {detail}; only its "
                                    f"{', '.join(LAYER_TYPES[cls].CALL_TENSORS)} as outputs of other layers, the "
                                    f"other arguments at their defaults, are supported")
    else:
        tensors = arguments[0] if len(arguments) == 1 and isinstance(arguments[0], list) else arguments
        if extra or len(arguments) != 1 or not tensors or not all(_is_tensor(t) for t in tensors):
            detail = f"with {', '.join(extra)}" if extra else "on arguments that are not layer outputs"
            given = " and nothing else (other arguments at their defaults)" if extra else ""
            raise ArchitectureError(f"{source}: {name} ({cls}) is called {detail}; only layers called on the "
                                    f"outputs of other layers{given} are supported")
    sources = []
    for tensor in tensors:
        history = (tensor.get("config") or {}).get("keras_history")
        if isinstance(history, list) and len(history) == 3 and history[1] == 0 and isinstance(history[2], int) \
                and history[2] > 0:
            raise ArchitectureError(f"{source}: {name} ({cls}) takes output {history[2]} of {history[0]}, which "
                                    f"gives several; only single-output layers and models are supported")
        if not isinstance(history, list) or len(history) != 3 or history[2] != 0 or isinstance(history[1], bool) \
                or not isinstance(history[1], int) or history[1] < 0:
            raise ArchitectureError(f"{source}: {name} ({cls}) takes a tensor this bridge cannot trace "
                                    f"({history!r}); only single-output layers are supported")
        sources.append(call_name(str(history[0]), history[1]))
    named = getattr(LAYER_TYPES.get(cls), "CALL_TENSORS", ())
    if not named or _is_operation(entry):
        return sources, ()
    given = [call_name(*_history(kwargs[key])) for key in sorted(kwargs) if key in named and kwargs[key] is not None]
    walk = sources[:len(sources) - len(given)] + given  # Keras flattens a call's (args, kwargs), keys sorted
    return sources, tuple(walk) if walk != sources else ()


def _history(tensor: dict[str, Any]) -> tuple[str, int]:
    """(the layer, its call) a serialised tensor comes from (checked by :func:`_called_on` first)."""
    history = tensor["config"]["keras_history"]
    return str(history[0]), history[1]


def _constant_shape(argument: Any) -> str | None:
    """The shape of an array a call's argument holds as a constant (Keras' ``__tensor__`` or ``__numpy__``), as
    text; None for anything else."""
    if not isinstance(argument, dict) or argument.get("class_name") not in ("__tensor__", "__numpy__"):
        return None
    value = (argument.get("config") or {}).get("value") if isinstance(argument.get("config"), dict) else None
    shape = []
    while isinstance(value, list) and len(shape) < 8:
        shape.append(len(value))
        value = value[0] if value else None
    return "x".join(map(str, shape)) or "a scalar"


def _unread_keywords(layer_class: type | None, kwargs: dict[str, Any]) -> list[str]:
    """The keywords of a call this bridge does not read: set, not harmless (``training``), not at the layer's
    :attr:`Layer.CALL_DEFAULTS` (``return_attention_scores=False``), not one of its :attr:`Layer.CALL_SETTINGS`
    (``use_causal_mask``)."""
    defaults, settings = getattr(layer_class, "CALL_DEFAULTS", {}), getattr(layer_class, "CALL_SETTINGS", ())
    return sorted(key for key, value in kwargs.items() if key not in HARMLESS_CALL_KWARGS and value is not None
                  and not (key in defaults and value == defaults[key]) and key not in settings)


def _call_tensors(layer_class: type, arguments: list[Any], kwargs: dict[str, Any]) -> tuple[list[Any], list[str]]:
    """(the tensors of a call that takes them by position or keyword, :attr:`Layer.CALL_TENSORS` in order; the
    keywords it sets that this bridge does not take: not a tensor's, not harmless, not at the layer's
    :attr:`Layer.CALL_DEFAULTS`)."""
    names = layer_class.CALL_TENSORS
    tensors = list(arguments[:len(names)])
    given = [name for name in names[len(tensors):] if kwargs.get(name) is not None]
    if given != list(names[len(tensors):len(tensors) + len(given)]):  # a key without a value: not Keras' call
        return [], given
    tensors += [kwargs[name] for name in given]
    extra = [key for key in _unread_keywords(layer_class, kwargs) if key not in given]
    if len(arguments) > len(names):
        extra.append(f"{len(arguments)} positional arguments")
    return tensors, extra


GraphCall = tuple[dict[str, Any], list[str], tuple[str, ...], int]  # (entry, its inputs, Node.walk, which call)


def _functional_graph(entries: list[dict[str, Any]], model_config: dict[str, Any], source: str,
                      shared: bool = False) -> tuple[dict[str, Any], list[GraphCall]]:
    """(the input layer's entry, [(layer entry, names of the layers a call of it takes, Node.walk, which call of
    the layer: 0 for its first)]); with ``shared``, a layer may be called more than once (:func:`_calls`)."""
    counts = [len(nodes) if isinstance(nodes := entry.get("inbound_nodes"), list) and nodes else 1 for entry in entries]
    if sum(counts) > MAX_LAYERS + 1:  # a crafted file's million calls of one layer, refused before they are read
        raise ArchitectureError(f"{source}: the model's layers are called {sum(counts) - 1:,} times, more than this "
                                f"bridge builds ({MAX_LAYERS:,})")
    names = {call_name(str(entry.get("name")), k) for entry, count in zip(entries, counts) for k in range(count)}
    models = frozenset(str(entry.get("name")) for entry in entries if entry.get("class_name") in MODEL_CLASSES)
    start = _endpoint(model_config, "input_layers", names, source)
    output = _endpoint(model_config, "output_layers", names, source, models)
    inputs = [entry for entry in entries if entry.get("class_name") == INPUT_CLASS]
    if len(inputs) != 1:
        raise ArchitectureError(f"{source}: the model has {len(inputs)} input layers; only single-input models "
                                f"are supported")
    if inputs[0].get("name") != start:  # a crafted file: Keras' input_layers name its InputLayer
        raise ArchitectureError(f"{source}: the model's input_layers name {escaped(start)[:100]}, not its input layer "
                                f"{escaped(str(inputs[0].get('name')))[:100]}")
    layers = [entry for entry in entries if entry is not inputs[0]]
    for index, entry in enumerate(layers):  # an unsupported layer named before the operations Keras recorded for it
        if not _is_operation(entry) and _describe(entry)[1] not in (*LAYER_TYPES, *MODEL_CLASSES):  # Masking's
            _layer(index, entry, source)
    graph = [(entry, called, walk, k) for entry in layers
             for k, (called, walk) in enumerate(_calls(entry, source, shared))]
    consumers = {name for _, called, _, _ in graph for name in called}
    if output in consumers or output == start:
        raise ArchitectureError(f"{source}: the model's output {output} is not where its graph ends; only "
                                f"single-output models are supported")
    return inputs[0], graph


def _layer(index: int, entry: dict[str, Any], source: str):
    """One layer's description from its config entry; refusals name its index, name and class."""
    name, cls = _describe(entry)
    label = f"{source}: layer {index} ({name}, {cls})"
    if _is_operation(entry):
        return _operation(label, entry)
    layer_class = LAYER_TYPES.get(cls)
    if layer_class is None:
        reason = "holds Python code" if cls == "Lambda" else "is not a supported layer"
        raise ArchitectureError(f"{label} {reason} (supported: {', '.join(sorted(KERAS_LAYERS))})")
    if entry.get("module") not in KERAS_LAYER_MODULES or entry.get("registered_name") not in (None, cls):
        raise ArchitectureError(f"{label} is {entry.get('registered_name') or cls!r} from module "
                                f"{entry.get('module')!r}, not Keras' own layer; refusing it")
    config = entry.get("config", {})
    if not isinstance(config, dict):  # Keras cannot build the layer from it either
        raise ArchitectureError(f"{label} is corrupt: its config is a {type(config).__name__}, not a mapping")
    if layer_class.CALL_SETTINGS:  # mha(q, v, use_causal_mask=True): settings of its call
        call = (entry.get("inbound_nodes") or [{}])[0]
        keywords = call.get("kwargs") if isinstance(call, dict) and isinstance(call.get("kwargs"), dict) else {}
        config = {**config, **{key: keywords[key] for key in layer_class.CALL_SETTINGS if key in keywords}}
    return _described(label, lambda: layer_class.from_keras(config))


def _described(label: str, make: Callable[[], Any]) -> Any:
    """``make()``'s description; its refusal (or a setting the config lacks) as one line naming the layer."""
    try:
        return make()
    except LayerError as err:
        joined = f"{label} {err}" if str(err).startswith(("is ", "has ", "sets ", "computes ")) else f"{label}: {err}"
        raise ArchitectureError(joined) from None
    except TypeError as err:  # a config without a setting Keras requires (Dense's units): a corrupt or crafted file
        missing = re.findall(r"'(\w+)'", str(err)) if "missing" in str(err) else []
        what = f"its config lacks {', '.join(missing)}" if missing else \
            f"a setting's value is of no type it takes ({err})"
        raise ArchitectureError(f"{label} is corrupt: {what}") from None


def _operation_class(label: str, entry: dict[str, Any]) -> type[Operation]:
    """The description class of a Keras operation's graph entry; refused in one line where there is none."""
    operation_class = OPERATIONS.get((entry.get("module"), entry.get("class_name")))
    if operation_class is None or entry.get("registered_name") not in (None, entry.get("class_name")):
        supported = ", ".join(sorted(kind for kind, c in LAYER_TYPES.items() if issubclass(c, Operation)))
        raise ArchitectureError(f"{label} is the Keras operation {entry.get('class_name')!r} of module "
                                f"{entry.get('module')!r}, which is not supported (supported operations: {supported})")
    return operation_class


def _operation(label: str, entry: dict[str, Any]) -> Operation:
    """One Keras operation's description from its graph entry, the numbers of its call among its settings."""
    operation_class = _operation_class(label, entry)
    config = entry.get("config", {})
    if not isinstance(config, dict):
        raise ArchitectureError(f"{label} is corrupt: its config is a {type(config).__name__}, not a mapping")
    nodes = entry.get("inbound_nodes")
    call = nodes[0] if isinstance(nodes, list) and len(nodes) == 1 and isinstance(nodes[0], dict) else {}
    arguments = _operation_arguments(call["args"]) if isinstance(call.get("args"), (list, tuple)) else None
    if arguments is None:  # a Sequential's entries are not called in the file: Keras cannot hold an operation there
        raise ArchitectureError(f"{label} is an operation outside a Functional graph's calls; Keras makes none such")
    kwargs = call.get("kwargs") if isinstance(call.get("kwargs"), dict) else {}
    keywords = {key: kwargs[key] for key in operation_class.KEYWORDS if kwargs.get(key) is not None}
    return _described(label, lambda: operation_class.from_keras_call({**config, **keywords}, arguments))


def _model_parts(config: dict[str, Any], source: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A model entry's ``config`` and its list of layer entries, checked to be those."""
    model_config = config.get("config") if isinstance(config.get("config"), dict) else {}
    entries = model_config.get("layers")
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise ArchitectureError(f"{source} is corrupt (its config has no layer list)")
    if len(entries) > MAX_LAYERS + 1:  # the input layer besides
        raise ArchitectureError(f"{source}: the model lists {len(entries):,} layers, more than this bridge builds "
                                f"({MAX_LAYERS:,})")
    return model_config, entries


def _sequential_entries(entries: list[dict[str, Any]], source: str) -> tuple[dict[str, Any] | None, list]:
    """A Sequential's input layer entry (or None) and its other entries, each taking the one before."""
    inputs = [entry for entry in entries if entry.get("class_name") == INPUT_CLASS]
    if len(inputs) > 1 or (inputs and entries[0] is not inputs[0]):
        raise ArchitectureError(f"{source}: the model has an input layer inside its chain")
    input_entry = inputs[0] if inputs else None
    return input_entry, [(entry, None, (), 0) for entry in entries if entry is not input_entry]


class KerasGraph(NamedTuple):
    """A Keras model config read into one graph."""

    architecture: Architecture
    storage: dict[str, str]  # layer name -> where its weights are, under ``layers/`` in model.weights.h5
    keras_paths: dict[str, tuple[str, ...]]  # a nested model's layer -> (the models holding it, outermost first, ...,
    #                                           its name in its own model), which the graph may have had to change


def architecture_from_keras_config(config: Any, source: str = "model") -> Architecture:
    """The :class:`Architecture` of a Keras model config; :class:`ArchitectureError` for anything unsupported."""
    return read_keras_config(config, source).architecture


def read_keras_config(config: Any, source: str = "model") -> KerasGraph:
    """The :class:`Architecture` of a Keras model config, where each layer's weights are stored, and where a nested
    model's layers are in the Keras model; :class:`ArchitectureError` for anything unsupported."""
    if not isinstance(config, dict) or config.get("class_name") not in MODEL_CLASSES:
        kind = config.get("class_name") if isinstance(config, dict) else type(config).__name__
        raise ArchitectureError(f"{source} holds a {kind}, not a Keras Sequential or Functional model")
    _check_shared_layers(config, source)
    model_config, entries = _model_parts(config, source)
    if any(entry.get("class_name") in MODEL_CLASSES for entry in entries):
        return _NestedModels(source).read(config, model_config)
    input_name = None
    if config["class_name"] == "Sequential":
        input_entry, graph = _sequential_entries(entries, source)
    else:
        input_entry, graph = _functional_graph(entries, model_config, source, shared=True)
        input_name = str(input_entry.get("name"))
    layers = [(_layer(index, entry, source) if not k else SharedCall(_describe(entry)[0]), called, walk)
              for index, (entry, called, walk, k) in enumerate(graph)]
    input_shape = _input_shape(input_entry, model_config, source)
    name = str(model_config.get("name") or "keras")
    if input_name is None:  # a Sequential's: the description's default, unless a layer is called that
        input_name = _sequential_input_name(input_entry, {layer.name for layer, *_ in layers})
    architecture = Architecture.from_layers(input_shape, layers, name=name, source=source, input_name=input_name,
                                            functional=config["class_name"] != "Sequential",
                                            input_dtype=_input_dtype(input_entry, source),
                                            input_batch_size=_input_batch_size(input_entry, model_config, source),
                                            **_endpoint_keys(model_config))
    return KerasGraph(architecture, dict(architecture.storage_names), {})


def _endpoint_keys(model_config: dict[str, Any]) -> dict[str, str | int | None]:
    """``input_key`` and ``output_key`` of the model (:func:`_endpoint_key`)."""
    return {"input_key": _endpoint_key(model_config, "input_layers"),
            "output_key": _endpoint_key(model_config, "output_layers")}


def _check_shared_layers(config: dict[str, Any], source: str) -> None:
    """Refuse layer entries that Keras loads as one object: it deserialises an entry whose ``shared_object_id`` it
    has met before as the object it made then (how it writes a layer used in two models), so two entries of one id
    are one layer written in two places, which this bridge does not convert (a layer called again in one model is
    one entry of several calls, which it does). The torch side read each entry as a
    layer of its own, with weights Keras never loads (a crafted file). Ids on other objects (each layer's dtype
    policy, a regularizer two layers were given) are values, not layers: those are read as Keras reads them."""
    carriers: dict[Any, list[dict[str, Any]]] = {}
    pending: list[Any] = [config]
    while pending:  # iterative: config.json's depth is bounded by the JSON reader, not by this walk
        value = pending.pop()
        if isinstance(value, dict):
            if "shared_object_id" in value and isinstance(value["shared_object_id"], (int, str)):
                carriers.setdefault(value["shared_object_id"], []).append(value)
            pending.extend(value.values())
        elif isinstance(value, list):
            pending.extend(value)
    layer_kinds = (*LAYER_TYPES, *MODEL_CLASSES, INPUT_CLASS)
    for entries in carriers.values():
        if len(entries) > 1 and any(entry.get("class_name") in layer_kinds for entry in entries):
            names = sorted(_describe(entry)[0] for entry in entries)
            first, second = (escaped(name)[:100] for name in names[:2])
            raise ArchitectureError(f"{source}: entries {first} and {second} are one object to Keras (one "
                                    f"shared_object_id), one layer written in two places; a layer called more than "
                                    f"once is supported as Keras writes it in one model, one entry of several calls")


class _Call:
    """A layer entry of one model's graph, as :func:`keras_order` sorts them."""

    def __init__(self, entry: dict[str, Any], inputs: list[str], walk: tuple[str, ...] = ()) -> None:
        self.entry, self.name, self.inputs, self.walk = entry, _describe(entry)[0], tuple(inputs), walk


class _NestedModels:
    """A model holding models, read into one graph: each nested model's layers take what it was called on, and
    the layers that took the nested model take its output layer. ``storage`` follows Keras' saving: each model
    numbers its own ``layers`` by class, and a nested model's weights sit under its place in its parent's.

    Keras names layers per model, so two models may each have a ``conv`` (one block built twice by a function that
    names its layers): in the one graph, a name met again is prefixed with its model's (``block_2_conv``, then
    ``_1``, ``_2``, ... if that is taken too), and ``keras_paths`` keeps where each nested layer is in Keras."""

    PLACEHOLDER = "\0input"  # the outermost input, named once every layer's name is known

    def __init__(self, source: str) -> None:
        self.source = source
        self.layers: list[tuple[Any, list[str], tuple[str, ...]]] = []  # (layer, inputs, Node.walk)
        self.storage: dict[str, str] = {}
        self.keras_paths: dict[str, tuple[str, ...]] = {}
        self.declared: list[tuple[str, str, Any]] = []  # (nested model, tensor it takes, its input layer's shape)
        self.top_input: dict[str, Any] | None = None  # the outermost model's input layer entry (None: none listed)

    def read(self, config: dict[str, Any], model_config: dict[str, Any]) -> KerasGraph:
        name = str(model_config.get("name") or "keras")
        self._expand(config, [self.PLACEHOLDER], "", (), name)
        input_entry = self.top_input
        if config["class_name"] == "Sequential":
            input_name = _sequential_input_name(input_entry, set(self.storage))
        else:
            input_name = str(input_entry.get("name"))
            del self.storage[input_name]  # reserved by _expand while the layers were named
        layers = [(layer, *([input_name if i == self.PLACEHOLDER else i for i in names] for names in (inputs, walk)))
                  for layer, inputs, walk in self.layers]
        architecture = Architecture.from_layers(_input_shape(input_entry, model_config, self.source), layers,
                                                name=name, source=self.source, input_name=input_name,
                                                functional=config["class_name"] != "Sequential",
                                                input_dtype=_input_dtype(input_entry, self.source),
                                                input_batch_size=_input_batch_size(input_entry, model_config,
                                                                                   self.source),
                                                **_endpoint_keys(model_config))
        shapes = architecture.shapes
        for label, tensor, declared in self.declared:  # Keras would refuse to build it; so does the torch path
            given = shapes[input_name if tensor == self.PLACEHOLDER else tensor]
            if declared is not None and (len(declared) != len(given) or any(
                    d is not None and d != g for d, g in zip(declared, given))):  # None: any size, as Keras takes it
                raise ArchitectureError(f"{label} takes inputs of shape {tuple(declared)} but is called on "
                                        f"{tuple(given)}")
        return KerasGraph(architecture, self.storage, self.keras_paths)

    def _free_name(self, name: str, model: str) -> str:
        """``name``, or where another layer has it, ``<model>_<name>`` (then ``_1``, ``_2``, ...)."""
        if name not in self.storage and name != self.PLACEHOLDER:
            return name
        base = f"{model}_{name}"
        return next(candidate for candidate in (base, *(f"{base}_{k}" for k in range(1, len(self.storage) + 2)))
                    if candidate not in self.storage)

    def _expand(self, config: dict[str, Any], sources: list[str], prefix: str, models: tuple[str, ...],
                label: str) -> str:
        """Append the layers of the model ``config`` (held by ``models``, outermost first) called on ``sources``;
        the name of its output layer."""
        depth = len(models)
        where = self.source if depth == 0 else f"{self.source}, nested model {label}"
        model_config, entries = _model_parts(config, where)
        if config["class_name"] == "Sequential":
            input_entry, steps = _sequential_entries(entries, where)
            order = [_Call(entry, []) for entry, *_ in steps]
            renamed: dict[str, str] = {}
            output = None
        else:
            input_entry, steps = _functional_graph(entries, model_config, where)
            input_name = str(input_entry.get("name"))
            calls = [_Call(entry, called, walk) for entry, called, walk, _ in steps]
            level = {input_name, *(call.name for call in calls)}
            for index, call in enumerate(calls):
                strangers = [name for name in call.inputs if name not in level]
                if strangers:  # a layer of another model: Keras keeps each model's graph to itself
                    raise ArchitectureError(f"{where}: layer {index} ({call.name}) takes {strangers[0]!r}, which is "
                                            f"not a layer of its model")
            output = _endpoint(model_config, "output_layers", {call.name for call in calls}, where,
                               frozenset(call.name for call in calls if call.entry.get("class_name") in MODEL_CLASSES))
            order = keras_order(calls, input_name, output)  # the order Keras gives model.layers when it loads it
            renamed = {input_name: sources[0]}
            if not depth:  # the outermost input's name is taken: a nested layer of that name is renamed
                self.storage[input_name] = ""
        if not depth:
            self.top_input = input_entry
        if not steps:  # Keras cannot call a model of no layers
            raise ArchitectureError(f"{where}: the model has no layers")
        if depth:
            dtype = _input_dtype(input_entry, where)
            if dtype != INPUT_DTYPES[0]:  # the flattened graph has one input: the outermost model's
                raise ArchitectureError(f"{where}: its input is {dtype}; bytes are read by the outermost model's "
                                        f"input only; give the nested model a float32 input")
            shape = ((input_entry or {}).get("config") or {}).get("batch_shape")
            self.declared.append((where, sources[0], shape[1:] if isinstance(shape, (list, tuple)) and shape else None))
        layers = [call for call in order if not _is_operation(call.entry)]  # Keras' model.layers: not operations
        stored = dict(zip((id(call.entry) for call in layers),
                          auto_names([str(call.entry.get("class_name")) for call in layers], ())))
        previous = sources[0]
        for index, (entry, called, walk, _) in enumerate(steps):
            inputs = [previous] if called is None else [renamed.get(c, c) for c in called]
            walk = tuple(renamed.get(c, c) for c in walk)
            path = f"{prefix}{stored.get(id(entry), '')}"  # an operation has no weights stored
            name, cls = _describe(entry)
            if cls in MODEL_CLASSES:
                previous = self._nested(index, entry, inputs, f"{path}/layers/", models, where)
            else:
                layer = _layer(index, entry, where)
                if len(self.layers) >= MAX_LAYERS:
                    raise ArchitectureError(f"{self.source}: the model and the models it holds have more layers "
                                            f"than this bridge builds ({MAX_LAYERS:,})")
                own = layer.name
                layer = layer.renamed(self._free_name(own, label))
                self.layers.append((layer, inputs, walk))
                self.storage[layer.name] = path
                if models or layer.name != own:  # where Keras has it: in a nested model, or renamed here
                    self.keras_paths[layer.name] = (*models, own)
                previous = layer.name
            renamed[name] = previous
        return previous if output is None else renamed[output]

    def _nested(self, index: int, entry: dict[str, Any], inputs: list[str], prefix: str, models: tuple[str, ...],
                where: str) -> str:
        name, cls = _describe(entry)
        label = f"{where}: layer {index} ({name}, {cls})"
        if entry.get("module") not in KERAS_MODEL_MODULES or entry.get("registered_name") not in (None, cls):
            raise ArchitectureError(f"{label} is {entry.get('registered_name') or cls!r} from module "
                                    f"{entry.get('module')!r}, not Keras' own model class; refusing it")
        if len(models) + 1 > MAX_NESTING:
            raise ArchitectureError(f"{label} nests models more than {MAX_NESTING} deep; refusing it")
        if len(inputs) != 1:
            raise ArchitectureError(f"{label} is called on {len(inputs)} tensors; only nested models of one input "
                                    f"are supported")
        # A nested model's own ``trainable`` is not read: Keras does not read it either when it loads the file (each of
        # its layers' own flag says whether it trains, and ``model.trainable = False`` wrote False into every one).
        return self._expand(entry, inputs, prefix, (*models, name), name)


def _sequential_input_name(input_entry: dict[str, Any] | None, taken: set[str | None]) -> str:
    """The name its author gave a Sequential's input (``keras.Input(shape, name="pixels")``), which the model
    written back keeps; else ``input``, which a chain's description leaves unsaid (for a name Keras gave it,
    ``input_layer_1``, Keras 2's ``input_1`` or ``conv2d_input``, or a layer's); where a layer has that name, the
    input layer's own, else ``input_1``, ``input_2``, ..."""
    config = (input_entry or {}).get("config")
    own = config.get("name") if isinstance(config, dict) else None
    given = isinstance(own, str) and own and own not in taken
    if given and not KERAS_INPUT_NAME.fullmatch(own):
        return own
    if DEFAULT_INPUT_NAME not in taken:
        return DEFAULT_INPUT_NAME
    if given:
        return own
    return next(f"{DEFAULT_INPUT_NAME}_{k}" for k in range(1, len(taken) + 2) if f"{DEFAULT_INPUT_NAME}_{k}" not in taken)

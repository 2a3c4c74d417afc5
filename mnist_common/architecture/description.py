"""An architecture description: an input and a graph of supported Keras layers, each naming its inputs.

Both frameworks build from it (``lightning_mnist.models.network`` a torch module,
``keras_bridge.build`` a Keras model), checkpoints record it, and a ``.keras`` file is read
into it (:mod:`mnist_common.architecture.keras_config`). In YAML it reads like a Keras
Functional model: each layer may say which earlier layers it is called on (``inputs``,
Keras' ``inbound_nodes``); without it, a layer takes the one before it, so a chain reads
exactly as it always has::

    input_shape: [28, 28, 1]
    layers:
      - {type: Conv2D, name: stem, filters: 16, kernel_size: 3, padding: same, activation: relu}
      - {type: Conv2D, filters: 16, kernel_size: 3, padding: same}
      - {type: Add, inputs: [stem, conv2d]}      # a residual shortcut
      - {type: GlobalAveragePooling2D}
      - {type: Dense, units: 10, activation: softmax}

A layer called again (a siamese network's shared convolution, tied weights) is one layer with
one set of weights, as in Keras: each later call is an entry that names the layer it
``shares`` and its ``inputs`` (``{shares: stem, inputs: [crop]}``), named ``stem@1``,
``stem@2``, ... (``@k``: Keras' node index of the call, how a file's tensors name it).

A chain is a Keras ``Sequential``; ``functional: true`` makes it a Functional model, as a
``.keras`` file of ``keras.Model(inputs, outputs)`` has it (any other graph is one anyway).
The model's input is called ``input`` (or ``input_name``); a layer without a ``name`` gets
Keras' automatic one (``conv2d``, ``conv2d_1``, ...). The graph has one input and one
output, the only layer nothing else takes. Every shape is inferred (channels last, as
Keras has them) and checked when the description is made, so a layer that cannot work is
named before any framework is imported; so is a network too large to build.

The layers are kept in the order Keras gives them (``model.layers``: by depth, then by
traversal from the output; :func:`keras_order`), because a ``.keras`` file names each
layer's weights by its class and its place in that order (``layers/conv2d_1/vars/0``);
:attr:`Architecture.storage_names` are those names, and the torch modules carry them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

from mnist_common.architecture.layers import (FLOAT32, LAYER_TYPES, MAX_RANK, Layer, LayerError, Operation, Shape,
                                              applies_softmax, gives_one_distribution, is_identity,
                                              shape_text)
from mnist_common.documents import check_yaml_document, unique_json_keys
from mnist_common.errors import UserError, escaped, path_text

PRESETS_DIR = Path(__file__).with_name("presets")
# The names TensorFlow takes for the name scopes of a traced graph, which Keras opens for the model (a root
# scope) and each layer: Keras' predict, fit and export trace one; eager calls and torch take any name.
GRAPH_ROOT_NAME = re.compile(r"[A-Za-z0-9.][A-Za-z0-9_.>-]*")
GRAPH_LAYER_NAME = re.compile(r"[A-Za-z0-9_.>-]+")
CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")  # a NUL (which HDF5 refuses), a newline, an escape
# Output activations whose values are a probability per class, each on its own (multi-label), not one choice:
# log_sigmoid's are their logarithms (a softmax of them renormalises the sigmoids: no class's probability)
INDEPENDENT_PROBABILITIES = ("sigmoid", "hard_sigmoid", "sparse_sigmoid", "log_sigmoid")
# Layers whose outputs are in [0, 1] where all their inputs are: merges of the values themselves (an ensemble of
# sigmoid heads, halves concatenated), and poolings (maxima and means)
KEEPS_UNIT_INTERVAL = ("Average", "Maximum", "Minimum", "Multiply", "Concatenate", "ops.concatenate", "ops.maximum",
                       "ops.minimum", "ops.multiply", "ops.mean", "ops.max", "ops.min")
POOLINGS = ("Pooling1D", "Pooling2D")
# Layers that contract one tensor with another (a dot product): a softmax that meets another branch's values in one
# is an attention's weights, whatever its size (10 steps are as many values as the classes)
CONTRACTIONS = ("Dot", "ops.matmul")
DEFAULT_PRESET = "notebook"
MNIST_INPUT_SHAPE = (28, 28, 1)
MNIST_SIDE = 28
MNIST_PIXELS = MNIST_SIDE * MNIST_SIDE
# The layouts an MNIST model may take its 784 pixels in (:func:`is_mnist_layout`), in words
MNIST_LAYOUTS = "28x28x1 images or their 784 pixels in reading order (784, 28x28, 784x1: any steps x features of 784)"
MNIST_CLASSES = 10
DESCRIPTION_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_INPUT_NAME = "input"
# Version 2 descriptions may name each layer's inputs; version 1 (no ``format_version``) is a chain.
FORMAT_VERSION = 2
# Bounds that keep a description from asking for more memory than any machine this runs on has:
# weights (float32: 400 MB) and the activations of one example summed over every layer
# (float32: 80 MB, so 2.5 GB for a batch of 32 in training).
MAX_PARAMETERS = 100_000_000
MAX_ACTIVATIONS = 20_000_000
# The inputs one layer takes (a merge's): torch adds them one after the other, and one tensor listed 100,000 times in
# a 500 KB description held little and ran for minutes a batch (hostile round 13)
MAX_NODE_INPUTS = 64
MAX_LAYERS = 2_000  # Keras' largest applications have about 1,000; more is a crafted file, refused at once
MAX_DESCRIPTION_BYTES = 2 << 20  # a description file of MAX_LAYERS layers, each spelled out in full, is below 1 MB
CALL_SEPARATOR = "@"  # a shared layer's later calls: ``stem@1``, ``stem@2`` (:func:`call_name`)
CONFIG_KEYS = ("format_version", "name", "input_shape", "input_batch_size", "input_dtype", "input_name", "input_key",
               "output_key", "functional", "layers", "num_classes")
# What a model's input may be: float32, or uint8 (raw bytes, which the model rescales itself: ``keras.Input(...,
# dtype="uint8")`` then ``Rescaling(1 / 255)``); every command feeds such a model 0-255 pixels (:attr:`pixel_scale`)
INPUT_DTYPES = ("float32", "uint8")
MAX_BATCH = 2**31 - 1  # a batch size TensorFlow's int32 shapes hold (``input_batch_size``)
MAX_KEY_LENGTH = 256  # a model's input or output key (``keras.Model({"pixels": x}, ...)``): a name, not a document


class ArchitectureError(UserError):
    """A description that cannot be built; the message names the layer (index, name, type) at fault."""


def keras_snake_case(class_name: str) -> str:
    """Keras' ``to_snake_case``: ``MaxPooling2D`` -> ``max_pooling2d``, ``ReLU`` -> ``re_lu``."""
    name = re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", re.sub(r"\W+", "", class_name))
    return re.sub(r"([a-z])([A-Z])", r"\1_\2", name).lower()


def presets() -> dict[str, Path]:
    """Preset name -> its YAML file (``mnist_common/architecture/presets``)."""
    return {path.stem: path for path in sorted(PRESETS_DIR.glob("*.yaml"))}


def _check_key(key: Any, endpoint: str, source: str) -> None:
    """An ``input_key`` or ``output_key``: null, 0 (a list of one) or a dict's key, a non-empty string."""
    if key is None or (type(key) is int and key == 0) or (
            isinstance(key, str) and 0 < len(key) <= MAX_KEY_LENGTH and key.isprintable()):
        return
    raise ArchitectureError(f"{source}: {endpoint} must be null (the tensor itself), 0 (a list of one) or the key of a "
                            f"dict of one, a string of 1 to {MAX_KEY_LENGTH} printable characters; got "
                            f"{escaped(repr(key))[:100]}")


def _shape(value: Any, source: str) -> tuple[int | None, ...]:
    """The input shape as given: positive integers, None where Keras leaves a size open (not the last axis)."""
    if (not isinstance(value, (list, tuple)) or not 1 <= len(value) <= MAX_RANK
            or not all(v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1) for v in value)
            or value[-1] is None):
        raise ArchitectureError(f"{source}: input_shape must be [height, width, channels], [height, width] or "
                                f"[features], positive integers (channels last, as Keras has it; null for a height, "
                                f"width or length left open, never the channels or features), got {value!r}")
    return tuple(None if v is None else int(v) for v in value)


def is_mnist_layout(shape: Iterable[int | str | None]) -> bool:
    """Whether a network's input (no batch axis) holds MNIST's 784 pixels as the commands feed them: the 28x28x1
    image, or its pixels in reading order as a vector or a sequence of steps x features (28 rows of 28, 784 pixels
    of 1: pixel-by-pixel MNIST, 196 steps of 4), which is a reshape of the image."""
    shape = tuple(shape)
    sizes = all(isinstance(size, int) for size in shape)
    return shape == MNIST_INPUT_SHAPE or (sizes and len(shape) in (1, 2) and math.prod(shape) == MNIST_PIXELS)


def fixed_input_shape(shape: Iterable[int | None]) -> tuple[int, ...]:
    """The shape the bridge builds and checks a network at: a size Keras leaves open (``keras.Input(shape=(None,
    None, 1))``, a fully convolutional network; ``(None, 28)``, a recurrent one over rows) is MNIST's side, 28, the
    images every command feeds it; the steps of a sequence of fewer features (``(None, 1)``, pixel by pixel) are as
    many as make MNIST's 784 pixels. The Keras model written back keeps it open."""
    shape = tuple(shape)
    given = math.prod(size for size in shape if size is not None)
    if len(shape) == 2 and shape.count(None) == 1 and MNIST_PIXELS % given == 0:
        return tuple(MNIST_PIXELS // given if size is None else size for size in shape)
    return tuple(MNIST_SIDE if size is None else size for size in shape)


def held_values(layer: Layer, output: Shape, *inputs: Shape) -> int:
    """The values one example holds in ``layer``: its output, and what it computes on the way (an attention's
    scores)."""
    return math.prod(output) + layer.working_values(*inputs)


def layer_label(index: int, layer: Layer | dict[str, Any]) -> str:
    """How refusals name a layer: ``layer 3 (conv2d_1, Conv2D)``; index 0 is the first after the input."""
    if isinstance(layer, Layer):
        name, kind = layer.name, layer.type
    else:
        name, kind = layer.get("name"), layer.get("type") or layer.get("class_name")
    return f"layer {index} ({name}, {kind})" if name else f"layer {index} ({kind})"


def auto_names(kinds: list[str], taken: Iterable[str]) -> Iterable[str]:
    """Keras' automatic layer names for layers of ``kinds`` in order, skipping names already ``taken``."""
    used, counts = set(taken), {}
    for kind in kinds:
        base = keras_snake_case(kind)
        while True:
            counts[base] = counts.get(base, -1) + 1
            name = base if counts[base] == 0 else f"{base}_{counts[base]}"
            if name not in used:
                used.add(name)
                yield name
                break


class SharedCall(NamedTuple):
    """A later call of the layer ``owner`` (its first call is its own entry), in a list of layers given to
    :meth:`Architecture.from_layers`; ``name``: the call's, by default ``owner@k`` for its k-th later call."""

    owner: str
    name: str | None = None


def call_name(owner: str, index: int) -> str:
    """The name of the ``index``-th call of the layer ``owner`` (Keras' node index; 0 is the layer's own)."""
    return owner if index == 0 else f"{owner}{CALL_SEPARATOR}{index}"


@dataclass(frozen=True)
class Node:
    """One call of a layer in the graph and the names of the tensors it is called on, in order; ``walk``: the
    order Keras' graph walk visits them where it differs (a file's call by keyword: Keras visits the keywords
    alphabetically, ``mha(query=q, value=v, key=k)`` as k, q, v), which decides the order of ``model.layers`` and so
    the names its weights are stored under. Not part of the network. ``shares``: for a later call of a layer
    another node calls first (one Keras layer, one torch module, one set of weights), that node's name; the
    call's ``layer`` is that node's under the call's own name."""

    layer: Layer  # always named
    inputs: tuple[str, ...]
    walk: tuple[str, ...] = field(default=(), compare=False)
    shares: str | None = None

    @property
    def name(self) -> str:
        return self.layer.name  # type: ignore[return-value]

    @property
    def layer_name(self) -> str:
        """The name of the layer this node calls (of its Keras layer and torch module): its own, or the name of the
        node whose layer it shares."""
        return self.shares or self.name


class _GraphMap(NamedTuple):
    """What Keras' ``map_graph`` computes of a graph: each call's depth, each layer's depth and the order a walk
    from the output first reaches each layer."""

    node_depth: dict[str, int]
    layer_depth: dict[str, int]
    layer_reached: dict[str, int]


def _map_graph(nodes: Iterable[Any], input_name: str, output: str) -> _GraphMap:
    """Keras' ``keras.src.ops.function.map_graph`` on ``nodes`` (anything with ``name``, ``inputs``, ``walk`` and
    ``shares``): a depth-first walk from the output, visiting each call's inputs in call order, records when it
    first reaches each layer; then, from the output back, a call's depth is the longest path to the output, raised
    to its layer's depth so far (a shared layer's calls pull each other, and their inputs, deeper)."""
    by_name = {node.name: node for node in nodes}
    layer_of = {name: getattr(node, "shares", None) or name for name, node in by_name.items()}
    reached: dict[str, int] = {}  # layer -> when the walk first reached one of its calls
    entered: set[str] = set()
    post_order: list[str] = []  # each call once the calls it takes are done
    stack: list[tuple[str, bool]] = [(output, False)]
    while stack:  # iterative: a graph of MAX_LAYERS calls is deeper than Python's recursion
        current, done = stack.pop()
        if done:
            post_order.append(current)
        elif current not in entered and current != input_name:
            entered.add(current)
            reached.setdefault(layer_of[current], len(reached))
            stack.append((current, True))
            node = by_name[current]
            stack.extend((i, False) for i in reversed(node.walk or node.inputs))  # the first input is walked first
    node_depth: dict[str, int] = {}
    layer_depth: dict[str, int] = {}
    for name in reversed(post_order):  # every call before the calls it takes
        depth = max(node_depth.setdefault(name, 0), layer_depth.get(layer_of[name], 0))
        layer_depth[layer_of[name]] = node_depth[name] = depth
        for source in by_name[name].inputs:
            if source != input_name:
                node_depth[source] = max(depth + 1, node_depth.get(source, 0))
    return _GraphMap(node_depth, layer_depth, reached)


def keras_order(nodes: Iterable[Node], input_name: str, output: str) -> list[Node]:
    """``nodes`` in Keras' order (``keras.src.ops.function.map_graph``): by depth (the longest path to the output,
    deepest first), ties broken by the order a depth-first walk from the output first reaches their layers, visiting
    each layer's inputs in call order. Without shared layers this is the order of ``model.layers``
    (:func:`keras_layer_order` in general); every call comes after the calls it takes."""
    nodes = list(nodes)
    graph = _map_graph(nodes, input_name, output)
    return sorted((node for node in nodes if node.name in graph.node_depth),
                  key=lambda node: (-graph.node_depth[node.name], graph.layer_reached[getattr(node, "shares", None)
                                                                                     or node.name]))


def keras_layer_order(nodes: Iterable[Node], input_name: str, output: str) -> list[str]:
    """The names of the layers ``nodes`` call, in the order of Keras' ``model.layers``: by their depth (a shared
    layer's is its deepest call's), ties broken by when the walk from the output first reaches them."""
    graph = _map_graph(nodes, input_name, output)
    return sorted(graph.layer_depth, key=lambda layer: (-graph.layer_depth[layer], graph.layer_reached[layer]))


def check_layer_count(count: int, where: str) -> None:
    """Refuse more than :data:`MAX_LAYERS` layers (``where``: the text naming the model, or empty)."""
    if count > MAX_LAYERS:
        raise ArchitectureError(f"{where}the model has {count:,} layers, more than this bridge builds ({MAX_LAYERS:,})")


def _topological(by_name: dict[str, Node], input_name: str) -> list[str]:
    """Names in an order where every layer comes after its inputs (Kahn's algorithm, stable: of the layers an
    input makes ready, the earlier ones in ``by_name`` first), in time linear in the graph's size."""
    waiting = {name: {i for i in node.inputs if i != input_name} for name, node in by_name.items()}
    consumers: dict[str, list[str]] = {name: [] for name in by_name}
    for name, needs in waiting.items():
        for source in needs:
            if source in consumers:
                consumers[source].append(name)
    ready = deque(name for name, needs in waiting.items() if not needs)
    queued, order = set(ready), []
    while ready:
        name = ready.popleft()
        order.append(name)
        for other in consumers[name]:
            waiting[other].discard(name)
            if not waiting[other] and other not in queued:
                queued.add(other)
                ready.append(other)
    return order


@dataclass(frozen=True)
class Architecture:
    """``input_shape`` and the graph ``nodes`` (see the module docstring); ``name`` says where it came from."""

    input_shape: tuple[int, ...]
    nodes: tuple[Node, ...]
    name: str = "custom"
    input_name: str = DEFAULT_INPUT_NAME
    # Keras builds it as a Functional model (``keras.Model(inputs, outputs)``), not a ``Sequential``: any graph that
    # is not a chain, and a chain that a Functional model's file holds, so it goes back to Keras as it came
    functional: bool = False
    source: str = field(default="", compare=False)  # a file or preset the description was read from
    # The input's axes whose size Keras leaves open (None in ``input_shape``, as given): built at MNIST's, kept open
    # in the Keras model (:attr:`keras_input_shape`)
    open_input_axes: tuple[int, ...] = ()
    # How the Keras model takes its one input and gives its one output, as it was built: None, the tensor itself
    # (``keras.Model(x, y)``); a string, the key of a dict of one (``keras.Model({"pixels": x}, {"digits": y})``);
    # 0, a list of one (``keras.Model([x], [y])``). The torch network and every deploy file take and give tensors;
    # the Keras model written back is built as the source was (:func:`keras_bridge.build.as_given`)
    input_key: str | int | None = None
    output_key: str | int | None = None
    # What Keras casts the input to (:data:`INPUT_DTYPES`): for uint8 the commands feed whole bytes as float32
    # (:meth:`model_pixels`) and the torch network takes the nearest byte within 0-255 (``KerasNetwork.run``)
    input_dtype: str = INPUT_DTYPES[0]
    # The batch the Keras model's input declares (``keras.Input(..., batch_size=32)``; a Sequential built by its first
    # ``fit`` records that batch's size), None where it is left open. Only the Keras model written back declares it,
    # so the file comes back as it was: Keras runs a model on any batch whatever its input says, and so do the torch
    # network and every deploy file
    input_batch_size: int | None = None

    def __post_init__(self) -> None:
        where = self.source or self.name
        size = self.input_batch_size
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_BATCH):
            raise ArchitectureError(f"{where}: input_batch_size must be null (any batch) or a whole number from 1 to "
                                    f"{MAX_BATCH:,}, got {escaped(repr(size))[:100]}")
        if self.input_dtype not in INPUT_DTYPES:
            raise ArchitectureError(f"{where}: input_dtype must be {' or '.join(INPUT_DTYPES)}, got "
                                    f"{escaped(repr(self.input_dtype))[:100]}")
        shape = _shape(self.input_shape, where)
        open_axes = sorted({*self.open_input_axes, *(axis for axis, size in enumerate(shape) if size is None)})
        if any(not isinstance(axis, int) or not 0 <= axis < len(shape) - 1 for axis in open_axes):
            raise ArchitectureError(f"{where}: open_input_axes {self.open_input_axes!r} must be axes of the input "
                                    f"before its last (0 to {len(shape) - 2})")
        object.__setattr__(self, "input_shape", fixed_input_shape(shape))
        object.__setattr__(self, "open_input_axes", tuple(open_axes))
        if not self.nodes:
            raise ArchitectureError(f"{where}: the description has no layers")
        object.__setattr__(self, "nodes", tuple(self._checked_order(self._with_shared_layers(tuple(self.nodes)))))
        self._check_byte_input()
        for endpoint in ("input_key", "output_key"):
            _check_key(getattr(self, endpoint), endpoint, where)
        object.__setattr__(self, "functional", bool(self.functional) or not self.is_chain
                           or (self.input_key, self.output_key) != (None, None))  # only a Functional model takes both
        shape = self.output_shape
        if len(shape) != 1:
            raise ArchitectureError(f"{where}: the output ({self.nodes[-1].name}) is {shape_text(shape)}; a "
                                    f"classifier must end in one score per class (add Flatten or global pooling, "
                                    f"then Dense)")
        self._check_size()
        self._check_open_sizes()

    @classmethod
    def chain(cls, input_shape: Shape, layers: Iterable[Layer], name: str = "custom", source: str = "") -> Architecture:
        """Layers applied one after the other, as a ``Sequential`` model has them."""
        return cls.from_layers(input_shape, [(layer, None) for layer in layers], name=name, source=source)

    @classmethod
    def from_layers(cls, input_shape: Shape, layers: list[tuple[Layer | SharedCall, list[str] | None]],
                    name: str = "custom", source: str = "", input_name: str = DEFAULT_INPUT_NAME,
                    functional: bool = False, input_key: str | int | None = None,
                    output_key: str | int | None = None, input_dtype: str = INPUT_DTYPES[0],
                    input_batch_size: int | None = None) -> Architecture:
        """Layers with the names of their inputs (None: the layer before, or the input), and where a file's call
        gives them, the order Keras walks them in (:attr:`Node.walk`) third; unnamed ones named. A
        :class:`SharedCall` in a layer's place calls a layer of the list again."""
        own = [layer for layer, *_ in layers if not isinstance(layer, SharedCall)]
        names = iter(auto_names([layer.keras_class for layer in own if layer.name is None],
                                [layer.name for layer in own if layer.name is not None] + [input_name]))
        named = [layer if isinstance(layer, SharedCall) or layer.name is not None else layer.renamed(next(names))
                 for layer, *_ in layers]
        owners = {layer.name: layer for layer in named if not isinstance(layer, SharedCall)}
        calls: dict[str, int] = {}
        nodes, previous = [], input_name
        for index, (layer, (_, inputs, *walk)) in enumerate(zip(named, layers)):
            shares = None
            if isinstance(layer, SharedCall):
                shares, calls[layer.owner] = layer.owner, calls.get(layer.owner, 0) + 1
                if layer.owner not in owners:
                    raise ArchitectureError(f"{source or name}: layer {index} ({layer.name or 'a later call'}) "
                                            f"shares {layer.owner!r}, which is no layer of the model")
                layer = owners[layer.owner].renamed(layer.name or call_name(layer.owner, calls[layer.owner]))
            nodes.append(Node(layer, tuple(inputs) if inputs is not None else (previous,), tuple(*walk), shares))
            previous = layer.name
        return cls(input_shape=input_shape, nodes=tuple(nodes), name=name, input_name=input_name,
                   functional=functional, source=source, input_key=input_key, output_key=output_key,
                   input_dtype=input_dtype, input_batch_size=input_batch_size)

    def _with_shared_layers(self, nodes: tuple[Node, ...]) -> tuple[Node, ...]:
        """``nodes`` with each later call of a shared layer holding that layer (under the call's name), so that a
        change made to the layer (adapted values, float32) is every call's; a call of no such layer is refused."""
        owners = {node.name: node for node in nodes if node.shares is None}
        synced = []
        for index, node in enumerate(nodes):
            if node.shares is not None:
                owner = owners.get(node.shares)
                if owner is None or isinstance(owner.layer, Operation):
                    what = "a Keras operation" if owner is not None else "no layer of the model"
                    raise self._refuse(index, node, f"shares {node.shares!r}, which is {what}; a later call shares "
                                                    f"a layer of the model that is called first on its own")
                node = dataclasses.replace(node, layer=owner.layer.renamed(node.name))
            synced.append(node)
        return tuple(synced)

    @cached_property
    def shared_layers(self) -> frozenset[str]:
        """The names of the layers called more than once (their first calls' nodes)."""
        return frozenset(node.shares for node in self.nodes if node.shares is not None)

    def is_shared(self, node: Node) -> bool:
        """Whether ``node`` calls a layer that another node calls too."""
        return node.layer_name in self.shared_layers

    @property
    def keras_input_shape(self) -> tuple[int | None, ...]:
        """The input shape the Keras model declares: :attr:`input_shape` with None where a size is left open."""
        return tuple(None if axis in self.open_input_axes else size for axis, size in enumerate(self.input_shape))

    # --- the graph -------------------------------------------------------------------------
    def _check_byte_input(self) -> None:
        """A uint8 input reaches only layers that Keras runs on bytes: through layers whose outputs stay bytes (a
        reshape, a crop, a max pooling) to one that computes in float32 (a Rescaling, ``ops.cast``, a resize); Keras
        runs no convolution or product on bytes (a traceback in Keras' training, where torch trained)."""
        if self.input_dtype != "uint8":
            return
        holding_bytes = {self.input_name}
        for index, node in enumerate(self.nodes):
            if holding_bytes.intersection(node.inputs):
                if len(node.inputs) > 1 or not (node.layer.takes_bytes() or node.layer.PASSES_BYTES):
                    raise self._refuse(index, node, "takes the model's uint8 input (bytes); bytes go first through a "
                                                    "Rescaling, ops.cast to float32, a Normalization, a resize or an "
                                                    "augmentation, past reshapes, crops, paddings and max poolings "
                                                    "(Keras computes no convolution, product or dropout on bytes)")
                if node.layer.PASSES_BYTES:
                    holding_bytes.add(node.name)

    def _refuse(self, index: int, node: Node, why: str) -> ArchitectureError:
        return ArchitectureError(f"{self._where()}{layer_label(index, node.layer)}: {why}")

    def _checked_order(self, nodes: tuple[Node, ...]) -> list[Node]:
        """Names unique, inputs known, one output, every layer on the way to it; then Keras' order."""
        check_layer_count(len(nodes), self._where())
        names, every_name = {self.input_name}, {self.input_name, *(node.layer.name for node in nodes)}
        for index, node in enumerate(nodes):
            if node.layer.name is None:
                raise self._refuse(index, node, "has no name (every layer of a graph needs one)")
            if CONTROL_CHARACTER.search(node.name):
                raise self._refuse(index, node, f"its name {node.name!r} holds a control character; a layer's name is "
                                                f"printable text (the HDF5 names of a .keras file's weights cannot "
                                                f"hold a NUL)")
            if "/" in node.name:  # trained by fit, then every Keras side failed with a traceback
                raise self._refuse(index, node, f"its name {node.name!r} holds '/', which Keras refuses in a layer's "
                                                f"name (it joins the paths of weights)")
            if node.name in names:
                raise self._refuse(index, node, f"its name {node.name!r} is used twice; a layer called again is an "
                                                f"entry that shares it ({{shares: {node.name}, inputs: [...]}})")
            names.add(node.name)
            if len(node.inputs) > MAX_NODE_INPUTS:
                raise self._refuse(index, node, f"takes {len(node.inputs):,} inputs, more than a layer of this bridge "
                                                f"takes ({MAX_NODE_INPUTS}: the branches of a model, the members of "
                                                f"an ensemble)")
            wanted = node.layer.input_count()
            if not node.inputs or (wanted is not None and len(node.inputs) != wanted):
                takes = "one input" if wanted == 1 else f"{wanted} inputs" if wanted else "inputs"
                raise self._refuse(index, node, f"takes {takes}, got {len(node.inputs)} ({', '.join(node.inputs)})")
            unknown = [i for i in node.inputs if i not in every_name]
            if unknown:
                raise self._refuse(index, node, f"takes {unknown[0]!r}, which is neither the input "
                                                f"({self.input_name}) nor a layer of the model")
            if node.name in node.inputs:  # else reported as a graph whose input no layer takes, or a cycle
                raise self._refuse(index, node, "takes its own output; a layer's inputs are the input or other layers")
            if node.shares is None and CALL_SEPARATOR in node.name and node.name.rpartition(CALL_SEPARATOR)[2] \
                    .isdigit():
                raise self._refuse(index, node, f"its name {node.name!r} is how a shared layer's later call is named "
                                                f"(layer{CALL_SEPARATOR}k); rename the layer")
        used = {i for node in nodes for i in node.inputs}
        outputs = [node for node in nodes if node.name not in used]
        if len(outputs) != 1:
            listed = ", ".join(node.name for node in outputs) or "none (the graph has a cycle)"
            raise ArchitectureError(f"{self._where()}the model has {len(outputs)} outputs ({listed}); only "
                                    f"single-output models are supported")
        if self.input_name not in used:
            raise ArchitectureError(f"{self._where()}no layer takes the input {self.input_name!r}")
        by_name = {node.name: node for node in nodes}
        order = _topological(by_name, self.input_name)
        if len(order) != len(nodes):
            stuck = next(node for node in nodes if node.name not in order)
            raise self._refuse(nodes.index(stuck), stuck, "is part of a cycle")
        return keras_order(nodes, self.input_name, outputs[0].name)

    @property
    def layers(self) -> tuple[Layer, ...]:
        """The layers in Keras' order (``model.layers`` without the input)."""
        return tuple(node.layer for node in self.nodes)

    @property
    def output(self) -> Node:
        return self.nodes[-1]

    @property
    def is_chain(self) -> bool:
        """Each layer takes the one before it, and none is a Keras operation: a Keras ``Sequential``."""
        previous = self.input_name
        for node in self.nodes:
            if node.inputs != (previous,) or isinstance(node.layer, Operation) or self.is_shared(node):
                return False
            previous = node.name
        return True

    # --- shapes ----------------------------------------------------------------------------
    @cached_property
    def shapes(self) -> dict[str, Shape]:
        """The output shape of every layer, by name, and the input's (channels last, no batch axis)."""
        shapes: dict[str, Shape] = {self.input_name: tuple(self.input_shape)}
        activations = 0
        for index, node in enumerate(self.nodes):
            try:
                shape = node.layer.output_shape(*(shapes[i] for i in node.inputs))
                node.layer.check_weight_settings(*(shapes[i] for i in node.inputs))
            except LayerError as err:
                built = (f" (the input's size left open, {', '.join(map(str, self.keras_input_shape))}, is built at "
                         f"{shape_text(self.input_shape)}, the size every command feeds it)"
                         if self.open_input_axes else "")
                raise self._refuse(index, node, f"{err}{built}") from None
            if len(shape) > MAX_RANK:
                raise self._refuse(index, node, f"gives a {shape_text(shape)} tensor; tensors of at most "
                                                f"{MAX_RANK} axes (besides the batch) are supported")
            activations += held_values(node.layer, shape, *(shapes[i] for i in node.inputs))
            if activations > MAX_ACTIVATIONS:
                raise self._refuse(index, node, f"the layers up to here hold {activations:,} values per example, "
                                                f"more than this bridge builds ({MAX_ACTIVATIONS:,})")
            shapes[node.name] = shape
        by_name = {node.name: node for node in self.nodes}
        for index, node in enumerate(self.nodes):
            first = by_name.get(node.shares or "")
            if first is not None and [shapes[i] for i in node.inputs] != [shapes[i] for i in first.inputs] \
                    and first.layer.weights(*(shapes[i] for i in first.inputs)):  # (a weightless one: any shapes)
                given, built = ([shape_text(shapes[i]) for i in n.inputs] for n in (node, first))
                raise self._refuse(index, node, f"calls {first.name} on {', '.join(given)}, which is built for "
                                                f"{', '.join(built)} (its first call's); a shared layer with weights "
                                                f"takes inputs of one shape at every call (one layer per call "
                                                f"otherwise)")
        return shapes

    def module_of(self, node: Node) -> str:
        """The torch module a call runs: its layer's (a later call shares it, and its weights, with the first); a
        later call of a layer without weights (one ``ReLU()`` or ``MaxPooling2D()`` object called after every block,
        on maps of other sizes) its own, built for its inputs (a torch module is built for one size)."""
        first = next((other for other in self.nodes if other.name == node.shares), None)
        return node.layer_name if first is None or first.layer.weights(*self.input_shapes_of(first)) else node.name

    @cached_property
    def activation_values(self) -> int:
        """The values one example holds across the network's layers (what :data:`MAX_ACTIVATIONS` bounds): how
        much memory a batch of it takes."""
        return sum(held_values(node.layer, self.shapes[node.name], *self.input_shapes_of(node)) for node in self.nodes)

    @cached_property
    def unrolled_steps(self) -> int:
        """The steps its recurrent layers run, every call and direction: what a graph that unrolls them writes out."""
        return sum(node.layer.unrolled_steps(*self.input_shapes_of(node)) for node in self.nodes)

    def input_shapes_of(self, node: Node) -> tuple[Shape, ...]:
        return tuple(self.shapes[i] for i in node.inputs)

    @property
    def output_shape(self) -> Shape:
        return self.shapes[self.output.name]

    @property
    def num_classes(self) -> int:
        return self.output_shape[0]

    @property
    def softmax_node(self) -> Node | None:
        """The node whose softmax gives the model's outputs, its input standing for them; else None.

        The output node, or the softmax behind a chain of linear ``Activation`` layers: the model's outputs
        are that softmax's probabilities, and the torch side returns the softmax's input (logits) there
        instead. A softmax followed by a ``Dropout`` is not one: the dropout acts on the probabilities in
        training, so the torch side keeps them (see :attr:`probabilities_without_logits`).
        """
        by_name = {node.name: node for node in self.nodes}
        readers = [name for node in self.nodes for name in node.inputs]
        node = self.output
        while not applies_softmax(node.layer, self.input_shapes_of(node)[0]):
            source = node.inputs[0] if len(node.inputs) == 1 else None
            if not is_identity(node.layer) or source not in by_name or readers.count(source) != 1:
                return None  # a layer that changes values, the input, or a softmax another layer reads too
            node = by_name[source]
        return None if self.is_shared(node) else node  # a shared layer's softmax stays: its other calls need it

    @property
    def ends_in_softmax(self) -> bool:
        """The model's outputs are one softmax's probabilities: the torch side returns the softmax's input instead."""
        return self.softmax_node is not None

    @cached_property
    def outputs_probabilities(self) -> bool:
        """The model's outputs are probabilities over its classes, each row summing to 1: one softmax's
        (:attr:`ends_in_softmax`; also one followed by a dropout or a relu, which leave them probabilities),
        or a mean of several (per-pixel softmaxes, then an average pooling).

        Read from the layers outside training: a softmax over the last axis gives a distribution,
        and a layer whose :meth:`~mnist_common.architecture.layers.Layer.keeps_distributions` says so
        keeps one. Predict and training must not take a softmax of these outputs again.
        """
        return self.distributions[self.output.name]

    @cached_property
    def distributions(self) -> dict[str, bool]:
        """Whether each node's outputs (and the input's) are probabilities along their last axis, outside training
        (see :attr:`outputs_probabilities`). One distribution over every value of a tensor (a softmax over the
        one axis of a (10, 1) map longer than 1) stays one through reshapes, and is one along the last axis once
        every other axis is of size 1 (flattened)."""
        distributions, whole = {self.input_name: False}, {self.input_name: False}
        for node in self.nodes:
            inputs = self.input_shapes_of(node)
            whole[node.name] = gives_one_distribution(node.layer, self.shapes[node.name]) or (
                all(whole[i] for i in node.inputs) and (node.layer.REARRANGES or is_identity(node.layer)))
            distributions[node.name] = applies_softmax(node.layer, inputs[0]) or (
                all(distributions[i] for i in node.inputs) and node.layer.keeps_distributions(*inputs)) or (
                whole[node.name] and math.prod(self.shapes[node.name][:-1]) == 1)
        return distributions

    @property
    def probabilities_without_logits(self) -> bool:
        """Probability outputs with no softmax whose input could stand for them (a softmax then a dropout or a
        relu, a mean of softmaxes): the torch side returns their logarithm, which a softmax turns back into
        them (see ``KerasNetwork``)."""
        return self.outputs_probabilities and not self.ends_in_softmax

    @property
    def graph_unsafe_name(self) -> str | None:
        """The model's or a layer's name that TensorFlow refuses in a traced graph (a space, a colon, a non-ASCII
        letter), else None: Keras cannot ``predict``, ``fit`` or export such a model, only call it eagerly."""
        if not GRAPH_ROOT_NAME.fullmatch(self.name):
            return self.name
        names = []
        for node in self.nodes:
            if node.shares is None:  # a later call's name is not Keras'
                names.append(node.name)
                held = list(node.layer.held_layers())  # called under their own names too (none: Keras names it)
                while held:
                    layer = held.pop()
                    names += [] if layer.name is None else [layer.name]
                    held += layer.held_layers()
        return next((name for name in names if not GRAPH_LAYER_NAME.fullmatch(name)), None)

    @property
    def takes_mnist(self) -> bool:
        """Takes MNIST's 784 pixels (:func:`is_mnist_layout`) and gives 10 classes."""
        return is_mnist_layout(self.input_shape) and self.num_classes == MNIST_CLASSES

    @cached_property
    def pixel_scale(self) -> float:
        """What MNIST pixels in [0, 1] are multiplied by on their way into this model: 255 for a model whose
        input goes first through a ``Rescaling`` by 1/255 (or by 1/127.5, to [-1, 1]): the way Keras users build a
        model that takes raw 0-255 pixels (keras.io puts it first, or after an augmentation block; ``inputs /
        255.0``, a Keras operation, does the same), past layers that only move the pixels (a ``Reshape`` of 784
        values, ``ops.expand_dims``, augmentations and dropouts, the identity outside training) or keep their scale
        (a ``Resizing`` of an image of any size, a pooling: maxima and weighted means of them), and as the product
        of such steps (``(inputs - 127.5) / 127.5``, two ``Rescaling`` layers in a Keras 2 file; ``inputs * 1.0 /
        255``), on any branch of an input that several layers take (towers that each rescale their own copy);
        1 otherwise, the notebook's [0, 1] pixels. A model whose input is uint8 takes bytes: 255, whatever follows.
        Every place that feeds MNIST images to a model applies it (training and testing in both frameworks, the
        conversion check, predict and serve; an ``.onnx`` file records it in its metadata)."""
        if self.input_dtype == "uint8":  # pixels in [0, 1] would be cast to bytes of 0 and 1
            return 255.0
        paths = [(self.input_name, 1.0)]  # (a tensor, the factor the pixels got on the way to it)
        while paths:  # every branch of an input that several layers take (two towers each rescaling its own copy)
            tensor, factor = paths.pop()
            for taker in (node for node in self.nodes if tensor in node.inputs):
                step = taker.layer.input_factor()  # a Rescaling, ``x / 255.0`` (an operation), ``x - 127.5``
                if step is None and not taker.layer.KEEPS_SCALE:
                    continue  # the branch ends: a layer that computes
                product = factor * (1.0 if step is None else step)  # ``(x - 127.5) / 127.5`` is two steps
                if any(abs(abs(product) * 255.0 - multiple) <= 1e-4 * multiple for multiple in (1.0, 2.0)):
                    return 255.0
                paths.append((taker.name, product))  # one path to each: these layers take one input
        return 1.0

    def model_pixels(self, pixels):
        """MNIST pixels in [0, 1] (a numpy array or a torch tensor) as this model takes them: times
        :attr:`pixel_scale`, and whole bytes for a uint8 input (Keras' cast truncates: an inverted picture's 1 - 0.2
        times 255 is 203.99998, which would be 203, not the picture's 204)."""
        scaled = pixels * self.pixel_scale
        return scaled.round() if self.input_dtype == "uint8" else scaled

    def same_network(self, other: Architecture) -> bool:
        """The same graph of the same layers with the same settings, whatever the model and its layers are called."""
        def shape_of(architecture: Architecture) -> tuple:
            index = {architecture.input_name: -1, **{n.name: i for i, n in enumerate(architecture.nodes)}}
            return tuple((node.layer.renamed(None), tuple(index[i] for i in node.inputs), index.get(node.shares))
                         for node in architecture.nodes)

        return tuple(self.input_shape) == tuple(other.input_shape) and shape_of(self) == shape_of(other)

    def require_graph_safe_names(self, cannot: str, instead: str, where: str = "") -> None:
        """Refuse a network with a :attr:`graph_unsafe_name`, for work that traces it in TensorFlow: ``cannot`` says
        what then fails ("Keras cannot fit it"), ``instead`` what works; ``where`` prefixes the line."""
        unsafe = self.graph_unsafe_name
        if unsafe is not None:
            raise ArchitectureError(f"{where}{': ' if where else ''}the name {unsafe!r} is one TensorFlow refuses in "
                                    f"a traced graph, so {cannot}; rename it (letters, digits and _ - > only), or "
                                    f"{instead}")

    @property
    def independent_probabilities_from(self) -> Node | None:
        """The sigmoid layer whose independent per-class probabilities are the outputs, as they are or through
        layers that keep values in [0, 1] (a dropout, a linear activation, a relu: what
        :meth:`~mnist_common.architecture.layers.Layer.keeps_distributions` says of them; a reshape; a pooling, or
        a mean, maximum, product or concatenation of such values: :data:`KEEPS_UNIT_INTERVAL`); else None."""
        source: dict[str, Node | None] = {self.input_name: None}
        for node in self.nodes:
            if node.layer.output_activation() in INDEPENDENT_PROBABILITIES:
                source[node.name] = node
            else:
                found = [source[i] for i in node.inputs]
                layer = node.layer
                keeps = all(found) and (layer.keeps_distributions(*self.input_shapes_of(node)) or layer.REARRANGES
                                        or layer.type in KEEPS_UNIT_INTERVAL or layer.type.endswith(POOLINGS))
                source[node.name] = found[0] if keeps else None
        return source[self.output.name]

    @property
    def probabilities_changed(self) -> tuple[Node, Node] | None:
        """(a softmax node, the node that changes its probabilities) when the outputs are computed from a softmax's
        probabilities with no learned weights between (a rescaling, a tanh, a max pooling, a sum or a maximum of
        two softmaxes): neither probabilities (:attr:`outputs_probabilities` is False) nor logits, so a softmax
        of them is not what the model gives. A ``Dense`` or convolution after a softmax makes logits again, and so
        does the logarithm of probabilities (``ops.log``). A softmax over another axis than the last gives
        distributions along it, which a reshape may make the classes' (:attr:`distributions`) or not (pairs of a
        (2, 5) map flattened); where another branch's values meet its weights (an attention pooling's), what
        they give is not a softmax's."""
        if self.outputs_probabilities:
            return None
        found: dict[str, tuple[Node, Node | None] | None] = {self.input_name: None}
        for node in self.nodes:
            inputs = self.input_shapes_of(node)
            if node.layer.softmax_axis() is not None:  # over any axis
                found[node.name] = (node, None)
            elif any(name.endswith("kernel") for name, _ in node.layer.weights(*inputs)):
                found[node.name] = None  # learned weights over the probabilities: logits again
            elif node.layer.logits_of_distributions() and all(self.distributions[i] for i in node.inputs):
                found[node.name] = None  # their logarithm: log-probabilities, logits again
            else:
                inherited = next((found[i] for i in node.inputs if found[i] is not None), None)
                if inherited and not all(found[i] for i in node.inputs) and (
                        node.layer.type in CONTRACTIONS or not self._over_the_classes(inherited[0])):
                    inherited = None  # weights over another axis (an attention's) on another branch's values
                keeps = node.layer.keeps_distributions(*inputs) and all(found[i] for i in node.inputs)
                found[node.name] = inherited and (inherited[0], inherited[1] or (None if keeps else node))
        reached = found[self.output.name]
        if reached is None:
            return None
        softmax, changer = reached
        return softmax, changer or self.output

    def _over_the_classes(self, softmax: Node) -> bool:
        """Whether ``softmax`` may be the classes' distribution: over the last axis, of as many values as the
        classes. One of another size (an attention's weights over 28 steps, flattened) is weights, not classes."""
        return (applies_softmax(softmax.layer, self.input_shapes_of(softmax)[0])
                and self.shapes[softmax.name][-1] == self.num_classes)

    def require_one_distribution(self, what: str) -> None:
        """Refuse a network whose outputs are no scores of one choice among its classes, for ``what``, which gives
        their softmax: a sigmoid (independent per-class probabilities), a single output (its softmax is 1), or a
        softmax's probabilities changed into neither probabilities nor logits (:attr:`probabilities_changed`)."""
        changed = self.probabilities_changed
        if changed is not None:
            softmax, changer = changed
            raise ArchitectureError(f"{what} give one softmax over the classes; {self.name}'s outputs are the "
                                    f"probabilities of {softmax.name} changed by {changer.name} ({changer.layer.type}) "
                                    f"into neither probabilities nor logits, whose softmax is not what the model "
                                    f"gives (end it with the softmax{changer.layer.DISTRIBUTION_ADVICE}; a .ckpt or "
                                    f".keras conversion keeps it as it is)")
        squashed = self.independent_probabilities_from
        if squashed is not None:
            direct, activation = squashed is self.output, squashed.layer.output_activation()  # a wrapped layer's too
            kind = "log-probabilities" if activation == "log_sigmoid" else "probabilities"
            raise ArchitectureError(f"{what} give one softmax over the classes; {self.name}'s "
                                    f"{'output layer' if direct else 'layer'} ({squashed.name}) applies {activation}"
                                    f"{'' if direct else ', whose values are the outputs'}: independent per-class "
                                    f"{kind} (a .ckpt or .keras conversion keeps it as it is)")
        if self.num_classes < 2:
            raise ArchitectureError(f"{what} give one softmax over the classes; {self.name} gives "
                                    f"{self.num_classes} value, whose softmax is always 1 (a .ckpt or .keras "
                                    f"conversion keeps it as it is)")

    def require_mnist(self, what: str) -> None:
        """Refuse a network that cannot be trained or scored on MNIST's images and labels, for ``what``: other
        inputs or classes, or outputs that are no softmax over the classes (a sigmoid's: the cross-entropy taken of
        their softmax would be neither Keras' loss nor a class loss)."""
        if not self.takes_mnist:
            raise ArchitectureError(f"{what} needs a network that takes {MNIST_LAYOUTS} and gives "
                                    f"{MNIST_CLASSES} classes; {self.name} takes {shape_text(self.input_shape)} and "
                                    f"gives {self.num_classes}")
        self.require_one_distribution(f"{what} (a cross-entropy and an accuracy over the classes)")

    @property
    def mixed_precision(self) -> tuple[str, ...]:
        """The mixed-precision policies its layers compute under in Keras (none: float32 throughout)."""
        return tuple(sorted(set().union(*(node.layer.policies() for node in self.nodes)) - {FLOAT32}))

    def in_float32(self) -> Architecture:
        """The same network computing in float32 throughout, as torch computes it (itself when it does already)."""
        if not self.mixed_precision:
            return self
        return dataclasses.replace(self, nodes=tuple(dataclasses.replace(node, layer=node.layer.in_float32())
                                                     for node in self.nodes))

    def require_trainable(self, what: str) -> None:
        """Refuse to train a network none of whose weights trains (every layer with weights frozen)."""
        if self.parameter_count()[0] == 0:
            frozen = [node.name for node in self.nodes if not node.layer.trainable]
            why = f"its layers with weights are frozen (trainable: false: {', '.join(frozen[:4])}" \
                  f"{', ...' if len(frozen) > 4 else ''})" if frozen else "it has no weights"
            raise ArchitectureError(f"{what} needs a weight to train; {self.name} has none that trains: {why}")

    # --- weights ---------------------------------------------------------------------------
    @cached_property
    def storage_names(self) -> dict[str, str]:
        """Layer name -> the name its weights have in ``model.weights.h5`` (``layers/<it>/vars/0``).

        Keras numbers them by class in ``model.layers`` order, whatever the layers are called (a Keras
        operation is none of ``model.layers``: it has no weights, and no name here);
        version-1 checkpoints named their modules so (``conv2d_1.weight`` is ``layers/conv2d_1/vars/0``).
        """
        by_name = {node.name: node for node in self.nodes}
        layers = [by_name[name] for name in keras_layer_order(self.nodes, self.input_name, self.output.name)
                  if not isinstance(by_name[name].layer, Operation)]
        return dict(zip((node.name for node in layers), auto_names([n.layer.keras_class for n in layers], ())))

    @property
    def keras_names(self) -> tuple[str, ...]:
        """The storage names in layer order (see :attr:`storage_names`)."""
        return tuple(self.storage_names.values())

    def weight_shapes(self) -> list[tuple[Node, str, tuple[tuple[str, Shape], ...]]]:
        """(node, storage name, ((weight name, Keras shape), ...)) for every layer that has weights (a shared
        layer's first call)."""
        out = []
        for node in self.nodes:
            weights = () if node.shares else node.layer.weights(*self.input_shapes_of(node))  # once, a shared one's
            if weights:
                out.append((node, self.storage_names[node.name], weights))
        return out

    def with_adapted(self, weights: dict[str, list[Any]]) -> Architecture:
        """The architecture to train from a model's ``weights`` (by layer name): the values its layers adapted to
        data (Normalization's mean and variance) kept as settings, every other weight left to training
        (:meth:`Layer.with_adapted`)."""
        nodes = tuple(dataclasses.replace(node, layer=node.layer.with_adapted(weights[node.name]))
                      if node.name in weights else node for node in self.nodes)
        return dataclasses.replace(self, nodes=nodes)

    def parameter_count(self) -> tuple[int, int]:
        """(trainable, non-trainable) as Keras counts them: BatchNorm moving statistics, Normalization's adapted
        mean, variance and count and every weight of a frozen layer are non-trainable."""
        trainable = frozen = 0
        for node, _, weights in self.weight_shapes():
            for weight_name, shape in weights:
                if node.layer.trains(weight_name):
                    trainable += math.prod(shape)
                else:
                    frozen += math.prod(shape)
        return trainable, frozen

    def _check_open_sizes(self) -> None:
        """Refuse a layer whose weights depend on an input size the model leaves open (a Flatten's Dense, a
        LayerNormalization over an open axis): Keras cannot build it, though it builds at 28. Found by building the
        graph at another size and comparing every layer's weights."""
        if not self.open_input_axes:
            return
        other = tuple(size + 1 if axis in self.open_input_axes else size for axis, size in enumerate(self.input_shape))
        try:
            elsewhere = dataclasses.replace(self, input_shape=other, open_input_axes=())
        except ArchitectureError:  # it cannot be built at that size at all: Keras then fails when it is called on one
            return
        for index, (node, twin) in enumerate(zip(self.nodes, elsewhere.nodes)):
            if node.layer.weights(*self.input_shapes_of(node)) != twin.layer.weights(*elsewhere.input_shapes_of(twin)):
                raise self._refuse(index, node, f"its weights' shapes depend on the input's size, which the model "
                                                f"leaves open ({', '.join(map(str, self.keras_input_shape))}): Keras "
                                                f"cannot build it; give the input a fixed size, or pool the open axes "
                                                f"away before it (global pooling)")

    def _check_size(self) -> None:
        count = sum(self.parameter_count())
        if count > MAX_PARAMETERS:
            raise ArchitectureError(f"{self._where()}the network has {count:,} parameters, more than this bridge "
                                    f"builds ({MAX_PARAMETERS:,}, {MAX_PARAMETERS * 4 // 10**6} MB of float32)")

    # --- text forms ------------------------------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        """Every setting spelled out (what checkpoints record); :meth:`from_config` reads it back."""
        layers, previous = [], self.input_name
        for node in self.nodes:
            entry = {"shares": node.shares, "name": node.name} if node.shares else node.layer.to_config()
            if node.inputs != (previous,) or node.shares:
                entry["inputs"] = list(node.inputs)
            layers.append(entry)
            previous = node.name
        config = {"format_version": FORMAT_VERSION, "name": self.name, "input_shape": list(self.keras_input_shape)}
        if self.input_batch_size is not None:
            config["input_batch_size"] = self.input_batch_size
        if self.input_dtype != INPUT_DTYPES[0]:
            config["input_dtype"] = self.input_dtype
        if self.input_name != DEFAULT_INPUT_NAME:
            config["input_name"] = self.input_name
        config.update({key: getattr(self, key) for key in ("input_key", "output_key")
                       if getattr(self, key) is not None})
        if self.functional and self.is_chain and (self.input_key, self.output_key) == (None, None):  # a graph (and a
            # model on a dict or list) is Functional anyway
            config["functional"] = True
        return {**config, "layers": layers}

    def summary(self) -> str:
        """A Keras ``model.summary()``-like table: layer, output shape, parameters (and inputs, for a graph)."""
        chain = self.is_chain
        given = shape_text(self.input_shape)
        if self.open_input_axes:  # Keras' None (any size), and the size the bridge builds it at
            given = f"{shape_text(self.keras_input_shape)}, built at {given}"
        if self.input_dtype != INPUT_DTYPES[0]:  # bytes
            given = f"{given} {self.input_dtype}"
        if self.input_batch_size is not None:  # what Keras' summary shows first
            given = f"{given}, batch {self.input_batch_size}"
        rows = [(f"{self.input_name} (Input)", given, "", "")]
        for node in self.nodes:
            count = 0 if node.shares else sum(math.prod(s) for _, s in node.layer.weights(*self.input_shapes_of(node)))
            rows.append((f"{node.name} ({node.layer.type})", shape_text(self.shapes[node.name]),
                         f"{count:,}" if count else "0", "" if chain else ", ".join(node.inputs)))
        width = max(len(r[0]) for r in rows)
        trainable, frozen = self.parameter_count()
        lines = [f"{escaped(self.name)}: {self.num_classes} classes"]  # a file's model name: any text
        lines += [f"  {a:<{width}}  {b:>10}  {c:>9}  {d}".rstrip() for a, b, c, d in rows]
        lines.append(f"  {trainable + frozen:,} parameters as Keras counts them ({trainable:,} trainable + "
                     f"{frozen:,} non-trainable)")
        if self.mixed_precision:
            lines.append(f"  Keras computes in {' and '.join(self.mixed_precision)}, torch in float32 "
                         f"(--trainer.precision 16-mixed or bf16-mixed for half precision)")
        return "\n".join(lines)

    def _where(self) -> str:
        return f"{self.source}: " if self.source else f"{self.name}: " if self.name != "custom" else ""

    # --- reading ---------------------------------------------------------------------------
    @classmethod
    def from_config(cls, config: Any, source: str = "") -> Architecture:
        """From ``{"input_shape": [...], "layers": [{"type": ..., "inputs"?: [...], ...}], ...}``."""
        where = source or "architecture"
        if not isinstance(config, dict):
            raise ArchitectureError(f"{where}: an architecture is a mapping with input_shape and layers, "
                                    f"got {type(config).__name__}")
        unknown = sorted(set(config) - set(CONFIG_KEYS))
        if unknown:
            raise ArchitectureError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                                    f"(an architecture has {', '.join(CONFIG_KEYS)})")
        if "input_shape" not in config or "layers" not in config:
            raise ArchitectureError(f"{where}: an architecture needs input_shape and layers")
        version = config.get("format_version", 1)
        if version not in (1, FORMAT_VERSION):
            raise ArchitectureError(f"{where}: format_version {version!r} is not one this version reads "
                                    f"(1 or {FORMAT_VERSION}); a newer lightning-mnist wrote it")
        layers_config = config["layers"]
        if not isinstance(layers_config, list):
            raise ArchitectureError(f"{where}: layers must be a list, got {type(layers_config).__name__}")
        check_layer_count(len(layers_config), f"{where}: ")  # before any layer is read
        input_name = config.get("input_name", DEFAULT_INPUT_NAME)
        if not isinstance(input_name, str) or not input_name:
            raise ArchitectureError(f"{where}: input_name must be a non-empty string, got {input_name!r}")
        functional = config.get("functional", False)
        if not isinstance(functional, bool):
            raise ArchitectureError(f"{where}: functional must be true or false, got {functional!r}")
        for endpoint in ("input_key", "output_key"):
            _check_key(config.get(endpoint), endpoint, where)
        prefix = f"{source}: " if source else ""
        layers = []
        for index, entry in enumerate(layers_config):
            if isinstance(entry, dict) and "shares" in entry:
                layers.append(_shared_call(entry, f"{prefix}layer {index}", input_name))
                continue
            if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
                raise ArchitectureError(f"{prefix}layer {index}: each layer is a mapping with a type (or a later "
                                        f"call: shares and inputs), got {entry!r}")
            layer_class = LAYER_TYPES.get(entry["type"])
            if layer_class is None:
                raise ArchitectureError(f"{prefix}{layer_label(index, entry)}: not a supported layer type "
                                        f"(supported: {', '.join(sorted(LAYER_TYPES))})")
            inputs = entry.get("inputs")
            if inputs is not None and (not isinstance(inputs, list) or not inputs
                                       or not all(isinstance(i, str) for i in inputs)):
                raise ArchitectureError(f"{prefix}{layer_label(index, entry)}: inputs must be a list of layer "
                                        f"names (or {input_name!r}), got {inputs!r}")
            try:
                layer = layer_class.from_settings({k: v for k, v in entry.items() if k not in ("type", "inputs")})
            except LayerError as err:
                raise ArchitectureError(f"{prefix}{layer_label(index, entry)}: {err}") from None
            except TypeError as err:  # a required setting is missing
                missing = re.findall(r"'(\w+)'", str(err))
                raise ArchitectureError(f"{prefix}{layer_label(index, entry)}: needs "
                                        f"{', '.join(missing) or 'more settings'}") from None
            layers.append((layer, inputs))
        name = config.get("name") or (Path(source).stem if source else "custom")
        architecture = cls.from_layers(config["input_shape"], layers, name=str(name), source=source,
                                       input_name=input_name, functional=functional,
                                       input_key=config.get("input_key"), output_key=config.get("output_key"),
                                       input_dtype=config.get("input_dtype", INPUT_DTYPES[0]),
                                       input_batch_size=config.get("input_batch_size"))
        expected = config.get("num_classes")
        if expected is not None and expected != architecture.num_classes:
            raise ArchitectureError(f"{where}: num_classes is {expected!r} but the output gives "
                                    f"{architecture.num_classes}")
        return architecture

    @classmethod
    def load(cls, value: str | os.PathLike | dict | Architecture | None = None) -> Architecture:
        """A preset name, a YAML/JSON description file, or a mapping (``mnist_common.model_files.load_architecture``
        also reads ``.keras`` files)."""
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
        if path.suffix.lower() in DESCRIPTION_SUFFIXES:
            return cls.from_config(_read_description(path), source=str(path))
        raise ArchitectureError(f"architecture {text!r}: not a preset ({', '.join(known)}), nor a "
                                f"{'/'.join(DESCRIPTION_SUFFIXES)} description file, nor a .keras model")


def _shared_call(entry: dict[str, Any], label: str, input_name: str) -> tuple[SharedCall, list[str] | None]:
    """A description's later call of a layer (``{shares: stem, inputs: [crop]}``, ``name`` optional)."""
    unknown = sorted(set(entry) - {"shares", "name", "inputs"})
    owner, name, inputs = entry.get("shares"), entry.get("name"), entry.get("inputs")
    if unknown:
        raise ArchitectureError(f"{label}: a later call of a layer has shares, inputs and name only (the layer's "
                                f"settings are its first call's), got {', '.join(map(str, unknown))}")
    if not isinstance(owner, str) or not owner or (name is not None and (not isinstance(name, str) or not name)):
        raise ArchitectureError(f"{label}: shares and name must be layer names, got {owner!r} and {name!r}")
    if inputs is not None and (not isinstance(inputs, list) or not inputs or not all(isinstance(i, str)
                                                                                       for i in inputs)):
        raise ArchitectureError(f"{label}: inputs must be a list of layer names (or {input_name!r}), got {inputs!r}")
    return SharedCall(owner, name), inputs


def _read_description(path: Path) -> Any:
    import yaml

    if path.exists() and not path.is_file():  # a folder, or a pipe or device whose reading would never end
        raise ArchitectureError(f"architecture file {path}: not a regular file")
    if path.is_file() and path.stat().st_size > MAX_DESCRIPTION_BYTES:  # PyYAML reads ~0.2 MB a second
        raise ArchitectureError(f"architecture file {path}: {path.stat().st_size:,} bytes, more than a description of "
                                f"{MAX_LAYERS:,} layers takes ({MAX_DESCRIPTION_BYTES:,})")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ArchitectureError(f"architecture file {path_text(path)}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ArchitectureError(f"architecture file {path_text(path)}: cannot be read ({err})") from None
    try:
        if path.suffix.lower() == ".json":
            return json.loads(text, object_pairs_hook=unique_json_keys)
        check_yaml_document(text, f"architecture file {path}")  # aliases that expand to billions, a key twice
        return yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, RecursionError) as err:  # (nested past Python's stack)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ArchitectureError(f"architecture file {path}: not valid {path.suffix[1:].upper()} ({first})") from None

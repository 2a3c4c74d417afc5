"""Keras' attention layers: ``MultiHeadAttention``, as a vision transformer or a transformer over MNIST's rows uses it;
``Attention`` (Luong's dot-product) and ``AdditiveAttention`` (Bahdanau's), as recurrent models over rows use them.

The layer is called on a query and a value, and optionally a key (``mha(x, x)`` for self-attention; the value is the
key when none is given); its description names them in that order as its ``inputs``. Each is a sequence (steps,
features) or an image (H, W, C), attended over all of its axes but the features, as Keras does by default (``
attention_axes`` of every other axis; a subset of them is refused). Its weights are four ``EinsumDense`` kernels
and biases, stored in ``query_dense``, ``key_dense``, ``value_dense`` and ``output_dense`` (Keras' order): the
projections (features, heads, key_dim or value_dim), the output's (heads, value_dim, output features).

Keras' output features are the query's, or ``output_shape`` (one size). A causal mask (the call's
``use_causal_mask=True``: query step i attends to key steps up to i, a decoder's or an autoregressive reader's of
MNIST's rows) is a setting of the description, as it is of the call. Keras 3's gated attention (``use_gate``) and
sliding windows are refused, as are attention masks in the call and causal masks over an image's positions.

``Attention`` and ``AdditiveAttention`` have no projections: called on a list ``[query, value]`` or ``[query, value,
key]`` of sequences (steps, features), the query's features the key's, they weigh the values by the softmax of
scores over the key's steps: ``query . key`` (times a learnt ``scale`` with ``use_scale``), ``concat_score_weight *
sum(tanh(scale * (query + key)))`` for ``score_mode="concat"``, or Bahdanau's ``sum(scale * tanh(query + key))``
(``scale`` one weight a feature).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

from mnist_common.architecture.layers.base import (
    Layer,
    LayerError,
    Shape,
    boolean,
    choice,
    initializer,
    layer_type,
    number,
    positive_int,
    seed_value,
    shape_text,
)

PROJECTIONS = ("query", "key", "value", "output")  # the EinsumDense sublayers, in Keras' weight order


def query_value_key(shapes: tuple[Shape, ...], called_on: str) -> tuple[Shape, Shape, Shape]:
    """The (query, value, key) shapes an attention is called on, the key the value's where none is given."""
    if len(shapes) not in (2, 3):
        raise LayerError(f"is called on {called_on}, got {len(shapes)} input{'s' if len(shapes) != 1 else ''}")
    return shapes[0], shapes[1], shapes[2] if len(shapes) == 3 else shapes[1]


@layer_type
@dataclass(frozen=True, kw_only=True)
class MultiHeadAttention(Layer):
    """Scaled dot-product attention of ``num_heads`` heads (see the module docstring). ``output_size`` is Keras'
    ``output_shape`` setting (its name here is the base class's method), read and written under Keras' name."""

    num_heads: int
    key_dim: int
    value_dim: int | None = None  # Keras' default: key_dim
    dropout: float = 0.0  # on the attention probabilities, in training
    use_bias: bool = True
    output_size: int | None = None
    attention_axes: tuple[int, ...] | None = None
    kernel_initializer: str | dict = "glorot_uniform"
    bias_initializer: str | dict = "zeros"
    kernel_regularizer: dict | None = None
    bias_regularizer: dict | None = None
    kernel_constraint: dict | None = None
    bias_constraint: dict | None = None
    seed: int | None = None
    use_causal_mask: bool = False  # of the call

    INPUTS: ClassVar[int | None] = None  # query, value and an optional key
    # the call's tensors, positional or by keyword, in this order (``mha(query, value, key)``)
    CALL_TENSORS: ClassVar[tuple[str, ...]] = ("query", "value", "key")
    CALL_DEFAULTS: ClassVar[dict[str, Any]] = {"return_attention_scores": False, "attention_mask": None,
                                                "query_mask": None, "value_mask": None, "key_mask": None}
    CALL_SETTINGS: ClassVar[tuple[str, ...]] = ("use_causal_mask",)
    KERAS_FIXED: ClassVar[dict[str, tuple[Any, str]]] = {
        "use_gate": (False, "gated attention (use_gate)"), "sliding_window": (None, "sliding-window attention")}
    KERAS_RENAMED: ClassVar[dict[str, str]] = {"output_shape": "output_size"}

    def __post_init__(self) -> None:
        super().__post_init__()
        set_ = object.__setattr__
        set_(self, "num_heads", positive_int(self.num_heads, "num_heads"))
        set_(self, "key_dim", positive_int(self.key_dim, "key_dim"))
        set_(self, "value_dim", self.key_dim if self.value_dim is None else positive_int(self.value_dim, "value_dim"))
        set_(self, "dropout", number(self.dropout, "dropout", 0.0, 1.0, high_open=True))
        set_(self, "use_bias", boolean(self.use_bias, "use_bias"))
        size = self.output_size
        if isinstance(size, (list, tuple)):  # Keras takes a shape: only one of a single size is mirrored
            if len(size) != 1:
                raise LayerError(f"output_shape {list(size)} has {len(size)} sizes; only one (the output's features) "
                                 f"is supported")
            size = size[0]
        set_(self, "output_size", None if size is None else positive_int(size, "output_shape"))
        axes = self.attention_axes
        if axes is not None:
            axes = (axes,) if isinstance(axes, int) and not isinstance(axes, bool) else axes
            if not isinstance(axes, (list, tuple)) or not axes or not all(
                    isinstance(a, int) and not isinstance(a, bool) for a in axes):
                raise LayerError(f"attention_axes must be null, an axis or a list of axes, got {self.attention_axes!r}")
            set_(self, "attention_axes", tuple(axes))
        set_(self, "kernel_initializer", initializer(self.kernel_initializer, "kernel_initializer"))
        set_(self, "bias_initializer", initializer(self.bias_initializer, "bias_initializer"))
        set_(self, "seed", seed_value(self.seed, "seed"))
        set_(self, "use_causal_mask", boolean(self.use_causal_mask, "use_causal_mask"))

    # --- shapes and weights ----------------------------------------------------------------
    def output_shape(self, *shapes: Shape) -> Shape:
        query, value, key = self._sides(shapes)
        return (*query[:-1], self.output_size or query[-1])

    def _sides(self, shapes: tuple[Shape, ...]) -> tuple[Shape, Shape, Shape]:
        """(query, value, key) shapes, checked as Keras needs them."""
        query, value, key = query_value_key(shapes, "a query and a value (and a key)")
        for what, shape in (("query", query), ("value", value), ("key", key)):
            if len(shape) not in (2, 3):
                raise LayerError(f"needs a sequence (steps, features) or an image (H, W, C) as its {what}, got "
                                 f"{shape_text(shape)}")
        if not len(query) == len(value) == len(key) or key[:-1] != value[:-1]:
            raise LayerError(f"needs a query, value and key of as many axes, the key's positions the value's; got "
                             f"{shape_text(query)}, {shape_text(value)} and {shape_text(key)}")
        every = tuple(range(1, len(query)))  # Keras' axes (the batch is 0) but the features
        missing = [a for a in self.attention_axes or () if not 1 <= abs(a) <= len(query)]
        if missing:  # taken modulo the rank here, where Keras fails (an IndexError)
            raise LayerError(f"attention_axes {list(self.attention_axes)}: axis {missing[0]} does not exist on its "
                             f"{shape_text(query)} query (axes 1 to {len(query)}, or -1 to -{len(query)}; 0 is the "
                             f"batch)")
        if self.attention_axes is not None and tuple(sorted(
                a % (len(query) + 1) for a in self.attention_axes)) != every:
            raise LayerError(f"attends over axes {list(self.attention_axes)}; only all axes but the batch and the "
                             f"features ({list(every)}, Keras' default) are supported")
        if self.use_causal_mask and len(query) != 2:
            raise LayerError(f"has use_causal_mask over an image's positions ({shape_text(query)}); a causal mask is "
                             f"supported over sequences (steps, features)")
        return query, value, key

    def working_values(self, *shapes: Shape) -> int:
        """Its projections and its scores and probabilities, a (query positions x key positions) matrix a head."""
        query, value, key = self._sides(shapes)
        queries, keys = math.prod(query[:-1]), math.prod(key[:-1])
        projected = self.num_heads * (queries * self.key_dim + keys * (self.key_dim + self.value_dim))
        return projected + 2 * self.num_heads * queries * keys

    def weights(self, *shapes: Shape) -> tuple[tuple[str, Shape], ...]:
        query, value, key = self._sides(shapes)
        heads, out = self.num_heads, self.output_size or query[-1]
        kernels = {"query": (query[-1], heads, self.key_dim), "key": (key[-1], heads, self.key_dim),
                   "value": (value[-1], heads, self.value_dim), "output": (heads, self.value_dim, out)}
        biases = {"query": (heads, self.key_dim), "key": (heads, self.key_dim), "value": (heads, self.value_dim),
                  "output": (out,)}
        return tuple((f"{side}_{kind}", shape) for side in PROJECTIONS
                     for kind, shape in (("kernel", kernels[side]), ("bias", biases[side]))
                     if kind == "kernel" or self.use_bias)

    def weight_path(self, index: int) -> str:
        per_side = 2 if self.use_bias else 1
        return f"{PROJECTIONS[index // per_side]}_dense/vars/{index % per_side}"

    def setting_stem(self, weight_name: str) -> str:
        """Every kernel takes ``kernel_*`` settings and every bias ``bias_*``, as Keras gives each sublayer the
        layer's."""
        return weight_name.rpartition("_")[2]

    def initial_shape(self, weight_name: str, shape: Shape) -> Shape:
        """Keras draws an EinsumDense kernel with its fans along its input and output axes: the projections' as a
        (features, heads x dim) matrix, the output's as (heads x value_dim, features)."""
        if weight_name == "output_kernel":
            return (shape[0] * shape[1], shape[2])
        return (shape[0], math.prod(shape[1:])) if weight_name.endswith("_kernel") else shape


@dataclass(frozen=True, kw_only=True)
class _ScoreAttention(Layer):
    """What ``Attention`` and ``AdditiveAttention`` share: the list they are called on, the softmax over the key's
    steps, the dropout of its weights in training, the values they weigh."""

    use_scale: bool = False
    dropout: float = 0.0
    seed: int | None = None
    use_causal_mask: bool = False  # of the call: query step i weighs the values of key steps up to i

    INPUTS: ClassVar[int | None] = None  # [query, value] or [query, value, key]
    CALL_DEFAULTS: ClassVar[dict[str, Any]] = {"return_attention_scores": False}
    CALL_SETTINGS: ClassVar[tuple[str, ...]] = ("use_causal_mask",)

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "use_scale", boolean(self.use_scale, "use_scale"))
        object.__setattr__(self, "use_causal_mask", boolean(self.use_causal_mask, "use_causal_mask"))
        object.__setattr__(self, "dropout", number(self.dropout, "dropout", 0.0, 1.0, high_open=True))
        object.__setattr__(self, "seed", seed_value(self.seed, "seed"))

    def output_shape(self, *shapes: Shape) -> Shape:
        query, value, key = self._sides(shapes)
        return (query[0], value[-1])

    def _sides(self, shapes: tuple[Shape, ...]) -> tuple[Shape, Shape, Shape]:
        query, value, key = query_value_key(shapes, "[query, value] or [query, value, key]")
        if not len(query) == len(value) == len(key) == 2 or key[0] != value[0] or query[-1] != key[-1]:
            raise LayerError(f"needs sequences (steps, features), the query's features the key's and the key's "
                             f"steps the value's; got {shape_text(query)}, {shape_text(value)} and {shape_text(key)}")
        return query, value, key

    def working_values(self, *shapes: Shape) -> int:
        """The scores and their softmax, (query steps x key steps); the concatenated sums, times the features."""
        query, value, key = self._sides(shapes)
        return query[0] * key[0] * (2 + (query[-1] if self.sums_features else 0))

    @property
    def sums_features(self) -> bool:
        """Whether the scores are sums over ``tanh(query + key)`` (a (query steps, key steps, features) tensor)."""
        return True

    def initializer_of(self, weight_name: str) -> str | dict[str, Any]:
        return "ones"


@layer_type
@dataclass(frozen=True, kw_only=True)
class Attention(_ScoreAttention):
    """Luong's dot-product attention (``score_mode="dot"``), or the sum of ``tanh``'s of ``"concat"``."""

    score_mode: str = "dot"

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "score_mode", choice(self.score_mode, "score_mode", ("dot", "concat")))

    @property
    def sums_features(self) -> bool:
        return self.score_mode == "concat"

    def weights(self, *shapes: Shape) -> tuple[tuple[str, Shape], ...]:
        self._sides(shapes)
        scale = (("scale", ()),) if self.use_scale else ()
        return scale + ((("concat_score_weight", ()),) if self.score_mode == "concat" else ())


@layer_type
@dataclass(frozen=True, kw_only=True)
class AdditiveAttention(_ScoreAttention):
    """Bahdanau's attention; its ``scale`` (Keras' default: used) is one weight a feature, drawn glorot-uniform."""

    use_scale: bool = True

    def weights(self, *shapes: Shape) -> tuple[tuple[str, Shape], ...]:
        query, _, _ = self._sides(shapes)
        return (("scale", (query[-1],)),) if self.use_scale else ()

    def initializer_of(self, weight_name: str) -> str | dict[str, Any]:
        return "glorot_uniform"

"""Merge layers: element-wise ``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``, ``Minimum``, and
``Concatenate``; each takes two or more tensors (``Subtract`` exactly two); and ``Dot``, of two.

Element-wise merges broadcast as Keras does: shapes are aligned on their last axis, a size
of 1 stretches, and a tensor of fewer axes is treated as having leading axes of size 1
(Keras expands it after the batch axis), so an (H, W, C) map times a (1, 1, C) or a (C,)
gate is a squeeze-and-excitation product.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from mnist_common.architecture.layers.base import (
    Layer,
    LayerError,
    Shape,
    layer_type,
    shape_text,
)


def broadcast(shapes: tuple[Shape, ...]) -> Shape:
    """The shape of an element-wise operation on ``shapes`` under Keras' (numpy's) broadcasting."""
    rank = max(len(shape) for shape in shapes)
    out = [1] * rank
    for shape in shapes:
        for axis, size in enumerate((1,) * (rank - len(shape)) + tuple(shape)):
            if size != 1 and out[axis] not in (1, size):
                raise LayerError(f"cannot merge inputs of shapes {', '.join(map(shape_text, shapes))} "
                                 f"(sizes {out[axis]} and {size} differ on one axis, and neither is 1)")
            out[axis] = max(out[axis], size)
    return tuple(out)


@dataclass(frozen=True, kw_only=True)
class ElementwiseMerge(Layer):
    """An element-wise merge of two or more tensors (see the module docstring for the shapes)."""

    INPUTS: ClassVar[int | None] = None

    def output_shape(self, *shapes: Shape) -> Shape:
        if len(shapes) < 2:
            raise LayerError(f"merges two or more inputs, got {len(shapes)}")
        return broadcast(shapes)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Add(ElementwiseMerge):
    pass


@layer_type
@dataclass(frozen=True, kw_only=True)
class Subtract(ElementwiseMerge):
    """The first input minus the second."""

    def output_shape(self, *shapes: Shape) -> Shape:
        if len(shapes) != 2:
            raise LayerError(f"subtracts exactly two inputs, got {len(shapes)}")
        return broadcast(shapes)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Multiply(ElementwiseMerge):
    pass


@layer_type
@dataclass(frozen=True, kw_only=True)
class Average(ElementwiseMerge):
    """The sum divided by the number of inputs, in that order (as Keras computes it)."""

    def keeps_distributions(self, *shapes: Shape) -> bool:
        return len(set(shapes)) == 1  # a mean of distributions (one broadcast over another's axes is none)


@layer_type
@dataclass(frozen=True, kw_only=True)
class Maximum(ElementwiseMerge):
    pass


@layer_type
@dataclass(frozen=True, kw_only=True)
class Minimum(ElementwiseMerge):
    pass


@layer_type
@dataclass(frozen=True, kw_only=True)
class Concatenate(Layer):
    """Joins inputs of the same rank along ``axis`` (Keras counts it with the batch axis as 0, so the
    channels of an (H, W, C) map are axis 3 or -1); every other size must agree."""

    axis: int = -1

    INPUTS: ClassVar[int | None] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.axis, bool) or not isinstance(self.axis, int) or self.axis == 0:
            raise LayerError(f"axis must be a non-zero integer (0 is the batch axis), got {self.axis!r}")

    def tensor_axis(self, rank: int) -> int:
        """The axis among the non-batch axes (0-based) of inputs of ``rank`` axes."""
        axis = self.axis - 1 if self.axis > 0 else rank + self.axis
        if not 0 <= axis < rank:
            raise LayerError(f"axis {self.axis} does not exist on inputs of {rank} axes (batch included: "
                             f"{rank + 1})")
        return axis

    def output_shape(self, *shapes: Shape) -> Shape:
        if len(shapes) < 2:
            raise LayerError(f"concatenates two or more inputs, got {len(shapes)}")
        if len({len(shape) for shape in shapes}) != 1:
            raise LayerError(f"concatenates inputs of one rank, got {', '.join(map(shape_text, shapes))}")
        axis = self.tensor_axis(len(shapes[0]))
        others = {tuple(s for i, s in enumerate(shape) if i != axis) for shape in shapes}
        if len(others) != 1:
            raise LayerError(f"inputs {', '.join(map(shape_text, shapes))} differ on an axis other than "
                             f"the concatenation axis {self.axis}")
        out = list(shapes[0])
        out[axis] = sum(shape[axis] for shape in shapes)
        return tuple(out)




@layer_type
@dataclass(frozen=True, kw_only=True)
class Dot(Layer):
    """Keras' ``Dot``: each example's dot products of two tensors along one axis of each (``axes``: one for both, or
    a pair, counted with the batch axis as 0, negative from the end), after scaling each to unit length along it
    where ``normalize`` (their cosine similarity). Out: the first's other axes, then the second's ((s, t) for two
    (s, d) and (t, d) maps along d; (1,) for two vectors). Inputs of one or two axes besides the batch."""

    axes: int | tuple[int, int]
    normalize: bool = False

    INPUTS: ClassVar[int | None] = None  # called on a list, as a merge is (of two: :meth:`output_shape`)

    def __post_init__(self) -> None:
        super().__post_init__()
        axes = self.axes
        pair = tuple(axes) if isinstance(axes, (list, tuple)) else (axes,)
        if len(pair) not in (1, 2) or any(isinstance(a, bool) or not isinstance(a, int) or a == 0 for a in pair):
            raise LayerError(f"axes must be a non-zero integer or a pair of them (0 is the batch axis), got {axes!r}")
        object.__setattr__(self, "axes", pair if len(pair) == 2 else pair[0])
        if not isinstance(self.normalize, bool):
            raise LayerError(f"normalize must be true or false, got {self.normalize!r}")

    def contracted(self, *shapes: Shape) -> tuple[int, int]:
        """The axis of each input the products run along, among its non-batch axes (0-based)."""
        pair = self.axes if isinstance(self.axes, tuple) else (self.axes, self.axes)
        picked = []
        for axis, shape in zip(pair, shapes):
            position = axis - 1 if axis > 0 else len(shape) + axis  # Keras: axis % rank, the batch counted
            if not 0 <= position < len(shape):
                raise LayerError(f"axes {self.axes!r}: axis {axis} does not exist on an input of "
                                 f"{len(shape)} axes (batch included: {len(shape) + 1})")
            picked.append(position)
        return picked[0], picked[1]

    def output_shape(self, *shapes: Shape) -> Shape:
        if len(shapes) != 2:
            raise LayerError(f"takes the dot products of two inputs, got {len(shapes)}")
        if not all(1 <= len(shape) <= 2 for shape in shapes):
            raise LayerError(f"takes inputs of one or two axes besides the batch ((features,) or (steps, "
                             f"features)), got {', '.join(map(shape_text, shapes))}; reshape an image to "
                             f"(positions, channels) first")
        first, second = self.contracted(*shapes)
        if shapes[0][first] != shapes[1][second]:
            raise LayerError(f"axes {self.axes!r}: the inputs {', '.join(map(shape_text, shapes))} have "
                             f"{shapes[0][first]} and {shapes[1][second]} values along them; they must agree")
        out = tuple(s for i, s in enumerate(shapes[0]) if i != first) + \
            tuple(s for i, s in enumerate(shapes[1]) if i != second)
        return out or (1,)  # two vectors: one product each, kept as a (1,) axis as Keras keeps it

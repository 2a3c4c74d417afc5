"""Merge layers: element-wise ``Add``, ``Subtract``, ``Multiply``, ``Average``, ``Maximum``, ``Minimum``, and
``Concatenate``; each takes two or more tensors (``Subtract`` exactly two).

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



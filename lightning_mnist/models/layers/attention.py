"""Keras' attention layers in torch: ``MultiHeadAttention`` (four linear projections and scaled dot-product
attention), ``Attention`` and ``AdditiveAttention`` (scores of the query and key, their softmax, the values weighed).

Each EinsumDense kernel is a matrix once its head axes are joined: a projection's (features, heads, dim) is torch's
(heads x dim, features) weight, the output's (heads, value_dim, features) torch's (features, heads x value_dim); the
biases are flattened. The attention itself is written out (scale the queries, a matrix product, a softmax, an
optional dropout of the probabilities, a product with the values) as Keras computes it, so every format exports it as
plain operators. An image (N, C, H, W) is attended as the sequence of its H x W positions. A causal mask
(``use_causal_mask``) sets the scores of later key steps to Keras' large negative, -1e9, before the softmax: their
weights are then exactly zero, as in Keras.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from lightning_mnist.models.layers.layout import IMAGE_AXES
from lightning_mnist.models.layers.registry import WeightMap, converter
from mnist_common.architecture import layers as keras
from mnist_common.architecture.layers import Shape
from mnist_common.architecture.layers.attention import PROJECTIONS


def _projection_weight(side: str) -> WeightMap:
    # (features, heads, dim) -> (heads, dim, features) -> (heads * dim, features)
    return WeightMap(f"{side}.weight", (1, 2, 0), lambda s: (s[0] * s[1], s[2]))


WEIGHTS = {f"{side}_kernel": _projection_weight(side) for side in PROJECTIONS[:3]}
WEIGHTS["output_kernel"] = WeightMap("output.weight", (2, 0, 1), lambda s: (s[0], s[1] * s[2]))
WEIGHTS.update({f"{side}_bias": WeightMap(f"{side}.bias", None, lambda s: (math.prod(s),)) for side in PROJECTIONS})
MASKED_SCORE = -1e9  # Keras' large negative for masked scores (float32)


def causal_mask(module: nn.Module, spec: keras.MultiHeadAttention | keras.Attention | keras.AdditiveAttention,
                query: Shape, key: Shape) -> None:
    """``module.causal``: where query step i may attend to key step j, j <= i (Keras: row index >= column index),
    for a layer with ``use_causal_mask``; else None. A buffer outside the state dict (no weight of Keras')."""
    mask = torch.ones(query[0], key[0], dtype=torch.bool).tril() if spec.use_causal_mask else None
    module.register_buffer("causal", mask, persistent=False)


def masked(scores: torch.Tensor, causal: torch.Tensor | None) -> torch.Tensor:
    return scores if causal is None else scores.masked_fill(~causal, MASKED_SCORE)


@converter(keras.MultiHeadAttention, **WEIGHTS)
class MultiHeadAttention(nn.Module):
    def __init__(self, spec: keras.MultiHeadAttention, query: Shape, value: Shape, key: Shape | None = None) -> None:
        super().__init__()
        key = value if key is None else key
        heads, use_bias = spec.num_heads, spec.use_bias
        self.heads, self.key_dim, self.value_dim = heads, spec.key_dim, spec.value_dim
        self.query = nn.Linear(query[-1], heads * spec.key_dim, bias=use_bias)
        self.key = nn.Linear(key[-1], heads * spec.key_dim, bias=use_bias)
        self.value = nn.Linear(value[-1], heads * spec.value_dim, bias=use_bias)
        causal_mask(self, spec, query, key)
        self.output = nn.Linear(heads * spec.value_dim, spec.output_size or query[-1], bias=use_bias)
        self.dropout = nn.Dropout(spec.dropout)

    def forward(self, query: torch.Tensor, value: torch.Tensor, key: torch.Tensor | None = None) -> torch.Tensor:
        image = query.dim() == IMAGE_AXES + 1
        size = query.shape[2:]
        q, v = (self._sequence(t) for t in (query, value))
        k = v if key is None else self._sequence(key)
        q = self._heads(self.query(q), self.key_dim) * (1.0 / math.sqrt(self.key_dim))  # as Keras scales them
        k, v = self._heads(self.key(k), self.key_dim), self._heads(self.value(v), self.value_dim)
        probabilities = self.dropout(torch.softmax(masked(q @ k.transpose(-1, -2), self.causal), dim=-1))
        attended = (probabilities @ v).transpose(1, 2).flatten(2)  # (N, steps, heads * value_dim)
        out = self.output(attended)
        return out.transpose(1, 2).unflatten(2, tuple(size)) if image else out  # no reshape to the batch: export

    @staticmethod
    def _sequence(x: torch.Tensor) -> torch.Tensor:
        """(N, steps, features), an image's positions in Keras' (row, column) order."""
        return x.flatten(2).transpose(1, 2) if x.dim() == IMAGE_AXES + 1 else x

    def _heads(self, x: torch.Tensor, dim: int) -> torch.Tensor:
        """(N, steps, heads * dim) -> (N, heads, steps, dim)."""
        return x.unflatten(-1, (self.heads, dim)).transpose(1, 2)


class _ScoreAttention(nn.Module):
    """``Attention`` and ``AdditiveAttention``: softmax(scores) over the key's steps, dropped out in training, times
    the values; a subclass gives the scores of (N, Tq, F) queries and (N, Tv, F) keys."""

    def __init__(self, spec: keras.Attention | keras.AdditiveAttention, query: Shape, value: Shape,
                 key: Shape | None = None) -> None:
        super().__init__()
        self.dropout = nn.Dropout(spec.dropout)
        causal_mask(self, spec, query, value if key is None else key)

    def forward(self, query: torch.Tensor, value: torch.Tensor, key: torch.Tensor | None = None) -> torch.Tensor:
        scores = masked(self.scores(query, value if key is None else key), self.causal)
        return self.dropout(torch.softmax(scores, dim=-1)) @ value

    def scores(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


@converter(keras.Attention, scale=WeightMap("scale"), concat_score_weight=WeightMap("concat_score_weight"))
class Attention(_ScoreAttention):
    def __init__(self, spec: keras.Attention, *shapes: Shape) -> None:
        super().__init__(spec, *shapes)
        self.concat = spec.score_mode == "concat"
        self.scale = nn.Parameter(torch.ones(())) if spec.use_scale else None
        self.concat_score_weight = nn.Parameter(torch.ones(())) if self.concat else None

    def scores(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        if self.concat:  # Keras: the scale inside the tanh
            summed = query.unsqueeze(-2) + key.unsqueeze(-3)
            return self.concat_score_weight * torch.tanh(
                summed if self.scale is None else self.scale * summed).sum(dim=-1)
        scores = query @ key.transpose(-1, -2)
        return scores if self.scale is None else scores * self.scale


@converter(keras.AdditiveAttention, scale=WeightMap("scale"))
class AdditiveAttention(_ScoreAttention):
    def __init__(self, spec: keras.AdditiveAttention, query: Shape, *shapes: Shape) -> None:
        super().__init__(spec, query, *shapes)
        self.scale = nn.Parameter(torch.empty(query[-1])) if spec.use_scale else None

    def scores(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        tanh = torch.tanh(query.unsqueeze(-2) + key.unsqueeze(-3))
        return (tanh if self.scale is None else self.scale * tanh).sum(dim=-1)

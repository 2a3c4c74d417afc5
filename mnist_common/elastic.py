"""The elastic distortion's smoothing filter, in one place for both frameworks.

Simard, Steinkraus and Platt ("Best Practices for Convolutional Neural Networks Applied to Visual
Document Analysis", ICDAR 2003): a field of pixel displacements drawn uniformly from [-1, 1], smoothed
by a Gaussian of ``sigma`` pixels, scaled by ``alpha`` pixels (``--data.elastic_alpha``,
``--data.elastic_sigma``). Lightning's augmentation (``lightning_mnist/data/augment.py``) and the Keras
reference's (``keras_reference/augment.py``) smooth with this matrix, so the two draw displacements of
the same distribution (tests/test_recipes_keras.py compares them). Framework-free, as the core must be.
"""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=16)
def gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) float32 matrix of a 1-D Gaussian filter with zero padding: row i holds the weights of
    pixel i's neighbours, normalised over the whole kernel (taps beyond the edge count as zeros, scipy's
    ``gaussian_filter(mode="constant", truncate=3.0)``). Smoothing a field is ``G @ field @ G`` (G is symmetric)."""
    radius = max(1, int(3 * sigma + 0.5))
    taps = np.arange(-radius, radius + 1, dtype=np.float64)
    total = np.exp(-taps**2 / (2 * sigma**2)).sum()
    offsets = np.arange(size, dtype=np.float64)
    offsets = offsets[:, None] - offsets[None, :]
    weights = np.exp(-offsets**2 / (2 * sigma**2)) * (np.abs(offsets) <= radius)
    matrix = (weights / total).astype(np.float32)
    matrix.flags.writeable = False  # one cached matrix per size and sigma, shared by every caller
    return matrix

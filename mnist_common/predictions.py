"""Predictions in numpy: one image's as a JSON-ready dict (what ``predict --json`` prints and ``serve``
answers), and the softmax that turns a model's logits into probabilities.

Framework-free (numpy only), so the command line, the HTTP server and the Keras reference build
their answers with the same functions and the same keys.
"""

from __future__ import annotations

import numpy as np


def record(image: str, probabilities: np.ndarray | None = None, error: str | None = None, **extra) -> dict:
    """``{"image", "digit", "probability", "probabilities", **extra}``, or ``{"image", "error"}`` for a failure."""
    if error is not None:
        return {"image": image, "error": error}
    digit = int(np.argmax(probabilities))
    return {"image": image, "digit": digit, "probability": float(probabilities[digit]),
            "probabilities": [float(p) for p in probabilities], **extra}


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise probabilities of (N, classes) logits (shifted by each row's maximum, so no exp overflows)."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)

"""One image's prediction as a JSON-ready dict: what ``predict --json`` prints and ``serve`` answers.

Framework-free (numpy only), so the command line and the HTTP server build their
answers with the same function and the same keys.
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

"""The one check every speed benchmark makes of its counts before any work: a bad one is one line, exit 2."""

from __future__ import annotations

import math

from mnist_common.errors import UserError

FRACTIONS = {"target", "target_acc", "target_val_acc"}  # accuracies, whatever the flag is called


def check_counts(**values: float | int | None) -> None:
    """Refuse counts below 1 (``--steps 0``), rates of 0 or less or infinite, and a ``target`` accuracy outside
    (0, 1]."""
    for name, value in values.items():
        if value is None:
            continue
        if name in FRACTIONS:
            if not 0 < value <= 1:
                raise UserError(f"--{name} must be an accuracy in (0, 1], got {value}")
        elif isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise UserError(f"--{name} must be at least 1, got {value}")
        elif not (value > 0 and math.isfinite(value)):
            raise UserError(f"--{name} must be a finite number more than 0, got {value}")

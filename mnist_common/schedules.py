"""The one-cycle learning-rate schedule's settings, in one place for both frameworks.

``configs/fast.yaml`` and ``configs/best.yaml`` say ``lr_schedule: onecycle`` and a peak ``lr``; the
rest of the curve is these numbers. Lightning hands them to torch's ``OneCycleLR`` and the Keras
reference computes the same curve from them (``keras_reference.schedules``), so the two cannot drift
apart: a change here changes both, and the per-step test (tests/test_recipes_keras.py) compares them.
They are torch's defaults, the settings every one-cycle figure of docs/recipes.md was measured with.
Framework-free, as the core must be.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class OneCycle:
    """The shape of the one-cycle curve; the peak (``--model.lr``) and the run's steps come from the run.

    Args:
        pct_start: share of the steps spent warming up (cosine from lr / div_factor to lr).
        div_factor: the first step's learning rate is the peak divided by this.
        final_div_factor: the last step's is the first step's divided by this.
        anneal_strategy: ``cos``, both phases (the only one both frameworks implement here).
        base_momentum: Adam's beta_1 at the peak of the learning rate (torch cycles beta_1 inversely).
        max_momentum: Adam's beta_1 at the first and last steps.
    """

    pct_start: float = 0.3
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    anneal_strategy: str = "cos"
    base_momentum: float = 0.85
    max_momentum: float = 0.95

    def torch_kwargs(self) -> dict:
        """Keyword arguments of torch's ``OneCycleLR`` (besides the optimizer, ``max_lr`` and ``total_steps``)."""
        return asdict(self)


ONE_CYCLE = OneCycle()


def steps_per_epoch(train_images: int, batch_size: int) -> int:
    """Optimizer steps in one epoch: the last, short batch is a step too, in both frameworks."""
    return -(-train_images // batch_size)

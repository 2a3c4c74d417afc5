"""The one-cycle recipe in Keras, stepped per batch exactly as Lightning steps torch's ``OneCycleLR``.

``lr_schedule: onecycle`` in a config (``configs/fast.yaml``, ``configs/best.yaml``) makes Lightning
step ``OneCycleLR`` after every batch, with the shape of :data:`mnist_common.schedules.ONE_CYCLE`.
That does two things, and a Keras run of the same recipe must do both:

- the learning rate: a cosine warm-up from ``lr / div_factor`` to ``lr`` over the first
  ``pct_start`` of the steps, then a cosine down to ``lr / div_factor / final_div_factor`` at the
  last step (:class:`OneCycleSchedule`, a ``LearningRateSchedule`` evaluated at the optimizer's
  step counter, which counts batches as Lightning's scheduler does);
- Adam's beta_1, which torch cycles the other way (``cycle_momentum``, on by default for Adam):
  ``max_momentum`` -> ``base_momentum`` at the peak -> ``max_momentum`` (:class:`OneCycleAdamW`).

Torch computes the curve in Python floats (64 bits); this does too, in float64 tensor ops, and
rounds to float32 only at the end: in float32 the cosine near the last steps, where the rate is
1e-8 beside a peak of 5e-3, would be wrong by percents. Both classes are registered for Keras
serialization, so a saved ``model.keras`` (whose optimizer is saved with it) loads with safe_mode.
"""

from __future__ import annotations

import math

from keras_bridge.backend import import_keras
from mnist_common.schedules import ONE_CYCLE, OneCycle

keras = import_keras()
ops = keras.ops

PACKAGE = "keras_reference"


def _cosine(start: float, end: float, pct):
    """torch's ``_annealing_cos``: from ``start`` at pct 0 to ``end`` at pct 1."""
    return end + (start - end) / 2.0 * (ops.cos(math.pi * pct) + 1.0)


@keras.saving.register_keras_serializable(package=PACKAGE)
class OneCycleSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """torch's ``OneCycleLR`` (two phases, cosine annealing) as a Keras learning-rate schedule.

    Args:
        max_lr: the peak learning rate (``--model.lr``).
        total_steps: the run's optimizer steps (epochs x batches per epoch), as Lightning's
            ``estimated_stepping_batches``; steps past the last keep the last rate (torch refuses them).
        pct_start, div_factor, final_div_factor, base_momentum, max_momentum: the curve's shape,
            :class:`mnist_common.schedules.OneCycle`'s defaults unless a saved model says otherwise.
    """

    def __init__(self, max_lr: float, total_steps: int, pct_start: float = ONE_CYCLE.pct_start,
                 div_factor: float = ONE_CYCLE.div_factor, final_div_factor: float = ONE_CYCLE.final_div_factor,
                 base_momentum: float = ONE_CYCLE.base_momentum, max_momentum: float = ONE_CYCLE.max_momentum,
                 anneal_strategy: str = ONE_CYCLE.anneal_strategy) -> None:
        if anneal_strategy != "cos":
            raise ValueError(f"OneCycleSchedule anneals by cosine only, not {anneal_strategy!r}")
        if total_steps < 1:
            raise ValueError(f"OneCycleSchedule needs at least one step, got {total_steps}")
        self.max_lr, self.total_steps = float(max_lr), int(total_steps)
        self.pct_start, self.div_factor, self.final_div_factor = float(pct_start), float(div_factor), \
            float(final_div_factor)
        self.base_momentum, self.max_momentum = float(base_momentum), float(max_momentum)
        self.anneal_strategy = anneal_strategy
        # torch's phase boundaries, computed as torch computes them
        self.warmup_end = float(self.pct_start * self.total_steps) - 1
        self.last_step = float(self.total_steps - 1)

    @classmethod
    def for_run(cls, max_lr: float, total_steps: int, shape: OneCycle = ONE_CYCLE) -> OneCycleSchedule:
        """The schedule of a run with the shared shape (what ``lr_schedule: onecycle`` means in both frameworks)."""
        return cls(max_lr, total_steps, shape.pct_start, shape.div_factor, shape.final_div_factor,
                   shape.base_momentum, shape.max_momentum, shape.anneal_strategy)

    def _phases(self, step, warmup: tuple[float, float], anneal: tuple[float, float]):
        """``warmup`` (start, end) over the first phase, then ``anneal`` (start, end) to the last step; float32."""
        step = ops.minimum(ops.cast(step, "float64"), self.last_step)
        first = _cosine(*warmup, step / self.warmup_end) if self.warmup_end > 0 else warmup[1]
        second = _cosine(*anneal, (step - self.warmup_end) / (self.last_step - self.warmup_end)) \
            if self.last_step > self.warmup_end else anneal[1]
        return ops.cast(ops.where(step <= self.warmup_end, first, second), "float32")

    def __call__(self, step):
        initial = self.max_lr / self.div_factor
        return self._phases(step, (initial, self.max_lr), (self.max_lr, initial / self.final_div_factor))

    def momentum(self, step):
        """Adam's beta_1 at ``step``: torch's ``cycle_momentum``, the inverse of the learning rate's curve."""
        return self._phases(step, (self.max_momentum, self.base_momentum), (self.base_momentum, self.max_momentum))

    def get_config(self) -> dict:
        return {"max_lr": self.max_lr, "total_steps": self.total_steps, "pct_start": self.pct_start,
                "div_factor": self.div_factor, "final_div_factor": self.final_div_factor,
                "base_momentum": self.base_momentum, "max_momentum": self.max_momentum,
                "anneal_strategy": self.anneal_strategy}


@keras.saving.register_keras_serializable(package=PACKAGE)
class OneCycleAdamW(keras.optimizers.AdamW):
    """Keras' AdamW whose beta_1 follows a :class:`OneCycleSchedule`'s momentum curve, as torch's does.

    torch's ``OneCycleLR`` sets each Adam group's beta_1 before every step, and torch's Adam uses
    that step's beta_1 both in the moving average and in the bias correction ``1 - beta_1**t``;
    Keras' ``Adam.update_step`` reads ``self.beta_1`` for both, so ``beta_1`` is a property that
    evaluates the curve at the optimizer's step counter (inside the compiled train step, a tensor).
    With ``weight_decay`` 0 the decay step multiplies by 1, so this is then Lightning's plain Adam.
    """

    def __init__(self, learning_rate: OneCycleSchedule, weight_decay: float = 0.0, **kwargs) -> None:
        if not isinstance(learning_rate, OneCycleSchedule):
            raise TypeError(f"OneCycleAdamW needs a OneCycleSchedule, got {type(learning_rate).__name__}")
        kwargs.pop("beta_1", None)  # a saved config's nominal value; the schedule decides
        super().__init__(learning_rate=learning_rate, weight_decay=weight_decay, **kwargs)
        self.one_cycle = learning_rate

    @property
    def beta_1(self):
        return self.one_cycle.momentum(self.iterations)

    @beta_1.setter
    def beta_1(self, value) -> None:
        """Adam's constructor assigns its default; the one-cycle curve replaces it, so it is not kept."""

    def get_config(self) -> dict:
        config = super().get_config()
        config.pop("beta_1", None)  # a tensor of the current step, and the schedule rebuilds it anyway
        return config

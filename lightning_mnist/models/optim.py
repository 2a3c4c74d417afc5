"""Keras' Adam as a torch optimizer, for step-for-step training parity.

Keras adds epsilon to the *uncorrected* sqrt(v) ("epsilon hat"); torch adds it after
bias correction. The two agree exactly when torch's epsilon at step t is
``eps_keras / sqrt(1 - beta2**t)``, so this is torch's own (foreach/fused) Adam
with epsilon rescaled before every step.
"""

from __future__ import annotations

import math

import torch

# How a torch optimizer computes its step (one tensor at a time or all at once, fused, CUDA-graph safe): the
# machine's choice, not part of the training state a resumed run takes from its checkpoint
IMPLEMENTATION_FLAGS = ("foreach", "fused", "capturable")


class KerasAdam(torch.optim.Adam):
    """``torch.optim.Adam`` whose update equals ``keras.optimizers.Adam``'s."""

    # what it recomputes in its groups before each step (a resumed run's saved values of them are not settings) and
    # the step count it keeps there
    DERIVED_SETTINGS = ("eps",)
    STEP_COUNT = "keras_step"

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-7, **kwargs) -> None:
        super().__init__(params, lr=lr, betas=betas, eps=eps, **kwargs)
        for group in self.param_groups:
            group["keras_eps"] = eps

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            # The step count is kept on the host: torch's fused Adam keeps its own on the device, where
            # reading it each step would wait for the GPU. A state saved without it is read once.
            if self.STEP_COUNT not in group:
                group[self.STEP_COUNT] = next((int(self.state[p]["step"]) for p in group["params"]
                                               if "step" in self.state[p]), 0)
            group[self.STEP_COUNT] += 1
            group["eps"] = group["keras_eps"] / math.sqrt(1.0 - group["betas"][1] ** group[self.STEP_COUNT])
        return super().step(closure)

"""The epoch means the classifier logs (loss, accuracy): a running sum and count each, one in-place add a step.

torchmetrics' ``MeanMetric`` and ``MulticlassAccuracy`` give the same numbers, but their input
checks, weight broadcasting and four-counter bookkeeping launch about fifteen small operators a
step: ~0.2 ms of a ~6 ms training step at batch 32 on 2 CPU cores, measured inside Lightning's
loop (``benchmarks/step_overhead.py``, ``lightning`` against ``lightning_no_metrics``). The classifier
already has what they compute (per-image losses, argmax hits), so a sum and a count are all an
epoch needs. It is still a torchmetrics ``Metric``: Lightning logs it once per epoch, computes it
on the device, sums it over processes and resets it.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


class EpochMean(Metric):
    """The mean over an epoch of a per-image value (a loss, a hit of 1 or 0), in float32 whatever the batch's dtype.

    ``update`` takes one value per image, so a short last batch weighs what its images weigh.
    """

    full_state_update = False  # a step's update does not need the accumulated state
    higher_is_better = None  # a loss or an accuracy: the name says which

    def __init__(self) -> None:
        super().__init__()
        self.add_state("total", default=torch.zeros((), dtype=torch.float32), dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, values: torch.Tensor) -> None:
        # In place: no tensor is rebound, so none of Module.__setattr__'s bookkeeping runs each step.
        # The sum accumulates in float32 even for bfloat16 losses (Lightning's bf16-true precision).
        self.total.add_(values.sum(dtype=self.total.dtype))
        self.count.add_(values.numel())

    def compute(self) -> torch.Tensor:
        return self.total / self.count

"""A shuffled training DataLoader that a run stopped between two batches resumes at the next batch.

:class:`EpochOrder` is the shuffle: the same order as torch's ``RandomSampler`` (one seed drawn
from torch's generator when the epoch starts, a permutation from it), plus what another process
needs to finish that epoch: the seed and how many images the training loop has taken. The loop,
not the loader, counts them: Lightning fetches a batch ahead of the one it trains on, so the
loader has always handed out more than the run has used. The data module tells the order of each
batch as the loop takes it (its ``on_before_batch_transfer``) and keeps the order's state in a
checkpoint written inside an epoch (its ``state_dict``).

:class:`ResumableDataLoader` gives Lightning the same state through its support for stateful
training DataLoaders, so Lightning knows the loader resumes (and does not warn that it cannot).
Lightning hands that state back only to a loader built after it has restored the loop, which a
OneCycle schedule defeats (``trainer.estimated_stepping_batches`` builds the loader while the
optimizers are configured); the data module's copy, restored before anything is built, is the
one that always arrives. Both give the same state.
"""

from __future__ import annotations

from typing import Any, Iterator

import torch
from torch.utils.data import DataLoader, RandomSampler

from mnist_common.errors import UserError


class EpochOrder(RandomSampler):
    """A fresh random order of ``size`` indices each epoch, resumable part way through.

    Without a resume it draws exactly what ``RandomSampler`` draws (runs keep their data order);
    after :meth:`load_state_dict` its next epoch is the saved epoch's order from the first image
    the stopped run had not trained on. A ``RandomSampler`` to those who ask (Lightning, when it
    gives several processes a DistributedSampler, shuffles only a loader whose sampler is one).
    """

    def __init__(self, size: int) -> None:
        super().__init__(range(size))
        self.size = size
        self.seed: int | None = None  # the current epoch's, drawn when it starts
        self.used = 0  # images of the current epoch the training loop has taken
        self.batches = 0  # ... in this many batches
        self.resume_at: dict[str, int] | None = None

    def __iter__(self) -> Iterator[int]:
        if self.resume_at:
            self.seed, start = int(self.resume_at["seed"]), int(self.resume_at["used"])
            self.batches = int(self.resume_at.get("batches", 0))
            self.resume_at = None
        else:  # as RandomSampler draws it, from torch's generator (restored with every checkpoint)
            self.seed, start, self.batches = int(torch.empty((), dtype=torch.int64).random_().item()), 0, 0
        self.used = start
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        yield from torch.randperm(self.size, generator=generator)[start:].tolist()

    def taken(self, count: int) -> None:
        """The training loop took a batch of ``count`` more images of this epoch."""
        self.used += count
        self.batches += 1

    def state_dict(self) -> dict[str, int]:
        return {} if self.seed is None else {"seed": self.seed, "used": self.used, "batches": self.batches}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Go on from an epoch stopped inside: fewer images taken than this training split has (a checkpoint's
        order is checked before the run, against every split's 60,000; a tampered one of 59,000 gave an epoch of no
        batch, and Lightning's traceback at its end)."""
        if state_dict and not 0 < state_dict.get("batches", 0) <= state_dict.get("used", 0) < self.size:
            raise UserError(f"the checkpoint's training order took {state_dict.get('used')!r} images in "
                            f"{state_dict.get('batches')!r} batches of an epoch of {self.size:,}: not a run of this "
                            f"training split (its subset, hold-out or fold)")
        self.resume_at = dict(state_dict) if state_dict else None


class ResumableDataLoader(DataLoader):
    """A DataLoader whose state is its :class:`EpochOrder`'s, for Lightning's stateful-loader support.

    A loader Lightning rebuilt with another sampler (a DistributedSampler, when several processes
    train) has no state to give: such a run finishes the interrupted epoch with a fresh order, which
    is not exact.
    """

    def __iter__(self):
        if not (isinstance(self.sampler, EpochOrder) and self.sampler.resume_at):
            return super().__iter__()
        # Each new iterator draws a seed for worker processes from torch's generator. The stopped run
        # drew it when the epoch began; drawn again here, every later random draw would shift by one.
        state = torch.get_rng_state()
        try:
            return super().__iter__()
        finally:
            torch.set_rng_state(state)

    def state_dict(self) -> dict[str, Any]:
        return self.sampler.state_dict() if isinstance(self.sampler, EpochOrder) else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if isinstance(self.sampler, EpochOrder):
            self.sampler.load_state_dict(state_dict)

"""Several trained networks as one classifier: the mean of their probabilities."""

from __future__ import annotations

import torch
from torch import nn

from lightning_mnist.models.classifier import MnistClassifier
from lightning_mnist.models.network import probabilities_as_logits


class MeanProbabilities(nn.Module):
    """Networks (logits out) as one network whose logits are the log of their mean probabilities.

    softmax(log p) = p, so the ensemble's probabilities are the members' mean, and
    cross-entropy on these logits is the negative log-likelihood of that mean.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.stack([torch.softmax(member(x), dim=1) for member in self.members]).mean(0)
        return probabilities_as_logits(mean)

    @property
    def penalises_activity(self) -> bool:
        return any(member.penalises_activity for member in self.members)

    def logits_and_activity_penalty(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The logits and the members' activity penalties summed (None where no member has any)."""
        runs = [member.logits_and_activity_penalty(x) for member in self.members]
        mean = torch.stack([torch.softmax(logits, dim=1) for logits, _ in runs]).mean(0)
        penalties = [p for _, p in runs if p is not None]
        return probabilities_as_logits(mean), torch.stack(penalties).sum() if penalties else None

    def regularization_loss(self) -> torch.Tensor | None:
        """The members' weight penalties summed, as Keras adds every regularised weight of a model of several."""
        penalties = [p for p in (member.regularization_loss() for member in self.members) if p is not None]
        return torch.stack(penalties).sum() if penalties else None


class MnistEnsemble(MnistClassifier):
    """A :class:`MnistClassifier` whose network is :class:`MeanProbabilities` of trained ``members``.

    It is tested, logged and predicted exactly like a single model (one Trainer can test
    both). The members are networks (see ``lightning_mnist.checkpoints.load_ensemble`` for
    loading a k-fold run's); they must share one architecture's input and classes.
    """

    def __init__(self, members: list[nn.Module]) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member")
        architecture = members[0].architecture
        super().__init__(architecture=architecture.to_config(), channels_last=False)  # members lay out their input
        self.network = MeanProbabilities(members)

    @property
    def members(self) -> nn.ModuleList:
        return self.network.members

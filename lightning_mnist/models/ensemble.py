"""The k-fold models as one classifier: the mean of their probabilities."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lightning_mnist.models.classifier import MnistClassifier
from mnist_common.results import read_json

# Keras clips probabilities to [1e-7, 1 - 1e-7] in its cross-entropy; the same floor keeps log finite.
PROBABILITY_FLOOR = 1e-7


class MeanProbabilities(nn.Module):
    """Several classifiers as one network whose logits are the log of their mean probabilities.

    softmax(log p) = p, so the ensemble's probabilities are the members' mean, and
    cross-entropy on these logits is the negative log-likelihood of that mean.
    """

    def __init__(self, members: list[MnistClassifier]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.stack([member.predict_proba(x) for member in self.members]).mean(0)
        return mean.clamp_min(PROBABILITY_FLOOR).log()


class MnistEnsemble(MnistClassifier):
    """Averages the softmax outputs of several models (Lightning checkpoints or ``.keras`` files).

    A :class:`MnistClassifier` around :class:`MeanProbabilities`, so it is tested, logged and
    predicted exactly like a single model (one Trainer can test both).
    """

    def __init__(self, checkpoints: list[str]) -> None:
        from lightning_mnist.convert import load_classifier  # Lightning checkpoints or .keras files

        # channels_last=False: each member lays out its own input
        super().__init__(network=MeanProbabilities([load_classifier(path) for path in checkpoints]),
                         channels_last=False)

    @property
    def members(self) -> nn.ModuleList:
        return self.network.members

    @classmethod
    def from_cv_results(cls, path: str | Path) -> "MnistEnsemble":
        """The ensemble a ``cv`` run described in its ``cv_results.json``."""
        return cls([fold["model_path"] for fold in read_json(path)["folds"]])

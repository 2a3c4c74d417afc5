"""The k-fold models as one classifier: the mean of their probabilities."""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import LightningModule
from torchmetrics.classification import MulticlassAccuracy

from mnist_common.results import read_json


class MnistEnsemble(LightningModule):
    """Averages the softmax outputs of several models (Lightning checkpoints or ``.keras`` files)."""

    def __init__(self, checkpoints: list[str]) -> None:
        super().__init__()
        self.save_hyperparameters()
        from lightning_mnist.convert import load_classifier  # Lightning checkpoints or .keras files

        self.members = torch.nn.ModuleList(load_classifier(path) for path in checkpoints)
        self.test_acc = MulticlassAccuracy(10, average="micro")

    @classmethod
    def from_cv_results(cls, path: str | Path) -> "MnistEnsemble":
        """The ensemble a ``cv`` run described in its ``cv_results.json``."""
        return cls([fold["model_path"] for fold in read_json(path)["folds"]])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Mean class probabilities (not logits)."""
        return torch.stack([member.predict_proba(x) for member in self.members]).mean(0)

    predict_proba = forward

    def test_step(self, batch, batch_idx: int) -> None:
        images, labels = batch
        probabilities = self(images)
        loss = torch.nn.functional.nll_loss(probabilities.clamp_min(1e-7).log(), labels)
        self.test_acc(probabilities, labels)
        # logged exactly as MnistClassifier logs them, so one Trainer can test both
        self.log("test/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("test/acc", self.test_acc, on_step=False, on_epoch=True, prog_bar=True)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self(batch[0] if isinstance(batch, (tuple, list)) else batch)

"""A thin LightningModule around :class:`MnistCNN`: loss, metrics and the optimizer."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR
from torchmetrics.classification import MulticlassAccuracy

from lightning_mnist.models.network import MnistCNN
from lightning_mnist.models.optim import KerasAdam

KERAS_ADAM_EPSILON = 1e-7


class MnistClassifier(LightningModule):
    """Trains a network with the notebook's recipe: Adam, cross-entropy, accuracy.

    Args:
        network: the ``nn.Module`` to train; the notebook's :class:`MnistCNN` by default.
        lr: Adam's learning rate (the notebook's 1e-4).
        keras_adam: step exactly as ``keras.optimizers.Adam`` does (for parity
            tests); plain ``torch.optim.Adam`` with Keras' epsilon otherwise.
        lr_schedule: ``constant`` (the notebook), or ``onecycle``: one-cycle
            warm-up and annealing to ``lr`` as peak over the whole run, stepped per batch.
        channels_last: keep activations in NHWC memory, faster for this CNN on CPU and GPU.
    """

    def __init__(self, network: nn.Module | None = None, lr: float = 1e-4, keras_adam: bool = False,
                 lr_schedule: Literal["constant", "onecycle"] = "constant", channels_last: bool = True) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["network"])
        self.network = network if network is not None else MnistCNN()
        if channels_last:
            self.network = self.network.to(memory_format=torch.channels_last)
        num_classes = 10
        # validate_args=False: the inputs are ours, and checking them costs time on every step
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.val_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        self.test_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of (N, 1, 28, 28) images scaled to [0, 1]."""
        if self.hparams.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.network(x)

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities, as Keras' softmax output layer gives them."""
        return torch.softmax(self(x), dim=1)

    def _shared_step(self, batch, stage: str, accuracy: MulticlassAccuracy) -> torch.Tensor:
        images, labels = batch
        logits = self(images)
        loss = F.cross_entropy(logits, labels)
        # update(), not forward(): only the epoch value is logged, so skip the per-batch compute
        accuracy.update(logits, labels)
        sync = stage != "train"  # epoch-level validation/test numbers are exact under DDP
        self.log(f"{stage}/loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=sync,
                 batch_size=len(labels))
        self.log(f"{stage}/acc", accuracy, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._shared_step(batch, "train", self.train_acc)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "val", self.val_acc)

    def test_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "test", self.test_acc)

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.predict_proba(images)

    def configure_optimizers(self):
        optimizer_class = KerasAdam if self.hparams.keras_adam else torch.optim.Adam
        # the fused kernel is the same Adam in one pass over the parameters (CPU and CUDA)
        fused = True if self.device.type in ("cpu", "cuda") else None
        optimizer = optimizer_class(self.network.parameters(), lr=self.hparams.lr, eps=KERAS_ADAM_EPSILON,
                                    fused=fused)
        if self.hparams.lr_schedule == "constant":
            return optimizer
        schedule = OneCycleLR(optimizer, max_lr=self.hparams.lr, total_steps=self.trainer.estimated_stepping_batches)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

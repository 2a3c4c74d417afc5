"""A thin LightningModule around a network built from an architecture description: loss, metrics, optimizer."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torch.optim.lr_scheduler import OneCycleLR
from torchmetrics import Metric

from mnist_common.architecture import DEFAULT_PRESET
from mnist_common.model_files import load_architecture
from mnist_common.schedules import ONE_CYCLE
from mnist_common.settings import check_optimizer_settings
from mnist_common.errors import UserError
from lightning_mnist.models.metrics import EpochMean
from lightning_mnist.models.network import KerasNetwork
from lightning_mnist.models.optim import IMPLEMENTATION_FLAGS, KerasAdam

KERAS_ADAM_EPSILON = 1e-7
STAGES = ("train", "val", "test")
# The values a validation or test batch may hold at once (1 GB of float32), its network's per image counted as the
# size bound counts them: a batch of 500 images of a network holding 15.7 million values an image (under the bound
# of 20 million) asked for 31 GB in fit's final test (hostile round 12); a larger batch is scored in parts
SCORED_VALUES = 1 << 28
# What early stopping and checkpoints can watch in a fit: the per-epoch metrics it logs (test/* come after
# fit), and the epoch and step counts Lightning adds to them.
MONITORED = (*(f"{stage}/{name}" for stage in ("val", "train") for name in ("loss", "acc")), "epoch", "step")
# A checkpoint written inside a training epoch (a run stopped between two batches) keeps what the
# epoch's train/loss and train/acc have accumulated so far under this key, so that the resumed run
# logs the same epoch means as one that never stopped.
EPOCH_IN_PROGRESS = "train_metrics_in_progress"


def check_training_settings(lr: float, label_smoothing: float = 0.0, weight_decay: float = 0.0,
                            keras_adam: bool = False) -> None:
    """The optimiser and loss settings, checked once for the constructor and the command line (named by their flags);
    those the Keras reference shares are checked by the same function there."""
    check_optimizer_settings(lr, label_smoothing, weight_decay)
    if weight_decay and keras_adam:
        raise UserError("--model.weight_decay with --model.keras_adam: Keras' Adam has no weight decay; "
                        "use one or the other")


class MnistClassifier(LightningModule):
    """Trains a network with the notebook's recipe: Adam, cross-entropy, accuracy.

    Args:
        architecture: the network: a preset name (``notebook``, ``keras_io``, ``lenet5``, ``resnet``,
            ``rows_lstm``), a YAML/JSON description file, a ``.keras`` file (its architecture, freshly
            initialised), or the description itself as a mapping. The hyper-parameters keep
            the whole description, so a checkpoint rebuilds its network without any flag.
        lr: Adam's learning rate (the notebook's 1e-4).
        keras_adam: step exactly as ``keras.optimizers.Adam`` does (for parity
            tests); plain ``torch.optim.Adam`` with Keras' epsilon otherwise.
        lr_schedule: ``constant`` (the notebook), or ``onecycle``: one-cycle
            warm-up and annealing to ``lr`` as peak over the whole run, stepped per batch.
        label_smoothing: the training loss is ``cross_entropy(label_smoothing=...)`` (0: the
            notebook's plain cross-entropy). Validation and test losses stay plain
            cross-entropy, so ``val/loss`` is comparable between runs with and without it.
        weight_decay: decoupled weight decay (``torch.optim.AdamW``) on the kernels of the
            convolution and dense layers, not on biases or BatchNorm; 0 (the notebook) keeps Adam.
        channels_last: keep activations in NHWC memory, faster for this CNN on CPU and GPU.
    """

    def __init__(self, architecture: str | dict = DEFAULT_PRESET, lr: float = 1e-4, keras_adam: bool = False,
                 lr_schedule: Literal["constant", "onecycle"] = "constant", label_smoothing: float = 0.0,
                 weight_decay: float = 0.0, channels_last: bool = True) -> None:
        super().__init__()
        check_training_settings(lr, label_smoothing, weight_decay, keras_adam)
        self.save_hyperparameters()
        self.architecture = load_architecture(architecture)
        self.hparams["architecture"] = self.architecture.to_config()  # checkpoints describe their network
        self.network: nn.Module = KerasNetwork(self.architecture)
        self.use_channels_last(channels_last)

        # One loss mean and one accuracy per stage, keyed by the names they are logged under
        # (train/loss, train/acc, val/loss, ...). They accumulate on the device, one add a step each.
        self.metrics = nn.ModuleDict({f"{stage}/{name}": EpochMean() for stage in STAGES for name in ("loss", "acc")})
        self._unlogged_stages: set[str] = set()
        # The probabilities of the last test pass, batch by batch: the test report reuses them (one pass over
        # the test set, not two) where they cover the whole set in order (lightning_mnist/training/reports.py).
        self.tested_probabilities: list[torch.Tensor] = []
        self._training_epoch_open = False  # between the start and the end of a training epoch

    def use_channels_last(self, enabled: bool) -> None:
        """NHWC memory for 4-D tensors: faster for these CNNs on CPU and GPU (weights and inputs alike)."""
        self.channels_last = enabled
        if enabled:
            self.network = self.network.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a batch of (N, C, H, W) images scaled to [0, 1] (0-255 for a network that rescales them
        itself: :attr:`Architecture.pixel_scale`)."""
        return self.network(self.network_inputs(x))

    def network_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] as the network takes them (its pixel scale, this module's memory format)."""
        if self.architecture.pixel_scale != 1.0:
            x = x * self.architecture.pixel_scale
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Class probabilities, as Keras' softmax output layer gives them."""
        return torch.softmax(self(x), dim=1)

    def _logits_and_activity(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if getattr(self.network, "penalises_activity", False):  # Keras' activity regularizers: with the logits
            return self.network.logits_and_activity_penalty(self.network_inputs(images))
        return self(images), None  # the forward (a torch.compile'd module's compiled one)

    def _scored_in_parts(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`_logits_and_activity` of a validation or test batch, in parts of at most :data:`SCORED_VALUES` values
        held (the same numbers: each image's logits are its own, the activity penalty their mean)."""
        rows = max(1, SCORED_VALUES // max(1, self.architecture.activation_values))
        if len(images) <= rows:
            return self._logits_and_activity(images)
        parts = [(len(part), *self._logits_and_activity(part)) for part in images.split(rows)]
        penalties = [count * activity for count, _, activity in parts if activity is not None]
        return torch.cat([logits for _, logits, _ in parts]), sum(penalties) / len(images) if penalties else None

    def _shared_step(self, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(the batch's mean loss, its logits), the loss and accuracy added to the stage's epoch means."""
        images, labels = batch
        logits, activity = self._logits_and_activity(images) if stage == "train" else self._scored_in_parts(images)
        losses = F.cross_entropy(logits, labels, reduction="none",
                                 label_smoothing=self.hparams.label_smoothing if stage == "train" else 0.0)
        penalty = self.network.regularization_loss()
        # Keras' weight and activity regularizers: added to every image's loss, as Keras adds them to the batch's
        for term in (penalty, activity):
            if term is not None:
                losses = losses + term
        # Per-image values, so that a short last batch weighs less.
        self.metrics[f"{stage}/loss"].update(losses.detach())
        self.metrics[f"{stage}/acc"].update(logits.detach().argmax(dim=1) == labels)
        if stage in self._unlogged_stages:
            # Once per epoch is enough: Lightning keeps the Metric objects and computes, syncs and
            # resets them when the epoch ends. self.log in every step would cost ~0.2 ms a call.
            self._unlogged_stages.discard(stage)
            self.log_dict({name: metric for name, metric in self.metrics.items() if name.startswith(f"{stage}/")},
                          on_step=False, on_epoch=True, prog_bar=True)
        return losses.mean(), logits

    @property
    def automatic_optimization(self) -> bool:
        """Lightning's automatic optimization only where a Trainer setting needs it; otherwise this module steps.

        Lightning's automatic loop wraps each step in a closure run inside ``optimizer.step`` and
        calls a dozen hooks around it: about 0.25 ms a step on 2 CPU cores
        (``benchmarks/step_overhead.py``), 5 % of this CNN's step at batch 32. Stepping here
        (Lightning's manual optimization: ``manual_backward``, the wrapped optimizer's ``step``)
        does the same update without it. Gradient accumulation and clipping are Trainer settings
        only the automatic loop applies, so a run that asks for them gets it.
        """
        try:
            trainer = self.trainer
        except RuntimeError:  # not attached to a Trainer
            return True
        return trainer.accumulate_grad_batches != 1 or bool(trainer.gradient_clip_val)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        """One optimizer step on a batch of (images, labels), or one on each batch of a list of them: the
        data module's ``steps_per_execution`` (Keras' name), Lightning's loop and hooks run once per list."""
        if isinstance(batch, list) and batch and not isinstance(batch[0], torch.Tensor):
            return self.execute(batch)
        loss, _ = self._shared_step(batch, "train")
        every = self.trainer.log_every_n_steps
        if every and (self.global_step + 1) % every == 0:  # the steps the trainer writes to its loggers
            self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        if not self.automatic_optimization:
            self.optimize(loss)  # counts the step: global_step is one more after it
        return loss

    def execute(self, batches: list) -> torch.Tensor:
        """An optimizer step on each batch in turn (as many steps as batches, global_step counting each, none
        past ``max_steps``); the last one's loss is logged as ``train/loss_step``, once per execution."""
        if self.automatic_optimization:
            raise ValueError("steps_per_execution above 1 needs this module to step its optimizer itself: "
                             "gradient accumulation and clipping (Lightning's automatic loop) take one batch a step")
        limit = self.trainer.max_steps
        for batch in batches:
            if 0 <= limit <= self.global_step:  # --trainer.max_steps within an execution: Lightning stops after it
                break
            loss, _ = self._shared_step(batch, "train")
            self.optimize(loss)
        self.log("train/loss_step", loss, on_step=True, on_epoch=False, prog_bar=True)
        return loss

    def optimize(self, loss: torch.Tensor) -> None:
        """One optimizer step on ``loss``, and the per-batch learning-rate schedule's, as the automatic loop would."""
        optimizer = self.optimizers()
        optimizer.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        optimizer.step()
        self.after_optimizer_step()
        schedule = self.lr_schedulers()
        if schedule is not None:  # configure_optimizers' only schedule steps per batch ("interval": "step")
            schedule.step()

    def optimizer_step(self, *args, **kwargs) -> None:
        """Lightning's automatic step (gradient accumulation or clipping asked for), then
        :meth:`after_optimizer_step`."""
        super().optimizer_step(*args, **kwargs)
        self.after_optimizer_step()

    def after_optimizer_step(self) -> None:
        """Keras' weight constraints, which its optimizers apply after every step (none: nothing to do)."""
        if getattr(self.network, "weight_constraints", ()):
            self.network.apply_constraints()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._shared_step(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        _, logits = self._shared_step(batch, "test")
        if self.trainer.world_size == 1:  # each process of a distributed test sees a share of the images
            self.tested_probabilities.append(torch.softmax(logits.detach().float(), dim=1).cpu())

    def on_fit_start(self) -> None:
        # the optimizers as built, before a resumed checkpoint's groups replace theirs, flags included (a GPU run's
        # capturable Adam fails its first step on a CPU, hostile round 10): put back in on_train_start
        self._implementation = [[{flag: group[flag] for flag in IMPLEMENTATION_FLAGS if flag in group}
                                 for group in optimizer.param_groups] for optimizer in self.trainer.optimizers]

    def on_train_start(self) -> None:
        for optimizer, groups in zip(self.trainer.optimizers, getattr(self, "_implementation", [])):
            for group, flags in zip(optimizer.param_groups, groups):
                group.update(flags)
        self._unlogged_stages.add("train")  # a run resumed mid-epoch skips on_train_epoch_start
        self.tested_probabilities = []  # an earlier test's, of weights that training now changes
        self._training_epoch_open = True

    def on_train_epoch_start(self) -> None:
        self._unlogged_stages.add("train")
        self._training_epoch_open = True
        for metric in self._train_metrics().values():
            metric.reset()  # an epoch starts from nothing, whatever a checkpoint put there

    def on_train_epoch_end(self) -> None:
        self._training_epoch_open = False

    def _train_metrics(self) -> dict[str, Metric]:
        return {name: metric for name, metric in self.metrics.items() if name.startswith("train/")}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if self._training_epoch_open:
            checkpoint[EPOCH_IN_PROGRESS] = {name: {key: value.detach().clone() for key, value in
                                                    metric.metric_state.items()}
                                             for name, metric in self._train_metrics().items()}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # torchmetrics' public merge: into a reset metric, the saved sums come back exactly. A checkpoint
        # of an older release kept torchmetrics' own states: its epoch means then start at the resume.
        for name, state in (checkpoint.get(EPOCH_IN_PROGRESS) or {}).items():
            metric = self._train_metrics().get(name)
            if metric is not None and set(state) == set(metric.metric_state):
                metric.reset()
                metric.merge_state({key: value.to(metric.device) for key, value in state.items()})

    def on_validation_epoch_start(self) -> None:
        self._unlogged_stages.add("val")

    def on_test_epoch_start(self) -> None:
        self._unlogged_stages.add("test")
        self.tested_probabilities = []

    def predict_step(self, batch, batch_idx: int) -> torch.Tensor:
        images = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.predict_proba(images)

    def total_optimizer_steps(self) -> int:
        """The optimizer steps of the whole run: what the one-cycle schedule spans.

        Lightning's ``estimated_stepping_batches`` counts the batches it takes; a data module whose batches
        each hold several (``steps_per_execution``) says how many optimizer steps an epoch's batches make.
        """
        trainer = self.trainer
        batches = trainer.estimated_stepping_batches  # also counts an epoch's batches (num_training_batches)
        steps_of = getattr(trainer.datamodule, "optimizer_steps", None)
        # one step a batch (or a data module that does not say) and Lightning's count is right; so it is for a run
        # that only max_steps bounds, which counts optimizer steps
        if steps_of is None or steps_of(1) == 1 or trainer.max_epochs in (None, -1):
            return batches
        steps = trainer.max_epochs * steps_of(trainer.num_training_batches)
        return steps if trainer.max_steps == -1 else min(steps, trainer.max_steps)

    def configure_optimizers(self):
        optimizer = adam_for(self.network, self.hparams.lr, self.hparams.weight_decay, self.hparams.keras_adam,
                             self.device)
        if self.hparams.lr_schedule == "constant":
            return optimizer
        # the curve's shape comes from mnist_common.schedules, which the Keras reference computes too
        schedule = OneCycleLR(optimizer, max_lr=self.hparams.lr, total_steps=self.total_optimizer_steps(),
                              **ONE_CYCLE.torch_kwargs())
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def adam_for(network: nn.Module, lr: float, weight_decay: float = 0.0, keras_adam: bool = False,
             device: torch.device = torch.device("cpu")) -> torch.optim.Optimizer:
    """The Adam :meth:`MnistClassifier.configure_optimizers` steps ``network`` with (a resumed run's saved state is
    compared with it): AdamW with ``weight_decay`` on the kernels, else Adam (Keras' update with ``keras_adam``),
    Keras' epsilon; the fused kernel (the same Adam in one pass over the parameters) on a CPU or CUDA ``device``."""
    fused = True if device.type in ("cpu", "cuda") else None
    groups = optimizer_parameter_groups(network, weight_decay)
    if weight_decay:
        decaying, constant = groups
        groups = [{"params": decaying, "weight_decay": weight_decay}, {"params": constant, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=lr, eps=KERAS_ADAM_EPSILON, fused=fused)
    return (KerasAdam if keras_adam else torch.optim.Adam)(groups[0], lr=lr, eps=KERAS_ADAM_EPSILON, fused=fused)


def optimizer_parameter_groups(network: nn.Module, weight_decay: float) -> list[list[nn.Parameter]]:
    """The parameters :meth:`MnistClassifier.configure_optimizers` steps, group by group: the trainable ones (not a
    frozen layer's, Keras' neither), and with weight decay the kernels (conv, dense: 2-D and up), which decay, apart
    from the biases and BatchNorm's scale and shift, which do not. A resumed run's optimizer state is checked
    against them (:mod:`lightning_mnist.training.resume`)."""
    params = [p for p in network.parameters() if p.requires_grad]
    if weight_decay:
        return [[p for p in params if p.ndim > 1], [p for p in params if p.ndim <= 1]]
    return [params]

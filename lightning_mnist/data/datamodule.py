"""MNIST as a LightningDataModule: in-memory tensors, seeded stratified splits, augmentation.

The training batches come in an order a run stopped between two batches resumes exactly
(:mod:`lightning_mnist.data.resumable`).
"""

from __future__ import annotations

import math

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, TensorDataset

from mnist_common.errors import UserError
from mnist_common.mnist import ensure_files, load_mnist
from mnist_common.settings import check_data_settings, optimizer_steps
from mnist_common.splits import DEFAULT_SPLIT_SEED, DEFAULT_VAL_FRACTION, Split, make_split
from lightning_mnist.data.augment import NotebookAugmentation
from lightning_mnist.data.resumable import EpochOrder, ResumableDataLoader


def to_tensor(images) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float32 (N, 1, 28, 28) in [0, 1], as the notebook scales pixels."""
    return torch.from_numpy(images).float().div_(255.0).unsqueeze(1)


class InMemoryDataset(TensorDataset):
    """A TensorDataset that hands the DataLoader whole batches by fancy indexing.

    ``__getitems__`` turns a batch of indices into one indexing op instead of one
    ``__getitem__`` call per image plus a collate. On a GPU the tensors live on the device
    (:meth:`move_to`), and a batch's indices reach it through pinned memory without waiting: a
    plain copy from the host waits for every kernel queued before it, so each step's data would
    drain the GPU's queue.
    """

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices)
        device = self.tensors[0].device
        if device.type == "cuda":
            index = index.pin_memory().to(device, non_blocking=True)
        return tuple(t[index] for t in self.tensors)

    def move_to(self, device: torch.device) -> None:
        self.tensors = tuple(t.to(device) for t in self.tensors)


def keep_batch(batch):
    """collate_fn for :class:`InMemoryDataset`, whose batches are already stacked."""
    return batch


class MNISTDataModule(LightningDataModule):
    """The notebook's data: pixels / 255, a held-out validation set, the untouched test set.

    Args:
        data_dir: holds ``MNIST/raw`` (torchvision's layout); default ``$MNIST_DATA_DIR``, else ``./data``.
        batch_size: training batch size (the notebook's 32).
        eval_batch_size: batch size for validation, test and prediction (results do not depend on it).
        val_fraction: stratified share of the training images held out for validation.
        subset: train and validate on a stratified subset of this many training images.
        num_folds: use fold ``fold`` of a stratified k-fold split instead of the hold-out (at least 2).
        fold: which fold validates when ``num_folds`` is set (0-based; default 0).
        split_seed: seed of the subset, hold-out and fold splits (the notebook's 42).
        augment: the notebook's ImageDataGenerator augmentation on training batches.
        rotation, zoom, shift, shear: its ranges (degrees, fraction, fraction, degrees).
        elastic_alpha, elastic_sigma: with ``augment``, an elastic distortion on top (Simard et al.
            2003; not the notebook's): displacements of up to ``alpha`` pixels before smoothing by a
            Gaussian of ``sigma`` pixels. 0 (the default) leaves it off; they used 34 and 4.
        download: fetch missing files (checksums are always verified).
        steps_per_execution: Keras' ``compile(steps_per_execution=...)``: each training batch Lightning
            takes holds this many batches of ``batch_size`` (the same images in the same order), and the
            module takes an optimizer step on each, so Lightning's loop and hooks run once per this many
            steps. 1 (the default): one batch, one step. The hooks that run per batch (callbacks'
            ``on_train_batch_end``, ``log_every_n_steps``, ``val_check_interval``, ``limit_train_batches``)
            then count these groups, as Keras' callbacks count executions; ``max_steps`` and the
            learning-rate schedule count optimizer steps.
    """

    def __init__(self, data_dir: str | None = None, batch_size: int = 32, eval_batch_size: int = 500,
                 val_fraction: float = DEFAULT_VAL_FRACTION, subset: int | None = None,
                 num_folds: int | None = None, fold: int | None = None, split_seed: int = DEFAULT_SPLIT_SEED,
                 augment: bool = False, rotation: float = 5.0, zoom: float = 0.05, shift: float = 0.05,
                 shear: float = 0.05, elastic_alpha: float = 0.0, elastic_sigma: float = 4.0,
                 download: bool = True, steps_per_execution: int = 1) -> None:
        super().__init__()
        check_data_settings(batch_size=batch_size, eval_batch_size=eval_batch_size, val_fraction=val_fraction,
                            subset=subset, num_folds=num_folds, fold=fold, rotation=rotation, zoom=zoom,
                            shift=shift, shear=shear, elastic_alpha=elastic_alpha, elastic_sigma=elastic_sigma,
                            split_seed=split_seed, steps_per_execution=steps_per_execution)
        self.save_hyperparameters()
        self.augmentation = NotebookAugmentation(rotation, zoom, shift, shear, elastic_alpha,
                                                 elastic_sigma) if augment else None
        self.datasets: dict[str, InMemoryDataset] = {}
        self.train_order: EpochOrder | None = None  # the training shuffle, told of each batch the loop takes
        self._resume_order: dict = {}  # its state from a checkpoint written inside an epoch

    def prepare_data(self) -> None:
        ensure_files(self.hparams.data_dir, download=self.hparams.download)

    def setup(self, stage: str | None = None) -> None:
        if not self.datasets:
            self._load()
        # MNIST (220 MB as float32) sits on the Trainer's GPU once, as a hand-written loop would keep it:
        # no copy from the host each step (the strategy has its device by the time Lightning calls setup).
        # Any other Trainer gets it in host memory, also when this module served a GPU Trainer before.
        if self.trainer is not None:
            device = self.trainer.strategy.root_device
            home = device if device.type == "cuda" else torch.device("cpu")
            for dataset in self.datasets.values():
                dataset.move_to(home)

    def _split(self, labels) -> Split:
        hp = self.hparams
        return make_split(labels, subset=hp.subset, val_fraction=hp.val_fraction, num_folds=hp.num_folds,
                          fold=hp.fold or 0, seed=hp.split_seed)

    def training_images(self) -> int | None:
        """How many images this module trains on (its subset, hold-out or fold), read from the labels before any
        run (a resumed epoch's order is checked against it); None where the files are not here yet."""
        try:
            return len(self._split(load_mnist(self.hparams.data_dir, download=False).train_labels).train)
        except UserError:
            return None

    def _load(self) -> None:
        mnist = load_mnist(self.hparams.data_dir, download=False)
        split = self._split(mnist.train_labels)
        self.split = split
        for name, images, labels in (
            ("train", mnist.train_images[split.train], mnist.train_labels[split.train]),
            ("val", mnist.train_images[split.val], mnist.train_labels[split.val]),
            ("test", mnist.test_images, mnist.test_labels),
        ):
            self.datasets[name] = InMemoryDataset(to_tensor(images), torch.from_numpy(labels).long())

    def _loader(self, name: str, batch_size: int) -> DataLoader:
        # Data already sits in memory as tensors: worker processes would only add copies.
        return DataLoader(self.datasets[name], batch_size=batch_size, collate_fn=keep_batch)

    def train_dataloader(self) -> DataLoader:
        self.train_order = EpochOrder(len(self.datasets["train"]))
        self.train_order.load_state_dict(self._resume_order)  # a run stopped inside an epoch goes on from there
        return ResumableDataLoader(self.datasets["train"], sampler=self.train_order, collate_fn=keep_batch,
                                   batch_size=self.hparams.batch_size * self.hparams.steps_per_execution)

    def optimizer_steps(self, loader_batches: int) -> int:
        """The optimizer steps of an epoch's first ``loader_batches`` training batches (each holds
        ``steps_per_execution`` batches of ``batch_size``, the epoch's last one what is left)."""
        images = len(self.datasets["train"])
        if self.trainer is not None and self.trainer.world_size > 1:  # each process's share (DistributedSampler)
            images = math.ceil(images / self.trainer.world_size)
        return optimizer_steps(images, self.hparams.batch_size, self.hparams.steps_per_execution, loader_batches)

    def state_dict(self) -> dict:
        """The training order's state, in a checkpoint written inside an epoch (an epoch's end has none)."""
        order, trainer = self.train_order, self.trainer
        if order is None or trainer is None or not 0 < order.batches < trainer.num_training_batches:
            return {}
        return {"train_order": order.state_dict()}

    def load_state_dict(self, state_dict: dict) -> None:
        # restored before the loaders are built (and again, empty, when fit tests its best checkpoint)
        self._resume_order = dict(state_dict.get("train_order") or {})
        if self.train_order is not None:
            self.train_order.load_state_dict(self._resume_order)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", self.hparams.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", self.hparams.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        # Every training batch passes here once, as the loop takes it: where a resume would go on from
        if self.train_order is not None and self.trainer is not None and self.trainer.training:
            self.train_order.taken(len(batch[1]))
        return batch

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        # Augment training batches only, on the device the batch now lives on.
        if self.trainer is None or not self.trainer.training:
            return batch
        images, labels = batch
        if self.augmentation is not None:
            images = self.augmentation(images)
        if self.hparams.steps_per_execution == 1:
            return images, labels
        size = self.hparams.batch_size  # an execution: the module steps on each of these batches in turn
        return list(zip(images.split(size), labels.split(size)))

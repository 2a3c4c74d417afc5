"""Settings of ``python -m keras_reference train|cv``, named as Lightning's command line names them.

``--model.architecture``, ``--model.lr``, ``--data.data_dir``, ``--data.subset``,
``--data.batch_size``, ``--trainer.max_epochs``, ``--early_stopping.patience``,
``--seed_everything``, ``--output_dir``: the same flag means the same thing in both
packages, so the same run can be asked of either. Framework-free on purpose: the command
line checks flags, data files and the output folder here, in a fraction of a second,
before TensorFlow loads.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Literal

from mnist_common.architecture import DEFAULT_PRESET, Architecture
from mnist_common.keras_file import KERAS_SUFFIX
from mnist_common.legacy_h5 import LEGACY_SUFFIXES
from mnist_common.model_files import load_architecture
from mnist_common.errors import UserError
from mnist_common.mnist import ensure_files, files_present, resolve_data_dir
from mnist_common.runs import DEFAULT_OUTPUT_DIR, check_writable
from mnist_common.settings import (AUGMENT_DEFAULTS, check_augment_ranges, check_cv_folds, check_data_settings,
                                   check_folder_name, check_output_room, check_optimizer_settings, check_seed,
                                   check_training_length)
from mnist_common.splits import DEFAULT_NUM_FOLDS, DEFAULT_SPLIT_SEED, DEFAULT_VAL_FRACTION, check_split
from mnist_common.environment import check_environment

FRAMEWORK = "keras"
LIGHTNING_EMA = "lightning_mnist.training.callbacks.EMAWeightAveraging"
# Lightning's own class averages the same way (the project's also tests the averaged weights outside fit)
EMA_CLASS_PATHS = (LIGHTNING_EMA, "lightning.pytorch.callbacks.EMAWeightAveraging")
# EMAWeightAveraging's other settings at Lightning's defaults: the only values the Keras reference mirrors
EMA_DEFAULTS = {"device": None, "use_buffers": True, "update_every_n_steps": 1, "update_starting_at_step": None,
                "update_starting_at_epoch": None}
LEARNING_RATE = 1e-4  # the notebook's Adam(learning_rate=0.0001); epsilon stays Keras' 1e-7


@dataclass(frozen=True)
class ModelSettings:
    """The network, its optimizer and its loss: the settings Lightning's ``--model.*`` has, meaning the same.

    Args:
        architecture: a preset (notebook, keras_io, lenet5, resnet, rows_lstm), a YAML/JSON description or a .keras file's architecture.
        lr: Adam's learning rate (the notebook's 1e-4); with lr_schedule onecycle, the peak.
        lr_schedule: constant (the notebook), or onecycle: torch's one-cycle curve (warm-up, then
            annealing, with Adam's beta_1 cycled inversely) over the whole run, stepped per batch.
        label_smoothing: the training loss is categorical cross-entropy with this label smoothing;
            val_loss, early stopping and the test loss stay plain cross-entropy, as in Lightning.
        weight_decay: decoupled weight decay (AdamW) on the kernels only, not on biases or
            BatchNormalization; 0 (the notebook) keeps Adam.
    """

    architecture: str = DEFAULT_PRESET
    lr: float = LEARNING_RATE
    lr_schedule: Literal["constant", "onecycle"] = "constant"
    label_smoothing: float = 0.0
    weight_decay: float = 0.0


@dataclass(frozen=True)
class DataSettings:
    """The images, their split and their augmentation (the same indices and pixels as Lightning's).

    Args:
        data_dir: the folder holding MNIST/raw (default $MNIST_DATA_DIR, else ./data).
        batch_size: training batch size (the notebook's 32).
        eval_batch_size: batch size for validation and test (results do not depend on it).
        val_fraction: stratified share of the training images held out for validation (train).
        subset: train and validate on a stratified subset of this many training images.
        num_folds: stratified folds (cv).
        split_seed: seed of the subset, hold-out and folds (the notebook's 42).
        augment: the notebook's ImageDataGenerator augmentation on training batches.
        rotation: rotation range in degrees.
        zoom: zoom range (x and y drawn independently).
        shift: shift range as a fraction of the image size.
        shear: shear range in degrees.
        elastic_alpha: an elastic distortion (Simard et al. 2003) of this many pixels on top (0: none), as Lightning's.
        elastic_sigma: the elastic distortion's smoothness in pixels (its Gaussian filter's sigma).
        download: fetch missing MNIST files (checksums are always verified).
        steps_per_execution: Keras' ``compile(steps_per_execution=...)``: batches per call of the compiled
            training step (its callbacks' batch hooks then run once per call), as Lightning's data module groups
            them.
    """

    data_dir: str | None = None
    batch_size: int = 32
    eval_batch_size: int = 500
    val_fraction: float = DEFAULT_VAL_FRACTION
    subset: int | None = None
    num_folds: int | None = None
    split_seed: int = DEFAULT_SPLIT_SEED
    augment: bool = False
    rotation: float = 5.0
    zoom: float = 0.05
    shift: float = 0.05
    shear: float = 0.05
    elastic_alpha: float = 0.0
    elastic_sigma: float = 4.0
    download: bool = True
    steps_per_execution: int = 1


@dataclass(frozen=True)
class TrainerSettings:
    """How long to train.

    Args:
        max_epochs: at most this many epochs (the notebook's 10).
        callbacks: Lightning's extra callbacks (a shared config's ``trainer.callbacks``): the Keras reference
            mirrors one, an EMA of the weights (``lightning_mnist.training.callbacks.EMAWeightAveraging``
            with its ``decay``; :mod:`keras_reference.averaging`); a config naming any other is refused
            rather than run without it.
    """

    max_epochs: int = 10
    callbacks: list[dict] | None = None

    def ema_decay(self) -> float | None:
        """The decay of the EMA of the weights ``callbacks`` asks for (None: no EMA), or a one-line UserError
        naming what Keras cannot do: any other callback, or EMA settings other than Lightning's defaults."""
        if not self.callbacks:
            return None
        names = [str(c.get("class_path", c)) if isinstance(c, dict) else str(c) for c in self.callbacks]
        if len(self.callbacks) != 1 or names[0] not in EMA_CLASS_PATHS:
            raise UserError(f"--trainer.callbacks ({', '.join(n.rsplit('.', 1)[-1] for n in names)}): Lightning "
                            f"callbacks do not run in Keras; the one the Keras reference mirrors is a single "
                            f"{LIGHTNING_EMA} (an EMA of the weights)")
        init_args = self.callbacks[0].get("init_args") if isinstance(self.callbacks[0], dict) else None
        if not isinstance(init_args, dict | None):  # a list or a word: dict() would fail with a traceback
            raise UserError(f"--trainer.callbacks EMAWeightAveraging init_args {init_args!r}: init_args must be a "
                            f"mapping of its settings, e.g. {{decay: 0.999}}")
        init_args = dict(init_args or {})
        decay = init_args.pop("decay", 0.999)
        other = {k: v for k, v in init_args.items() if EMA_DEFAULTS.get(k, object()) != v}
        if other:
            raise UserError(f"--trainer.callbacks EMAWeightAveraging {other}: the Keras reference mirrors its decay "
                            f"only, with Lightning's defaults for {', '.join(EMA_DEFAULTS)}")
        if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay <= 1.0:
            raise UserError(f"--trainer.callbacks EMAWeightAveraging decay {decay!r}: a number from 0 to 1")
        return float(decay)


Monitor = Literal["val/loss", "val/acc"]  # Lightning's names; Keras logs them as val_loss and val_accuracy


@dataclass(frozen=True)
class EarlyStoppingSettings:
    """Keras' EarlyStopping (as the notebook did), on what Lightning's ``--early_stopping.*`` names.

    Args:
        monitor: val/loss (plain cross-entropy, even when the training loss is label-smoothed) or val/acc.
        mode: min for a loss, max for an accuracy.
        patience: epochs without a better monitored value before training stops.
    """

    monitor: Monitor = "val/loss"
    mode: Literal["min", "max"] = "min"
    patience: int = 3


@dataclass(frozen=True)
class CheckpointSettings:
    """Which epoch's weights are tested and saved (``model.keras``): Lightning's ``--checkpoint.*`` the Keras
    reference mirrors. The other ``checkpoint`` settings (files, folders, names) are Lightning's own and refused.

    Args:
        monitor: the epoch with the best val/loss or val/acc is kept.
        mode: min for a loss, max for an accuracy.
        save_top_k: how many best epochs Lightning keeps: 1 (the one tested and saved as ``model.keras``), or -1,
            Lightning's "every epoch": each epoch's weights kept too, as ``checkpoints/epochNN.keras``
            (``train`` only). Keeping the k best of several is Lightning's alone.
        save_last: Lightning's ``last.ckpt``, the run's last epoch; here ``last.keras`` beside ``model.keras``.
    """

    monitor: Monitor = "val/loss"
    mode: Literal["min", "max"] = "min"
    save_top_k: int = 1
    save_last: bool = False


KEEP_EVERY_EPOCH = -1  # --checkpoint.save_top_k: Lightning's value for "keep every epoch's checkpoint"
CV_DATA = DataSettings(num_folds=DEFAULT_NUM_FOLDS, augment=True)  # the notebook augmented every fold


@dataclass(frozen=True)
class RunSettings:
    """Everything one ``train`` or ``cv`` run uses; stored in its results file as it was used."""

    model: ModelSettings = field(default_factory=ModelSettings)
    data: DataSettings = field(default_factory=DataSettings)
    trainer: TrainerSettings = field(default_factory=TrainerSettings)
    early_stopping: EarlyStoppingSettings = field(default_factory=EarlyStoppingSettings)
    seed_everything: int = 42  # weights, shuffling, dropout and augmentation
    output_dir: str = DEFAULT_OUTPUT_DIR
    checkpoint: CheckpointSettings = field(default_factory=CheckpointSettings)
    weights: str | None = None  # train: a .keras file whose network and weights the run starts from

    def check(self, command: str) -> RunSettings:
        """Refuse, in one line, what no run can use; check the data files and the output folder. Returns the
        settings to run: these, with ``--weights``' file as the architecture where one is given."""
        self.check_values(command)
        check_environment()  # threads (TensorFlow's kernels load libgomp too, which only warns) and Keras' backend
        check_writable(f"{self.output_dir}/{FRAMEWORK}", "--output_dir")
        ensure_files(self.data.data_dir, download=self.data.download)
        self.check_split(command)
        return self if self.weights is None else replace(self, model=replace(self.model, architecture=self.weights))

    def check_values(self, command: str) -> None:
        """The checks of the settings themselves, which read no data and touch no output folder: what
        ``--print_config`` also runs, so it never prints a config that a run would refuse."""
        check_folder_name("--output_dir", self.output_dir)
        check_output_room("--output_dir", self.output_dir)
        check_folder_name("--data.data_dir", self.data.data_dir)
        architecture = load_architecture(self.model.architecture) if self.weights is None \
            else self.starting_architecture()
        architecture.require_mnist(f"`{command}` on MNIST")
        architecture.require_trainable(f"`{command}`")
        # Keras' fit would fail with TensorFlow's traceback after loading the data
        architecture.require_graph_safe_names("Keras cannot fit it", "train it with python -m lightning_mnist fit",
                                              where=f"--model.architecture {self.model.architecture}")
        check_optimizer_settings(self.model.lr, self.model.label_smoothing, self.model.weight_decay)
        self.trainer.ema_decay()
        check_training_length(max_epochs=self.trainer.max_epochs, patience=self.early_stopping.patience)
        if self.checkpoint.save_top_k not in (1, KEEP_EVERY_EPOCH):
            raise UserError(f"--checkpoint.save_top_k {self.checkpoint.save_top_k}: the Keras reference keeps the one "
                            f"best epoch's weights, the ones it tests (1), or every epoch's ({KEEP_EVERY_EPOCH})")
        if command == "cv" and self.checkpoint.save_top_k == KEEP_EVERY_EPOCH:
            raise UserError(f"--checkpoint.save_top_k {KEEP_EVERY_EPOCH}: `cv` keeps each fold's chosen epoch only; "
                            "every epoch's weights are `train`'s")
        check_seed(self.seed_everything)
        if command == "cv":
            check_cv_folds(self.data.num_folds, val_fraction=self.data.val_fraction)
        if command == "train" and self.data.num_folds is not None:
            raise UserError(f"--data.num_folds {self.data.num_folds}: train validates on the hold-out "
                            f"(--data.val_fraction); k-fold runs are `cv`'s")
        data = self.data
        check_data_settings(batch_size=data.batch_size, eval_batch_size=data.eval_batch_size,
                            val_fraction=data.val_fraction, subset=data.subset,
                            num_folds=data.num_folds if command == "cv" else None, fold=None, rotation=data.rotation,
                            zoom=data.zoom, shift=data.shift, shear=data.shear, elastic_alpha=data.elastic_alpha,
                            elastic_sigma=data.elastic_sigma, split_seed=data.split_seed,
                            steps_per_execution=data.steps_per_execution)
        check_augment_ranges(data.augment, **{name: getattr(data, name) for name in AUGMENT_DEFAULTS})

    def starting_architecture(self) -> Architecture:
        """The network of the ``.keras`` file ``--weights`` names (read and checked; Keras is not needed), which must be
        ``--model.architecture``'s where that is not the default."""
        if not str(self.weights).strip():
            raise UserError(f"--weights {self.weights!r}: empty; give a {KERAS_SUFFIX} file")
        suffix = Path(self.weights).suffix.lower()
        if suffix != KERAS_SUFFIX:
            what = {".ckpt": "a Lightning checkpoint", **dict.fromkeys(LEGACY_SUFFIXES, "a legacy HDF5 model")}
            convert = f" ({what[suffix]} converts to one: python -m lightning_mnist convert {self.weights} " \
                      f"{Path(self.weights).stem}{KERAS_SUFFIX})" if suffix in what else ""
            raise UserError(f"--weights {self.weights}: the Keras reference starts from a {KERAS_SUFFIX} file{convert}")
        try:
            architecture = load_architecture(self.weights)
        except UserError as err:
            raise UserError(f"--weights: {err}") from None
        if self.model.architecture != DEFAULT_PRESET \
                and not load_architecture(self.model.architecture).same_network(architecture):
            raise UserError(f"--model.architecture {self.model.architecture}: {self.weights} holds "
                            f"{architecture.name}, the network a run from its weights trains (leave the flag out)")
        return architecture

    def check_split(self, command: str) -> None:
        """The split the data settings draw can be drawn (the training labels are read for it)."""
        data = self.data
        check_split(data.data_dir, subset=data.subset, val_fraction=data.val_fraction,
                    num_folds=data.num_folds if command == "cv" else None, seed=data.split_seed)

    def check_printable(self, command: str) -> None:
        """What ``--print_config`` checks: the values, and the split where the data is already here (nothing is
        downloaded just to print a config)."""
        self.check_values(command)
        if files_present(self.data.data_dir):
            self.check_split(command)

    def with_data(self, **changes) -> RunSettings:
        return replace(self, data=replace(self.data, **changes))

    def as_dict(self) -> dict:
        settings = asdict(self)
        settings["data"]["data_dir"] = str(resolve_data_dir(self.data.data_dir))
        return settings

"""``python -m lightning_mnist fit|validate|test|cv``: LightningCLI with the notebook's defaults.

Every run owns a folder, ``<output_dir>/lightning/{version,cv,test,validate}_N``, taken
atomically when it starts (:mod:`mnist_common.runs`): its config, metrics, checkpoints,
``results.json`` and figures go there, so runs started side by side never share files.
``fit`` tests its best checkpoint at the end; ``cv`` trains a fresh model per fold and
tests the ensemble.

Everything a command line can get wrong is checked in :meth:`MnistCLI.parse_arguments`,
before a model, a data module or a run folder exists: bad settings, data that is missing,
checkpoints that are missing, damaged, of another network or not loadable weights-only.
Checkpoints are read by :mod:`lightning_mnist.checkpoints` first (weights-only; a URL is
fetched to a temporary file and read the same way), and Lightning then loads them with
``weights_only=True``. ``--ckpt_path last`` resumes the most recent run in ``output_dir``
into its own folder, with its own settings.
"""

from __future__ import annotations

import csv
import enum
import functools
import importlib
import inspect
import io
import logging
import math
import os
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Union

import torch
import yaml
from jsonargparse import Namespace, dict_to_namespace, namespace_to_dict
from lightning.fabric.plugins.environments import LSFEnvironment, SLURMEnvironment, TorchElasticEnvironment
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch import Trainer
from lightning.pytorch.accelerators import AcceleratorRegistry, CPUAccelerator, CUDAAccelerator, MPSAccelerator
from lightning.pytorch.callbacks import EarlyStopping, Timer, WeightAveraging
from lightning.pytorch.callbacks import ProgressBar as ProgressBarBase
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, instantiate_class
from lightning.pytorch.trainer.states import TrainerFn, TrainerStatus
from lightning.pytorch.utilities import rank_zero as lightning_rank_zero
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mnist_common.allocator import keep_freed_memory
from mnist_common.model_files import load_architecture
from mnist_common.cli import (ArgumentError, argument_error_line, check_config_text, flag_values,
                               parameter_types, refuse_nulls, without_print_config)
from mnist_common.errors import (EXIT_INTERRUPTED, EXIT_TERMINATED, LEFT_TO_THE_LIBRARY, TERMINATING, UserError,
                                 escaped, exit_on_user_error, one_line, path_text)
from mnist_common.figures import plot_curves
from mnist_common.files import write_text
from mnist_common.keras_file import KERAS_SUFFIX
from mnist_common.legacy_h5 import LEGACY_SUFFIXES
from mnist_common.mnist import TEST_IMAGES, ensure_files, files_present
from mnist_common.results import CURVES_FILE, RESULTS_FILE, RunResults, write_json
from mnist_common.settings import (AUGMENT_DEFAULTS, check_augment_ranges, check_cv_folds, check_data_settings,
                                   check_folder_name, check_output_room, check_seed, check_training_length,
                                   optimizer_steps)
from mnist_common.splits import check_split
from mnist_common.runs import (CHECKPOINTS, DEFAULT_OUTPUT_DIR, RESUME_FILE, allocate_run_dir, discard_if_empty_of_work,
                               hold_run, latest_resumable_run, relative_to_run, release_runs, run_dir_of_checkpoint,
                               check_writable)
from lightning_mnist.checkpoints import (CKPT_SUFFIX, RESULTS_SUFFIX, TORCH_LOADERS, Checkpoint, fetch_model_file,
                                         load_classifier, load_networks, read_checkpoint, save_checkpoint)
from lightning_mnist.data import MNISTDataModule
from lightning_mnist.formats import FORMATS
from lightning_mnist.models import MnistClassifier
from lightning_mnist.models.classifier import (MONITORED, adam_for, check_training_settings,
                                              optimizer_parameter_groups)
from lightning_mnist.training.callbacks import (EpochHistory, ProgressBar, RandomState, RunCheckpoint, RunConfig,
                                               StopBetweenBatches, by_sigterm, disk_full, interrupted,
                                               refuse_diverged)
from lightning_mnist.training.cuda_probe import stop_probing_for_cuda
from lightning_mnist.training.cv import cross_validate
from lightning_mnist.training.outputs import RUN_CONFIG_FILE, RUN_PREFIX, point_outputs_at
from lightning_mnist.training.reports import write_test_report
from lightning_mnist.training.resume import check_training_state

FRAMEWORK = "lightning"
CV_DEFAULTS = Path(__file__).with_name("cv_defaults.yaml")  # package data
# The run folder rank 0 took, for the processes Lightning's DDP launcher starts with the same command
# line (they inherit the environment and have LOCAL_RANK set): they must share it, not take their own.
RUN_DIR_ENV = "LIGHTNING_MNIST_RUN_DIR"
# Data settings a resumed run may change: where the same files are, and how they are batched for scoring.
RESUMABLE_DATA_CHANGES = {"data_dir", "download", "eval_batch_size"}
# What a resumed run keeps from its config.yaml, beside the model's and the data's settings (which the
# checkpoint holds): the seed, the callbacks whose state the checkpoint restores (Lightning would
# silently put back the run's patience and monitors), and what the Trainer does in each step and
# epoch. The devices, the logger, the progress bar and how long to train (max_epochs, max_steps,
# max_time) may change. "" is the config's top level.
KEPT_FROM_RUN_CONFIG = {
    "": ("seed_everything", "optimizer", "lr_scheduler"),  # LightningCLI's optimizer: the checkpoint's state is its
    "early_stopping": None,  # every setting
    "checkpoint": None,
    "trainer": ("accumulate_grad_batches", "gradient_clip_val", "gradient_clip_algorithm", "precision",
                "limit_train_batches", "limit_val_batches", "val_check_interval", "check_val_every_n_epoch",
                "min_epochs", "deterministic", "benchmark"),
}

# The model's settings of its own optimizer and schedule (what LightningCLI's --optimizer replaces)
MODEL_OPTIMIZER_SETTINGS = ("lr_schedule", "weight_decay", "keras_adam")
# ... and for a run whose learning-rate schedule spans it (one-cycle: its total steps are saved in its state, and
# torch's schedule stops the run with an error one step past them)
RUN_LENGTH = {"trainer": ("max_epochs", "max_steps")}
ONE_CYCLE_STEPS = "total_steps"  # in OneCycleLR's state_dict


class MnistTrainer(Trainer):
    """Lightning's Trainer with a ``cv`` method, which LightningCLI offers and runs as a subcommand like ``fit``.

    The folds need the CLI itself (each fold re-instantiates the model, data, callbacks, logger and
    Trainer from the config), so the CLI hands them over as :attr:`folds` once its classes exist.
    """

    folds: Callable[[], Any] | None = None

    def cv(self, model, datamodule) -> None:
        """Stratified k-fold cross-validation: a fresh model, optimizer, callbacks and logger per fold."""
        if self.folds is None:
            raise RuntimeError("run k-fold cross-validation as `python -m lightning_mnist cv`")
        self.folds()


def _signature_defaults(cls) -> dict[str, Any]:
    return {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty}


class HeldLogs(logging.Handler):
    """Lightning's info lines ("Seed set to 42", the devices found) held while the CLI builds its classes.

    They are printed when the Trainer and the callbacks have been built, as they would have been;
    a setting those classes refuse ends as one ``error:`` line with nothing printed before it.
    """

    LOGGERS = ("lightning.pytorch", "lightning.fabric")

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.saved = {name: logging.getLogger(name).handlers[:] for name in self.LOGGERS}
        for name in self.LOGGERS:
            logging.getLogger(name).handlers[:] = [self]

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def end(self, show: bool) -> None:
        """Give the loggers their handlers back; with ``show``, print what was held through them."""
        if self.saved is None:
            return
        for name, handlers in self.saved.items():
            logging.getLogger(name).handlers[:] = handlers
        self.saved = None
        for record in self.records if show else ():
            logging.getLogger(record.name).handle(record)


class SigtermIsNoKeyboardInterrupt(logging.Filter):
    """Leaves out Lightning's "Detected KeyboardInterrupt" line where the interrupt was SIGTERM's: the project raises
    it as :class:`Terminated`, a KeyboardInterrupt (so that no ``except Exception`` swallows it), which Lightning's
    Trainer takes for a Ctrl-C; the command's own line says SIGTERM."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (TERMINATING and "Detected KeyboardInterrupt" in record.getMessage())


def all_subcommands() -> dict[str, set[str]]:
    """LightningCLI's subcommands (the ``Trainer`` method each calls -> what it is given) as this project has them."""
    commands = dict(LightningCLI.subcommands())
    del commands["predict"]  # ``python -m lightning_mnist predict`` predicts picture files instead
    commands["cv"] = {"model", "datamodule"}
    return commands


class MnistCLI(LightningCLI):
    def __init__(self, *args, **kwargs) -> None:
        kwargs["trainer_defaults"] = {
            "max_epochs": 10,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": {"save_dir": DEFAULT_OUTPUT_DIR}},
            **kwargs.get("trainer_defaults", {}),
        }
        given = kwargs.get("args")
        if given is None and not args:  # LightningCLI reads the process' own command line then
            given = sys.argv[1:]
        # the one subcommand the command line names (every one for a top-level --help or an unknown name)
        self.requested = given[0] if isinstance(given, list) and given and given[0] in all_subcommands() else None
        kwargs.setdefault("seed_everything_default", 42)
        # a resumed run rewrites its config.yaml
        kwargs.setdefault("save_config_kwargs", {"overwrite": True, "config_filename": RUN_CONFIG_FILE})
        kwargs.setdefault("save_config_callback", RunConfig)
        # cv's own defaults (the notebook's "advanced training"), through LightningCLI's per-subcommand parser kwargs
        kwargs.setdefault("parser_kwargs", {"cv": {"default_config_files": [str(CV_DEFAULTS)]}}
                          if "cv" in self.subcommands() else {})
        self.run_dir: Path | None = None
        self._temporary: tempfile.TemporaryDirectory | None = None  # see temporary_dir()
        self._held_logs = HeldLogs()  # until the classes are built (after_instantiate_classes)
        try:
            super().__init__(MnistClassifier, MNISTDataModule, *args, trainer_class=MnistTrainer, **kwargs)
        finally:
            self._held_logs.end(show=False)  # refused before the classes were built: only the error line
            release_runs()  # the run folder it trained in (hold_run): another command may take it now

    def temporary_dir(self) -> Path:
        """A folder for fetched or converted checkpoints, created only when one is needed.

        A run that needs none (every ``fit`` of a local run) makes none, so a run killed where no
        clean-up can happen (SIGKILL) leaves no empty ``lightning_mnist_*`` folder in the system's.
        """
        if self._temporary is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="lightning_mnist_")
        return Path(self._temporary.name)

    # --- the parser -------------------------------------------------------------------------
    def subcommands(self) -> dict[str, set[str]]:
        """The subcommand the command line names, alone: LightningCLI builds a parser for each one listed here (the
        Trainer's, the model's and the data's signatures read again: 0.2 s of a command's start-up), and a command
        runs one. Every one where none is named (a top-level ``--help``, an unknown name that the parser refuses)."""
        commands = all_subcommands()
        return {self.requested: commands[self.requested]} if self.requested in commands else commands

    def init_parser(self, **kwargs: Any) -> LightningArgumentParser:
        # Errors are raised, not printed with the usage, so main() can make them one line.
        return super().init_parser(**{**kwargs, "exit_on_error": False})

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--output_dir", type=str, default=DEFAULT_OUTPUT_DIR,
                            help="each run gets its own folder in <output_dir>/lightning (version_N for fit, cv_N, "
                                 "test_N, validate_N): config, metrics, checkpoints, results and figures")
        parser.add_argument("--weights", type=Union[str, None], default=None,
                            help="fit: start from this model's weights, a .ckpt or a .keras file (fine-tuning: its "
                                 "frozen layers, trainable false, stay as they are); the run's network is the file's")
        parser.add_lightning_class_args(RunCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.dirpath": None,  # the run folder's checkpoints/
            "checkpoint.filename": "epoch{epoch:02d}-val_loss{val/loss:.4f}",
            "checkpoint.auto_insert_metric_name": False,
            "checkpoint.monitor": "val/loss",
            "checkpoint.mode": "min",
            "checkpoint.save_top_k": 1,
            "checkpoint.save_last": True,
            "checkpoint.save_on_exception": True,  # Ctrl-C keeps the work: resume with --ckpt_path last
        })
        parser.add_lightning_class_args(EarlyStopping, "early_stopping")
        parser.set_defaults({"early_stopping.monitor": "val/loss", "early_stopping.mode": "min",
                             "early_stopping.patience": 3})
        parser.add_lightning_class_args(EpochHistory, "history")  # always there: the run's per-epoch history
        parser.add_lightning_class_args(RandomState, "random_state")  # always there: resumes draw what they would have
        parser.add_lightning_class_args(StopBetweenBatches, "interrupt")  # always there: Ctrl-C stops where a resume is exact

    # --- checks, before anything is built ---------------------------------------------------
    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        argv = sys.argv[1:] if args is None else args if isinstance(args, (list, tuple)) else []
        check_config_text(argv, self.setting_types(argv))
        printed = without_print_config(argv)
        if printed is not None:  # check what --print_config would print first: it prints (and exits) while parsing
            self._parse_and_check(parser, printed, printing=True)
        self._parse_and_check(parser, args)

    def _parse_and_check(self, parser: LightningArgumentParser, args, printing: bool = False) -> None:
        """LightningCLI's parse (into ``self.config``), its usage errors as one line, then the checks.

        ``printing``: ``args`` are the command line minus ``--print_config``, parsed straight through the parser
        (LightningCLI's own parse would warn that ``args`` and ``sys.argv`` both hold flags, which here they do by
        design), and checked as a config to print: its values, and the split only where the data is here."""
        try:
            if printing:
                self.config = parser.parse_args(args)
            else:
                super().parse_arguments(parser, args)
        except ArgumentError as err:
            argv = sys.argv[1:] if args is None else args
            if not isinstance(argv, (list, tuple)):
                raise UserError(" ".join(str(err).split())) from None
            raise UserError(argument_error_line(err, argv, self.setting_types(argv))) from None
        subcommand = self.config.get("subcommand")
        if not subcommand:
            return
        config = self.config[subcommand]
        refuse_nulls(config, self.setting_types([subcommand]))  # model: {lr: null} in a config
        check_flags_used(subcommand, sys.argv[1:] if args is None else args)
        if printing:
            self._check_values(subcommand, config)
            if files_present(config.data.data_dir):  # no download just to print a config
                self._check_split_settings(subcommand, config)
            return
        self._given = given_settings(parser, args, subcommand) if subcommand != "cv" else None
        self._check(subcommand, config)

    def setting_types(self, argv) -> dict[str, Any]:
        """The types of the settings of the subcommand in ``argv``, by group, for a refused value's one line."""
        subcommand = next((a for a in argv if a in self.subcommands()), None)
        method = getattr(self.trainer_class, subcommand, None) if subcommand else None
        return {**(parameter_types(method) if method else {}),  # ckpt_path, weights_only...
                "model": self.model_class, "data": self.datamodule_class, "trainer": self.trainer_class,
                "checkpoint": RunCheckpoint, "early_stopping": EarlyStopping, "output_dir": str,
                "seed_everything": Union[bool, int]}  # as LightningCLI declares it

    def _check(self, subcommand: str, config) -> None:
        """Refuse what no run can use, in one line, before any work: the values, then this machine's devices, the
        output folder, the data files and the checkpoint."""
        self._check_values(subcommand, config)
        plain_enum_arguments(config.trainer)
        add_progress_bar(config.trainer)
        check_devices(config.trainer.accelerator, config.trainer.devices)
        check_precision_on(config.trainer.accelerator, config.trainer.precision)
        self._check_environment(subcommand, config)

    def _check_values(self, subcommand: str, config) -> None:
        """The checks of the settings themselves, which read no data and touch no output folder: what
        ``--print_config`` also runs, so it never prints a config that a run would refuse."""
        if "weights_only" in config:
            if config.weights_only is False:
                raise UserError("--weights_only false: this project reads checkpoints weights-only, so loading one "
                                "can run no code")
            config.weights_only = True
        check_folder_name("--output_dir", config.output_dir)
        check_output_room("--output_dir", config.output_dir)
        check_folder_name("--data.data_dir", config.data.data_dir)
        if subcommand == "cv":
            check_cv_folds(config.data.num_folds, config.data.fold, config.data.val_fraction)
        if subcommand in ("fit", "cv"):
            check_monitors(config)
            check_optimizer_flags(config)
            architecture = load_architecture(config.model.architecture)
            architecture.require_mnist(f"`{subcommand}` on MNIST")
            architecture.require_trainable(f"`{subcommand}`")
            check_training_settings(config.model.lr, config.model.label_smoothing, config.model.weight_decay,
                                    config.model.keras_adam)
            if config.trainer.fast_dev_run:
                raise UserError(f"--trainer.fast_dev_run: `{subcommand}` tests and records its best checkpoint, which "
                                f"a fast dev run does not write; for a smoke run use --trainer.max_epochs 1 "
                                f"--trainer.limit_train_batches 2 --trainer.limit_val_batches 2")
            precision = str(config.trainer.precision)
            if precision in TRUE_PRECISIONS:
                raise UserError(f"--trainer.precision {precision}: the weights would train and be saved in "
                                f"{TRUE_PRECISIONS[precision]}, and this project's checkpoints (and the Keras files "
                                f"made of them) hold float32; train in 32-true, or in bf16-mixed or 16-mixed "
                                f"(float32 weights, half-precision arithmetic)")
            if config.trainer.enable_checkpointing is False:  # Lightning named a callback the user never added
                raise UserError(f"--trainer.enable_checkpointing false: `{subcommand}` keeps its best checkpoint, "
                                f"which it tests at the end and a resumed run goes on from; leave it on (keep fewer "
                                f"files with --checkpoint.save_last false)")
            if config.checkpoint.save_top_k == 0:
                raise UserError("--checkpoint.save_top_k 0 keeps no best checkpoint, which fit tests at the end; "
                                "use 1 or more (or -1 for all)")
            if config.checkpoint.dirpath and Path(config.checkpoint.dirpath).is_file():
                raise UserError(f"--checkpoint.dirpath {config.checkpoint.dirpath} is a file, not a folder")
        if config.get("weights") is not None:
            check_weights_use(subcommand, config.weights, config.get("ckpt_path"))
        check_seed(config.seed_everything)
        check_accelerator_name(config.trainer.accelerator)
        read_batch_counts(config.trainer)
        check_trainer_counts(config.trainer)
        check_weight_averaging(config.trainer)
        if subcommand in ("fit", "cv"):
            check_training_length(max_epochs=config.trainer.max_epochs, patience=config.early_stopping.patience)
        data = config.data
        check_data_settings(**{k: data[k] for k in ("batch_size", "eval_batch_size", "val_fraction", "subset",
                                                    "num_folds", "fold", "rotation", "zoom", "shift", "shear",
                                                    "elastic_alpha", "elastic_sigma", "split_seed",
                                                    "steps_per_execution")})
        if subcommand in ("fit", "cv"):
            check_augment_ranges(data.augment, **{name: data[name] for name in AUGMENT_DEFAULTS})
            check_steps_per_execution(config)
        else:
            check_scored_batches(subcommand, config.trainer)

    def _check_environment(self, subcommand: str, config) -> None:
        """The checks that need this machine: a writable output folder, the data (downloaded if asked), the split
        it allows, and the checkpoint ``--ckpt_path`` names (fetched if remote)."""
        data = config.data
        check_writable(Path(config.output_dir) / FRAMEWORK, "--output_dir")
        dirpath = config.checkpoint.get("dirpath") if "checkpoint" in config else None
        if isinstance(dirpath, (str, os.PathLike)) and "://" not in str(dirpath):  # else the run folder's own
            check_output_room("--checkpoint.dirpath", str(dirpath))  # a name too long: at the first save, too
            check_writable(dirpath, "--checkpoint.dirpath")  # not after the first epoch, at its first save
        ensure_files(data.data_dir, download=data.download)
        self._checkpoint_for(subcommand, config)  # a resumed run's own settings first, checked with the others below
        try:
            self._check_split_settings(subcommand, config)
        except UserError as err:  # a value the run's config.yaml gave (a tampered one: hostile round 12), said so
            damaged, names = getattr(self, "_kept_from_run_config", (None, ()))
            if any(f"--{name} " in str(err) for name in names):
                raise UserError(f"{damaged} holds a value refused here: {err}") from None
            raise
        self._starting_weights(subcommand, config)
        if subcommand in ("test", "validate"):  # validate's split is the checkpoint's, known only now
            images = TEST_IMAGES if subcommand == "test" else len(
                check_split(data.data_dir, subset=data.subset, val_fraction=data.val_fraction,
                            num_folds=data.num_folds, seed=data.split_seed).val)
            check_scored_batches(subcommand, config.trainer, math.ceil(images / data.eval_batch_size))

    @staticmethod
    def _check_split_settings(subcommand: str, config) -> None:
        """``fit``/``cv``: the split the data settings draw (the training labels are read for it), and the
        Trainer's per-epoch settings against its batches."""
        if subcommand not in ("fit", "cv"):
            return
        data = config.data
        split = check_split(data.data_dir, subset=data.subset, val_fraction=data.val_fraction,
                            num_folds=data.num_folds, seed=data.split_seed)
        check_validated_and_tested(config, len(split.train),
                                   math.ceil(len(split.val) / data.eval_batch_size),
                                   math.ceil(TEST_IMAGES / data.eval_batch_size))

    def _checkpoint_for(self, subcommand: str, config) -> None:
        """Resolve, fetch and check ``--ckpt_path``; swap .keras files and k-fold results for what Lightning reads."""
        self._ensemble = self._source = None
        path = config.get("ckpt_path") if subcommand != "cv" else None
        if path is not None and not str(path).strip():
            raise UserError("--ckpt_path '': empty; give a checkpoint file" + (" or last" if subcommand == "fit" else ""))
        if subcommand in ("test", "validate") and not path:
            raise UserError(f"`{subcommand}` needs --ckpt_path: a checkpoint, a .keras file or a k-fold run's "
                            f"cv_results.json (scoring an untrained network says nothing)")
        if not path:
            return
        path = self._source = str(path)  # what the user named, for the results
        if subcommand == "fit" and path == "last":
            path = self._last_run_checkpoint(config)
        elif path == "last" and not Path(path).exists():
            raise UserError(f"--ckpt_path last: `last` is fit's word for its latest run, to resume it; `{subcommand}` "
                            f"takes a checkpoint file, e.g. {config.output_dir}/{FRAMEWORK}/version_0/{CHECKPOINTS}/"
                            f"last.ckpt")
        if "://" not in path:
            self._read_ckpt_path(subcommand, config, path)
            return
        fetched = str(fetch_model_file(path, self.temporary_dir()))
        try:
            self._read_ckpt_path(subcommand, config, fetched)
        except UserError as err:  # named as the user named it, not as the temporary copy
            raise UserError(str(err).replace(fetched, path)) from None

    def _read_ckpt_path(self, subcommand: str, config, path: str) -> None:
        """Check the local file ``path`` that ``--ckpt_path`` gives and set what Lightning reads (see above)."""
        suffix = Path(path).suffix.lower()
        deployed = FORMATS.get(suffix)
        if deployed is not None and suffix not in (CKPT_SUFFIX, KERAS_SUFFIX):
            takes = {"fit": "a run's .ckpt, to resume it", "validate": "a .ckpt or a .keras file"}.get(
                subcommand, "a .ckpt, a .keras file or a k-fold run's cv_results.json")
            runs = f" (run it with `predict --backend {deployed.backend}` or `serve`)" if deployed.backend else ""
            raise UserError(f"--ckpt_path {path}: {deployed.what} is a file for deploying{runs}; `{subcommand}` "
                            f"reads {takes}")
        if suffix == RESULTS_SUFFIX or Path(path).is_dir():
            if subcommand != "test":
                raise UserError(f"--ckpt_path {path}: `{subcommand}` takes one model's checkpoint; a k-fold ensemble "
                                f"is scored with `test` (each fold validated on its own part, see its cv_results.json)")
            # every fold model read now (weights-only): a damaged, stale or unsafe one is refused before any work
            self._ensemble, config.ckpt_path = load_classifier(path), None
            for member in self._ensemble.members:  # scored on MNIST's images and labels
                member.architecture.require_mnist(f"`{subcommand}` on MNIST")
            return
        if suffix in (KERAS_SUFFIX, *LEGACY_SUFFIXES):
            if subcommand == "fit":
                afresh = f"train its architecture with --model.architecture {path}, " if suffix == KERAS_SUFFIX else ""
                raise UserError(f"--ckpt_path {path}: fit resumes a run from its checkpoint; a {suffix} file has no "
                                f"training state ({afresh}start from its weights with --weights {path}, or score it "
                                f"with test)")
            network = TORCH_LOADERS[suffix](Path(path))  # checked (Keras itself needed for a legacy .h5 only)
            path = str(self.temporary_dir() / f"{Path(path).stem}.converted{CKPT_SUFFIX}")
            save_checkpoint(path, network.architecture, network.state_dict())
        checkpoint = read_checkpoint(path)
        if subcommand in ("test", "validate"):  # scored on MNIST's images and labels (fit: the resume's own check)
            checkpoint.architecture.require_mnist(f"`{subcommand}` on MNIST")
        self._check_recorded_settings(subcommand, checkpoint)
        if subcommand == "validate":
            self._validation_split_of(config, checkpoint)
        if subcommand == "fit":
            self._check_resume(config, checkpoint)
        elif self._given is not None and "architecture" in self._given["model"]:
            asked = load_architecture(config.model.architecture)
            if not asked.same_network(checkpoint.architecture):  # Lightning would score the checkpoint's, silently
                raise UserError(f"--model.architecture {config.model.architecture}: {self._source} holds "
                                f"{checkpoint.architecture.name}, the network `{subcommand}` scores (a checkpoint "
                                f"names its own network: leave the flag out)")
        config.ckpt_path = path

    def _check_recorded_settings(self, subcommand: str, checkpoint: Checkpoint) -> None:
        """LightningCLI parses a checkpoint's ``hyper_parameters`` into the model's settings once these checks are
        done, and its parser refuses a value of the wrong type or a setting the model does not take with a
        traceback: parsed here first, as it will parse them, so a tampered checkpoint is refused in one line."""
        recorded = checkpoint.contents.get("hyper_parameters", {})
        if not isinstance(recorded, dict):
            raise UserError(f"--ckpt_path {self._source}: its hyper_parameters are a {type(recorded).__name__}, not "
                            f"settings by name")
        settings = {key: value for key, value in recorded.items() if key != "_instantiator"}
        if "_class_path" in settings:  # as LightningCLI reads a checkpoint of a model given by class path
            settings = {"class_path": settings.pop("_class_path"), "dict_kwargs": settings}
        if not settings:
            return
        try:
            self.parser.parse_object({subcommand: {"model": settings}}, self.config.clone())
        except ArgumentError as err:
            raise UserError(f"--ckpt_path {self._source}: its recorded hyper_parameters are not settings of this "
                            f"model ({' '.join(str(err).split())})") from None

    def _starting_weights(self, subcommand: str, config) -> None:
        """Read the model file ``--weights`` names (checked as any model file is; Keras not needed), make its network
        the run's, and keep its weights for :meth:`before_fit`."""
        self._start_weights = None
        path = config.get("weights")
        if path is None:
            return
        try:
            networks = load_networks(path)
        except UserError as err:
            raise UserError(f"--weights: {err}") from None
        if len(networks) != 1:
            raise UserError(f"--weights {path}: a k-fold run holds {len(networks)} networks; name one fold's model "
                            f"file")
        architecture = networks[0].architecture
        architecture.require_mnist("`fit` on MNIST")
        architecture.require_trainable("`fit`")
        if self._given is not None and "architecture" in self._given["model"]:
            asked = load_architecture(config.model.architecture)
            if not asked.same_network(architecture):
                raise UserError(f"--model.architecture {config.model.architecture}: {path} holds "
                                f"{architecture.name}, the network a run from its weights trains (leave the flag "
                                f"out)")
        config.model.architecture = architecture.to_config()  # recorded in the run's config.yaml and results
        self._start_weights = (str(path), networks[0].state_dict())

    def _validation_split_of(self, config, checkpoint: Checkpoint) -> None:
        """``validate`` scores a checkpoint on the images its training held out: the split its run recorded
        (subset, hold-out fraction, seed, fold), taken from the checkpoint where no flag names it. A flag that
        names another split is refused: that split's validation images were, in part, trained on."""
        recorded = checkpoint.contents.get("datamodule_hyper_parameters")
        if not isinstance(recorded, dict):  # a .keras file or a converted checkpoint: no run, no split recorded
            print(f"note: {path_text(self._source)} records no training split: its validation images may be images "
                  f"it trained on (the notebook's model trained on all 60,000), so its figures are no estimate; "
                  f"`test` scores it on the 10,000 test images", flush=True)
            return
        typed = (self._given or {}).get("data", set())
        for key in SPLIT_SETTINGS:
            if key not in recorded or recorded[key] == config.data[key]:
                continue
            if key in typed:
                raise UserError(f"--data.{key} {config.data[key]}: {self._source} was trained with {key} "
                                f"{recorded[key]}, so other validation images would include some it trained on; "
                                f"leave the flag out (validate takes the run's split)")
            config.data[key] = recorded[key]

    def _last_run_checkpoint(self, config) -> str:
        run = latest_resumable_run(Path(config.output_dir) / FRAMEWORK)
        if run is None:
            raise UserError(f"--ckpt_path last: no run in {Path(config.output_dir) / FRAMEWORK} has a "
                            f"{CHECKPOINTS}/{RESUME_FILE} to resume")
        return str(run / CHECKPOINTS / RESUME_FILE)

    def _check_resume(self, config, checkpoint: Checkpoint) -> None:
        """A resumed run keeps its own settings; flags that ask for others are refused, not silently ignored."""
        contents = checkpoint.contents
        callbacks = contents.get("callbacks")
        history = callbacks.get(EpochHistory().state_key) if isinstance(callbacks, dict) else None
        if not isinstance(history, dict) or not isinstance(history.get("history"), list) or (
                "optimizer_states" not in contents):
            raise UserError(f"--ckpt_path {checkpoint.path}: it holds a network's weights but no training state, "
                            f"so there is no run to resume (score it with test, or convert it)")
        saved = {"model": {k: v for k, v in checkpoint.hparams.items() if k != "architecture"},
                 "data": dict(contents.get("datamodule_hyper_parameters") or {})}
        defaults = {"model": _signature_defaults(MnistClassifier), "data": _signature_defaults(MNISTDataModule)}
        given = getattr(self, "_given", None)

        def typed(group: str, key: str) -> bool:  # the user gave it (a flag or a --config file), whatever its value
            if given is None:  # arguments given as a dict: a value other than the default's was asked for
                return group in defaults and config[group].get(key) != defaults[group].get(key)
            return key in given[group]

        kept, conflicts = [], []
        for group in ("model", "data"):
            for key, value in saved[group].items():
                asked = config[group].get(key)
                if key in RESUMABLE_DATA_CHANGES or key not in config[group] or asked == value:
                    continue
                if not typed(group, key):  # not asked for: the run's own value is kept
                    config[group][key] = value
                    kept.append(f"{group}.{key}={value}")
                else:
                    conflicts.append(f"--{group}.{key} {asked} (the run's is {value})")
        run = run_dir_of_checkpoint(checkpoint.path)
        if run is not None:
            check_run_files(run)
        saved_schedules = contents.get("lr_schedulers")
        # a one-cycle schedule spans the whole run (its total steps saved with it): the run's length is kept too
        spans_run = isinstance(saved_schedules, list) and any(isinstance(s, dict) and ONE_CYCLE_STEPS in s
                                                              for s in saved_schedules)
        if run is not None:
            # the run's length too: fixed by a one-cycle schedule, else its own unless another is asked for (a
            # finished 2-epoch run resumed without --trainer.max_epochs trained on to the default 10, over its files)
            self._keep_run_config(config, run, typed, kept, conflicts, RUN_LENGTH, fixed=spans_run)
        asked_architecture = load_architecture(config.model.architecture)
        if not asked_architecture.same_network(checkpoint.architecture):
            if typed("model", "architecture") and config.model.architecture != checkpoint.hparams["architecture"]:
                conflicts.append(f"--model.architecture {config.model.architecture} (the run trains "
                                 f"{checkpoint.architecture.name})")
        if conflicts:
            raise UserError(f"resuming {checkpoint.path}: {'; '.join(conflicts)}; a resumed run keeps its settings "
                            f"(start a new run to change them)")
        try:  # the run's own values, kept above, before an optimizer is built of them (Adam's traceback for lr -1)
            check_training_settings(config.model.lr, config.model.label_smoothing, config.model.weight_decay,
                                    config.model.keras_adam)
        except UserError as err:
            raise UserError(f"resuming {checkpoint.path}: the settings it records are refused: {err}") from None
        network = checkpoint.network()
        groups = ([list(network.parameters())] if config.get("optimizer") else  # LightningCLI's optimizer: all
                  optimizer_parameter_groups(network, config.model.weight_decay))
        stepped = bool(config.get("lr_scheduler")) if config.get("optimizer") else (
            config.model.lr_schedule != _signature_defaults(MnistClassifier)["lr_schedule"])  # (constant)
        check_training_state(checkpoint, groups, schedules=int(stepped),
                             training_images=MNISTDataModule(**config.data).training_images(),
                             **self._resumed_optimizer(config, network, groups))
        done = len(history["history"])  # epochs fully trained: the run's own record, not Lightning's loop layout
        tested = run is not None and (run / RESULTS_FILE).is_file()  # else stopped after training, before its test
        max_epochs = config.trainer.max_epochs
        if max_epochs is not None and 0 <= max_epochs <= done and (max_epochs < done or tested):
            if spans_run:
                raise UserError(f"{checkpoint.path}: the run has trained all {done} epochs of its one-cycle "
                                f"schedule, which ends there; to train on, start a new run from its weights "
                                f"(--weights {checkpoint.path})")
            if not typed("trainer", "max_epochs"):  # the run's own length, kept
                raise UserError(f"{checkpoint.path}: the run has trained all its {done} epochs (its "
                                f"trainer.max_epochs) and been tested; give --trainer.max_epochs larger than {done} "
                                f"to train it on")
            raise UserError(f"--trainer.max_epochs {max_epochs}: the run in {checkpoint.path} has "
                            f"already trained {done} epochs; give a larger number to continue it")
        self._resumed_run = run if run is not None and run.parent.name == FRAMEWORK else None
        self._epochs_done = done
        self._steps_done = int(contents.get("global_step", 0))  # optimizer steps, the logged steps' count
        where = f"the run in {self._resumed_run}" if self._resumed_run else "a new run"
        print(f"resuming from {escaped(checkpoint.path)} ({done} epochs done) into {where}"
              + (f"; keeping the run's own settings: {', '.join(kept)}" if kept else ""), flush=True)

    @staticmethod
    def _resumed_optimizer(config, network, groups) -> dict[str, Any]:
        """The optimizer a resumed run builds (the module's Adam, or LightningCLI's ``--optimizer``), for the saved
        state's settings to be compared with, and the highest learning rate its schedule reaches where the module's
        settings fix it (the constant rate, or the one-cycle's peak)."""
        if not config.get("optimizer"):
            model = config.model
            return {"optimizer": adam_for(network, model.lr, model.weight_decay, model.keras_adam), "peak_lr": model.lr}
        try:
            return {"optimizer": instantiate_class(tuple(groups[0]), namespace_to_dict(config.optimizer))}
        except Exception:  # an optimizer LightningCLI says is wrong in its own words when it builds it
            return {}

    def _keep_run_config(self, config, run: Path, typed: Callable[[str, str], bool], kept: list[str],
                         conflicts: list[str], also: dict[str, tuple[str, ...]], fixed: bool) -> None:
        """Take the settings of :data:`KEPT_FROM_RUN_CONFIG` and ``also`` from the run's config.yaml; note
        asked-for others, but for those of ``also`` unless ``fixed``: the asked-for value is taken."""
        damaged = f"resuming the run in {run}: its {RUN_CONFIG_FILE}, which holds the settings the run keeps,"
        if not (run / RUN_CONFIG_FILE).exists() and not (run / RUN_CONFIG_FILE).is_symlink():
            raise UserError(f"{damaged} is missing (its seed, callbacks and per-step settings would be the defaults): "
                            f"put it back, or start a new run from its weights with --weights")
        if not (run / RUN_CONFIG_FILE).is_file():  # a folder, a pipe, a device (fit rewrites it: it must be a file)
            raise UserError(f"{damaged} is not a regular file")
        try:
            saved = yaml.safe_load((run / RUN_CONFIG_FILE).read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as err:  # (nested past the stack)
            raise UserError(f"{damaged} is unreadable ({one_line(err)})") from None
        if not isinstance(saved, dict):
            raise UserError(f"{damaged} holds a YAML {type(saved).__name__}, not settings by name")
        adopted = len(kept)
        groups = [*((group, keys, False) for group, keys in KEPT_FROM_RUN_CONFIG.items()),
                  *((group, keys, not fixed) for group, keys in also.items())]
        for group, keys, changeable in groups:
            section, was = (config, saved) if not group else (config.get(group), saved.get(group))
            if not isinstance(was, dict) or section is None:
                continue
            for key in keys if keys is not None else was:
                if key not in was or key not in section:
                    continue
                value, asked, name = was[key], plain_setting(section[key]), f"{group}.{key}" if group else key
                if (group, key) == ("checkpoint", "dirpath"):
                    own = value is None or Path(value).parts[-2:] == (run.name, CHECKPOINTS)
                    value = str(run / CHECKPOINTS) if own else value
                    if typed(group, key) and Path(asked).resolve() != Path(value).resolve():
                        conflicts.append(f"--{name} {asked} (the run's is {value})")
                    elif not typed(group, key) and not own:
                        section[key] = value
                        kept.append(f"{name}={value}")
                    continue
                if asked == value or (changeable and typed(group, key)):
                    continue
                if typed(group, key):
                    conflicts.append(f"--{name} {setting_text(asked)} (the run's is {setting_text(value)})")
                else:
                    section[key] = dict_to_namespace(value) if isinstance(value, dict) else value
                    kept.append(f"{name}={setting_text(value)}")
        self._kept_from_run_config = (damaged, [entry.partition("=")[0] for entry in kept[adopted:]])
        if len(kept) > adopted:  # values from a file, which the parser has not seen: checked as a flag would be
            try:
                self.parser.validate(self.config)
                check_seed(config.seed_everything)
                check_monitors(config)
                read_batch_counts(config.trainer)
                check_trainer_counts(config.trainer)
            except (ArgumentError, TypeError, ValueError, UserError) as err:
                said = " ".join(str(err).split())  # jsonargparse's names the key on one line, the reason on the next
                raise UserError(f"{damaged} holds a value refused here: {said[:300]}") from None

    def instantiate_classes(self) -> None:
        """LightningCLI's, with what Lightning's classes refuse on construction turned into one line.

        The Trainer, the callbacks and the loggers check their own settings (a strategy, a precision,
        a callback's argument) when they are built, before any data is read or any step is taken;
        their refusal is the user's error, said in one line, and the run folder goes again.
        """
        try:
            super().instantiate_classes()
        except (ValueError, TypeError, MisconfigurationException, ImportError) as err:  # ImportError: an extra,
            # such as --trainer.precision transformer-engine, that is not installed
            raise UserError(f"the Trainer or a callback refuses these settings: {one_line(err, limit=400)}") from None
        TRAINERS.append(self.trainer)  # (one a fold in cv) whose fit Lightning stops on SIGTERM: fit_trains

    # --- one folder per run ----------------------------------------------------------------
    def before_instantiate_classes(self) -> None:
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand]
        resumed = getattr(self, "_resumed_run", None) if subcommand == "fit" else None
        launched_rank = os.environ.get("LOCAL_RANK", "0") != "0" and os.environ.get(RUN_DIR_ENV)
        if launched_rank:
            self.run_dir = Path(os.environ[RUN_DIR_ENV])
        else:
            self.run_dir = resumed or allocate_run_dir(Path(config.output_dir) / FRAMEWORK, RUN_PREFIX[subcommand])
            if not hold_run(self.run_dir):  # (a new one is this process's alone)
                raise UserError(f"--ckpt_path: the run in {path_text(self.run_dir)} is being trained by another "
                                f"process; wait for it to end (then resume it), or start a new run")
            os.environ[RUN_DIR_ENV] = str(self.run_dir.resolve())
            (RESUMED if resumed else ALLOCATED).append(self.run_dir)
        if subcommand != "cv":  # cv points each fold into its own sub-folder
            point_outputs_at(config, self.run_dir)

    def before_fit(self) -> None:
        self._fit_started = time.perf_counter()
        if getattr(self, "_resumed_run", None) is not None and os.environ.get("LOCAL_RANK", "0") == "0":
            for logger in self.trainer.loggers:
                if isinstance(logger, CSVLogger):
                    keep_earlier_epochs(logger, self._epochs_done, self._steps_done)
        start = getattr(self, "_start_weights", None)
        if start is not None:  # (None for a resumed run: --weights and --ckpt_path were refused together)
            self.model.network.load_state_dict(start[1], strict=True)
        print(f"run folder: {escaped(self.run_dir)}")
        if start is not None:
            print(f"starting from the weights of {escaped(start[0])}")
        print(self.model.architecture.summary())

    def history(self) -> EpochHistory:
        return next(cb for cb in self.trainer.callbacks if isinstance(cb, EpochHistory))

    def best_epoch(self) -> int:
        """The epoch whose weights the best checkpoint holds (what ``test`` scores)."""
        return int(read_checkpoint(self.trainer.checkpoint_callback.best_model_path).contents["epoch"])

    def resolved_config(self, subcommand: str) -> dict:
        return yaml.safe_load(self.parser.dump(self.config, skip_none=False))[subcommand]

    def after_fit(self) -> None:
        """Score the best checkpoint on the test set; write results.json, curves and the test report. A Ctrl-C
        now (training is done and saved) says what to run for the rest."""
        best = Path(self.trainer.checkpoint_callback.best_model_path)
        refuse_diverged(self.trainer)
        try:
            self._test_and_report(best)
        except (SystemExit, KeyboardInterrupt) as err:
            if not (isinstance(err, KeyboardInterrupt) or interrupted(err)):
                raise
            if self.trainer.is_global_zero:
                print(f"fit interrupted after training, in its final test or report: the run is saved (best checkpoint "
                      f"{best}); score it with python -m lightning_mnist test --ckpt_path {best}", file=sys.stderr,
                      flush=True)
            raise SystemExit(EXIT_TERMINATED if by_sigterm(err) else EXIT_INTERRUPTED) from None

    def _test_and_report(self, best: Path) -> None:
        trainer = self.trainer
        history = self.history()
        rows, wall = list(history.history), history.wall_seconds()  # before test(): loading rewinds callback state
        tested = trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best", verbose=False)[0]
        if not trainer.is_global_zero:
            return
        report = write_test_report(self.model, self.datamodule, self.run_dir, "lightning_mnist fit", trainer)
        results = RunResults(
            framework=FRAMEWORK, test_acc=tested["test/acc"], test_loss=tested["test/loss"],
            model_path=relative_to_run(best, self.run_dir), epochs=len(rows), best_epoch=self.best_epoch(),
            wall_seconds=round(wall, 2), history=rows, config=self.resolved_config("fit"),
            confusion_matrix=report.confusion, mistakes=report.mistakes_count, threads=torch.get_num_threads())
        json_path = write_json(results, self.run_dir / RESULTS_FILE)
        curves = plot_curves(rows, self.run_dir / CURVES_FILE, "lightning_mnist fit")
        print(f"test accuracy {results.test_acc:.4f}, test loss {results.test_loss:.4f} "
              f"(best checkpoint {escaped(best)}, "
              f"{results.epochs} epochs, {results.wall_seconds:.1f} s)")
        print(f"results: {escaped(json_path)}\ncurves: {escaped(curves)}\n{report.describe()}")

    def after_instantiate_classes(self) -> None:
        self._held_logs.end(show=True)
        if self.config.get("subcommand") == "cv":
            self.trainer.folds = functools.partial(cross_validate, self, self.run_dir)

    # --- test and validate --------------------------------------------------------------------
    def before_test(self) -> None:
        if self._ensemble is not None:
            self.model = self._ensemble
            print(f"testing the {len(self.model.members)}-fold ensemble of {escaped(self._source)}")

    def after_test(self) -> None:
        if not self.trainer.is_global_zero:  # a distributed test: the first process writes the results, once
            return
        tested = self.trainer.callback_metrics
        report = write_test_report(self.model, self.datamodule, self.run_dir, "lightning_mnist test", self.trainer)
        results = {"framework": FRAMEWORK, "checkpoint": self._source,
                   "test_acc": float(tested["test/acc"]), "test_loss": float(tested["test/loss"]),
                   "confusion_matrix": report.confusion, "mistakes": report.mistakes_count}
        print(f"results: {escaped(write_json(results, self.run_dir / RESULTS_FILE))}\n{report.describe()}")


def given_settings(parser: LightningArgumentParser, args, subcommand: str) -> dict[str, set[str]] | None:
    """The settings the user gave for ``subcommand`` (flags or ``--config`` files), by group ("": the top level).

    A resumed run must tell a flag typed with the default's value (``--model.lr 0.0001``) from no
    flag at all: the first is refused if the run has another value, the second takes the run's.
    jsonargparse parses without its defaults for that (``defaults=False``); a setting only required
    when defaults are off is given a placeholder. None when that cannot be told (args given as a dict).
    """
    args = sys.argv[1:] if args is None else args
    if not isinstance(args, (list, tuple)):
        return None
    for placeholder in ([], ["--early_stopping.monitor", "given"]):  # required when defaults are off
        try:
            only_given = parser.parse_args([*args, *placeholder], defaults=False)
            break
        except ArgumentError:
            continue
    else:
        return None
    config = only_given.get(subcommand) or {}
    given = {group: set((config.get(group) or {}).keys()) for group in ("model", "data", *KEPT_FROM_RUN_CONFIG)
             if group}
    given[""] = {key.split(".", 1)[0] for key in config.keys()}  # the top level: seed_everything, optimizer, ...
    if placeholder:
        given["early_stopping"].discard("monitor")
    return given


def keep_earlier_epochs(logger: CSVLogger, epochs: int, steps: int) -> None:
    """Keep the rows of what a resumed run's checkpoint holds in its ``metrics.csv``, once each.

    Lightning's CSV writer deletes a ``metrics.csv`` it finds when it starts (its experiment
    is created), so a resumed run would keep only the epochs after the resume. The rows the
    checkpoint holds are read first and written back as the file the writer then appends to:
    those of its ``epochs`` finished epochs and, of a checkpoint written inside the next one,
    its first ``steps`` steps (rows are logged with the number of steps before them). Rows
    logged after the checkpoint go, since that work is done again.
    """
    path = Path(logger.log_dir) / ExperimentWriter.NAME_METRICS_FILE
    if not path.is_file():
        return

    def held(row: dict[str, str]) -> bool:
        if not row.get("epoch"):
            return False
        epoch = float(row["epoch"])
        return epoch < epochs or (epoch == epochs and bool(row.get("step")) and float(row["step"]) < steps)

    with open(path, newline="") as f:
        rows = [row for row in csv.DictReader(f) if held(row)]
    writer = logger.experiment  # created now: it removes the file
    if rows:
        writer.metrics_keys = sorted(set().union(*rows))
        text = io.StringIO()
        table = csv.DictWriter(text, fieldnames=writer.metrics_keys)
        table.writeheader()
        table.writerows(rows)
        write_text(path, text.getvalue())


# Trainer counts Lightning accepts (or divides by) though no run can mean them: flag -> (lowest allowed, meaning)
# Flags `test` and `validate` have no use for: they score a checkpoint as it is (its own network and
# settings), so a typed one would be silently ignored. `test` scores the fixed test set, so the
# split's settings are of no use to it either. (--model.architecture has its own check.)
NOT_SCORING = ("model.", "early_stopping.", "checkpoint.", "trainer.max_epochs", "trainer.min_epochs",
               "trainer.max_steps", "trainer.min_steps", "trainer.max_time", "trainer.limit_train_batches",
               "trainer.accumulate_grad_batches", "trainer.gradient_clip_val", "trainer.gradient_clip_algorithm",
               "trainer.check_val_every_n_epoch", "trainer.val_check_interval", "data.batch_size", "data.augment",
               "data.steps_per_execution", "data.rotation", "data.zoom", "data.shift", "data.shear",
               "data.elastic_alpha", "data.elastic_sigma")
NOT_TESTING = ("data.subset", "data.val_fraction", "data.split_seed", "data.num_folds", "data.fold")
SPLIT_SETTINGS = ("subset", "val_fraction", "split_seed", "num_folds", "fold")  # which images validate scores

TRAINER_COUNTS = {
    "min_epochs": (0, "epochs to train at least"),
    "min_steps": (0, "optimizer steps to train at least"),
    "check_val_every_n_epoch": (1, "validate every this many epochs; 0 would divide by zero in training"),
    "accumulate_grad_batches": (1, "batches per optimizer step; 0 would divide by zero in training"),
    "log_every_n_steps": (1, "steps between logged training losses"),
    "max_steps": (-1, "optimizer steps to stop after; -1 for no limit"),
    "num_sanity_val_steps": (-1, "validation batches before training; -1 for all"),
}


def plain_enum_arguments(trainer) -> None:
    """An added callback's arguments that are enums (a default such as Timer's ``interval``, ``Interval.step``,
    declared ``str``) as their values: LightningCLI saves the run's config.yaml before building anything, and
    jsonargparse refuses to write such a member as a ``str``, which turned a valid ``--trainer.callbacks+=Timer``
    into "Does not validate against any of the Union subtypes". The value is what the callback takes anyway."""
    for callback in configured_callbacks(trainer):
        arguments = callback.get("init_args") if isinstance(callback, Namespace) else None
        for name, value in (arguments.items() if isinstance(arguments, Namespace) else ()):
            if isinstance(value, enum.Enum):
                arguments[name] = value.value


def add_progress_bar(trainer) -> None:
    """Give the Trainer the project's :class:`ProgressBar` where Lightning would add its own default one.

    Not when the Trainer's callbacks already hold a progress bar (a user's choice, or a run's saved
    config.yaml). With the progress bar off (``--trainer.enable_progress_bar false``), ours is taken
    out of the callbacks a saved config.yaml lists, which Lightning would otherwise refuse.
    """
    callbacks = configured_callbacks(trainer)
    ours = f"{ProgressBar.__module__}.{ProgressBar.__name__}"
    if trainer.enable_progress_bar is False:
        trainer.callbacks = [c for c in callbacks if not (isinstance(c, Namespace) and c.class_path == ours)]
        return
    if any(issubclass(kind, ProgressBarBase) for kind in callback_classes(trainer)):
        return
    defaults = Namespace(**_signature_defaults(ProgressBar))
    trainer.callbacks = [*callbacks, Namespace(class_path=ours, init_args=defaults)]


def check_weight_averaging(trainer) -> None:
    """An exponential moving average's ``decay`` (Lightning's ``EMAWeightAveraging``, this project's) from 0 to 1:
    another was refused in jsonargparse's words, naming neither the value nor the range (hostile round 12)."""
    for callback in configured_callbacks(trainer):
        if not isinstance(callback, Namespace) or not str(callback.get("class_path")).endswith(".EMAWeightAveraging"):
            continue
        arguments = callback.get("init_args")
        decay = arguments.get("decay") if isinstance(arguments, Namespace) else None
        if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float))
                                  or not 0 <= decay <= 1):
            raise UserError(f"--trainer.callbacks EMAWeightAveraging: decay must be a number from 0 to 1 (the weight "
                            f"of the average so far at each step), got {escaped(str(decay))[:40]}")


def configured_callbacks(trainer) -> list:
    """The Trainer's ``callbacks`` setting as a list: Lightning takes one callback alone too (``--trainer.callbacks
    '{"class_path": ...}'``)."""
    callbacks = trainer.get("callbacks") or []
    return callbacks if isinstance(callbacks, list) else [callbacks]


def callback_classes(trainer) -> list[type]:
    """The classes of the Trainer's callbacks, named in the config (a class path) or given as objects."""
    kinds = []
    for callback in configured_callbacks(trainer):
        if isinstance(callback, Namespace):
            module, _, name = callback.class_path.rpartition(".")
            callback = getattr(importlib.import_module(module), name)
        kinds.append(callback if isinstance(callback, type) else type(callback))
    return kinds


def check_run_files(run: Path) -> None:
    """A resumed run reads and rewrites the files in its folder: each must be a regular file (a pipe as its
    metrics.csv hung fit for good, deaf to Ctrl-C; a folder as its results a traceback after training)."""
    entries = [*run.iterdir(), *((run / CHECKPOINTS).iterdir() if (run / CHECKPOINTS).is_dir() else [])]
    odd = [entry for entry in entries if entry.exists() and not (entry.is_file() or entry.is_dir())]
    odd += [run / name for name in (ExperimentWriter.NAME_METRICS_FILE, RESULTS_FILE) if (run / name).is_dir()]
    if odd:
        raise UserError(f"resuming the run in {run}: {odd[0].name} is not a regular file (a pipe, a device or a "
                        f"folder), where the run reads and writes one")


def plain_setting(value: Any) -> Any:
    """A setting as its run's config.yaml holds it: a class's (``--optimizer SGD``) as a dict, else itself."""
    return namespace_to_dict(value) if isinstance(value, Namespace) else value


def setting_text(value: Any) -> str:
    """A setting in a message: a class's (an optimizer's) by its class and arguments, else its value."""
    if isinstance(value, dict) and "class_path" in value:
        arguments = ", ".join(f"{k}={v}" for k, v in (value.get("init_args") or {}).items())
        return f"{str(value['class_path']).rsplit('.', 1)[-1]}({arguments})"
    return str(value)


def check_optimizer_flags(config) -> None:
    """LightningCLI's ``--optimizer`` replaces the model's own optimizer and schedule, and its ``--lr_scheduler`` is
    applied only with it: what either would leave silently unused is refused."""
    if config.get("lr_scheduler") and not config.get("optimizer"):
        raise UserError(f"--lr_scheduler {config.lr_scheduler.class_path}: LightningCLI applies a schedule given this "
                        f"way only with --optimizer (the model's own Adam takes --model.lr_schedule onecycle)")
    if config.get("optimizer"):
        model, defaults = config.model, _signature_defaults(MnistClassifier)
        unused = [f"--model.{key} {model[key]}" for key in MODEL_OPTIMIZER_SETTINGS if model[key] != defaults[key]]
        if unused:
            raise UserError(f"{', '.join(unused)}: --optimizer {config.optimizer.class_path} replaces the model's own "
                            f"optimizer and schedule, which would leave this unused (give --lr_scheduler for a "
                            f"schedule)")


def check_monitors(config) -> None:
    """``--early_stopping``/``--checkpoint`` watch a metric the classifier logs, in a direction that exists.

    Lightning finds an unknown metric only when the first validation ends, after an epoch of work,
    and refuses a bad mode only when the callbacks are built; both are refused here, before either.
    """
    for group in ("early_stopping", "checkpoint"):
        settings = config[group]
        if settings.get("monitor") is not None and settings.monitor not in MONITORED:
            raise UserError(f"--{group}.monitor {settings.monitor}: not a metric this run logs; use one of "
                            f"{', '.join(MONITORED)}")
        if settings.get("mode") not in ("min", "max"):
            raise UserError(f"--{group}.mode {settings.get('mode')}: use min or max")
    for callback in configured_callbacks(config.trainer):  # more callbacks (--trainer.callbacks+ EarlyStopping ...)
        arguments = callback.get("init_args") if hasattr(callback, "get") else None
        monitor = arguments.get("monitor") if hasattr(arguments, "get") else None
        kind = str(callback.get("class_path")).rsplit(".", 1)[-1] if hasattr(callback, "get") else ""
        if isinstance(monitor, str) and monitor not in MONITORED:
            raise UserError(f"--trainer.callbacks {kind} monitor {monitor}: not a metric this run logs; use one of "
                            f"{', '.join(MONITORED)}")
        if hasattr(arguments, "get"):
            check_checkpoint_folder(f"--trainer.callbacks {kind} dirpath", arguments.get("dirpath"))
    name = config.checkpoint.get("filename")
    literal = re.sub(r"\{[^}]*\}", "", name or "")  # {val/loss:.4f} names a metric, slash and all
    if name is not None and ("/" in literal or "\\" in literal or literal.startswith("..")):
        raise UserError(f"--checkpoint.filename {name}: a file name, not a path (the checkpoints go in "
                        f"--checkpoint.dirpath, by default the run folder's {CHECKPOINTS}/)")
    if name is not None:  # formatted now, with every metric it may name, as each save would: not after an epoch
        example = {key: 0 if key in ("epoch", "step") else 0.0 for key in MONITORED}
        try:
            formatted = RunCheckpoint(filename=name, auto_insert_metric_name=config.checkpoint.get(
                "auto_insert_metric_name", True)).format_checkpoint_name(example)
        except (ValueError, KeyError, IndexError, AttributeError, TypeError) as err:
            raise UserError(f"--checkpoint.filename {name}: not a name pattern ({one_line(err)}); metrics go in "
                            f"braces, e.g. epoch{{epoch:02d}}-{{val/loss:.4f}}") from None
        if len(formatted.encode()) > LONGEST_CHECKPOINT_NAME:
            raise UserError(f"--checkpoint.filename {name}: names files of {len(formatted.encode())} bytes, such as "
                            f"{formatted[:40]}...; give one of at most {LONGEST_CHECKPOINT_NAME} (the system's "
                            f"255, less a temporary file's additions and the metrics' widths)")


def check_checkpoint_folder(label: str, dirpath: Any) -> None:
    """Refuse an added checkpoint callback's folder that already holds checkpoints: another run's, which this run's
    would replace (``last.ckpt``, or any file of the same name) or mix with. A new or empty folder is this run's
    own. (``--checkpoint.dirpath`` is the run's own checkpoint, which a run's saved config names and a resume
    reuses.)"""
    if not isinstance(dirpath, (str, os.PathLike)) or "://" in str(dirpath):
        return
    check_output_room(label, str(dirpath))
    folder = Path(dirpath)
    if folder.is_dir() and any(folder.glob(f"*{CKPT_SUFFIX}")):
        raise UserError(f"{label} {dirpath}: already holds checkpoints (another run's?), which this run's would "
                        f"replace or mix with; name a new or empty folder, or leave it out (each run keeps its "
                        f"checkpoints in its own folder's {CHECKPOINTS}/)")


# The Trainer's settings that are a fraction (a float up to 1) or a number of batches (an int, or a whole float above 1)
BATCH_COUNTS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches",
                "val_check_interval")


def read_batch_counts(trainer) -> None:
    """Read a whole float above 1 (``--trainer.limit_train_batches 2.0``) as the count it is to Lightning, so that
    every check here counts as Lightning will (they took it for a fraction: 2.0 of the batches, then a traceback
    after the data was read); refuse a float above 1 that is no whole number (Lightning's later traceback)."""
    for name in BATCH_COUNTS:
        value = trainer.get(name)
        if isinstance(value, float) and not 0 <= value <= 1:  # NaN included
            if not (math.isfinite(value) and value.is_integer()):
                raise UserError(f"--trainer.{name} {value:g}: give a fraction from 0 to 1 or a whole number of "
                                f"batches")
            trainer[name] = int(value)


def check_trainer_counts(trainer) -> None:
    """Refuse Trainer counts that would train forever, divide by zero mid-run or mean nothing, before any work."""
    for name, (low, meaning) in TRAINER_COUNTS.items():
        value = trainer.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value < low:
            raise UserError(f"--trainer.{name} must be at least {low} ({meaning}), got {value}")


def check_duration(flag: str, duration: Any, meaning: str) -> None:
    """A time setting of the Trainer (``--trainer.max_time``, or ``val_check_interval`` as a time), read as Lightning's
    Timer reads a duration (``DD:HH:MM:SS``, a mapping such as ``{hours: 1}``, a timedelta): one that is not a
    duration was a traceback when the Trainer was built, and one of no time (or less) stopped the run before its
    first checkpoint (whose test then failed) or failed inside Lightning."""
    try:
        seconds = Timer(duration=duration).time_remaining()
    except (ValueError, TypeError, OverflowError, MisconfigurationException) as err:
        raise UserError(f"{flag} {duration}: not a duration ({one_line(err)}); give DD:HH:MM:SS, e.g. 00:02:00:00 "
                        f"for two hours") from None
    if seconds is None or seconds <= 0:
        raise UserError(f"{flag} {duration}: no time {meaning}; give DD:HH:MM:SS above zero")
    if seconds > MAX_TIME_SECONDS:
        raise UserError(f"{flag} {duration}: more than {MAX_TIME_SECONDS // 86400} days; leave it out for no limit")


def check_flags_used(subcommand: str, argv) -> None:
    """Refuse a flag the command would silently ignore: ``test``/``validate``'s :data:`NOT_SCORING`, and
    ``--trainer.default_root_dir`` (every command points the Trainer at its run folder).

    Only flags typed on the command line: a ``--config`` file describes a whole run, and scoring a
    run's checkpoint with the run's config is what a user does.
    """
    if not isinstance(argv, (list, tuple)):
        return
    for key, value, _ in flag_values(argv):
        if key == "trainer.default_root_dir":  # (a saved config.yaml holds the run's own: from a file it is fine)
            raise UserError(f"--trainer.default_root_dir {value}: each run writes to its own folder in "
                            f"<output_dir>/{FRAMEWORK}; use --output_dir")
        if subcommand in ("test", "validate") and key != "model.architecture" and (
                key.startswith(NOT_SCORING) or (subcommand == "test" and key.startswith(NOT_TESTING))):
            raise UserError(f"--{key} {value}: `{subcommand}` scores the checkpoint as it is, on "
                            f"{'the test set' if subcommand == 'test' else 'the validation split'}; this training "
                            f"setting would be ignored (leave it out)")


def check_weights_use(subcommand: str, weights: str, ckpt_path: str | None) -> None:
    """``--weights`` starts a new fit from a model's weights: not another command's flag, nor a resume's."""
    if subcommand != "fit":
        takes = "a checkpoint with --ckpt_path" if subcommand != "cv" else "none (each fold trains afresh)"
        raise UserError(f"--weights {weights}: only fit starts from a model's weights; `{subcommand}` takes {takes}")
    if ckpt_path:
        raise UserError(f"--weights {weights} with --ckpt_path {ckpt_path}: a resumed run goes on from its own "
                        f"checkpoint's weights; give one of the two")


def check_batch_limits(trainer, who: str, limits: dict[str, tuple[str, int | None]]) -> None:
    """Refuse a ``--trainer.limit_*_batches`` in ``limits`` (name -> (what ``who`` would then do to no batch, the
    batches there are, None where not yet known)) that leaves no batch: 0, or a fraction of less than one batch,
    which Lightning accepts and refuses only when it gets there (after the training, for the test's)."""
    for name, (verb, batches) in limits.items():
        value = trainer.get(name)
        if value is not None and value <= 0:
            raise UserError(f"--trainer.{name} {value:g}: {who} would {verb} no batch; give a count of at least 1 or "
                            f"a fraction above 0")
        if isinstance(value, float) and batches and int(batches * value) == 0:
            raise UserError(f"--trainer.{name} {value:g}: that fraction of the {batches} batches is less than one, "
                            f"so {who} would {verb} no batch; give a fraction of at least {1 / batches:.3g}, or a count")


def check_scored_batches(subcommand: str, trainer, batches: int | None = None) -> None:
    """``test``/``validate`` limited to no batch would score nothing (Lightning returns no metric, or none at all)."""
    name = {"test": "limit_test_batches", "validate": "limit_val_batches"}.get(subcommand)
    if name:
        check_batch_limits(trainer, f"`{subcommand}`", {name: ("score", batches)})


# Trainer precisions whose weights are not float32: fit's checkpoints could not be read back as the network's.
# (Lightning reads "16" and "bf16" as 16-mixed and bf16-mixed, whose weights stay float32; "64" as 64-true.)
# A checkpoint's name, once its metrics are in: the file system's 255 bytes, less what a temporary file and a version
# (-v1) add, and room for a metric that formats wider than the example (a loss of 12.3456 for 0.0000)
LONGEST_CHECKPOINT_NAME = 200
MAX_TIME_SECONDS = 100 * 365 * 86400  # a century: more is no limit (leave it out), and far more overflows a timedelta
TRUE_PRECISIONS = {"16-true": "float16", "bf16-true": "bfloat16", "64-true": "float64", "64": "float64"}
FLOAT16_MIXED = ("16-mixed", "16")  # float16 autocast: CUDA only (on a CPU Lightning switches to bf16-mixed)


def check_precision_on(accelerator, precision) -> None:
    """``--trainer.precision 16-mixed`` where the run would be on the CPU: Lightning switches it to bf16-mixed with
    a warning, and the run's config and results would then name a precision it did not use; refused instead, so
    the user picks one that runs here. (Call after :func:`check_devices`.)"""
    if str(precision) not in FLOAT16_MIXED or not isinstance(accelerator, str):
        return
    if _accelerator_class(accelerator) is CPUAccelerator:
        raise UserError(f"--trainer.precision {precision}: float16 mixed precision runs on a CUDA GPU, and this run "
                        f"is on the CPU (Lightning would use bf16-mixed instead); ask for bf16-mixed or 32-true")


def check_steps_per_execution(config) -> None:
    """``--data.steps_per_execution`` above 1 with what would then not train the same: the settings and callbacks
    that work one batch at a time (Lightning's automatic loop, a weight average, checkpoints every N steps)."""
    trainer, per_execution = config.trainer, config.data.steps_per_execution
    if per_execution == 1:
        return
    if trainer.accumulate_grad_batches != 1 or trainer.gradient_clip_val:
        flag = ("--trainer.accumulate_grad_batches" if trainer.accumulate_grad_batches != 1
                else "--trainer.gradient_clip_val")
        raise UserError(f"--data.steps_per_execution {per_execution} with {flag}: gradient accumulation and "
                        f"clipping run in Lightning's automatic loop, one batch a step; give "
                        f"--data.steps_per_execution 1 with them")
    averaging = [kind.__name__ for kind in callback_classes(trainer) if issubclass(kind, WeightAveraging)]
    if averaging:
        raise UserError(f"--data.steps_per_execution {per_execution} with --trainer.callbacks {averaging[0]}: it "
                        f"averages the weights once per batch Lightning takes, which would be once per "
                        f"{per_execution} optimizer steps (Keras' EMA averages every step); give "
                        f"--data.steps_per_execution 1 with it")


def check_validated_and_tested(config, train_images: int, val_batches: int, test_batches: int) -> None:
    """Refuse settings under which ``fit``/``cv`` would train nothing, never validate, keep no best checkpoint or
    test nothing: Lightning accepts them and fails after the training, or divides by zero in the first step.

    ``train_images`` are an epoch's; ``val_batches`` and ``test_batches`` its batches before ``limit_*_batches``.
    """
    trainer, monitors = config.trainer, (config.early_stopping.monitor, config.checkpoint.monitor)
    batch_size, per_execution = config.data.batch_size, config.data.steps_per_execution
    train_batches = math.ceil(train_images / (batch_size * per_execution))  # what Lightning takes
    validated = any(str(m).startswith("val/") for m in monitors)  # else training metrics are enough
    zero_val = not validated and trainer.limit_val_batches is not None and trainer.limit_val_batches <= 0
    check_batch_limits(trainer, "fit", {"limit_train_batches": ("train on", train_batches),
                                        "limit_test_batches": ("test", test_batches),
                                        **({} if zero_val else {"limit_val_batches": ("validate", val_batches)})})
    limit = trainer.limit_train_batches
    if isinstance(limit, int) and not isinstance(limit, bool):
        train_batches = min(train_batches, limit)
    elif isinstance(limit, float):
        train_batches = max(1, int(train_batches * limit))
    if trainer.max_steps == 0:
        raise UserError("--trainer.max_steps 0: fit would train no step; give -1 (no limit) or at least 1")
    accumulate = trainer.accumulate_grad_batches
    if isinstance(accumulate, int) and accumulate > train_batches:  # Lightning would step once, at the epoch's end
        raise UserError(f"--trainer.accumulate_grad_batches {accumulate}: more than the {train_batches} training "
                        f"batches of an epoch (one optimizer step would sum them all); give at most {train_batches}")
    max_epochs, every = trainer.max_epochs, trainer.check_val_every_n_epoch
    interval = trainer.val_check_interval  # a count, a fraction, or a time (Lightning reads those)
    if isinstance(interval, (str, dict)):  # a time ("DD:HH:MM:SS"): none at all was a traceback inside Lightning
        check_duration("--trainer.val_check_interval", interval, "between validations")
    if isinstance(interval, (int, float)) and not (math.isfinite(interval) and interval > 0):
        raise UserError(f"--trainer.val_check_interval {interval}: give a number of batches of at least 1, or a "
                        f"fraction of the epoch above 0")
    within = train_batches if every is not None else train_batches * (max_epochs or 1)
    if isinstance(interval, int) and not isinstance(interval, bool) and interval > within:
        raise UserError(f"--trainer.val_check_interval {interval}: more than the {within} training batches "
                        f"{'of an epoch' if every is not None else 'of the run'}; give at most {within}, or a fraction")
    if validated and trainer.max_steps and trainer.max_steps > 0:  # Lightning stops there, validated or not
        if isinstance(interval, int) and not isinstance(interval, bool):
            first = interval
        elif isinstance(interval, float):
            first = max(1, int(train_batches * interval))
        else:
            first = train_batches * (every or 1)
        first = math.ceil(first / (trainer.accumulate_grad_batches or 1))  # max_steps counts optimizer steps
        if per_execution > 1:  # each batch Lightning took held this many steps, an epoch's last what was left
            epochs, within_epoch = divmod(first, train_batches)
            first = (epochs * optimizer_steps(train_images, batch_size, per_execution, train_batches)
                     + optimizer_steps(train_images, batch_size, per_execution, within_epoch))
        if trainer.max_steps < first:
            monitor = next(m for m in monitors if str(m).startswith("val/"))
            raise UserError(f"--trainer.max_steps {trainer.max_steps}: the run would stop before its first "
                            f"validation, after {first} steps, and fit keeps its best checkpoint by {monitor}; "
                            f"give at least {first}, or validate sooner (--trainer.val_check_interval)")
    if validated and every and max_epochs and every > max_epochs:
        raise UserError(f"--trainer.check_val_every_n_epoch {every}: none of the {max_epochs} epochs would be "
                        f"validated, and fit keeps its best checkpoint by {config.checkpoint.monitor}; give at most "
                        f"{max_epochs}")
    min_epochs = trainer.min_epochs
    if min_epochs and max_epochs and min_epochs > max_epochs:
        raise UserError(f"--trainer.min_epochs {min_epochs}: more than --trainer.max_epochs {max_epochs}")
    clip = trainer.gradient_clip_val
    if clip is not None and not (math.isfinite(clip) and clip >= 0):  # nan (a config's .nan): every weight nan
        raise UserError(f"--trainer.gradient_clip_val {clip:g}: give 0 (no clipping) or a positive number")
    if trainer.max_time is not None:
        check_duration("--trainer.max_time", trainer.max_time, "to train")
    saves = config.checkpoint.every_n_epochs
    if saves is not None and (saves < 1 or (max_epochs and saves > max_epochs)):
        raise UserError(f"--checkpoint.every_n_epochs {saves}: fit would keep no best checkpoint to test; give at "
                        f"least 1" + (f" and at most {max_epochs} (--trainer.max_epochs)" if max_epochs else ""))
    for flag in ("every_n_train_steps", "train_time_interval"):  # (Lightning takes either instead of epochs)
        value = config.checkpoint.get(flag)
        if value is not None and (flag != "every_n_train_steps" or value != 0):  # (0: Lightning's default, off)
            raise UserError(f"--checkpoint.{flag} {value}: Lightning's checkpoint then saves on that schedule only, "
                            f"never as a validation ends, so fit would keep no best checkpoint to test (a whole run "
                            f"trained, then a traceback, hostile round 10); to save more often, validate more often: "
                            f"--trainer.val_check_interval N (batches), each validation then saved")
    if (trainer.num_nodes or 1) > 1 and not cluster_launched():
        raise UserError(f"--trainer.num_nodes {trainer.num_nodes}: this process would wait for the other nodes "
                        f"forever; start the command on each node with NODE_RANK, MASTER_ADDR and MASTER_PORT set "
                        f"(or under SLURM or torchrun)")


def cluster_launched() -> bool:
    """Whether a multi-node launch is under way: a cluster Lightning detects, or the variables a manual one sets."""
    return "NODE_RANK" in os.environ or any(
        env.detect() for env in (SLURMEnvironment, TorchElasticEnvironment, LSFEnvironment))


def _accelerator_class(name: str):
    """The Accelerator class ``--trainer.accelerator`` names (``auto``: the one Lightning would pick here)."""
    if name == "gpu" or (name == "auto" and (CUDAAccelerator.is_available() or MPSAccelerator.is_available())):
        return CUDAAccelerator if CUDAAccelerator.is_available() or not MPSAccelerator.is_available() else MPSAccelerator
    return CPUAccelerator if name == "auto" else type(AcceleratorRegistry.get(name))


def check_accelerator_name(accelerator) -> None:
    """``--trainer.accelerator`` is one Lightning knows (whether this machine has it is :func:`check_devices`')."""
    names = sorted({"auto", "gpu", *AcceleratorRegistry.available_accelerators()})
    if isinstance(accelerator, str) and accelerator not in names:
        raise UserError(f"--trainer.accelerator {accelerator}: not an accelerator Lightning knows; use one of "
                        f"{', '.join(names)}")


def check_devices(accelerator, devices) -> None:
    """``--trainer.accelerator`` is one Lightning knows and this machine has; ``--trainer.devices`` fits it.

    Lightning would refuse these too, with a traceback, only when the Trainer is built; here
    they are refused before a run folder exists, naming what is allowed.
    """
    if not isinstance(accelerator, str):
        return  # an Accelerator object from a config: Lightning checks it
    check_accelerator_name(accelerator)
    try:
        cls = _accelerator_class(accelerator)
        available = cls.is_available()
    except ImportError as err:  # tpu without torch_xla
        raise UserError(f"--trainer.accelerator {accelerator}: not usable here ({one_line(err)}); use cpu or "
                        f"auto") from None
    if not available:
        raise UserError(f"--trainer.accelerator {accelerator}: no such device on this machine (use cpu or auto)")
    if devices == "auto":
        return
    try:
        parsed = cls.parse_devices(devices)
    except (TypeError, ValueError, MisconfigurationException) as err:
        raise UserError(f"--trainer.devices {devices}: {str(err).strip().rstrip('.')} (or auto)") from None
    cores = os.cpu_count() or 1
    if cls is CPUAccelerator and isinstance(parsed, int) and parsed > cores:
        # each CPU "device" is a whole process with its own copy of the model and the data: more than the cores
        # only time-slice them, and 99 of them exhaust the memory before the first step
        raise UserError(f"--trainer.devices {devices}: {parsed} processes on a CPU of {cores} cores; give at most "
                        f"{cores} (or auto)")


ALLOCATED: list[Path] = []  # run folders this process created, removed again if it fails before any work
TRAINERS: list[Trainer] = []  # the Trainers this process built (one a fold in cv)
RESUMED: list[Path] = []  # the run folder a fit --ckpt_path goes on in (not one of ALLOCATED)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """``fit``/``validate``/``test``/``cv`` with their flags (``argv`` starts with the subcommand)."""
    keep_freed_memory()  # training: reuse freed activations instead of faulting in fresh pages
    stop_probing_for_cuda()  # no GPU here: torch's optimizers stop asking the driver at every step
    # Lightning's own use of a deprecated torch name; nothing a user can act on
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    # LightningCLI's note that --optimizer replaces the module's configure_optimizers: what the flag asked for (and a
    # line before the one error line when the optimizer's settings are then refused)
    warnings.filterwarnings("ignore", message=r".*configure_optimizers` will be overridden by")
    ALLOCATED.clear()
    RESUMED.clear()
    TRAINERS.clear()
    share_sigterm_with_lightning()
    command = next(iter(sys.argv[1:] if argv is None else argv), "")
    try:
        MnistCLI(args=None if argv == sys.argv[1:] else argv)  # None: LightningCLI reads sys.argv itself
    except BaseException as err:
        for run_dir in ALLOCATED:
            discard_if_empty_of_work(run_dir)
        if isinstance(err, SIGTERMException):  # Lightning's clean stop (Ctrl-C or SIGTERM), said when saved
            raise SystemExit(EXIT_INTERRUPTED) from None
        if interrupted(err):  # said where it was known what was saved (a run's checkpoints) or here (nothing was)
            terminated = by_sigterm(err)
            if command in ("test", "validate"):
                print(f"{command} interrupted ({'SIGTERM' if terminated else 'Ctrl-C'}): no results were written",
                      file=sys.stderr)
            raise SystemExit(EXIT_TERMINATED if terminated else EXIT_INTERRUPTED) from None
        full = disk_full(err)
        if full is not None:  # every checkpoint is written whole or not at all: the last whole one is kept
            raise UserError(f"no space left on the device writing {full.filename or 'the run'}: free some space, "
                            f"then {_after_a_full_disk(command)}") from None
        raise


def fit_trains() -> bool:
    """Whether a fit of this process trains now: Lightning's SIGTERM handler, which calls the project's, then stops
    it at the next training batch (:class:`RunCheckpoint` saves its last.ckpt, which a resume goes on from), so the
    project's handler leaves the signal to it. Elsewhere (before the fit, the test after it, test and validate, which
    Lightning stops with nothing said, or lets run on in their last batch) the project's handler ends the command at
    once."""
    return any(trainer.state.fn == TrainerFn.FITTING and trainer.state.status == TrainerStatus.RUNNING
               for trainer in TRAINERS)


def share_sigterm_with_lightning() -> None:
    """The project's SIGTERM handler (installed by ``python -m lightning_mnist``) leaves the signal to Lightning's
    while a fit trains (Lightning then stops it between batches, resumable), and Lightning's "Detected
    KeyboardInterrupt" line is left out where the project ended a command on SIGTERM elsewhere."""
    if fit_trains not in LEFT_TO_THE_LIBRARY:
        LEFT_TO_THE_LIBRARY.append(fit_trains)
    lightning_lines = logging.getLogger(lightning_rank_zero.__name__)  # where Lightning's Trainer says what it does
    if not any(isinstance(f, SigtermIsNoKeyboardInterrupt) for f in lightning_lines.filters):
        lightning_lines.addFilter(SigtermIsNoKeyboardInterrupt())


def _after_a_full_disk(command: str) -> str:
    """What to do once space is freed, from what the failed ``command`` kept: a fit resumes (its last.ckpt; a run
    resumed keeps the checkpoint it had) or starts from its best checkpoint; a cv, a test, a validate, or a fit that
    kept nothing (its folder is gone) or failed before its run began (MNIST's download) runs again."""
    if not ALLOCATED and not RESUMED:
        return "run it again (no run had started)"
    if command == "cv":  # its folds' checkpoints stay, but no fold is resumed
        return "run it again (a k-fold run starts again from its first fold)"
    kept = [run for run in ALLOCATED if run.is_dir()]
    if command == "fit" and (RESUMED or any((run / CHECKPOINTS / RESUME_FILE).is_file() for run in kept)):
        return "resume with --ckpt_path last (a checkpoint is written whole or not at all)"
    saved = sorted(path for run in kept for path in run.rglob("*.ckpt")) if command == "fit" else []
    if saved:
        return (f"start from the checkpoint it saved whole, {path_text(saved[-1])} (--weights; it has no "
                f"{RESUME_FILE} to resume)")
    return "run it again (nothing was saved; its run folder was removed)"

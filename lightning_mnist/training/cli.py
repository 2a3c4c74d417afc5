"""``python -m lightning_mnist fit|validate|test|cv``: LightningCLI with the notebook's defaults.

After ``fit`` the best checkpoint is scored on the held-out test set and the run
directory gets ``results.json`` and ``curves.png``.
"""

from __future__ import annotations

import time
from pathlib import Path

import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from mnist_common.allocator import keep_freed_memory
from mnist_common.architecture import Architecture
from mnist_common.errors import exit_on_user_error
from mnist_common.figures import plot_curves
from mnist_common.results import CURVES_FILE, RESULTS_FILE, RunResults, write_json
from mnist_common.splits import DEFAULT_NUM_FOLDS
from lightning_mnist.checkpoints import load_classifier, read_checkpoint
from lightning_mnist.data import MNISTDataModule
from lightning_mnist.models import MnistClassifier
from lightning_mnist.training.callbacks import EpochHistory, ResumeHint
from lightning_mnist.training.cv import MnistTrainer, cross_validate

DEFAULT_CHECKPOINT_DIR = "checkpoints"
DEFAULT_LOG_DIR = "runs"


class MnistCLI(LightningCLI):
    def __init__(self, *args, **kwargs) -> None:
        kwargs["trainer_defaults"] = {
            "max_epochs": 10,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": DEFAULT_LOG_DIR, "name": "lightning"}},
            **kwargs.get("trainer_defaults", {}),
        }
        kwargs.setdefault("seed_everything_default", 42)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})  # re-running in one folder is fine
        super().__init__(MnistClassifier, MNISTDataModule, *args, trainer_class=MnistTrainer, **kwargs)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        commands = dict(LightningCLI.subcommands())
        del commands["predict"]  # ``python -m lightning_mnist predict`` predicts PNG files instead
        commands["cv"] = {"model", "datamodule"}
        return commands

    def _prepare_subcommand_parser(self, klass, subcommand: str, **kwargs) -> LightningArgumentParser:
        parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
        if subcommand == "cv":  # the notebook's "advanced training"
            parser.set_defaults({"data.num_folds": DEFAULT_NUM_FOLDS, "data.augment": True})
        return parser

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.dirpath": DEFAULT_CHECKPOINT_DIR,
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

    def _instantiate_trainer(self, config, callbacks):
        return super()._instantiate_trainer(config, [*callbacks, EpochHistory(), ResumeHint()])

    def history(self) -> list[dict[str, float]]:
        """Per-epoch metrics of the current trainer's fit (kept across resumes)."""
        return next(cb for cb in self.trainer.callbacks if isinstance(cb, EpochHistory)).history

    def best_epoch(self) -> int:
        """The epoch whose weights the best checkpoint holds (what ``test`` scores)."""
        return int(read_checkpoint(self.trainer.checkpoint_callback.best_model_path).contents["epoch"])

    def resolved_config(self, subcommand: str) -> dict:
        return yaml.safe_load(self._parser(subcommand).dump(self.config[subcommand], skip_none=False))

    def cv(self, model, datamodule) -> None:
        cross_validate(self)

    def before_instantiate_classes(self) -> None:
        """Refuse a network MNIST cannot train or score before anything is built."""
        subcommand = self.config.get("subcommand")
        if subcommand in ("fit", "cv"):
            Architecture.load(self.config[subcommand].model.architecture).require_mnist(f"`{subcommand}` on MNIST")

    def before_fit(self) -> None:
        self._fit_started = time.perf_counter()
        print(self.model.architecture.summary())

    def after_fit(self) -> None:
        """Score the best checkpoint on the test set; write results.json and curves.png."""
        trainer = self.trainer
        best = str(Path(trainer.checkpoint_callback.best_model_path).resolve())
        history = list(self.history())  # before test(): loading the best checkpoint rewinds callback state
        tested = trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best", verbose=False)[0]
        run_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        results = RunResults(
            framework="lightning",
            test_acc=tested["test/acc"],
            test_loss=tested["test/loss"],
            model_path=best,
            epochs=len(history),
            best_epoch=self.best_epoch(),
            wall_seconds=round(time.perf_counter() - self._fit_started, 2),
            history=history,
            config=self.resolved_config("fit"),
        )
        json_path = write_json(results, f"{run_dir}/{RESULTS_FILE}")
        curves_path = plot_curves(history, f"{run_dir}/{CURVES_FILE}", "lightning_mnist fit")
        print(f"test accuracy {results.test_acc:.4f}, test loss {results.test_loss:.4f} "
              f"(best checkpoint {best}, {results.epochs} epochs, {results.wall_seconds:.1f} s)")
        print(f"results: {json_path}\ncurves: {curves_path}")

    # --- ``test``/``validate --ckpt_path`` a .keras file or a k-fold run's cv_results.json ---
    def parse_arguments(self, parser: LightningArgumentParser, args) -> None:
        super().parse_arguments(parser, args)
        # LightningCLI reads the checkpoint's hyper-parameters right after parsing, so a .keras
        # ckpt_path is swapped for a temporary checkpoint of its weights here, before it looks.
        subcommand = self.config.get("subcommand")
        if subcommand in ("test", "validate"):
            self._convert_keras_ckpt_path(subcommand)
            self._take_ensemble_ckpt_path(subcommand)

    def _take_ensemble_ckpt_path(self, subcommand: str) -> None:
        """``--ckpt_path .../cv_results.json``: test the k-fold ensemble that file describes."""
        path = self.config[subcommand].get("ckpt_path")
        self._ensemble_results = path if path and str(path).endswith(".json") else None
        if self._ensemble_results:
            self.config[subcommand]["ckpt_path"] = None  # the ensemble loads its own checkpoints

    def before_test(self) -> None:
        if getattr(self, "_ensemble_results", None):
            self.model = load_classifier(self._ensemble_results)
            print(f"testing the {len(self.model.members)}-fold ensemble of {self._ensemble_results}")

    def after_test(self) -> None:
        self._drop_converted_checkpoint()

    def after_validate(self) -> None:
        self._drop_converted_checkpoint()

    def _convert_keras_ckpt_path(self, subcommand: str) -> None:
        """Swap a ``.keras`` ckpt_path for a temporary checkpoint of its (checked) architecture and weights.

        No Keras is needed: the file is checked and its weights are read by the project itself.
        """
        path = self.config[subcommand].get("ckpt_path")
        if not path or not str(path).lower().endswith(".keras"):
            return
        import tempfile

        from lightning_mnist.checkpoints import keras_file_network, save_checkpoint

        network = keras_file_network(path)
        self._converted_dir = tempfile.TemporaryDirectory(prefix="lightning_mnist_keras_")
        ckpt = Path(self._converted_dir.name) / f"{Path(path).stem}.ckpt"
        save_checkpoint(ckpt, network.architecture, network.state_dict())
        print(f"converted {path} to a temporary Lightning checkpoint", flush=True)
        self.config[subcommand]["ckpt_path"] = str(ckpt)

    def _drop_converted_checkpoint(self) -> None:
        converted = getattr(self, "_converted_dir", None)
        if converted is not None:
            converted.cleanup()
            self._converted_dir = None


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    """``fit``/``validate``/``test``/``cv`` with their flags (``argv`` starts with the subcommand)."""
    keep_freed_memory()  # training: reuse freed activations instead of faulting in fresh pages
    MnistCLI(args=argv)

"""``python -m lightning_mnist fit|validate|test``: LightningCLI with the notebook's defaults.

After ``fit`` the best checkpoint is scored on the held-out test set and the run
directory gets ``results.json`` and ``curves.png``.
"""

from __future__ import annotations

import sys
import time

import yaml
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from mnist_common.errors import exit_on_user_error
from mnist_common.results import CURVES_FILE, RESULTS_FILE, RunResults, plot_curves, write_json
from lightning_mnist.callbacks import EpochHistory, ResumeHint
from lightning_mnist.data import MNISTDataModule
from lightning_mnist.models import MnistClassifier, keras_parameter_count

DEFAULT_CHECKPOINT_DIR = "checkpoints"
DEFAULT_LOG_DIR = "runs"


class MnistCLI(LightningCLI):
    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("trainer_defaults", {
            "max_epochs": 10,
            "logger": {"class_path": "lightning.pytorch.loggers.CSVLogger",
                       "init_args": {"save_dir": DEFAULT_LOG_DIR, "name": "lightning"}},
        })
        kwargs.setdefault("seed_everything_default", 42)
        super().__init__(MnistClassifier, MNISTDataModule, *args, **kwargs)

    def subcommands(self) -> dict[str, set[str]]:  # type: ignore[override]
        commands = dict(LightningCLI.subcommands())
        del commands["predict"]  # ``python -m lightning_mnist predict`` predicts PNG files instead
        return commands

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

    def before_fit(self) -> None:
        self._fit_started = time.perf_counter()
        trainable, moving = keras_parameter_count(self.model.network)
        print(f"parameters as Keras counts them: {trainable + moving:,} "
              f"({trainable:,} trainable + {moving:,} BatchNorm moving statistics)")

    def after_fit(self) -> None:
        """Score the best checkpoint on the test set; write results.json and curves.png."""
        trainer = self.trainer
        best = trainer.checkpoint_callback.best_model_path
        tested = trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best", verbose=False)[0]
        history = next(cb for cb in trainer.callbacks if isinstance(cb, EpochHistory)).history
        run_dir = trainer.log_dir  # a collective under DDP: every rank must ask
        if not trainer.is_global_zero:
            return
        results = RunResults(
            framework="lightning",
            test_acc=tested["test/acc"],
            test_loss=tested["test/loss"],
            model_path=best,
            epochs=len(history),
            best_epoch=min(history, key=lambda row: row["val_loss"])["epoch"] if history else None,
            wall_seconds=round(time.perf_counter() - self._fit_started, 2),
            history=history,
            config=yaml.safe_load(self._parser("fit").dump(self.config["fit"], skip_none=False)),
        )
        json_path = write_json(results, f"{run_dir}/{RESULTS_FILE}")
        curves_path = plot_curves(history, f"{run_dir}/{CURVES_FILE}", "lightning_mnist fit")
        print(f"test accuracy {results.test_acc:.4f}, test loss {results.test_loss:.4f} "
              f"(best checkpoint {best}, {results.epochs} epochs, {results.wall_seconds:.1f} s)")
        print(f"results: {json_path}\ncurves: {curves_path}")


@exit_on_user_error
def main(args: list[str] | None = None) -> None:
    MnistCLI(args=args)


if __name__ == "__main__":
    sys.exit(main())

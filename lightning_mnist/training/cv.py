"""``python -m lightning_mnist cv``: the notebook's stratified k-fold, done right.

Every fold re-instantiates the CLI's classes from the same config, so each fold
gets a fresh model (fresh weights), optimizer, callbacks and logger version; only
the fold index and the output folders change. The fold models are then tested on
the held-out test set one by one and as an ensemble (mean of probabilities).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

from lightning.pytorch import Trainer

from mnist_common.figures import plot_cv_curves
from mnist_common.results import CV_CURVES_FILE, CV_RESULTS_FILE, CVResults, FoldResult, write_json
from lightning_mnist.checkpoints import read_checkpoint
from lightning_mnist.models import MnistEnsemble

if TYPE_CHECKING:
    from lightning_mnist.training.cli import MnistCLI


class MnistTrainer(Trainer):
    """Lightning's Trainer; ``cv`` is declared here only so LightningCLI offers it as a subcommand."""

    def cv(self, model, datamodule) -> None:
        """Stratified k-fold cross-validation: a fresh model, optimizer, callbacks and logger per fold."""
        raise NotImplementedError("run k-fold cross-validation as `python -m lightning_mnist cv`")


def _next_run_dir(config) -> Path:
    logger = config.trainer.logger
    init_args = getattr(logger, "init_args", None)
    base = Path(init_args.save_dir) / (init_args.name or "") if init_args else Path(config.trainer.default_root_dir or ".")
    index = 0
    while (base / f"cv_{index}").exists():
        index += 1
    return base / f"cv_{index}"


def cross_validate(cli: MnistCLI) -> Path:
    """Run every fold of ``cli.config["cv"]``; write and return ``cv_results.json``."""
    config = cli.config["cv"]
    run_dir = _next_run_dir(config)
    checkpoint_root = Path(config.checkpoint.dirpath) / run_dir.name
    started = time.perf_counter()
    folds: list[FoldResult] = []
    for fold in range(config.data.num_folds):
        config.data.fold = fold
        config.checkpoint.dirpath = str(checkpoint_root / f"fold_{fold}")
        if getattr(config.trainer.logger, "init_args", None):
            logger_args = config.trainer.logger.init_args
            logger_args.save_dir, logger_args.name, logger_args.version = str(run_dir), "", f"fold_{fold}"
        cli.instantiate_classes()  # fresh model, optimizer, data, callbacks and logger
        trainer = cli.trainer
        trainer.fit(cli.model, datamodule=cli.datamodule)
        history = list(cli.history())  # before test(): loading the best checkpoint rewinds callback state
        tested = trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)[0]
        best = history[cli.best_epoch()]
        folds.append(FoldResult(fold=fold, val_acc=best["val_acc"], val_loss=best["val_loss"], epochs=len(history),
                                model_path=str(Path(trainer.checkpoint_callback.best_model_path).resolve()),
                                test_acc=tested["test/acc"], test_loss=tested["test/loss"], history=history))
        print(f"fold {fold}: val acc {best['val_acc']:.4f}, val loss {best['val_loss']:.4f}, "
              f"test acc {tested['test/acc']:.4f} ({len(history)} epochs)")

    ensemble = MnistEnsemble([read_checkpoint(f.model_path).network() for f in folds])
    tested = cli.trainer.test(ensemble, datamodule=cli.datamodule, verbose=False)[0]
    results = CVResults(framework="lightning", num_folds=len(folds), folds=folds,
                        wall_seconds=round(time.perf_counter() - started, 2),
                        ensemble_test_acc=tested["test/acc"], ensemble_test_loss=tested["test/loss"],
                        config=cli.resolved_config("cv"))
    path = write_json(results, run_dir / CV_RESULTS_FILE)
    curves = plot_cv_curves([f.history for f in folds], run_dir / CV_CURVES_FILE, "lightning_mnist cv")
    print(f"{len(folds)}-fold val acc {results.val_acc_mean:.4f} +- {results.val_acc_std:.4f} "
          f"(folds: {', '.join(f'{f.val_acc:.4f}' for f in folds)}); "
          f"ensemble test acc {results.ensemble_test_acc:.4f}")
    print(f"cv results: {path}\ncv curves: {curves}")
    return path

"""``python -m lightning_mnist cv``: the notebook's stratified k-fold, done right.

Every fold re-instantiates the CLI's classes from the same config, so each fold gets a
fresh model (fresh weights), optimizer, callbacks and logger; only the fold index and its
folder (``<run>/fold_k``, checkpoints in ``fold_k/checkpoints``) change. The fold models are
then tested on the held-out test set one by one and as an ensemble (mean of probabilities),
and ``cv_results.json`` records the configuration the user ran and the fold models' paths
relative to the run folder; ``<run>/config.yaml`` holds that configuration for ``cv --config`` (each
fold's own ``config.yaml``, which LightningCLI saves, names its fold).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import yaml
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.utilities.exceptions import SIGTERMException

from mnist_common.errors import EXIT_INTERRUPTED, EXIT_TERMINATED, escaped
from mnist_common.figures import plot_cv_curves
from mnist_common.files import write_atomically
from mnist_common.results import CV_CURVES_FILE, CV_RESULTS_FILE, CVResults, FoldResult, write_json
from mnist_common.runs import CHECKPOINTS, relative_to_run
from lightning_mnist.checkpoints import read_checkpoint
from lightning_mnist.models import MnistEnsemble
from lightning_mnist.training.callbacks import by_sigterm, interrupted, refuse_diverged
from lightning_mnist.training.outputs import RUN_CONFIG_FILE, a_runs_own_checkpoints, point_outputs_at
from lightning_mnist.training.reports import write_test_report


def cross_validate(cli: LightningCLI, run_dir: Path) -> Path:
    """Run every fold of ``cli.config["cv"]`` in ``run_dir``; write and return ``cv_results.json``.

    ``cli`` is the project's ``MnistCLI`` (its ``resolved_config``, ``history`` and ``best_epoch`` are used);
    it is typed as Lightning's base class so that this module does not import the CLI that imports it.
    """
    config = cli.config["cv"]
    ran = cli.resolved_config("cv")  # what the user ran, before the folds edit the config
    settings = yaml.safe_dump(ran, sort_keys=False)  # for cv --config to rerun it
    write_atomically(run_dir / RUN_CONFIG_FILE, lambda tmp: tmp.write_text(settings, encoding="utf-8"))
    checkpoint_base = config.checkpoint.dirpath  # a user's own checkpoint folder gets one sub-folder per fold
    if a_runs_own_checkpoints(checkpoint_base):  # settings saved by an earlier run name that run's folder
        checkpoint_base = None
    folds: list[FoldResult] = []
    try:
        return _run_folds(cli, run_dir, config, ran, checkpoint_base, folds)
    except BaseException as err:
        if not isinstance(err, (KeyboardInterrupt, SIGTERMException)) and not interrupted(err):
            raise
        count, kept = config.data.num_folds, ", ".join(escaped(run_dir / fold.model_path) for fold in folds)
        where = f"fold {len(folds)} of {count}" if len(folds) < count else "its ensemble's test"
        finished = "fold 0" if len(folds) == 1 else f"folds 0 to {len(folds) - 1}"
        done = f"{finished} finished (best checkpoints: {kept}), but" if folds else "no fold finished and"
        if getattr(cli.trainer, "is_global_zero", True):
            print(f"cv interrupted in {where}: {done} no {CV_RESULTS_FILE} was written; a k-fold run starts again "
                  f"from its first fold: run the command again", file=sys.stderr, flush=True)
        raise SystemExit(EXIT_TERMINATED if by_sigterm(err) else EXIT_INTERRUPTED) from None


def _run_folds(cli: LightningCLI, run_dir: Path, config, ran: dict, checkpoint_base: str | None,
               folds: list[FoldResult]) -> Path:
    """:func:`cross_validate`'s folds, each appended to ``folds`` when it is done, then their ensemble."""
    started = time.perf_counter()
    for fold in range(config.data.num_folds):
        fold_dir = run_dir / f"fold_{fold}"
        config.data.fold = fold
        config.checkpoint.dirpath = str(Path(checkpoint_base) / f"fold_{fold}" if checkpoint_base
                                        else fold_dir / CHECKPOINTS)
        point_outputs_at(config, fold_dir)
        # LightningCLI gives the model and the data module the hyperparameters of a dump of the config it makes once
        # and keeps (config_dump): made again from this fold's settings, or every fold's data module says fold 0's
        # (every fold trained and validated on fold 0's parts until session 39)
        vars(cli).pop("config_dump", None)
        cli.instantiate_classes()  # fresh model, optimizer, data, callbacks and logger
        if cli.datamodule.hparams.fold != fold:  # a Lightning that keeps its dump elsewhere: never train a fold twice
            raise RuntimeError(f"fold {fold}'s data module was built for fold {cli.datamodule.hparams.fold}")
        trainer = cli.trainer
        trainer.checkpoint_callback.resume_hint = False  # a k-fold run starts again from its first fold
        trainer.fit(cli.model, datamodule=cli.datamodule)
        history = list(cli.history().history)  # before test(): loading the best checkpoint rewinds callback state
        refuse_diverged(trainer)
        tested = trainer.test(cli.model, datamodule=cli.datamodule, ckpt_path="best", verbose=False)[0]
        best = history[cli.best_epoch()]
        folds.append(FoldResult(fold=fold, val_acc=best["val_acc"], val_loss=best["val_loss"], epochs=len(history),
                                model_path=relative_to_run(trainer.checkpoint_callback.best_model_path, run_dir),
                                test_acc=tested["test/acc"], test_loss=tested["test/loss"], history=history))
        print(f"fold {fold}: val acc {best['val_acc']:.4f}, val loss {best['val_loss']:.4f}, "
              f"test acc {tested['test/acc']:.4f} ({len(history)} epochs)")

    ensemble = MnistEnsemble([read_checkpoint(run_dir / f.model_path).network() for f in folds])
    cli.trainer.loggers = []  # the last fold's: the ensemble's scores go to cv_results.json, not into its logs
    tested = cli.trainer.test(ensemble, datamodule=cli.datamodule, verbose=False)[0]
    report = write_test_report(ensemble, cli.datamodule, run_dir, f"lightning_mnist cv, {len(folds)}-fold ensemble")
    results = CVResults(framework="lightning", num_folds=len(folds), folds=folds,
                        wall_seconds=round(time.perf_counter() - started, 2),
                        ensemble_test_acc=tested["test/acc"], ensemble_test_loss=tested["test/loss"], config=ran,
                        ensemble_confusion_matrix=report.confusion, ensemble_mistakes=report.mistakes_count)
    path = write_json(results, run_dir / CV_RESULTS_FILE)
    curves = plot_cv_curves([f.history for f in folds], run_dir / CV_CURVES_FILE, "lightning_mnist cv")
    print(f"{len(folds)}-fold val acc {results.val_acc_mean:.4f} +- {results.val_acc_std:.4f} "
          f"(folds: {', '.join(f'{f.val_acc:.4f}' for f in folds)}); "
          f"ensemble test acc {results.ensemble_test_acc:.4f}")
    print(f"cv results: {escaped(path)}\ncv curves: {escaped(curves)}\n{report.describe()}")
    return path

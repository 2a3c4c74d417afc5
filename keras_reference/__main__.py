"""``python -m keras_reference train|cv [flags]``: the notebook's Keras model, trained as the notebook did.

The flags are spelled as ``python -m lightning_mnist fit`` spells them (``--data.subset``,
``--model.lr``, ``--trainer.max_epochs``, ``--seed_everything``, ``--output_dir``...), and
each command takes ``--config FILE`` and ``--print_config``. Flags, data files and the
output folder are checked before TensorFlow is imported, so bad input ends at once with
one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import sys

from mnist_common.environment import check_environment
from mnist_common.errors import escaped, exit_on_user_error, stop_cleanly_on_sigterm

# Before the imports below: scikit-learn's loads libgomp, which prints its own warning about an OMP_NUM_THREADS it
# cannot read before this command could say so in one line (and main() checks again, for callers in-process).
if __name__ == "__main__":
    stop_cleanly_on_sigterm()  # SIGTERM ends a run as Ctrl-C does: its temporaries removed, a folder of no work too
    exit_on_user_error(check_environment)()

from keras_reference.config import CV_DATA, CheckpointSettings, DataSettings, EarlyStoppingSettings, ModelSettings, \
    RunSettings, TrainerSettings  # noqa: E402
from mnist_common.cli import run_subcommands  # noqa: E402
from mnist_common.results import CURVES_FILE, CV_CURVES_FILE, CV_RESULTS_FILE, RESULTS_FILE  # noqa: E402
from mnist_common.runs import DEFAULT_OUTPUT_DIR  # noqa: E402

PROG = "python -m keras_reference"


def _verbosity() -> int:
    return 1 if sys.stdout.isatty() else 2  # progress bars only on a terminal


def _announce() -> None:
    from keras_reference.train import keras, use_device  # TensorFlow loads here

    print(f"Keras {keras.__version__} (TensorFlow backend) on {use_device()}", flush=True)


def train(model: ModelSettings = ModelSettings(), data: DataSettings = DataSettings(),
          trainer: TrainerSettings = TrainerSettings(), early_stopping: EarlyStoppingSettings = EarlyStoppingSettings(),
          seed_everything: int = 42, output_dir: str = DEFAULT_OUTPUT_DIR,
          checkpoint: CheckpointSettings = CheckpointSettings(), weights: str | None = None) -> None:
    """Train once, validating on a stratified hold-out of the training images, then test.

    Args:
        model: the network and its optimizer.
        data: the images, their split and augmentation.
        trainer: how long to train.
        early_stopping: when to stop.
        seed_everything: seed of weights, shuffling, dropout and augmentation.
        output_dir: the run gets its own folder in <output_dir>/keras (version_N).
        checkpoint: which epoch's weights are tested and saved.
        weights: start from this .keras file's weights (fine-tuning: its frozen layers, trainable false, stay as
            they are); the run's network is the file's.
    """
    settings = RunSettings(model, data, trainer, early_stopping, seed_everything, output_dir, checkpoint,
                           weights).check("train")
    _announce()
    from keras_reference.train import train as run

    results, _, run_dir = run(settings, verbose=_verbosity())
    print(f"test accuracy {results.test_acc:.2%} (loss {results.test_loss:.4f}) after {results.epochs} "
          f"epochs, best epoch {results.best_epoch + 1}, {results.wall_seconds:.0f} s")
    print(f"results: {escaped(run_dir / RESULTS_FILE)}\ncurves:  {escaped(run_dir / CURVES_FILE)}\n"
          f"model:   {escaped(run_dir / results.model_path)}")


def cv(model: ModelSettings = ModelSettings(), data: DataSettings = CV_DATA,
       trainer: TrainerSettings = TrainerSettings(), early_stopping: EarlyStoppingSettings = EarlyStoppingSettings(),
       seed_everything: int = 42, output_dir: str = DEFAULT_OUTPUT_DIR,
       checkpoint: CheckpointSettings = CheckpointSettings()) -> None:
    """Stratified k-fold cross-validation: a fresh model per fold, then the ensemble of the folds.

    Args:
        model: the network and its optimizer.
        data: the images, their folds (num_folds, default 5) and augmentation (on by default).
        trainer: how long to train each fold.
        early_stopping: when to stop each fold.
        seed_everything: seed of weights, shuffling, dropout and augmentation (fold k uses seed + k).
        output_dir: the run gets its own folder in <output_dir>/keras (cv_N).
        checkpoint: which epoch's weights each fold tests and saves.
    """
    settings = RunSettings(model, data, trainer, early_stopping, seed_everything, output_dir, checkpoint).check("cv")
    _announce()
    from keras_reference.cv import cross_validate

    results, run_dir = cross_validate(settings, verbose=_verbosity())
    test_accs = ", ".join(f"{f.test_acc:.2%}" for f in results.folds)
    print(f"val accuracy {results.val_acc_mean:.2%} ± {results.val_acc_std:.2%}, "
          f"val loss {results.val_loss_mean:.4f} ± {results.val_loss_std:.4f} over {results.num_folds} folds")
    print(f"test accuracy of the fold models: {test_accs}; ensemble {results.ensemble_test_acc:.2%} "
          f"({results.wall_seconds:.0f} s)")
    print(f"results: {escaped(run_dir / CV_RESULTS_FILE)}\ncurves:  {escaped(run_dir / CV_CURVES_FILE)}")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    check_environment()  # before TensorFlow (its OpenMP kernels only warn about a bad thread count) and Keras load
    run_subcommands({"train": train, "cv": cv}, argv, PROG,
                    "The notebook's Keras CNN (or another architecture): train once, or k-fold cross-validate.",
                    check_values=lambda command, **settings: RunSettings(**settings).check_printable(command))


if __name__ == "__main__":
    main()

"""Command line: ``python -m keras_reference {train,cv} [flags]``.

Flags, data files and output directories are checked before TensorFlow is
imported, so bad input ends at once with one ``error: ...`` line and exit code 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from keras_reference.config import CVConfig, TrainConfig, writable_dir
from mnist_common.errors import ArgumentParser, UserError, exit_on_user_error
from mnist_common.mnist import ensure_files
from mnist_common.results import CURVES_FILE, CV_CURVES_FILE, CV_RESULTS_FILE, RESULTS_FILE




def _add_common(parser: argparse.ArgumentParser, defaults: TrainConfig | CVConfig) -> None:
    """Flags of both commands; ``(%(default)s)`` shows each command's own default."""
    add = parser.add_argument
    add("--epochs", type=int, default=defaults.epochs, help="at most this many epochs (%(default)s)")
    add("--batch-size", type=int, default=defaults.batch_size, help="training batch size (%(default)s)")
    add("--lr", type=float, default=defaults.lr, help="Adam learning rate (%(default)s)")
    add("--patience", type=int, default=defaults.patience,
        help="EarlyStopping patience on val_loss (%(default)s)")
    add("--subset", type=int, default=None, help="use a stratified subset of this many training images (all)")
    add("--seed", type=int, default=defaults.seed,
        help="seed of weights, shuffling, dropout, augmentation (%(default)s)")
    add("--split-seed", type=int, default=defaults.split_seed,
        help="seed of the subset, hold-out and folds (%(default)s)")
    add("--augment", action=argparse.BooleanOptionalAction, default=defaults.augment,
        help="the notebook's ImageDataGenerator augmentation on training batches (%(default)s)")
    add("--data-dir", default=None, help="holds MNIST/raw ($MNIST_DATA_DIR, else ./data)")
    add("--output-dir", default=defaults.output_dir,
        help="where results, history and curves go (%(default)s)")
    add("--architecture", default=defaults.architecture,
        help="the network: a preset (notebook, keras_io, lenet5), a YAML/JSON description or a .keras file "
             "(%(default)s)")


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m keras_reference",
                     description="The notebook's Keras CNN: train once, or k-fold cross-validate.")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train once, validate on a hold-out of the training images, test")
    _add_common(train, TrainConfig())
    train.add_argument("--val-fraction", type=float, default=TrainConfig.val_fraction,
                       help="stratified share of the training images held out for validation (%(default)s)")
    train.add_argument("--model-path", default=TrainConfig.model_path,
                       help="the .keras file to write (%(default)s)")

    cv = commands.add_parser("cv", help="stratified k-fold cross-validation, a fresh model per fold")
    _add_common(cv, CVConfig())
    cv.add_argument("--folds", type=int, default=CVConfig.folds, help="number of stratified folds (%(default)s)")
    cv.add_argument("--checkpoint-dir", default=CVConfig.checkpoint_dir,
                    help="where fold_<k>.keras go (%(default)s)")
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = vars(build_parser().parse_args(argv))
    command = args.pop("command")
    config = TrainConfig(**args) if command == "train" else CVConfig(**args)
    config.validate()
    ensure_files(config.data_dir)
    writable_dir(config.output_dir, "output directory")
    if command == "train":
        writable_dir(Path(config.model_path).parent, "model directory")
    else:
        writable_dir(config.checkpoint_dir, "checkpoint directory")
    verbose = 1 if sys.stdout.isatty() else 2  # progress bars only on a terminal

    from keras_reference.train import keras, use_device  # TensorFlow loads here

    print(f"Keras {keras.__version__} (TensorFlow backend) on {use_device()}", flush=True)
    output_dir = Path(config.output_dir)
    if command == "train":
        from keras_reference.train import train

        results, _ = train(config, verbose=verbose)
        print(f"test accuracy {results.test_acc:.2%} (loss {results.test_loss:.4f}) after {results.epochs} "
              f"epochs, best epoch {results.best_epoch + 1}, {results.wall_seconds:.0f} s")
        print(f"results: {output_dir / RESULTS_FILE}\ncurves:  {output_dir / CURVES_FILE}\n"
              f"model:   {results.model_path}")
    else:
        from keras_reference.cv import cross_validate

        results = cross_validate(config, verbose=verbose)
        test_accs = ", ".join(f"{f.test_acc:.2%}" for f in results.folds)
        print(f"val accuracy {results.val_acc_mean:.2%} ± {results.val_acc_std:.2%}, "
              f"val loss {results.val_loss_mean:.4f} ± {results.val_loss_std:.4f} over {results.num_folds} folds")
        print(f"test accuracy of the fold models: {test_accs}; "
              f"ensemble {results.ensemble_test_acc:.2%} ({results.wall_seconds:.0f} s)")
        print(f"results: {output_dir / CV_RESULTS_FILE}\ncurves:  {output_dir / CV_CURVES_FILE}\n"
              f"models:  {', '.join(f.model_path for f in results.folds)}")


if __name__ == "__main__":
    main()

"""The recipe search as an Optuna study: any number of processes, on any number of machines, on one study.

    pip install -e '.[search]'
    python benchmarks/recipe_search.py --n_trials 20                      # a study in runs/search/optuna.db
    OMP_NUM_THREADS=1 python benchmarks/recipe_search.py --n_trials 10 &  # two processes on 2 cores,
    OMP_NUM_THREADS=1 python benchmarks/recipe_search.py --n_trials 10    # one study between them
    python benchmarks/recipe_search.py --storage postgresql://user:pass@host/db --study_name notebook-cnn  # machines
    python benchmarks/recipe_search.py --n_trials 0 --best_config configs/searched.yaml   # only write the best

Every trial is one ``python -m lightning_mnist fit --config <trial>/trial.yaml`` run in this process
(LightningCLI, so the trial is exactly what that command line does), over the levers of the recipes
table: the one-cycle peak learning rate, epochs, batch size, AdamW weight decay, label smoothing,
augmentation strength and an EMA of the weights. The objective is the **validation** accuracy of the
epoch ``fit`` chooses (its best checkpoint, lowest ``val/loss``), on the stratified 10 % hold-out of
the training images; the test figures ``fit`` also computes are never read. Poor trials are pruned
after each epoch by Optuna's Lightning callback (``optuna_integration.PyTorchLightningPruningCallback``
on ``val/acc``, a median pruner). The study lives in a database (``--storage``, SQLite by default, any
URL Optuna takes), created by the first process and joined by the others (``load_if_exists``); each
process runs ``--n_trials`` trials, then writes the best trial so far as a config file that
``python -m lightning_mnist fit --config`` and ``python -m keras_reference train --config`` accept.
"""

from __future__ import annotations

import json
import os
import random
import re
import socket
import sys
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from mnist_common.cli import run  # noqa: E402
from mnist_common.errors import UserError, exit_on_user_error  # noqa: E402
from mnist_common.files import write_text  # noqa: E402
from mnist_common.mnist import ensure_files  # noqa: E402
from mnist_common.runs import check_writable  # noqa: E402
from mnist_common.settings import check_seed, check_subset  # noqa: E402
from mnist_common.splits import DEFAULT_SPLIT_SEED, DEFAULT_VAL_FRACTION  # noqa: E402

DEFAULT_STORAGE = "sqlite:///runs/search/optuna.db"
EMA_CALLBACK = "lightning_mnist.training.callbacks.EMAWeightAveraging"
OPEN_ATTEMPTS = 4  # tries to create or join the study (see open_study)
MONITOR = "val/acc"  # what the pruner watches each epoch; the objective is the chosen epoch's val accuracy
# The notebook's augmentation ranges (rotation and shear in degrees, zoom and shift as fractions); a
# trial's augmentation strength scales rotation, zoom and shift (shear stays the notebook's 0.05 degrees).
NOTEBOOK_AUGMENTATION = {"rotation": 5.0, "zoom": 0.05, "shift": 0.05, "shear": 0.05}


def suggest_recipe(trial, epochs: list[int], batch_sizes: list[int]) -> dict:
    """The levers of one trial, drawn by the study's sampler."""
    return {
        "lr": trial.suggest_float("lr", 1e-3, 1e-2, log=True),
        "epochs": trial.suggest_categorical("epochs", epochs),
        "batch_size": trial.suggest_categorical("batch_size", batch_sizes),
        "weight_decay": trial.suggest_float("weight_decay", 0.0, 0.2),
        "label_smoothing": trial.suggest_float("label_smoothing", 0.0, 0.15),
        "augment_strength": trial.suggest_float("augment_strength", 0.0, 2.0),
        "ema_decay": trial.suggest_categorical("ema_decay", [0.0, 0.99, 0.999]),
    }


def recipe_config(params: dict, seed: int) -> dict:
    """A trial's levers as a ``fit --config`` file: the one-cycle recipe of configs/best.yaml with these values."""
    strength = params["augment_strength"]
    augmentation = {name: round(value * strength, 6) if name != "shear" else value
                    for name, value in NOTEBOOK_AUGMENTATION.items()}
    trainer: dict = {"max_epochs": params["epochs"]}
    if params["ema_decay"]:
        trainer["callbacks"] = [{"class_path": EMA_CALLBACK, "init_args": {"decay": params["ema_decay"]}}]
    return {
        "seed_everything": seed,
        "trainer": trainer,
        "model": {"architecture": "notebook", "lr": params["lr"], "lr_schedule": "onecycle",
                  "weight_decay": params["weight_decay"], "label_smoothing": params["label_smoothing"]},
        "data": {"batch_size": params["batch_size"], "val_fraction": DEFAULT_VAL_FRACTION,
                 "split_seed": DEFAULT_SPLIT_SEED, "augment": strength > 0,
                 **(augmentation if strength > 0 else {})},
        "early_stopping": {"patience": 100},  # a one-cycle run must reach the end of its schedule
    }


def fit_trial(trial, config: dict, folder: Path, subset: int | None, data_dir: str | None) -> float:
    """Run ``fit --config`` for one trial, pruned per epoch; the validation accuracy of the epoch fit chose."""
    from optuna_integration import PyTorchLightningPruningCallback

    from lightning_mnist.training.cli import MnistCLI

    folder.mkdir(parents=True, exist_ok=True)
    config_file = write_text(folder / "trial.yaml", yaml.safe_dump(config, sort_keys=False))
    args = ["fit", "--config", str(config_file), "--output_dir", str(folder), "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false"]
    args += ["--data.subset", str(subset)] if subset else []
    args += ["--data.data_dir", data_dir] if data_dir else []
    pruning = PyTorchLightningPruningCallback(trial, monitor=MONITOR)
    cli = MnistCLI(args=args, trainer_defaults={"callbacks": [pruning]})
    results = json.loads((cli.run_dir / "results.json").read_text())
    chosen = results["history"][results["best_epoch"]]  # never results["test_acc"]: the choice must not see it
    trial.set_user_attr("run_dir", str(cli.run_dir))
    trial.set_user_attr("val_loss", chosen["val_loss"])
    trial.set_user_attr("best_epoch", results["best_epoch"])
    return chosen["val_acc"]


def without_password(url: str) -> str:
    """A storage URL as it may be printed or written into a config: no user name or password."""
    return re.sub(r"//[^/@]*@", "//", url)


def write_best(study, path: Path, storage: str) -> Path | None:
    """The best finished trial as a config file (None while no trial has finished)."""
    import optuna

    finished = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not finished:
        return None
    best = max(finished, key=lambda t: t.value)
    header = (f"# The best trial of Optuna study {study.study_name!r} ({without_password(storage)}): trial {best.number}, validation "
              f"accuracy {best.value:.4f}\n# of {len(finished)} finished trials (benchmarks/recipe_search.py). "
              f"Chosen on validation only.\n#   python -m lightning_mnist fit --config {path}\n")
    return write_text(path, header + yaml.safe_dump(best.user_attrs["config"], sort_keys=False))


def open_study(optuna, study_name: str, storage: str, sampler_seed: int | None, prune_after: int):
    """Create the study, or join it if another process already has.

    Processes started together on a new database race to create Optuna's tables: the loser's insert
    of the schema version fails (an IntegrityError from SQLite), and a second try finds the tables
    there. So a failure is tried again a few times before it is the user's ``--storage`` that is wrong.
    """
    for attempt in range(OPEN_ATTEMPTS):
        try:
            return optuna.create_study(study_name=study_name, storage=storage, direction="maximize",
                                       load_if_exists=True, sampler=optuna.samplers.TPESampler(seed=sampler_seed),
                                       pruner=optuna.pruners.MedianPruner(n_warmup_steps=prune_after))
        except Exception as err:  # noqa: BLE001  a bad URL, a missing driver, no server there: the user's --storage
            if attempt == OPEN_ATTEMPTS - 1 or "://" not in storage or isinstance(err, ImportError):
                raise UserError(f"--storage {without_password(storage)}: "
                                f"{' '.join(str(err).split()).replace(storage, without_password(storage))[:300]}") from None
            time.sleep(0.2 + 0.5 * random.random())


def search(study_name: str = "recipes", storage: str = DEFAULT_STORAGE, n_trials: int = 10,
           epochs: list[int] = [10, 20, 30], batch_sizes: list[int] = [64, 128, 256],  # noqa: B006
           seed_everything: int = 42, sampler_seed: int | None = None, prune_after: int = 2, subset: int | None = None,
           data_dir: str | None = None, output_dir: str = "runs/search", best_config: str | None = None) -> None:
    """Run trials of one Optuna study (created by the first process, joined by the others); write the best config.

    Args:
        study_name: the study's name in the storage: processes with the same name and storage work together.
        storage: an Optuna storage URL: sqlite:///path.db (the default's folder is made), postgresql://...,
            mysql://... (a database URL; the password is never printed or written).
        n_trials: trials this process runs (0: only write the best config).
        epochs: the choices of the epochs lever.
        batch_sizes: the choices of the batch size lever.
        seed_everything: every trial's seed (so trials differ by their levers only).
        sampler_seed: seed of this process's TPE sampler (give each process its own, or none).
        prune_after: epochs every trial runs before the median pruner may stop it.
        subset: train and validate on a stratified subset of this many training images (quick looks, tests).
        data_dir: the folder holding MNIST/raw (default $MNIST_DATA_DIR, else ./data).
        output_dir: each trial runs in <output_dir>/<study_name>/trial_<N>.
        best_config: where the best trial's config goes (default <output_dir>/<study_name>/best.yaml).
    """
    if n_trials < 0 or not epochs or not batch_sizes or min(epochs) < 1 or min(batch_sizes) < 1 or prune_after < 0:
        raise UserError("--n_trials must be 0 or more, --epochs and --batch_sizes non-empty lists of positive "
                        "numbers, --prune_after 0 or more")
    check_seed(seed_everything)
    check_subset("--subset", subset)
    check_writable(output_dir, "--output_dir")
    if n_trials:
        ensure_files(data_dir, download=False)
    try:
        import optuna
    except ImportError:
        raise UserError("the search needs Optuna: pip install -e '.[search]'") from None
    if storage == DEFAULT_STORAGE:
        Path("runs/search").mkdir(parents=True, exist_ok=True)
    elif storage.startswith("sqlite:///"):
        folder = Path(storage.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise UserError(f"--storage {storage}: the folder {folder} does not exist")
    study = open_study(optuna, study_name, storage, sampler_seed, prune_after)
    out = Path(output_dir).resolve() / study_name

    def objective(trial) -> float:
        config = recipe_config(suggest_recipe(trial, epochs, batch_sizes), seed_everything)
        trial.set_user_attr("config", config)
        trial.set_user_attr("process", f"{socket.gethostname()}:{os.getpid()}")  # who ran it (several may)
        return fit_trial(trial, config, out / f"trial_{trial.number}", subset, data_dir)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(objective, n_trials=n_trials, catch=())
    states = [t.state.name.lower() for t in study.get_trials(deepcopy=False)]
    print(f"study {study_name!r} ({without_password(storage)}): {len(states)} trials, "
          + ", ".join(f"{states.count(s)} {s}" for s in sorted(set(states))))
    path = write_best(study, Path(best_config) if best_config else out / "best.yaml", storage)
    if path is None:
        print("no trial has finished yet: no best config")
    else:
        print(f"best: trial {study.best_trial.number}, validation accuracy {study.best_value:.4f}, "
              f"{json.dumps(study.best_params)}\nconfig: {path}")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(search, sys.argv[1:] if argv is None else argv, prog="benchmarks/recipe_search.py")


if __name__ == "__main__":
    main()

"""benchmarks/recipe_search.py: an Optuna study that several processes run together, whose best trial is a config
``fit --config`` trains.

Real processes, real MNIST: two searches started side by side on one SQLite study (1,000 images, one epoch, one
trial each), then ``python -m lightning_mnist fit --config`` on the config the study's best trial was written as.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from conftest import REPO, main_error, module_env

SEARCH = REPO / "benchmarks" / "recipe_search.py"
SUBSET = 1000


def test_two_processes_share_one_study_and_its_best_config_trains(tmp_path, mnist_dir, run_main):
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    command = [sys.executable, str(SEARCH), "--storage", storage, "--study_name", "side-by-side", "--n_trials", "1",
               "--subset", str(SUBSET), "--epochs", "[1]", "--batch_sizes", "[128]", "--output_dir",
               str(tmp_path / "runs")]
    env = {**module_env(mnist_dir), "OMP_NUM_THREADS": "1"}
    searches = [subprocess.Popen([*command, "--sampler_seed", str(k)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for k in range(2)]
    outputs = [s.communicate(timeout=600)[0] for s in searches]
    assert [s.returncode for s in searches] == [0, 0], "\n".join(o[-3000:] for o in outputs)

    trials = optuna.load_study(study_name="side-by-side", storage=storage).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert len({t.user_attrs["process"] for t in trials}) == 2  # one trial from each process
    for t in trials:  # the pruning callback reported every epoch's val/acc; the objective is the chosen epoch's
        assert set(t.intermediate_values) == {0}
        assert t.value == pytest.approx(t.intermediate_values[0]) and 0.0 <= t.value <= 1.0
        run = json.loads((Path(t.user_attrs["run_dir"]) / "results.json").read_text())
        assert t.value == run["history"][run["best_epoch"]]["val_acc"]  # validation, not run["test_acc"]

    best_file = tmp_path / "runs" / "side-by-side" / "best.yaml"
    best = yaml.safe_load(best_file.read_text())
    assert best == max(trials, key=lambda t: t.value).user_attrs["config"]
    fit = run_main("lightning_mnist", "fit", "--config", best_file, "--trainer.max_epochs", 1, "--data.subset", SUBSET,
                   "--trainer.enable_progress_bar", "false", "--output_dir", tmp_path / "refit")
    [results] = (tmp_path / "refit").rglob("results.json")
    used = json.loads(results.read_text())["config"]
    assert {k: used["model"][k] for k in best["model"]} == best["model"], fit.out[-2000:]
    assert {k: used["data"][k] for k in best["data"]} == best["data"]


def test_a_poor_trial_is_pruned_after_its_first_epoch(tmp_path, mnist_dir, monkeypatch):
    """The Lightning pruning callback reports each epoch's val/acc and stops a trial the pruner judges poor: here a
    study whose earlier trial reached 99 % after one epoch prunes a 2-epoch trial that has far less after its first."""
    recipe_search = import_search()
    monkeypatch.chdir(tmp_path)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.MedianPruner(n_startup_trials=1,
                                                                                          n_warmup_steps=0))
    study.add_trial(optuna.trial.create_trial(value=0.99, intermediate_values={0: 0.99, 1: 0.99},
                                              params={}, distributions={}))
    trial = study.ask()
    params = {"lr": 1e-3, "epochs": 2, "batch_size": 128, "weight_decay": 0.0, "label_smoothing": 0.0,
              "augment_strength": 0.0, "ema_decay": 0.0}
    config = recipe_search.recipe_config(params, 42)
    with pytest.raises(optuna.TrialPruned):
        recipe_search.fit_trial(trial, config, tmp_path / "trial", 400, str(mnist_dir))
    [metrics] = (tmp_path / "trial").rglob("metrics.csv")
    epochs = {line.split(",")[0] for line in metrics.read_text().splitlines()[1:]}
    assert epochs == {"0"}  # stopped after its first epoch, not trained on
    assert list(study.trials[1].intermediate_values) == [0]


def test_a_trial_config_is_a_recipe_the_keras_reference_takes_too(tmp_path, mnist_dir, monkeypatch):
    """Every lever a trial can draw (EMA and augmentation included) is a setting both command lines take: the Keras
    trainer is handed exactly the trial's values (nothing runs)."""
    from keras_reference import train as train_module
    from keras_reference.__main__ import main

    config = import_search().recipe_config({"lr": 3e-3, "epochs": 20, "batch_size": 64, "weight_decay": 0.1,
                                            "label_smoothing": 0.05, "augment_strength": 1.5, "ema_decay": 0.99}, 7)
    path = tmp_path / "trial.yaml"
    path.write_text(yaml.safe_dump(config))
    handed = []

    def hand_over(settings, callbacks=(), verbose=0):
        handed.append(settings)
        raise SystemExit(0)

    monkeypatch.setattr(train_module, "train", hand_over)
    with pytest.raises(SystemExit):
        main(["train", "--config", str(path), "--data.data_dir", str(mnist_dir), "--output_dir", str(tmp_path)])
    [settings] = handed
    assert settings.trainer.ema_decay() == 0.99 and settings.trainer.max_epochs == 20 and settings.seed_everything == 7
    assert {k: getattr(settings.model, k) for k in config["model"]} == config["model"]
    assert {k: getattr(settings.data, k) for k in config["data"]} == config["data"]


def import_search():
    sys.path.insert(0, str(SEARCH.parent))
    try:
        import recipe_search
    finally:
        sys.path.remove(str(SEARCH.parent))
    return recipe_search


@pytest.mark.parametrize("flags, expected", [
    (["--storage", "sqlite:////no/such/folder/s.db"], "--storage sqlite:////no/such/folder/s.db: the folder"),
    (["--storage", "nosuchdb://x"], "--storage nosuchdb://x:"),
    (["--n_trials", "-1"], "--n_trials must be 0 or more"),
    (["--subset", "5"], "--subset must be between 20"),
])
def test_bad_search_settings_are_one_line(flags, expected, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe_search = import_search()
    code, line, _ = main_error(recipe_search.main, [*flags, "--n_trials", "0"] if "--n_trials" not in flags
                               else flags, capsys)
    assert code == 2 and expected in line, line
    assert not (tmp_path / "runs").exists()

"""``python -m lightning_mnist fit|test|validate`` as real subprocesses on real MNIST subsets.

One folder per run, honest resumes (Ctrl-C, SIGKILL, changed flags, a moved project),
concurrent runs, the test report (confusion matrix, mistakes), and every bad input
refused in one line before any work.
"""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from conftest import REPO, assert_one_line_error, ctrl_c_interrupts, main_error, main_output, module_env
from mnist_common.figures import MAX_MISTAKES_SHOWN, mistake_digit_box

QUICK = ("--data.subset", "2000", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
         "--trainer.limit_test_batches", "2")  # the first 1,000 test images: these runs are about what a run keeps
NO_PROGRESS = ("--trainer.enable_progress_bar", "false")
CORES = os.cpu_count() or 1


def run_folders(where: Path, prefix: str = "version") -> list[Path]:
    return sorted((where / "runs" / "lightning").glob(f"{prefix}_*"))


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory, mnist_dir):
    """One short fit, shared: (working folder, its run folder, results, stdout)."""
    from conftest import run_python_module

    work = tmp_path_factory.mktemp("fit")
    proc = run_python_module(mnist_dir, "lightning_mnist", "fit", "--data.subset", "6000", "--trainer.max_epochs",
                             "2", *NO_PROGRESS, cwd=work)
    [run] = run_folders(work)
    return work, run, json.loads((run / "results.json").read_text()), proc.stdout


def test_fit_writes_everything_into_its_own_run_folder(fitted_run, run_module):
    work, run, results, stdout = fitted_run
    assert "225,418 parameters as Keras counts them" in stdout and f"run folder: {run.relative_to(work)}" in stdout
    assert results["framework"] == "lightning" and results["epochs"] == 2
    assert 0.5 < results["test_acc"] <= 1.0 and results["test_loss"] > 0
    assert results["model_path"].startswith("checkpoints/") and (run / results["model_path"]).is_file()
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == sorted([Path(results["model_path"]).name,
                                                                            "last.ckpt"])
    for name in ("config.yaml", "metrics.csv", "curves.png", "confusion.png", "mistakes.png", "mistakes.json"):
        assert (run / name).stat().st_size > 0, name
    assert sorted(p.name for p in work.iterdir()) == ["runs"]  # nothing else, anywhere
    assert results["config"]["data"]["subset"] == 6000 and results["config"]["model"]["lr"] == 1e-4
    assert [row["epoch"] for row in results["history"]] == [0, 1]
    given = os.environ.get("OMP_NUM_THREADS")  # conftest's share of the cores under xdist: the command keeps it
    assert (results["threads"] == int(given)) if given else (1 <= results["threads"] <= CORES)
    with open(run / "metrics.csv") as f:
        assert {"train/loss", "train/acc", "val/loss", "val/acc", "test/acc"} <= set(next(csv.reader(f)))

    # the checkpoint it wrote is accepted by test, in a run folder of its own
    tested = run_module("lightning_mnist", "test", "--ckpt_path", run / results["model_path"], *NO_PROGRESS,
                        cwd=work)
    [row] = [line for line in tested.stdout.splitlines() if "test/acc" in line]
    assert float(row.split("│")[2]) == pytest.approx(results["test_acc"], abs=1e-6)
    [test_run] = run_folders(work, "test")
    assert json.loads((test_run / "results.json").read_text())["test_acc"] == pytest.approx(results["test_acc"])


def test_validate_scores_a_checkpoint_on_its_runs_own_validation_split(fitted_run, run_module, monkeypatch, capsys):
    """The run trained on a 6,000-image subset: validate takes that split from the checkpoint (it scored the full
    set's hold-out, images the run partly trained on) and finds the run's own val/acc; a flag naming another split
    is refused."""
    work, run, results, _ = fitted_run
    best = run / results["model_path"]
    proc = run_module("lightning_mnist", "validate", "--ckpt_path", best, *NO_PROGRESS, cwd=work)
    [row] = [line for line in proc.stdout.splitlines() if "val/acc" in line]
    recorded = results["history"][results["best_epoch"]]["val_acc"]
    assert float(row.split("│")[2]) == pytest.approx(recorded, abs=1e-6), (row, recorded)
    assert "note:" not in proc.stdout  # the run's split is known
    from lightning_mnist.__main__ import main

    monkeypatch.chdir(work)
    code, error, _ = main_error(main, ["validate", "--ckpt_path", str(best), "--data.split_seed", "7", *NO_PROGRESS],
                                capsys)
    assert code == 2 and error == (
        f"error: --data.split_seed 7: {best} was trained with split_seed 42, so other validation images would "
        f"include some it trained on; leave the flag out (validate takes the run's split)")


def test_validate_says_when_a_model_records_no_split(seed_keras, tmp_path, monkeypatch, capsys):
    """The notebook's .keras file trained on all 60,000 training images: its "validation" figures (99.7 %) were
    printed without a word, though it trained on every one of those images."""
    from lightning_mnist.__main__ import main

    monkeypatch.chdir(tmp_path)
    main(["validate", "--ckpt_path", str(seed_keras), "--trainer.limit_val_batches", "2", *NO_PROGRESS,
          "--trainer.logger", "false"])
    notes = [line for line in capsys.readouterr().out.splitlines() if line.startswith("note:")]
    assert notes == [f"note: {seed_keras} records no training split: its validation images may be images it trained "
                     f"on (the notebook's model trained on all 60,000), so its figures are no estimate; `test` "
                     f"scores it on the 10,000 test images"], notes


def test_confusion_matrix_and_mistakes_grid_show_exactly_the_misclassified_digits(fitted_run, mnist):
    """The grid's panels are the misclassified test digits, most confident first, pixel for pixel."""
    from lightning_mnist.checkpoints import load_classifier

    _, run, results, _ = fitted_run
    classifier = load_classifier(run / results["model_path"])
    x = torch.from_numpy(mnist.test_images).float().div(255).unsqueeze(1)
    with torch.inference_mode():
        probabilities = torch.cat([classifier.predict_proba(x[i:i + 1000]) for i in range(0, 10_000, 1000)])
    predicted = probabilities.argmax(1).numpy()
    wrong = np.nonzero(predicted != mnist.test_labels)[0]

    mistakes = json.loads((run / "mistakes.json").read_text())
    assert sorted(m["index"] for m in mistakes) == sorted(wrong.tolist()) == sorted(set(m["index"] for m in mistakes))
    assert results["mistakes"] == len(wrong) and len(wrong) > 0
    confidences = [m["probability"] for m in mistakes]
    assert confidences == sorted(confidences, reverse=True)  # worst first
    for m in mistakes[:5]:
        assert m["label"] == mnist.test_labels[m["index"]] and m["predicted"] == predicted[m["index"]]

    grid = np.asarray(Image.open(run / "mistakes.png").convert("L"), dtype=np.float32)
    shown = min(len(mistakes), MAX_MISTAKES_SHOWN)
    for i, m in enumerate(mistakes[:shown]):
        left, top, right, bottom = mistake_digit_box(i)
        panel = grid[top:bottom:2, left:right:2]  # drawn twice the size, nearest
        assert np.abs(panel - (255 - mnist.test_images[m["index"]])).max() <= 1, i
    if shown < len(mistakes):  # nothing drawn after the last shown panel
        left, top, _, _ = mistake_digit_box(shown)
        assert top >= grid.shape[0] or grid[top:top + 10, left:left + 10].min() == 255

    matrix = np.array(results["confusion_matrix"])
    assert matrix.sum() == 10_000 and np.trace(matrix) == round(results["test_acc"] * 10_000)
    assert (matrix.sum(1) == np.bincount(mnist.test_labels, minlength=10)).all()
    with Image.open(run / "confusion.png") as confusion:
        assert confusion.format == "PNG" and confusion.size[0] >= 600


def test_results_keep_every_epoch_when_the_best_is_not_the_last(run_main, tmp_path):
    # monitoring the epoch number with mode "min" makes the first epoch the "best" one: testing
    # it reloads an early checkpoint, which must not rewind the recorded history
    printed = run_main("lightning_mnist", "fit", *QUICK, "--data.subset", "1000", "--trainer.max_epochs", "3",
                       "--checkpoint.monitor", "epoch", "--checkpoint.mode", "min")
    assert "(the first 1000 of the 10000 test images, as the limited test pass scored)" in printed.out
    [run] = run_folders(tmp_path)
    results = json.loads((run / "results.json").read_text())
    assert [row["epoch"] for row in results["history"]] == [0, 1, 2]
    assert results["best_epoch"] == 0 and "epoch00" in results["model_path"]
    # QUICK tests the first two batches of 500: the report describes those images, whose right answers test/acc counted
    matrix = np.array(results["confusion_matrix"])
    assert matrix.sum() == 1000 and np.trace(matrix) == round(results["test_acc"] * 1000)
    assert results["mistakes"] == 1000 - np.trace(matrix)


def test_fit_groups_steps_per_execution_and_counts_each_step(run_main, tmp_path):
    """``--data.steps_per_execution 4``: 900 augmented images make 8 batches for Lightning (4 x 32 each, the last
    what is left) and 29 optimizer steps, which the checkpoint's step count, the one-cycle schedule's span and the
    saved config say; the loss is logged once per execution."""
    run_main("lightning_mnist", "fit", *QUICK, "--data.subset", "1000", "--data.steps_per_execution", "4",
             "--data.augment", "true", "--model.lr_schedule", "onecycle", "--trainer.log_every_n_steps", "1")
    [run] = run_folders(tmp_path)
    assert yaml.safe_load((run / "config.yaml").read_text())["data"]["steps_per_execution"] == 4
    results = json.loads((run / "results.json").read_text())
    checkpoint = torch.load(run / results["model_path"], weights_only=True)
    assert checkpoint["global_step"] == math.ceil(900 / 32) == 29
    schedule = checkpoint["lr_schedulers"][0]
    assert schedule["total_steps"] == schedule["last_epoch"] == 29  # the one-cycle ran its whole span
    with open(run / "metrics.csv") as rows:
        logged = [row for row in csv.DictReader(rows) if row["train/loss_step"]]
    assert len(logged) == math.ceil(900 / 128) == 8


def test_config_file_spells_out_the_defaults(run_module, tmp_path, capsys):
    """The defaults printed by a real process; the notebook's config file's through main in this one."""
    from lightning_mnist.__main__ import main

    default = run_module("lightning_mnist", "fit", "--print_config").stdout
    from_file = main_output(main, ["fit", "--config", str(REPO / "configs" / "notebook.yaml"), "--print_config"],
                            capsys)
    assert default == from_file
    for line in ("lr: 0.0001", "batch_size: 32", "max_epochs: 10", "patience: 3", "monitor: val/loss",
                 "architecture: notebook", "output_dir: runs"):
        assert line in default


def test_cv_defaults_to_the_notebooks_augmented_k_fold_and_fit_does_not(tmp_path, monkeypatch, capsys):
    from lightning_mnist.__main__ import main
    from mnist_common.splits import DEFAULT_NUM_FOLDS

    monkeypatch.chdir(tmp_path)
    cv = yaml.safe_load(main_output(main, ["cv", "--print_config"], capsys))
    fit = yaml.safe_load(main_output(main, ["fit", "--print_config"], capsys))
    assert (cv["data"]["num_folds"], cv["data"]["augment"]) == (DEFAULT_NUM_FOLDS, True)
    assert (fit["data"]["num_folds"], fit["data"]["augment"]) == (None, False)
    flags = yaml.safe_load(main_output(main, ["cv", "--data.num_folds", "3", "--data.augment", "false",
                                              "--print_config"], capsys))
    assert (flags["data"]["num_folds"], flags["data"]["augment"]) == (3, False)


def test_tensorboard_logger_by_flag_logs_into_the_run_folder(run_main, tmp_path):
    run_main("lightning_mnist", "fit", *QUICK, "--data.subset", "500", "--trainer.limit_train_batches", "3",
             "--trainer.logger", "TensorBoardLogger", "--trainer.logger.save_dir", "anywhere")
    [run] = run_folders(tmp_path)
    assert list(run.glob("events.out.tfevents.*")) and (run / "results.json").is_file()
    assert not (tmp_path / "anywhere").exists()


def test_two_runs_started_together_in_one_folder_each_own_theirs(tmp_path, mnist_dir):
    procs = [subprocess.Popen([sys.executable, "-m", "lightning_mnist", "fit", *QUICK, "--seed_everything", str(seed)],
                              cwd=tmp_path, env=module_env(mnist_dir), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for seed in (1, 2)]
    outputs = [proc.communicate(timeout=600) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    runs = run_folders(tmp_path)
    assert [run.name for run in runs] == ["version_0", "version_1"]
    seeds = set()
    for run in runs:
        results = json.loads((run / "results.json").read_text())
        seeds.add(results["config"]["seed_everything"])
        assert f"seed_everything: {results['config']['seed_everything']}" in (run / "config.yaml").read_text()
        assert len(list((run / "checkpoints").glob("*.ckpt"))) == 2 and (run / "metrics.csv").is_file()
        assert (run / results["model_path"]).is_file()
    assert seeds == {1, 2}


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_interrupted_fit_resumes_into_its_own_folder_with_an_honest_history(mnist_dir, tmp_path, run_module, how,
                                                                             monkeypatch):
    # 6,000 images: epochs of about 2 s alone on 2 cores, so the signal lands inside the second epoch's training
    args = ["fit", "--data.subset", "6000", "--trainer.max_epochs", "3", *NO_PROGRESS,
            "--early_stopping.patience", "100", "--trainer.limit_test_batches", "2"]
    temporary = tmp_path / "tmp"  # the system's temporary folder, as these runs see it
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    proc = subprocess.Popen([sys.executable, "-m", "lightning_mnist", *args], cwd=tmp_path, env=module_env(mnist_dir),
                            preexec_fn=ctrl_c_interrupts,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("runs/lightning/version_0/checkpoints/last.ckpt")) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # into the second epoch
    proc.send_signal(how)
    _, stderr = proc.communicate(timeout=120)
    [run] = run_folders(tmp_path)
    assert proc.returncode != 0 and not (run / "results.json").exists(), "the run ended before it was interrupted"
    if how == signal.SIGINT:
        hint = [line for line in stderr.splitlines() if line.startswith("fit interrupted")]
        assert hint and str(run / "checkpoints" / "last.ckpt") in hint[0] and "Traceback" not in stderr
        assert "SIGTERM" not in stderr  # Lightning's "Received SIGTERM" for the Ctrl-C the run reported (round 9)

    resumed = run_module("lightning_mnist", *args, "--ckpt_path", "last")
    assert f"into the run in {run.resolve()}" in resumed.stdout
    assert run_folders(tmp_path) == [run]  # the same folder, no second one
    results = json.loads((run / "results.json").read_text())
    assert [row["epoch"] for row in results["history"]] == [0, 1, 2]
    keys = ("train_loss", "train_acc", "val_loss", "val_acc")
    assert all(math.isfinite(row[key]) for row in results["history"] for key in keys), results["history"]
    seconds = [row["seconds"] for row in results["history"]]
    durations = np.diff([0.0, *seconds])
    assert (durations > 0).all() and durations.max() < 10 * np.median(durations), seconds  # no 997 s epoch
    assert results["wall_seconds"] >= seconds[-1]  # the whole run, both processes
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    assert checkpoints == sorted([Path(results["model_path"]).name, "last.ckpt"])  # no orphan from the signal
    best = results["history"][results["best_epoch"]]
    assert f"val_loss{best['val_loss']:.4f}" in results["model_path"]
    with open(run / "metrics.csv") as f:  # every epoch's rows once, those before the interruption included
        rows = list(csv.DictReader(f))
    assert [int(row["epoch"]) for row in rows if row["val/loss"]] == [0, 1, 2]
    assert [float(row["val/loss"]) for row in rows if row["val/loss"]] == pytest.approx(
        [row["val_loss"] for row in results["history"]])
    steps = [int(row["step"]) for row in rows if row["train/loss_step"]]
    assert steps == sorted(set(steps)) and steps[0] < 169 < steps[-1], steps  # logged steps of each epoch, once
    assert not list(temporary.glob("lightning_mnist_*")) and not list(temporary.rglob("*.ckpt"))  # even if killed


@pytest.mark.parametrize("steps_per_execution, log_every, ctrl_c_resumes_at, sigterm_resumes_at",
                         [(1, 5, 26, 23), (4, 1, 29, None)])
def test_a_run_killed_or_stopped_by_ctrl_c_mid_step_resumes_to_equal_one_never_stopped(
        tmp_path, mnist_dir, steps_per_execution, log_every, ctrl_c_resumes_at, sigterm_resumes_at):
    """Bit for bit, on CPU: the same history, test score, final weights and metrics.csv, with augmentation, dropout and
    a per-step one-cycle schedule. SIGKILL resumes from the last epoch's end, Ctrl-C and SIGTERM (Lightning's clean
    stop, which the project's SIGTERM handler leaves to it while a fit trains; one batch a step only, for the suite's
    time) from the step they landed in (with 4 steps per execution, after the execution it landed in: steps 25 to 28
    of the epoch's 17 to 33)."""
    args = ["fit", "--data.subset", "600", "--data.augment", "true", "--early_stopping.patience", "100",
            "--seed_everything", "3", "--model.lr_schedule", "onecycle", "--model.lr", "0.003",
            "--trainer.max_epochs", "3", "--trainer.log_every_n_steps", str(log_every),
            "--data.steps_per_execution", str(steps_per_execution), "--trainer.limit_test_batches", "2",
            *NO_PROGRESS]  # 17 steps an epoch; tested on the first 1,000 test images

    def start(folder: Path, *more: str) -> subprocess.Popen:
        folder.mkdir(exist_ok=True)
        env = {**module_env(mnist_dir), "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}",  # for signal_at_step
               # pinned: runs started side by side would size their pools to the cores each found free
               "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
        return subprocess.Popen([sys.executable, "-m", "lightning_mnist", *args, *more], cwd=folder, env=env,
                                preexec_fn=ctrl_c_interrupts, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def signal_at(step: int, name: str) -> str:  # a real signal, from a callback, in the middle of that step
        return f"--trainer.callbacks+={{'class_path': 'signal_at_step.SignalAtStep', 'init_args': {{'step': {step}, " \
               f"'signal_name': {name}}}}}"

    whole, killed, ctrl_c, sigterm = tmp_path / "whole", tmp_path / "killed", tmp_path / "ctrl_c", tmp_path / "sigterm"
    never_stopped = start(whole)
    legs = ((killed, 20, "SIGKILL", -signal.SIGKILL, "", 17),
            (ctrl_c, 25, "SIGINT", 130, "fit interrupted: saved", ctrl_c_resumes_at),
            (sigterm, 22, "SIGTERM", 130, "fit interrupted: saved", sigterm_resumes_at))
    if steps_per_execution > 1:  # a kill resumes from the last epoch's end, grouped or not: the first case's
        legs = legs[1:]
    if sigterm_resumes_at is None:
        legs = legs[:-1]
    for folder, step, name, code, said, resumes_at in legs:
        interrupted = start(folder, signal_at(step, name))
        _, stderr = interrupted.communicate(timeout=600)
        [run] = run_folders(folder)
        assert interrupted.returncode == code and said in stderr and "Traceback" not in stderr, stderr[-2000:]
        assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == resumes_at
        resumed = start(folder, "--ckpt_path", "last")
        _, stderr = resumed.communicate(timeout=600)
        assert resumed.returncode == 0, stderr[-2000:]
    _, stderr = never_stopped.communicate(timeout=600)
    assert never_stopped.returncode == 0, stderr[-2000:]

    runs = [run for folder in (whole, *(leg[0] for leg in legs)) for run in run_folders(folder)]
    results = [json.loads((run / "results.json").read_text()) for run in runs]
    keys = ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")
    weights = [torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"] for run in runs]
    metrics = [(run / "metrics.csv").read_text() for run in runs]
    assert metrics[0].count("\n") > 12  # every epoch's rows and logged steps, the test's
    for run in range(1, len(runs)):
        assert [[row[k] for k in keys] for row in results[0]["history"]] == \
               [[row[k] for k in keys] for row in results[run]["history"]]
        assert results[0]["test_loss"] == results[run]["test_loss"]
        assert results[0]["model_path"] == results[run]["model_path"]
        assert weights[0].keys() == weights[run].keys()
        assert all(torch.equal(weights[0][k], weights[run][k]) for k in weights[0])
        assert metrics[run] == metrics[0]  # every row once, the steps logged before the interruption included


def test_ctrl_c_in_the_final_test_or_the_test_command_says_what_was_saved(mnist_dir, tmp_path):
    """Ctrl-C during fit's final test: Lightning said "Detected KeyboardInterrupt" and exited with 1, not saying
    that training was done and saved (hostile round 9). Now the line names the best checkpoint and the command that
    scores it, and the exit code is 130 (as for every Ctrl-C); the test command says that it wrote no results."""
    env = {**module_env(mnist_dir), "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}  # for signal_at_step
    callback = "--trainer.callbacks+={'class_path': 'signal_at_step.SignalAtTestBatch', 'init_args': {'batch': 1}}"
    fit = subprocess.run([sys.executable, "-m", "lightning_mnist", "fit", *QUICK, callback], cwd=tmp_path, env=env,
                         preexec_fn=ctrl_c_interrupts, capture_output=True, text=True, timeout=600)
    [run] = run_folders(tmp_path)
    [best] = [path for path in (run / "checkpoints").glob("epoch*.ckpt")]
    said = [line for line in fit.stderr.splitlines() if line.startswith("fit interrupted")]
    assert fit.returncode == 130 and "Traceback" not in fit.stderr, fit.stderr[-2000:]
    assert said == [f"fit interrupted after training, in its final test or report: the run is saved (best checkpoint "
                    f"{best}); score it with python -m lightning_mnist test --ckpt_path {best}"], fit.stderr[-2000:]
    assert not (run / "results.json").exists()
    test = subprocess.run([sys.executable, "-m", "lightning_mnist", "test", "--ckpt_path", str(best), callback,
                           *NO_PROGRESS], cwd=tmp_path, env=env, preexec_fn=ctrl_c_interrupts, capture_output=True,
                          text=True, timeout=600)
    assert test.returncode == 130 and "Traceback" not in test.stderr, test.stderr[-2000:]
    assert test.stderr.splitlines()[-1] == "test interrupted (Ctrl-C): no results were written"
    assert not list(tmp_path.glob("runs/**/results.json"))


def test_sigterm_outside_a_fits_training_ends_the_command_at_once_and_says_what_was_saved(mnist_dir, seed_keras,
                                                                                          tmp_path):
    """SIGTERM outside a fit's training: in fit's final test Lightning stopped with exit 130 and nothing said (in
    its last batch it let the test run on, exit 0 after a SIGTERM); outside the Trainer (a .keras file converted,
    the results written) it killed the process, leaving the converted checkpoint's temporary folder. Now the
    project's handler ends the command there at once (exit 143), saying what was saved, with nothing left behind."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {**module_env(mnist_dir), "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}",  # for signal_at_step
           "TMPDIR": str(temporary)}
    callback = ("--trainer.callbacks+={'class_path': 'signal_at_step.SignalAtTestBatch', 'init_args': {'batch': 1, "
                "'signal_name': SIGTERM}}")
    fit = subprocess.run([sys.executable, "-m", "lightning_mnist", "fit", *QUICK, callback], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    [run] = run_folders(tmp_path)
    [best] = [path for path in (run / "checkpoints").glob("epoch*.ckpt")]
    assert fit.returncode == 143 and "Traceback" not in fit.stderr, fit.stderr[-2000:]
    assert fit.stderr.splitlines()[-1] == (f"fit interrupted after training, in its final test or report: the run is "
                                           f"saved (best checkpoint {best}); score it with python -m lightning_mnist "
                                           f"test --ckpt_path {best}"), fit.stderr[-2000:]
    assert not (run / "results.json").exists()
    test = subprocess.run([sys.executable, "-m", "lightning_mnist", "test", "--ckpt_path", str(seed_keras), callback,
                           "--output_dir", "tested", *NO_PROGRESS], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert test.returncode == 143 and "Traceback" not in test.stderr, test.stderr[-2000:]
    assert test.stderr.splitlines()[-1] == "test interrupted (SIGTERM): no results were written", test.stderr[-2000:]
    assert "KeyboardInterrupt" not in test.stderr + fit.stderr  # Lightning's word for the project's Terminated
    assert not (tmp_path / "tested").exists() or not list((tmp_path / "tested").rglob("*"))  # its test_0 removed
    assert not list(temporary.glob("lightning_mnist_*"))  # the .keras file's checkpoint, converted for Lightning


def test_resume_keeps_the_runs_settings_and_refuses_flags_that_change_them(run_module, tmp_path, mnist_dir,
                                                                           monkeypatch, capsys):
    from lightning_mnist.__main__ import main
    from mnist_common.mnist import DATA_DIR_ENV

    run_module("lightning_mnist", "fit", *QUICK, "--model.lr", "0.001", "--early_stopping.patience", "5")
    [run] = run_folders(tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(DATA_DIR_ENV, str(mnist_dir))
    seed_file = tmp_path / "seed.yaml"
    seed_file.write_text("seed_everything: 7\n")
    for flags, fragment in ((["--model.lr", "0.5"], "--model.lr 0.5 (the run's is 0.001)"),
                            # the seed, the callbacks' settings and the Trainer's per-step ones: from config.yaml
                            (["--seed_everything", "7"], "--seed_everything 7 (the run's is 42)"),
                            (["--config", str(seed_file)], "--seed_everything 7 (the run's is 42)"),
                            (["--early_stopping.patience", "3"], "--early_stopping.patience 3 (the run's is 5)"),
                            (["--early_stopping.monitor", "val/acc", "--early_stopping.mode", "max"],
                             "--early_stopping.monitor val/acc (the run's is val/loss)"),
                            (["--checkpoint.monitor", "train/loss"], "--checkpoint.monitor train/loss (the run's is"),
                            (["--checkpoint.dirpath", str(tmp_path / "elsewhere")], "--checkpoint.dirpath"),
                            (["--trainer.accumulate_grad_batches", "2"],
                             "--trainer.accumulate_grad_batches 2 (the run's is 1)"),
                            # typed, though the default's value: refused too, not silently dropped
                            (["--model.lr", "0.0001"], "--model.lr 0.0001 (the run's is 0.001)"),
                            (["--data.subset", "null"], "--data.subset None (the run's is 2000)"),
                            (["--data.subset", "5000"], "--data.subset 5000 (the run's is 2000)"),
                            (["--model.architecture", "lenet5"], "--model.architecture lenet5"),
                            (["--trainer.max_epochs", "1"], "--trainer.max_epochs 1: the run"),
                            # LightningCLI's optimizer for the model's own: the checkpoint's state is the run's (an
                            # SGD was a KeyError traceback, an Adam's lr recorded but not used: hostile round 6)
                            (["--optimizer", "SGD", "--optimizer.lr", "0.5"],
                             "--optimizer SGD(lr=0.5, momentum=0.0, dampening=0.0")):
        max_epochs = [] if "--trainer.max_epochs" in flags else ["--trainer.max_epochs", "2"]
        code, error, _ = main_error(main, ["fit", "--ckpt_path", "last", *NO_PROGRESS, *flags, *max_epochs], capsys)
        assert code == 2 and fragment in error, error
    # a damaged config.yaml is named, not a traceback
    config_file = run / "config.yaml"
    saved = config_file.read_text()
    for damage, fragment in (("[1, 2]\n", "its config.yaml, which holds the settings the run keeps, holds a YAML list"),
                             (saved.replace("seed_everything: 42", "seed_everything: [1, 2]"),
                              'holds a value refused here: Parser key "seed_everything"'),
                             # checked as the flags are, against the data (tracebacks after the restore: round 12)
                             (saved.replace("gradient_clip_val: null", "gradient_clip_val: .nan"),
                              "holds a value refused here: --trainer.gradient_clip_val nan: give 0 (no clipping)"),
                             (saved.replace("accumulate_grad_batches: 1", "accumulate_grad_batches: 10000000000000000"
                                                                          "00000"),
                              "holds a value refused here: --trainer.accumulate_grad_batches 1000000000000000000000: "
                              "more than the"),
                             ("a: " + "[" * 5000 + "]" * 5000, "is unreadable (RecursionError"),
                             (None, "is not a regular file"),
                             # gone: its seed, callbacks and per-step settings were the defaults without a word
                             ("", "config.yaml, which holds the settings the run keeps, is missing")):
        if config_file.is_dir():
            config_file.rmdir()
        else:
            config_file.unlink()
        if damage is None:
            config_file.mkdir()  # (a traceback when the run rewrote it, after the model was built)
        elif damage:
            config_file.write_text(damage)
        code, error, _ = main_error(main, ["fit", "--ckpt_path", "last", *NO_PROGRESS, "--trainer.max_epochs", "2"],
                                    capsys)
        assert code == 2 and fragment in error, error
    config_file.write_text(saved)
    assert "gradient_clip_val: null" in saved and "accumulate_grad_batches: 1\n" in saved  # (edited above)
    metrics = run / "metrics.csv"  # a pipe: fit waited on it for good, deaf to Ctrl-C
    rows = metrics.read_bytes()
    metrics.unlink()
    os.mkfifo(metrics)
    code, error, _ = main_error(main, ["fit", "--ckpt_path", "last", *NO_PROGRESS, "--trainer.max_epochs", "2"], capsys)
    assert code == 2 and "metrics.csv is not a regular file (a pipe, a device or a folder)" in error, error
    metrics.unlink()
    metrics.write_bytes(rows)
    # a run another process trains (holds: a fit still running, or a resume of it) is not resumed into it too: two
    # resumes interleaved its metrics.csv and checkpoints (hostile round 6)
    hold = ("import fcntl, os, sys, time; d = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(d, fcntl.LOCK_EX); "
            "print('held', flush=True); time.sleep(120)")
    holder = subprocess.Popen([sys.executable, "-c", hold, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, error, _ = main_error(main, ["fit", "--ckpt_path", "last", *NO_PROGRESS, "--trainer.max_epochs", "2"],
                                    capsys)
        assert code == 2 and f"the run in {run} is being trained by another process" in error, error
    finally:
        holder.kill()
        holder.wait()
    # without those flags the run's own settings are kept, and said so
    resumed = run_module("lightning_mnist", "fit", "--ckpt_path", "last", "--trainer.max_epochs", "2", *NO_PROGRESS)
    assert "keeping the run's own settings" in resumed.stdout and "model.lr=0.001" in resumed.stdout
    assert "early_stopping.patience=5" in resumed.stdout
    results = json.loads((run / "results.json").read_text())
    assert results["epochs"] == 2 and results["config"]["data"]["subset"] == 2000
    assert results["config"]["model"]["lr"] == 0.001 and results["config"]["early_stopping"]["patience"] == 5
    # its config.yaml reruns it as a new run: the checkpoint it resumed from is not recorded (with it, `fit --config`
    # of the file resumed the run in place, over its results: hostile round 6)
    assert yaml.safe_load(config_file.read_text())["ckpt_path"] is None
    # flags that repeat the run's own values, or change only where it runs, resume it
    main(["fit", "--ckpt_path", "last", "--trainer.max_epochs", "3", *NO_PROGRESS, "--seed_everything", "42",
          "--early_stopping.patience", "5", "--checkpoint.dirpath", str(run / "checkpoints"), "--trainer.accelerator",
          "cpu", "--data.eval_batch_size", "250"])  # in this process
    assert json.loads((run / "results.json").read_text())["epochs"] == 3


def test_a_moved_project_resumes_and_tests_from_its_new_place(run_module, run_main, tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    run_module("lightning_mnist", "fit", *QUICK, cwd=first)
    moved = tmp_path / "moved"
    first.rename(moved)  # the old place is gone
    resumed = run_main("lightning_mnist", "fit", "--ckpt_path", "last", "--trainer.max_epochs", "2", *NO_PROGRESS,
                       cwd=moved)  # in this process
    assert str(first) not in resumed.out
    [run] = run_folders(moved)
    results = json.loads((run / "results.json").read_text())
    assert results["epochs"] == 2 and (run / results["model_path"]).is_file()
    # a moved k-fold run is scored from its new place: tests/test_augment_cv.py


def test_a_full_disk_is_one_line_and_leaves_no_partial_checkpoint(small_disk, tmp_path, run_module, monkeypatch):
    temporary = tmp_path / "tmp"  # where Lightning's own writer would stage checkpoints: must stay unused
    temporary.mkdir()
    monkeypatch.setenv("TMPDIR", str(temporary))
    proc = run_module("lightning_mnist", "fit", *QUICK, "--data.subset", "500", "--trainer.max_epochs", "2",
                      "--output_dir", small_disk / "runs", check=False)
    assert proc.returncode == 2
    assert_one_line_error(proc, "no space left on the device writing", "free some space")
    written = sorted(small_disk.rglob("*.ckpt*")) + sorted(small_disk.rglob(".*"))
    assert written, "the disk filled before any checkpoint: this test no longer tests what it should"
    for path in written:  # whole checkpoints only: no temporary file, no truncated file
        assert path.suffix == ".ckpt" and not path.name.startswith("."), path
        torch.load(path, weights_only=True)
    assert not list(temporary.rglob("*.ckpt")) and not list(temporary.rglob("tmp*"))
    resumed = run_module("lightning_mnist", "fit", "--ckpt_path", "last", "--output_dir", small_disk / "runs",
                         check=False)  # what a later command reads: a whole checkpoint, or none at all
    assert "Traceback" not in resumed.stderr and "is not a readable PyTorch checkpoint" not in resumed.stderr
    # the advice fits what was kept: it said "resume with --ckpt_path last" where no last.ckpt had been written
    [error] = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    if list(small_disk.rglob("last.ckpt")):
        assert "resume with --ckpt_path last" in error and "has a checkpoints/last.ckpt" not in resumed.stderr, error
    else:
        assert "start from the checkpoint it saved whole" in error and "--ckpt_path last" not in error, error


def test_cv_on_a_full_disk_says_to_run_it_again_not_to_resume(small_disk, run_module):
    """cv gave fit's advice, "resume with --ckpt_path last": a k-fold run never resumes (its folds start again)."""
    proc = run_module("lightning_mnist", "cv", "--data.num_folds", "2", *QUICK, "--data.subset", "500",
                      "--output_dir", small_disk / "runs", check=False)
    assert proc.returncode == 2
    assert_one_line_error(proc, "no space left on the device writing", "free some space, then run it again (a "
                          "k-fold run starts again from its first fold)")
    assert "--ckpt_path" not in proc.stderr and "--weights" not in proc.stderr
    assert list(small_disk.rglob("*.ckpt")), "the disk filled before any checkpoint: this test no longer tests it"


def test_results_are_written_atomically(tmp_path):
    """A write that fails half-way leaves the previous file whole and no temporary file."""
    from mnist_common.files import write_atomically
    from mnist_common.results import write_json

    target = write_json({"test_acc": 0.99}, tmp_path / "results.json")

    def half_then_fail(tmp):
        tmp.write_text('{"test_acc": 0.')
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomically(target, half_then_fail)
    assert json.loads(target.read_text()) == {"test_acc": 0.99} and [p.name for p in tmp_path.iterdir()] == [
        "results.json"]


# --- bad input: one line, exit 2, before any work, nothing left behind ---------------------------------------


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, mnist_dir):
    """Files for the refusals below: a run with a checkpoint (fitted in this process), damaged files, a checkpoint of
    another network."""
    from lightning_mnist.__main__ import main
    from lightning_mnist.checkpoints import save_checkpoint
    from lightning_mnist.models import KerasNetwork
    from mnist_common.architecture import Architecture
    from mnist_common.mnist import DATA_DIR_ENV

    where = tmp_path_factory.mktemp("bad_inputs")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(where)
        patch.setenv(DATA_DIR_ENV, str(mnist_dir))
        main(["fit", *QUICK, "--data.subset", "500"])
    (where / "garbage.ckpt").write_bytes(b"not a checkpoint" * 20)
    lenet = Architecture.load("lenet5")
    save_checkpoint(where / "lenet.ckpt", lenet, KerasNetwork(lenet).state_dict())
    five = Architecture.load({"name": "five", "input_shape": [28, 28, 1],
                              "layers": [{"type": "Flatten"}, {"type": "Dense", "units": 5, "activation": "softmax"}]})
    save_checkpoint(where / "five_classes.ckpt", five, KerasNetwork(five).state_dict())
    (where / "five_fold.json").write_text(json.dumps({"framework": "lightning",
                                                      "folds": [{"fold": 0, "model_path": "five_classes.ckpt"}]}))
    (where / "empty.json").write_text("")
    (where / "not_json.json").write_text("{folds")
    (where / "no_folds.json").write_text('{"folds": [{"fold": 0}]}')
    for name, model in (("pickle_fold.json", "fold_0.pt"), ("suffixless_fold.json", "fold_0")):
        (where / model).write_bytes((where / "lenet.ckpt").read_bytes())  # a real checkpoint, under another name
        (where / name).write_text(json.dumps({"framework": "lightning", "folds": [{"fold": 0, "model_path": model}]}))
    (where / "a_file").write_text("a file where a folder should be")
    os.mkfifo(where / "pipe.yaml")  # reading it would wait for a writer forever
    (where / "clip_nan.yaml").write_text("trainer:\n  gradient_clip_val: .nan\n")
    (where / "deep").mkdir()
    (where / "deep" / "cv_results.json").write_text("[" * 100_000 + "]" * 100_000)
    (where / "cosine.yaml").write_text("model:\n  lr_schedule: cosine\n")
    (where / "latin1.yaml").write_bytes("# caf\u00e9\nmodel:\n  lr: 0.001\n".encode("latin-1"))
    (where / "listless" / "MNIST").mkdir(parents=True)
    (where / "listless" / "MNIST" / "raw").write_text("a file where the raw-data folder should be")
    return where


BAD_INPUTS = {
    "batch size 0": (["fit", "--data.batch_size", "0"], "--data.batch_size must be at least 1, got 0"),
    # hostile round 12: jsonargparse's "Does not validate against any of the Union subtypes" named nothing
    "EMA decay 2": (["fit", "--trainer.callbacks", '{"class_path": "lightning_mnist.training.callbacks.'
                                                  'EMAWeightAveraging", "init_args": {"decay": 2.0}}'],
                    "--trainer.callbacks EMAWeightAveraging: decay must be a number from 0 to 1 (the weight of the "
                    "average so far at each step), got 2.0"),
    "batch size -4": (["fit", "--data.batch_size", "-4"], "--data.batch_size must be at least 1, got -4"),
    "eval batch size 0": (["fit", "--data.eval_batch_size", "0"], "--data.eval_batch_size must be at least 1"),
    # counts past every training image: 2**63 and up were tracebacks (islice, int64), 2**32 a run of one batch
    "batch size 2**64": (["fit", "--data.batch_size", str(2**64)],
                         "--data.batch_size must be at most 60,000 (the training images), got "
                         "18,446,744,073,709,551,616"),
    "eval batch size 2**63": (["test", "--ckpt_path", "lenet.ckpt", "--data.eval_batch_size", str(2**63)],
                              "--data.eval_batch_size must be at most 60,000"),
    "steps per execution 2**32": (["fit", "--data.steps_per_execution", str(2**32)],
                                  "--data.steps_per_execution must be at most 60,000"),
    # a checkpoint name refused when its first checkpoint is written, after an epoch of work: now, formatted as a
    # save would
    "checkpoint name pattern": (["fit", "--checkpoint.filename", "{bogus"], "--checkpoint.filename {bogus: not a "
                                "name pattern (ValueError: expected '}' before end of string)"),
    "checkpoint name format": (["fit", "--checkpoint.filename", "{epoch:zz}"],
                               "--checkpoint.filename {epoch:zz}: not a name pattern (ValueError: Unknown format code "
                               "'z' for object of type 'int')"),
    "checkpoint name too long": (["fit", "--checkpoint.filename", "e" * 230], "names files of 235 bytes"),
    "checkpoint folder under a file": (["fit", "--checkpoint.dirpath", "a_file/checkpoints"],
                                       "--checkpoint.dirpath a_file/checkpoints: a_file is a file, not a folder"),
    "validation interval 0.0": (["fit", "--trainer.val_check_interval", "0.0"],
                                "--trainer.val_check_interval 0.0: give a number of batches of at least 1"),
    "validation interval nan": (["fit", "--trainer.val_check_interval", "nan"],
                                "--trainer.val_check_interval nan: not a duration"),
    "architecture a pipe": (["fit", "--model.architecture", "pipe.yaml"],
                            "architecture file pipe.yaml: not a regular file"),
    # durations read as Lightning's Timer reads them: none at all stopped the run before its first checkpoint (its
    # test then a traceback), or failed inside Lightning; too many days overflowed a timedelta
    "no time to train": (["fit", "--trainer.max_time", '{"seconds": 0}'],
                         "--trainer.max_time {'seconds': 0}: no time to train; give DD:HH:MM:SS above zero"),
    "a max time past a timedelta": (["fit", "--trainer.max_time", '{"days": 99999999999}'],
                                    "not a duration (OverflowError: Python int too large to convert to C int)"),
    "validation every no time": (["fit", "--trainer.val_check_interval", "00:00:00:00"],
                                 "--trainer.val_check_interval 00:00:00:00: no time between validations"),
    "clipping at nan, in a config": (["fit", "--config", "clip_nan.yaml"],
                                     "--trainer.gradient_clip_val nan: give 0 (no clipping) or a positive number"),
    "k-fold results nested past the stack": (["test", "--ckpt_path", "deep/cv_results.json"],
                                             "deep/cv_results.json: not a readable k-fold cv_results.json "
                                             "(RecursionError"),
    "0 steps per execution": (["fit", "--data.steps_per_execution", "0"],
                              "--data.steps_per_execution must be at least 1, got 0"),
    "steps per execution with accumulation": (
        ["fit", "--data.steps_per_execution", "4", "--trainer.accumulate_grad_batches", "2"],
        "--data.steps_per_execution 4 with --trainer.accumulate_grad_batches: gradient accumulation and clipping run "
        "in Lightning's automatic loop, one batch a step"),
    "steps per execution with clipping": (
        ["cv", "--data.steps_per_execution", "4", "--trainer.gradient_clip_val", "1.0"],
        "--data.steps_per_execution 4 with --trainer.gradient_clip_val:"),
    "steps per execution with a weight average": (
        ["fit", "--data.steps_per_execution", "4", "--trainer.callbacks+",
         "lightning_mnist.training.callbacks.EMAWeightAveraging"],
        "--data.steps_per_execution 4 with --trainer.callbacks EMAWeightAveraging: it averages the weights once per "
        "batch Lightning takes, which would be once per 4 optimizer steps"),
    # hostile round 10: Lightning then saves on that schedule only, so a whole run trained, then had no best
    # checkpoint to test (a traceback)
    "checkpoints every N steps": (
        ["fit", "--checkpoint.every_n_train_steps", "100"],
        "--checkpoint.every_n_train_steps 100: Lightning's checkpoint then saves on that schedule only, never as a "
        "validation ends, so fit would keep no best checkpoint to test"),
    "checkpoints every ten minutes": (["cv", "--checkpoint.train_time_interval", "00:10:00"],
                                      "--checkpoint.train_time_interval 0:10:00: Lightning's checkpoint then saves"),
    "steps per execution to a test": (["test", "--ckpt_path", "lenet.ckpt", "--data.steps_per_execution", "4"],
                                      "--data.steps_per_execution 4: `test` scores the checkpoint as it is"),
    "num_folds 0": (["fit", "--data.num_folds", "0"], "--data.num_folds must be between 2 and 100"),
    "num_folds -3": (["cv", "--data.num_folds", "-3"], "--data.num_folds must be between 2 and 100 (or null"),
    # LightningCLI left these unused, silently: its --lr_scheduler without --optimizer, the model's own schedule
    # and Adam settings beside --optimizer
    "lr_scheduler without optimizer": (["fit", "--lr_scheduler", "StepLR", "--lr_scheduler.step_size", "3"],
                                       "--lr_scheduler torch.optim.lr_scheduler.StepLR: LightningCLI applies a "
                                       "schedule given this way only with --optimizer"),
    "optimizer beside the model's schedule": (["fit", "--optimizer", "SGD", "--optimizer.lr", "0.1",
                                               "--model.lr_schedule", "onecycle"],
                                              "--model.lr_schedule onecycle: --optimizer torch.optim.SGD replaces the "
                                              "model's own optimizer and schedule"),
    "num_folds 101": (["cv", "--data.num_folds", "101"], "--data.num_folds must be between 2 and 100 (or null for the "
                                                         "hold-out split), got 101"),
    "fold without num_folds": (["fit", "--data.fold", "1"], "--data.fold 1 needs --data.num_folds"),
    "val fraction 1": (["fit", "--data.val_fraction", "1"], "--data.val_fraction must be between 0 and 1"),
    "rotation nan": (["fit", "--data.rotation", "nan"], "--data.rotation: expected float, got nan"),
    "rotation infinite": (["fit", "--data.rotation", ".inf"], "--data.rotation must be a number from 0 to 180"),
    "negative elastic distortion": (["fit", "--data.elastic_alpha", "-5"],
                                    "--data.elastic_alpha must be a number from 0 to 100, got -5.0"),
    "elastic smoothing 0": (["cv", "--data.elastic_sigma", "0"],
                            "--data.elastic_sigma must be a number from 0.5 to 20 (pixels), got 0.0"),
    "subset too large": (["fit", "--data.subset", "70000"], "--data.subset must be between 20 and 60000"),
    "subset not a number": (["fit", "--data.subset", "many"], "--data.subset: expected int or null, got many"),
    "a choice not offered": (["fit", "--model.lr_schedule=cosine"],
                             "--model.lr_schedule: expected one of constant, onecycle, got cosine"),
    "a choice not offered, in a config file": (["cv", "--config", "cosine.yaml"],
                                               "--model.lr_schedule: expected one of constant, onecycle, got cosine"),
    "seed not a number": (["fit", "--seed_everything", "x"], "--seed_everything: expected bool or int, got x"),
    "learning rate 0": (["fit", "--model.lr", "0"], "--model.lr must be a positive number"),
    "label smoothing 1": (["cv", "--model.label_smoothing", "1"],
                          "--model.label_smoothing must be at least 0 and below 1, got 1.0"),
    "negative weight decay": (["fit", "--model.weight_decay", "-0.1"],
                              "--model.weight_decay must be 0 or more, got -0.1"),
    "weight decay with Keras' Adam": (["fit", "--model.weight_decay", "0.01", "--model.keras_adam", "true"],
                                      "Keras' Adam has no weight decay"),
    "unknown preset": (["fit", "--model.architecture", "resnet50"], "not a preset (keras_io, lenet5, notebook, resnet, rows_lstm)"),
    "save_top_k 0": (["fit", "--checkpoint.save_top_k", "0"], "--checkpoint.save_top_k 0 keeps no best checkpoint"),
    "fast_dev_run": (["fit", "--trainer.fast_dev_run", "true"], "--trainer.fast_dev_run"),
    # it said Lightning's "MisconfigurationException: ... found `ModelCheckpoint` in callbacks list", the project's
    "checkpointing off": (["cv", "--trainer.enable_checkpointing", "false"],
                          "--trainer.enable_checkpointing false: `cv` keeps its best checkpoint"),
    "checkpoint dir is a file": (["fit", "--checkpoint.dirpath", "a_file"], "a_file is a file, not a folder"),
    "output dir is a file": (["fit", "--output_dir", "a_file"], "--output_dir a_file/lightning: a_file is a file"),
    "data folder cannot be listed": (["fit", "--data.data_dir", "listless"], "the folder cannot be listed"),
    "missing checkpoint": (["fit", "--ckpt_path", "gone.ckpt"], "checkpoint gone.ckpt: no such file"),
    "garbage checkpoint": (["test", "--ckpt_path", "garbage.ckpt"], "garbage.ckpt is not a PyTorch checkpoint"),
    "a .keras file for fit": (["fit", "--ckpt_path", "model.keras"], "a .keras file has no training state"),
    "weights without a run to resume": (["fit", "--ckpt_path", "lenet.ckpt"], "no training state"),
    "another network than the checkpoint's": (["test", "--ckpt_path", "lenet.ckpt", "--model.architecture",
                                               "keras_io"], "--model.architecture keras_io: lenet.ckpt holds lenet5"),
    "another network than the checkpoint's, for validate": (
        ["validate", "--ckpt_path", "lenet.ckpt", "--model.architecture", "keras_io"],
        "--model.architecture keras_io: lenet.ckpt holds lenet5"),
    "an .onnx file for test": (["test", "--ckpt_path", "model.onnx"], "model.onnx: an ONNX model is a file for "
                               "deploying (run it with `predict --backend onnx` or `serve`); `test` reads a .ckpt"),
    "a .pt2 file for fit": (["fit", "--ckpt_path", "model.pt2"], "a torch.export program is a file for deploying; "
                            "`fit` reads a run's .ckpt, to resume it"),
    "a .tflite file for validate": (["validate", "--ckpt_path", "model.TFLITE"], "`validate` reads a .ckpt or a .keras"),
    "max_epochs below the run's": (["fit", "--ckpt_path", "last", "--trainer.max_epochs", "1"],
                                   "has already trained 1 epochs"),
    # was trained on to the default 10 epochs, over the finished run's results and figures
    "a finished run resumed at its own length": (["fit", "--ckpt_path", "last"], "the run has trained all its 1 "
                                                 "epochs (its trainer.max_epochs) and been tested; give "
                                                 "--trainer.max_epochs larger than 1 to train it on"),
    "no run to resume": (["fit", "--ckpt_path", "last", "--output_dir", "elsewhere"],
                         "--ckpt_path last: no run in elsewhere/lightning"),
    "test without a checkpoint": (["test"], "`test` needs --ckpt_path"),
    "validate without a checkpoint": (["validate"], "`validate` needs --ckpt_path"),
    "test the word last": (["test", "--ckpt_path", "last"], "--ckpt_path last: `last` is fit's word for its latest "
                                                            "run, to resume it; `test` takes a checkpoint file"),
    "validate an ensemble": (["validate", "--ckpt_path", "no_folds.json"], "a k-fold ensemble is scored with `test`"),
    "empty cv results": (["test", "--ckpt_path", "empty.json"], "empty file"),
    "cv results not JSON": (["test", "--ckpt_path", "not_json.json"], "not a readable k-fold cv_results.json"),
    "cv results without models": (["test", "--ckpt_path", "no_folds.json"], "each with a model_path"),
    "weights_only false": (["test", "--ckpt_path", "lenet.ckpt", "--weights_only", "false"],
                           "this project reads checkpoints weights-only"),
    # MNIST's ten classes scored against a network of five: the labels would be out of its range
    "test a network of five classes": (["test", "--ckpt_path", "five_classes.ckpt"],
                                       "`test` on MNIST needs a network that takes 28x28x1 images or their 784 "
                                       "pixels in reading order (784, 28x28, 784x1: any steps x features of 784) "
                                       "and gives 10 classes; five takes 28x28x1 and gives 5"),
    "validate a network of five classes": (["validate", "--ckpt_path", "five_classes.ckpt"],
                                           "`validate` on MNIST needs a network that takes"),
    "test an ensemble of five classes": (["test", "--ckpt_path", "five_fold.json"], "and gives 5"),
    "an empty output folder": (["fit", "--output_dir", ""], "--output_dir '': an empty name; give a folder"),
    "an empty data folder": (["cv", "--data.data_dir", " "], "--data.data_dir ' ': an empty name; give a folder"),
    "unknown flag": (["fit", "--data.nonsense", "3"], "unrecognized arguments: --data.nonsense 3"),
    # the Trainer's own settings, refused before a run folder exists (Lightning would raise when building it)
    "unknown accelerator": (["fit", "--trainer.accelerator", "banana"],
                            "--trainer.accelerator banana: not an accelerator Lightning knows; use one of auto, cpu"),
    "unknown accelerator for test": (["test", "--ckpt_path", "lenet.ckpt", "--trainer.accelerator", "gpus"],
                                     "--trainer.accelerator gpus: not an accelerator"),
    "negative devices": (["fit", "--trainer.devices", "-5"], "--trainer.devices -5: `devices` selected with"),
    "no devices": (["cv", "--trainer.devices", "0"], "--trainer.devices 0:"),
    "more CPU processes than cores": (["fit", "--trainer.accelerator", "cpu", "--trainer.devices", str(CORES + 1)],
                                      f"--trainer.devices {CORES + 1}: {CORES + 1} processes on a CPU of {CORES} cores; "
                                      f"give at most {CORES} (or auto)"),
    "seed beyond numpy's": (["fit", "--seed_everything", "99999999999999999999"],
                            "--seed_everything 99999999999999999999: a seed must be from 0 to 4294967295"),
    "negative seed": (["test", "--ckpt_path", "lenet.ckpt", "--seed_everything", "-1"],
                      "--seed_everything -1: a seed must be from 0 to 4294967295"),
    "max_epochs -1 (forever)": (["fit", "--trainer.max_epochs", "-1"], "--trainer.max_epochs must be at least 1, got -1"),
    "max_epochs 0": (["cv", "--trainer.max_epochs", "0"], "--trainer.max_epochs must be at least 1, got 0"),
    "negative patience": (["fit", "--early_stopping.patience", "-3"],
                          "--early_stopping.patience must be at least 0 (epochs without improvement), got -3"),
    "negative min_epochs": (["fit", "--trainer.min_epochs", "-2"], "--trainer.min_epochs must be at least 0"),
    "validation every 0 epochs": (["cv", "--trainer.check_val_every_n_epoch", "0"],
                                  "--trainer.check_val_every_n_epoch must be at least 1"),
    "accumulate 0 batches": (["fit", "--trainer.accumulate_grad_batches", "0"],
                             "--trainer.accumulate_grad_batches must be at least 1"),
    "accumulating more batches than an epoch's": (["fit", "--data.subset", "500", "--trainer.accumulate_grad_batches",
                                                   "1000000000000000000"],
                                                  "--trainer.accumulate_grad_batches 1000000000000000000: more than "
                                                  "the 15 training batches of an epoch"),
    "sanity steps -5": (["fit", "--trainer.num_sanity_val_steps", "-5"], "--trainer.num_sanity_val_steps must be at "
                                                                          "least -1"),
    "a config file not UTF-8": (["fit", "--config", "latin1.yaml"],
                                "--config latin1.yaml: not UTF-8 text (byte 0xe9 at position 5)"),
    "a group's file not UTF-8": (["cv", "--model", "latin1.yaml"], "--model latin1.yaml: not UTF-8 text"),
    "learning rate above 1": (["fit", "--model.lr", "1e308"], "--model.lr must be a positive number up to 1"),
    "negative split seed": (["fit", "--data.split_seed", "-1"], "--data.split_seed must be from 0 to 4294967295"),
    "too few images per class for the folds": (["cv", "--data.subset", "20"],
                                               "cannot split 20 images into --data.num_folds 5 stratified folds"),
    # scikit-learn's words before: "The test_size = 1 should be greater or equal to the number of classes = 10"
    "a hold-out too small for every class": (["fit", "--data.subset", "300", "--data.val_fraction", "0.001"],
                                             "cannot split 300 images with --data.val_fraction 0.001: 1 validation "
                                             "image, fewer than the 10 classes (a stratified split holds out one of "
                                             "each at least); give --data.val_fraction 0.031 or more"),
    "a hold-out that keeps too few for every class": (["fit", "--data.subset", "300", "--data.val_fraction", "0.99"],
                                                      "3 training images, fewer than the 10 classes (a stratified "
                                                      "split keeps one of each at least); give --data.val_fraction "
                                                      "0.966 or less"),
    "cv without folds": (["cv", "--data.num_folds", "null"], "--data.num_folds: cv needs at least 2 folds"),
    "cv given one fold": (["cv", "--data.num_folds", "3", "--data.fold", "1"],
                          "--data.fold 1: cv trains every fold; to train one fold, use fit --data.num_folds 3"),
    "early stopping on a metric never logged": (["fit", "--early_stopping.monitor", "val/foo"],
                                                "--early_stopping.monitor val/foo: not a metric this run logs; use "
                                                "one of val/loss, val/acc, train/loss, train/acc, epoch, step"),
    "checkpoint on a metric never logged": (["cv", "--checkpoint.monitor", "accuracy"],
                                            "--checkpoint.monitor accuracy: not a metric this run logs"),
    "an added callback on a metric never logged": (["fit", "--trainer.callbacks+", "EarlyStopping",
                                                    "--trainer.callbacks.monitor", "bogus"],
                                                   "--trainer.callbacks EarlyStopping monitor bogus: not a metric this "
                                                   "run logs"),
    "early stopping mode median": (["fit", "--early_stopping.mode", "median"],
                                   "--early_stopping.mode median: use min or max"),
    "checkpoint file name leaving the folder": (["fit", "--checkpoint.filename", "../../escape"],
                                                "--checkpoint.filename ../../escape: a file name, not a path"),
    # Trainer settings under which fit would train, validate, keep or test nothing: refused before the run, not after
    "validation interval beyond the epoch": (["fit", "--data.subset", "500", "--trainer.val_check_interval", "100"],
                                             "--trainer.val_check_interval 100: more than the 15 training batches of "
                                             "an epoch"),
    # hostile round 11: a whole float is a count to Lightning (a traceback after the data was read), 2.5 nothing
    "validation interval a whole float beyond the epoch": (
        ["fit", "--data.subset", "500", "--trainer.val_check_interval", "16.0"],
        "--trainer.val_check_interval 16: more than the 15 training batches of an epoch"),
    "two batches as a whole float, accumulating three": (
        ["fit", "--data.subset", "500", "--trainer.limit_train_batches", "2.0", "--trainer.accumulate_grad_batches",
         "3"], "--trainer.accumulate_grad_batches 3: more than the 2 training batches of an epoch"),
    "a batch limit neither a fraction nor a count": (["cv", "--trainer.limit_val_batches", "2.5"],
                                                     "--trainer.limit_val_batches 2.5: give a fraction from 0 to 1 "
                                                     "or a whole number of batches"),
    "validation interval 0": (["fit", "--trainer.val_check_interval", "0"], "--trainer.val_check_interval 0: give"),
    "no training batch": (["cv", "--trainer.limit_train_batches", "0"], "--trainer.limit_train_batches 0: fit would "
                                                                          "train on no batch"),
    "no validation batch": (["fit", "--trainer.limit_val_batches", "0.0"], "--trainer.limit_val_batches 0:"),
    "no test batch": (["fit", "--trainer.limit_test_batches", "0"], "--trainer.limit_test_batches 0: fit would test"),
    "less than one test batch": (["fit", "--trainer.limit_test_batches", "0.01"], "--trainer.limit_test_batches "
                                 "0.01: that fraction of the 20 batches is less than one, so fit would test no batch"),
    "less than one training batch": (["cv", "--data.subset", "500", "--trainer.limit_train_batches", "0.01"],
                                     "--trainer.limit_train_batches 0.01: that fraction of the"),
    "less than one validation batch": (["fit", "--trainer.limit_val_batches", "1e-9"],
                                       "--trainer.limit_val_batches 1e-09: that fraction of the 12 batches"),
    "no step": (["fit", "--trainer.max_steps", "0"], "--trainer.max_steps 0: fit would train no step"),
    "negative min_steps": (["fit", "--trainer.min_steps", "-5"], "--trainer.min_steps must be at least 0"),
    "no time": (["fit", "--trainer.max_time", "00:00:00:00"], "--trainer.max_time 00:00:00:00: no time to train"),
    "stopped before the first validation": (["fit", "--data.subset", "500", "--trainer.max_steps", "3"],
                                            "--trainer.max_steps 3: the run would stop before its first validation, "
                                            "after 15 steps"),
    "stopped before the first validation, accumulating": (
        ["fit", "--data.subset", "500", "--trainer.max_steps", "7", "--trainer.accumulate_grad_batches", "2"],
        "--trainer.max_steps 7: the run would stop before its first validation, after 8 steps"),
    "stopped before the first validation, 4 steps per execution": (  # 450 images: 4 executions, 15 steps
        ["fit", "--data.subset", "500", "--trainer.max_steps", "14", "--data.steps_per_execution", "4"],
        "--trainer.max_steps 14: the run would stop before its first validation, after 15 steps"),
    "stopped before a validation after 2 executions": (
        ["fit", "--data.subset", "500", "--trainer.max_steps", "7", "--data.steps_per_execution", "4",
         "--trainer.val_check_interval", "2"],
        "--trainer.max_steps 7: the run would stop before its first validation, after 8 steps"),
    "an added checkpoint callback's folder of another run": (
        ["cv", "--trainer.callbacks+", "ModelCheckpoint", "--trainer.callbacks.dirpath", ".",
         "--trainer.callbacks.enable_version_counter", "false"],
        "--trainer.callbacks ModelCheckpoint dirpath .: already holds checkpoints"),
    "half-precision weights": (["fit", "--trainer.precision", "16-true"], "--trainer.precision 16-true: the weights "
                                                                          "would train and be saved in float16"),
    "double-precision weights": (["cv", "--trainer.precision", "64-true"], "--trainer.precision 64-true:"),
    "no epoch validated": (["fit", "--trainer.max_epochs", "2", "--trainer.check_val_every_n_epoch", "3"],
                           "--trainer.check_val_every_n_epoch 3: none of the 2 epochs would be validated"),
    "no epoch checkpointed": (["fit", "--checkpoint.every_n_epochs", "0"], "--checkpoint.every_n_epochs 0: fit "
                                                                          "would keep no best checkpoint"),
    "more epochs at least than at most": (["fit", "--trainer.min_epochs", "11"],
                                          "--trainer.min_epochs 11: more than --trainer.max_epochs 10"),
    "negative gradient clipping": (["fit", "--trainer.gradient_clip_val", "-1"], "--trainer.gradient_clip_val -1:"),
    "other nodes never started": (["fit", "--trainer.num_nodes", "2"], "--trainer.num_nodes 2: this process would "
                                                                       "wait for the other nodes forever"),
    "an empty checkpoint path": (["fit", "--ckpt_path", ""], "--ckpt_path '': empty"),
    # flags a command would silently ignore
    "a training setting given to test": (["test", "--ckpt_path", "lenet.ckpt", "--model.lr", "0.5"],
                                         "--model.lr 0.5: `test` scores the checkpoint as it is, on the test set"),
    "the split given to test": (["test", "--ckpt_path", "lenet.ckpt", "--data.subset", "500"], "--data.subset 500"),
    "augmentation given to validate": (["validate", "--ckpt_path", "lenet.ckpt", "--data.augment", "true"],
                                       "--data.augment true: `validate` scores the checkpoint as it is"),
    "validate limited to no batch": (["validate", "--ckpt_path", "lenet.ckpt", "--trainer.limit_val_batches", "0"],
                                     "--trainer.limit_val_batches 0: `validate` would score no batch"),
    "validate on less than a batch": (["validate", "--ckpt_path", "lenet.ckpt", "--trainer.limit_val_batches", "0.01"],
                                      "0.01: that fraction of the 12 batches is less than one, so `validate` would"),
    "test on less than a batch": (["test", "--ckpt_path", "lenet.ckpt", "--trainer.limit_test_batches", "0.04"],
                                  "give a fraction of at least 0.05, or a count"),
    "a hold-out given to cv": (["cv", "--data.val_fraction", "0.3"], "--data.val_fraction 0.3: cv validates each "
                                                                      "fold on its own part"),
    "a root folder the run folder replaces": (["fit", "--trainer.default_root_dir", "elsewhere"],
                                              "--trainer.default_root_dir elsewhere: each run writes to its own "
                                              "folder in <output_dir>/lightning; use --output_dir"),
    "an augmentation range with the augmentation off": (["fit", "--data.rotation", "90"],
                                                        "--data.rotation 90: the augmentation is off, so its ranges "
                                                        "are not used; add --data.augment true"),
    # k-fold results naming fold models of no kind this project reads
    "fold model of another suffix": (["test", "--ckpt_path", "pickle_fold.json"],
                                     "fold 0 model fold_0.pt: expected a checkpoint (.ckpt) or a Keras model (.keras)"),
    "fold model without a suffix": (["test", "--ckpt_path", "suffixless_fold.json"],
                                    "fold 0 model fold_0: expected a checkpoint (.ckpt)"),
}
if not torch.cuda.is_available():
    BAD_INPUTS["a GPU on a machine without one"] = (["fit", "--trainer.accelerator", "gpu"],
                                                    "--trainer.accelerator gpu: no such device on this machine")
    # Lightning would switch to bf16-mixed, and the run's config and results would name 16-mixed
    BAD_INPUTS["float16 mixed precision on the CPU"] = (["fit", "--trainer.precision", "16-mixed"],
                                                        "--trainer.precision 16-mixed: float16 mixed precision runs "
                                                        "on a CUDA GPU, and this run is on the CPU")
    BAD_INPUTS["float16 mixed precision on the CPU, by its short name"] = (
        ["test", "--ckpt_path", "lenet.ckpt", "--trainer.precision", "16", "--trainer.accelerator", "cpu"],
        "--trainer.precision 16: float16 mixed precision")


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_in_one_line_before_any_work(case, bad_inputs, monkeypatch, capsys):
    """Each class of bad input through the real command line's main (in this process, to save start-ups)."""
    from lightning_mnist.__main__ import main

    args, fragment = BAD_INPUTS[case]
    (bad_inputs / "model.keras").write_bytes(b"PK")  # only its suffix matters to fit's refusal
    before = sorted(str(p) for p in bad_inputs.rglob("*"))
    monkeypatch.chdir(bad_inputs)
    code, error, err = main_error(main, [*args, *NO_PROGRESS], capsys)
    assert code == 2 and fragment in error, error
    assert "--ckpt_path last to resume" not in err
    assert sorted(str(p) for p in bad_inputs.rglob("*")) == before  # no run folder, no file


# What Lightning's own classes refuse when they are built (after the seed is set: Lightning's "Seed set to 42" must
# not come before the error line).
BUILT_REFUSALS = {
    "unknown strategy": (["fit", "--trainer.strategy", "banana"], "invalid strategy name: `strategy='banana'`"),
    "save_top_k -5": (["fit", "--checkpoint.save_top_k", "-5"], "save_top_k=-5. Must be >= -1"),
    "num_nodes 0": (["validate", "--ckpt_path", "lenet.ckpt", "--trainer.num_nodes", "0"],
                    "`num_nodes` must be a positive integer, but got 0"),
    "seed beyond numpy's": (["fit", "--seed_everything", "99999999999999999999"], "a seed must be from 0"),
    "unknown accelerator": (["fit", "--trainer.accelerator", "banana"], "not an accelerator Lightning knows"),
    "max_time not a duration": (["fit", "--trainer.max_time", "garbage"], "is not a valid duration"),
    # and no note of LightningCLI's before it, that --optimizer replaces the module's configure_optimizers
    "an optimizer's own refusal": (["fit", "--optimizer", "SGD", "--optimizer.lr", "-1"],
                                   "ValueError: Invalid learning rate: -1.0"),
}


@pytest.mark.parametrize("case", list(BUILT_REFUSALS))
def test_settings_lightning_refuses_are_one_line_with_no_run_folder_left(case, bad_inputs, lightning_logging,
                                                                         monkeypatch, capsys):
    """Exit 2, one line, nothing before it, no traceback, the run folder taken for it gone (the command's main in
    this process, Lightning's loggers as a command-line process has them)."""
    from lightning_mnist.__main__ import main

    args, fragment = BUILT_REFUSALS[case]
    before = sorted(str(p) for p in bad_inputs.rglob("*"))
    monkeypatch.chdir(bad_inputs)
    code, error, err = main_error(main, [*args, *NO_PROGRESS], capsys)
    assert code == 2 and fragment in error, error
    assert err.strip().startswith("error:"), err  # not after Lightning's "Seed set to 42"
    assert sorted(str(p) for p in bad_inputs.rglob("*")) == before


def test_an_optimizer_refused_is_the_only_line_on_stderr(tmp_path, mnist_dir):
    """Through the real command line (in this process pytest keeps warnings apart): LightningCLI's note that
    --optimizer replaces the module's configure_optimizers came before the error line."""
    proc = subprocess.run([sys.executable, "-m", "lightning_mnist", "fit", "--optimizer", "SGD", "--optimizer.lr",
                           "-1", "--output_dir", str(tmp_path)], env=module_env(mnist_dir), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: the Trainer or a callback refuses these settings: ValueError: Invalid learning rate: -1.0"], proc.stderr
    assert not run_folders(tmp_path)


def test_a_failed_fit_says_nothing_about_resuming(tmp_path, lightning_logging, monkeypatch, capsys):
    from lightning_mnist.__main__ import main

    monkeypatch.chdir(tmp_path)
    code, error, err = main_error(main, ["fit", "--data.data_dir", str(tmp_path / "nowhere"), "--data.download",
                                         "false"], capsys)
    assert code == 2 and "MNIST data in" in error and "is missing" in error, error
    assert "ckpt_path" not in err and not run_folders(tmp_path)


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_bad_data_directory_is_a_one_line_error(mnist_dir, tmp_path, damage, lightning_logging, monkeypatch, capsys):
    from lightning_mnist.__main__ import main

    data = tmp_path / "data"
    if damage == "truncated":
        shutil.copytree(mnist_dir / "MNIST", data / "MNIST")
        victim = data / "MNIST" / "raw" / "train-images-idx3-ubyte"
        victim.chmod(0o644)
        with open(victim, "r+b") as f:
            f.truncate(1000)
    monkeypatch.chdir(tmp_path)
    code, error, _ = main_error(main, ["fit", *QUICK, "--data.data_dir", str(data), "--data.download", "false"],
                                capsys)
    assert code == 2 and str(data) in error and "train-images-idx3-ubyte" in error, error
    assert not run_folders(tmp_path)


def test_ddp_on_two_cpu_processes_writes_results_once(run_module, tmp_path):
    """With the commands' default progress bar, which only the first process draws (the second's is disabled:
    it once asked Lightning for batch counts that process does not keep, an AssertionError).

    A limited test pass in two processes scores 2 x 2 batches of 500: the first 2,000 test images (Lightning's
    unshuffled DistributedSampler deals them in turn), and the test report describes those same images."""
    proc = run_module("lightning_mnist", "fit", "--data.subset", "2000", "--trainer.max_epochs", "1",
                      "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2",
                      "--trainer.limit_test_batches", "2")
    [run] = run_folders(tmp_path)
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["trainer"]["strategy"] == "ddp"
    assert 0.1 < results["test_acc"] <= 1.0
    assert proc.stdout.count("test accuracy") == 1
    matrix = np.array(results["confusion_matrix"])
    assert matrix.sum() == 2000 and "(the first 2000 of the 10000 test images" in proc.stdout
    assert matrix.trace() == round(results["test_acc"] * 2000)  # the images test/acc counted, in both processes
    assert all(entry["index"] < 2000 for entry in json.loads((run / "mistakes.json").read_text()))
    proc = run_module("lightning_mnist", "test", "--ckpt_path", run / results["model_path"], *NO_PROGRESS,
                      "--trainer.accelerator", "cpu", "--trainer.strategy", "ddp", "--trainer.devices", "2",
                      "--trainer.limit_test_batches", "1")
    assert proc.stdout.count("results:") == 1  # written once, by the first process
    [tested] = run_folders(tmp_path, "test")
    assert np.array(json.loads((tested / "results.json").read_text())["confusion_matrix"]).sum() == 1000


def test_help_lists_every_command_and_each_takes_config_and_print_config(capsys):
    from lightning_mnist.__main__ import COMMANDS, main

    main(["--help"])
    listing = capsys.readouterr().out
    for name, (_, summary) in COMMANDS.items():
        assert f"  {name}" in listing and summary in listing, name
        with pytest.raises(SystemExit) as info:
            main([name, "--help"])
        assert info.value.code == 0
        text = capsys.readouterr().out
        assert "--config" in text and "--print_config" in text, name


def test_an_interrupted_cv_offers_no_resume(mnist_dir, tmp_path):
    """cv has no --ckpt_path: Ctrl-C keeps the finished work but says nothing about resuming."""
    proc = subprocess.Popen([sys.executable, "-m", "lightning_mnist", "cv", "--data.subset", "12000",
                             "--data.num_folds", "2", "--trainer.max_epochs", "3", *NO_PROGRESS], cwd=tmp_path,
                            env=module_env(mnist_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_interrupts)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob("runs/lightning/cv_0/fold_0/checkpoints/last.ckpt")) and proc.poll() is None \
            and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in stderr
    assert "ckpt_path" not in stderr and "resume" not in stderr
    assert list(tmp_path.glob("runs/lightning/cv_0/fold_0/checkpoints/*.ckpt"))  # the work done is kept
    assert stderr.splitlines()[-1] == "cv interrupted in fold 0 of 2: no fold finished and no cv_results.json was " \
                                      "written; a k-fold run starts again from its first fold: run the command again"
    # in the second fold's test (hostile round 12: Lightning's "Detected KeyboardInterrupt" line only), the first
    # fold's checkpoint named; SIGTERM there too, ended by the project's handler (143; Lightning's stop exited 130)
    env = {**module_env(mnist_dir), "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}"}  # for signal_at_step
    for name, code in (("SIGINT", 130), ("SIGTERM", 143)):
        callback = ("--trainer.callbacks+={'class_path': 'signal_at_step.SignalAtTestBatch', 'init_args': {'batch': 0, "
                    f"'fold': 1, 'signal_name': {name}}}}}")
        later = subprocess.run([sys.executable, "-m", "lightning_mnist", "cv", "--data.subset", "600",
                                "--data.num_folds", "2", "--trainer.max_epochs", "1", "--output_dir", name, callback,
                                *NO_PROGRESS], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
                               preexec_fn=ctrl_c_interrupts)
        [best] = (tmp_path / name).glob("lightning/cv_0/fold_0/checkpoints/epoch*.ckpt")
        assert later.returncode == code and later.stderr.splitlines()[-1] == (
            f"cv interrupted in fold 1 of 2: fold 0 finished (best checkpoints: {best.relative_to(tmp_path)}), but "
            f"no cv_results.json was written; a k-fold run starts again from its first fold: run the command again"), \
            later.stderr[-2000:]
        assert not list((tmp_path / name).rglob("cv_results.json"))


def test_a_checkpoint_is_scored_at_the_precision_asked(run_module, bad_inputs, tmp_path):
    """Lightning converts the weights to float64 for --trainer.precision 64-true; the test report follows them."""
    shutil.copy(bad_inputs / "lenet.ckpt", tmp_path / "lenet.ckpt")
    run_module("lightning_mnist", "test", "--ckpt_path", "lenet.ckpt", "--trainer.precision", "64-true", *NO_PROGRESS)
    [run] = run_folders(tmp_path, "test")
    results = json.loads((run / "results.json").read_text())
    assert 0 <= results["test_acc"] <= 1 and sum(map(sum, results["confusion_matrix"])) == 10_000


def test_the_paths_a_run_reports_are_escaped_as_error_lines_escape_them(run_main, bad_inputs, tmp_path):
    """An --output_dir holding a terminal escape and a line break: the run folder is made as named, and the lines that
    report its files show the name escaped (the raw bytes cleared the terminal and broke the one-line-a-file report:
    hostile round 12), as predict and every error line show names."""
    shutil.copy(bad_inputs / "lenet.ckpt", tmp_path / "lenet.ckpt")
    named = "o\x1b[2Jx\nnew"
    printed = run_main("lightning_mnist", "test", "--ckpt_path", "lenet.ckpt", "--trainer.limit_test_batches", "1",
                       "--output_dir", named, *NO_PROGRESS)
    [run] = (tmp_path / named / "lightning").glob("test_*")
    assert "\x1b" not in printed.out and f"results: {named.encode('unicode_escape').decode()}/lightning/test_0/" \
        "results.json" in printed.out.replace(str(tmp_path) + "/", ""), printed.out
    assert (run / "results.json").is_file() and not any(line.startswith("new/") for line in printed.out.splitlines())


def test_lightnings_short_name_of_bfloat16_mixed_precision_trains(run_main, tmp_path, lightning_logging):
    """``--trainer.precision bf16`` is Lightning's name for bf16-mixed (float32 weights, bfloat16 arithmetic), not
    bf16-true: fit takes it, trains in it, and keeps float32 weights."""
    printed = run_main("lightning_mnist", "fit", *QUICK, "--data.subset", "500", "--trainer.precision", "bf16")
    assert "Using bfloat16 Automatic Mixed Precision" in printed.out + printed.err
    [run] = run_folders(tmp_path)
    checkpoint = torch.load(run / json.loads((run / "results.json").read_text())["model_path"], weights_only=True)
    assert {weight.dtype for weight in checkpoint["state_dict"].values() if weight.is_floating_point()} == \
        {torch.float32}


def test_a_training_that_diverges_says_so_in_one_line(tmp_path, lightning_logging, monkeypatch, capsys):
    """SGD at a learning rate of 50 sends the loss to nan in a few steps: the best checkpoint holds no finite
    val/loss and nan weights. fit says the training diverged (not that a checkpoint is a bad file), keeping the
    run folder's checkpoints and metrics for a look."""
    from lightning_mnist.__main__ import main

    monkeypatch.chdir(tmp_path)
    code, error, _ = main_error(main, ["fit", "--data.subset", "600", "--trainer.max_epochs", "1",
                                       "--trainer.limit_train_batches", "5", "--optimizer", "torch.optim.SGD",
                                       "--optimizer.lr", "50", "--trainer.enable_progress_bar", "false",
                                       "--output_dir", "runs"], capsys)
    assert code == 2 and error.startswith("error: training diverged: the best checkpoint"), error
    assert "has no finite val/loss" in error and "lower the learning rate" in error
    run = tmp_path / "runs" / "lightning" / "version_0"
    assert (run / "metrics.csv").is_file() and list((run / "checkpoints").glob("*.ckpt"))

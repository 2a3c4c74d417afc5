"""``python -m lightning_mnist fit|test`` as real subprocesses on real MNIST subsets."""

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

import pytest

from conftest import REPO, assert_one_line_error

QUICK = ("--data.subset", "2000", "--trainer.max_epochs", "1", "--trainer.enable_progress_bar", "false",
         "--checkpoint.dirpath", "ckpt", "--trainer.logger.init_args.save_dir", "runs")


def results_of(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("runs/lightning/version_*/results.json"))


def test_fit_writes_results_curves_and_checkpoints(run_module, tmp_path):
    proc = run_module("lightning_mnist", "fit", *QUICK)
    assert "225,418 parameters as Keras counts them" in proc.stdout
    [results_path] = results_of(tmp_path)
    results = json.loads(results_path.read_text())
    assert results["framework"] == "lightning" and results["epochs"] == 1
    assert 0.1 < results["test_acc"] <= 1.0 and results["test_loss"] > 0
    assert Path(results["model_path"]).is_file() and (tmp_path / "ckpt" / "last.ckpt").is_file()
    assert results["config"]["data"]["subset"] == 2000 and results["config"]["model"]["lr"] == 1e-4
    assert [row["epoch"] for row in results["history"]] == [0]
    assert set(results["history"][0]) >= {"train_loss", "train_acc", "val_loss", "val_acc"}
    assert (results_path.parent / "curves.png").stat().st_size > 10_000
    assert str(results_path) in proc.stdout or results_path.name in proc.stdout
    with open(results_path.parent / "metrics.csv") as f:
        columns = next(csv.reader(f))
    assert {"train/loss", "train/acc", "val/loss", "val/acc", "test/acc"} <= set(columns)

    # the checkpoint it wrote is accepted by the other subcommands
    tested = run_module("lightning_mnist", "test", "--ckpt_path", results["model_path"], "--trainer.logger", "false",
                        "--trainer.enable_progress_bar", "false")
    [row] = [line for line in tested.stdout.splitlines() if "test/acc" in line]
    assert float(row.split("│")[2]) == pytest.approx(results["test_acc"], abs=1e-6)


def test_results_keep_every_epoch_when_the_best_is_not_the_last(run_module, tmp_path):
    # monitoring the epoch number with mode "min" makes the first epoch the "best" one: testing
    # it reloads an early checkpoint, which must not rewind the recorded history
    run_module("lightning_mnist", "fit", *QUICK, "--data.subset", "1000", "--trainer.max_epochs", "3",
               "--checkpoint.monitor", "epoch", "--checkpoint.mode", "min")
    [results_path] = results_of(tmp_path)
    results = json.loads(results_path.read_text())
    assert [row["epoch"] for row in results["history"]] == [0, 1, 2]
    assert results["best_epoch"] == 0 and "epoch00" in results["model_path"]


def test_config_file_spells_out_the_defaults(run_module, tmp_path):
    default = run_module("lightning_mnist", "fit", "--print_config").stdout
    from_file = run_module("lightning_mnist", "fit", "--config", REPO / "configs" / "notebook.yaml",
                           "--print_config").stdout
    assert default == from_file
    for line in ("lr: 0.0001", "batch_size: 32", "max_epochs: 10", "patience: 3", "monitor: val/loss"):
        assert line in default


def test_tensorboard_logger_by_flag(run_module, tmp_path):
    run_module("lightning_mnist", "fit", *QUICK[:-2], "--data.subset", "500", "--trainer.limit_train_batches", "3",
               "--trainer.logger", "TensorBoardLogger", "--trainer.logger.save_dir", "tb")
    assert list(tmp_path.glob("tb/lightning/version_0/events.out.tfevents.*"))
    assert list(tmp_path.glob("tb/lightning/version_0/results.json"))


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_bad_data_directory_is_a_one_line_error(run_module, mnist_dir, tmp_path, damage):
    data = tmp_path / "data"
    if damage == "truncated":
        shutil.copytree(mnist_dir / "MNIST", data / "MNIST")
        victim = data / "MNIST" / "raw" / "train-images-idx3-ubyte"
        victim.chmod(0o644)
        with open(victim, "r+b") as f:
            f.truncate(1000)
    proc = run_module("lightning_mnist", "fit", *QUICK, "--data.data_dir", data, check=False)
    assert proc.returncode == 2
    assert_one_line_error(proc, str(data), "train-images-idx3-ubyte")
    assert not results_of(tmp_path)


def test_subset_larger_than_the_data_is_a_one_line_error(run_module, tmp_path):
    proc = run_module("lightning_mnist", "fit", *QUICK, "--data.subset", "70000", check=False)
    assert proc.returncode == 2
    assert_one_line_error(proc, "subset")


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "killed"])
def test_interrupted_fit_resumes_with_ckpt_path_last(mnist_dir, tmp_path, run_module, how):
    # 12,000 images: epochs of ~1.5 s, so the signal lands inside the second epoch's training
    args = ["fit", "--data.subset", "12000", "--trainer.max_epochs", "4", "--trainer.enable_progress_bar", "false",
            "--checkpoint.dirpath", "ckpt", "--trainer.logger.init_args.save_dir", "runs",
            "--early_stopping.patience", "100"]
    env = {**os.environ, "MNIST_DATA_DIR": str(mnist_dir), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "lightning_mnist", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = tmp_path / "ckpt" / "last.ckpt"
    deadline = time.monotonic() + 300
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)  # well into the second epoch
    proc.send_signal(how)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0 and not results_of(tmp_path), "the run ended before it could be interrupted"
    if how == signal.SIGINT:
        assert "--ckpt_path last" in stderr and "Traceback" not in stderr

    resumed = run_module("lightning_mnist", *args, "--ckpt_path", "last")
    assert "Restoring states from the checkpoint" in resumed.stdout + resumed.stderr
    [results_path] = results_of(tmp_path)
    results = json.loads(results_path.read_text())
    assert [row["epoch"] for row in results["history"]] == [0, 1, 2, 3]
    # the epoch that resumed part-way still logs its training and validation metrics
    keys = ("train_loss", "train_acc", "val_loss", "val_acc")
    assert all(math.isfinite(row[key]) for row in results["history"] for key in keys), results["history"]
    assert results["epochs"] == 4 and results["test_acc"] > 0.5


def test_ddp_on_two_cpu_processes_writes_results_once(run_module, tmp_path):
    proc = run_module("lightning_mnist", "fit", *QUICK, "--trainer.accelerator", "cpu",
                      "--trainer.strategy", "ddp", "--trainer.devices", "2")
    [results_path] = results_of(tmp_path)
    results = json.loads(results_path.read_text())
    assert results["config"]["trainer"]["strategy"] == "ddp"
    assert 0.1 < results["test_acc"] <= 1.0
    assert proc.stdout.count("test accuracy") == 1

"""Shared fixtures: the real MNIST directory and a runner for the command lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import lightning_mnist  # noqa: F401  torch's half first: these tests use both frameworks in one process
from lightning_mnist.frameworks import import_keras
from mnist_common.mnist import DATA_DIR_ENV, resolve_data_dir

import_keras()  # whichever test module imports Keras first, it comes after torch (keras_reference/backend.py)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"
if os.environ.get(DATA_DIR_ENV):  # absolute, for tests that change directory and for their subprocesses
    os.environ[DATA_DIR_ENV] = str(Path(os.environ[DATA_DIR_ENV]).resolve())


def pytest_collection_modifyitems(config, items):
    """GPU twins (``@pytest.mark.gpu``) run where CUDA is; elsewhere they are deselected, not skipped."""
    import torch

    if torch.cuda.is_available():
        return
    gpu = [item for item in items if item.get_closest_marker("gpu")]
    if gpu:
        config.hook.pytest_deselected(items=gpu)
        items[:] = [item for item in items if not item.get_closest_marker("gpu")]


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Real MNIST: ``$MNIST_DATA_DIR`` (CI points it at ../shared/datasets), else that folder, else ./data."""
    if os.environ.get(DATA_DIR_ENV):
        return resolve_data_dir().resolve()  # absolute: tests change directories
    return SHARED_DATASETS if SHARED_DATASETS.is_dir() else resolve_data_dir().resolve()


@pytest.fixture(scope="session")
def mnist(mnist_dir):
    from mnist_common.mnist import load_mnist

    return load_mnist(mnist_dir)


@pytest.fixture
def run_module(mnist_dir, tmp_path):
    """Run ``python -m <module> <args>`` in ``tmp_path``; return the CompletedProcess."""

    def run(module: str, *args: str, timeout: float = 600, check: bool = True, **kwargs):
        env = {**os.environ, DATA_DIR_ENV: str(mnist_dir), "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=kwargs.pop("cwd", tmp_path),
                              env=env, capture_output=True, text=True, timeout=timeout, **kwargs)
        if check and proc.returncode != 0:
            raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
        return proc

    return run


def assert_one_line_error(proc, *fragments: str) -> None:
    """A clean refusal: non-zero exit, no traceback, one ``error:`` line naming ``fragments``."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]

"""Lightning and Keras, trained alike on the same images, reach the same accuracy.

Each framework trains in its own process through its own command line (a Keras-only
process never imports torch), on the same stratified subset with the notebook's settings,
asked with the same flags.
"""

from __future__ import annotations

import json

import pytest

SUBSET, EPOCHS = "6000", "3"  # 507 steps: enough for BatchNorm's slow moving averages (momentum 0.99)
# Measured (AMD EPYC, seeds 0 1 2 3 42): test accuracy 0.909-0.926 Lightning, 0.903-0.934 Keras; chance is 0.10.
FLOOR = 0.88
# One run of each differs by its initialisation, batch order and dropout masks, and after 507 steps
# at lr 1e-4 the accuracy still climbs steeply, so one pair is noisy: Lightning - Keras measured
# +0.7, +0.5, -0.8, -0.6, -2.3 points on test and +0.5, -0.2, -1.5, -0.8, -1.2 on the last
# validation (the same seeds). The margin is 1.5x the widest gap: it catches a framework that learns
# differently (a wrong momentum, initialiser or loss), not the noise. Exact agreement is proven
# where it can be, on identical weights: tests/test_bridge.py (max |dp| <= 1e-5).
MARGIN = 0.035


@pytest.fixture(scope="module")
def trained(tmp_path_factory, mnist_dir):
    import os
    import subprocess
    import sys

    from conftest import REPO

    work = tmp_path_factory.mktemp("compare")
    env = {**os.environ, "MNIST_DATA_DIR": str(mnist_dir), "PYTHONPATH": str(REPO)}
    commands = {
        "lightning": ["lightning_mnist", "fit", "--data.subset", SUBSET, "--trainer.max_epochs", EPOCHS,
                      "--trainer.enable_progress_bar", "false"],
        "keras": ["keras_reference", "train", "--data.subset", SUBSET, "--trainer.max_epochs", EPOCHS],
    }
    results = {}
    for name, command in commands.items():
        folder = work / name
        folder.mkdir()
        proc = subprocess.run([sys.executable, "-m", *command], cwd=folder, env=env, capture_output=True, text=True,
                              timeout=900)
        assert proc.returncode == 0, proc.stderr[-3000:]
        [path] = folder.glob("runs/**/results.json")
        results[name] = json.loads(path.read_text())
    return results


def test_both_frameworks_learn_to_the_floor(trained):
    for name, results in trained.items():
        assert results["test_acc"] >= FLOOR, (name, results["test_acc"])


def test_frameworks_agree_within_the_margin(trained):
    lightning, keras = trained["lightning"]["test_acc"], trained["keras"]["test_acc"]
    assert abs(lightning - keras) <= MARGIN, (lightning, keras)
    for name in trained:  # validation curves tell the same story, epoch by epoch
        assert len(trained[name]["history"]) == int(EPOCHS)
    final_val = [trained[name]["history"][-1]["val_acc"] for name in trained]
    assert abs(final_val[0] - final_val[1]) <= MARGIN

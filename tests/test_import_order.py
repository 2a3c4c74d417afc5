"""Both frameworks in one process: every import order a user can reach must not crash.

With torch's CUDA build and TensorFlow together, importing TensorFlow before triton
(pulled in by torch.optim and torch.compile) segfaults (REFERENCE.md, "Traps").
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from conftest import REPO

USE_BOTH = """
import torch
model = MnistClassifier()
model.configure_optimizers().step()          # torch.optim: imports triton
keras_model = build_model()
probabilities = keras_model(torch.rand(2, 28, 28, 1).numpy())
print("ok", tuple(probabilities.shape))
"""

ORDERS = {
    "keras first": "from keras_reference.model import build_model\nfrom lightning_mnist.models import MnistClassifier",
    "lightning first": "from lightning_mnist.models import MnistClassifier\nfrom keras_reference.model import build_model",
    "keras via import_keras, then torch.compile": (
        "from mnist_common.frameworks import import_keras\nimport_keras()\nimport torch\n"
        "torch.compile(torch.nn.Linear(2, 2))\nfrom keras_reference.model import build_model\n"
        "from lightning_mnist.models import MnistClassifier"),
}


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


@pytest.mark.parametrize("imports", ORDERS.values(), ids=ORDERS.keys())
def test_both_frameworks_in_one_process_do_not_crash(imports):
    proc = run_python(imports + "\n" + USE_BOTH)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])  # -11 / 139 would be the segfault
    assert "ok (2, 10)" in proc.stdout


def test_tensorflow_imported_by_hand_first_gets_a_clear_error_not_a_segfault():
    proc = run_python("import tensorflow\nimport lightning_mnist")
    assert proc.returncode == 1
    assert "ImportError: import lightning_mnist (or torch._dynamo) before tensorflow" in proc.stderr

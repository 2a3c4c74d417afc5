"""Both frameworks in one process: every import order a user can reach works or says what to do; none aborts.

With a torch that ships triton and TensorFlow together, importing TensorFlow before triton
(pulled in by torch.optim and torch.compile) aborts the process (keras_reference/backend.py).
Each case runs in a fresh interpreter; "without triton" hides triton the way a CPU-only
torch build lacks it.
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
model.configure_optimizers().step()          # torch.optim: loads triton where there is one
keras_model = build_model()
probabilities = keras_model(torch.rand(2, 28, 28, 1).numpy())
print("ok", tuple(probabilities.shape), "triton" in sys.modules)
"""
WITHOUT_TRITON = "import sys\nsys.modules['triton'] = None  # as on a CPU-only torch build\n"

WORKING_ORDERS = {
    "lightning first": "from lightning_mnist.models import MnistClassifier\nfrom keras_bridge.build import build_model",
    "import_keras, then torch.compile": (
        "from lightning_mnist.frameworks import import_keras\nimport_keras()\nimport torch\n"
        "torch.compile(torch.nn.Linear(2, 2))\nfrom keras_bridge.build import build_model\n"
        "from lightning_mnist.models import MnistClassifier"),
    "torch first, then keras_reference": (
        "import torch\nfrom keras_bridge.build import build_model\nfrom lightning_mnist.models import MnistClassifier"),
    "without triton, keras_reference first": (
        WITHOUT_TRITON + "from keras_bridge.build import build_model\n"
        "from lightning_mnist.models import MnistClassifier"),
    "without triton, tensorflow first": (
        WITHOUT_TRITON + "import tensorflow\nfrom keras_bridge.backend import import_keras\nimport_keras()\n"
        "import lightning_mnist\nfrom keras_bridge.build import build_model\n"
        "from lightning_mnist.models import MnistClassifier"),
}


def run_python(code: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *flags, "-c", textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("imports", WORKING_ORDERS.values(), ids=WORKING_ORDERS.keys())
def test_both_frameworks_in_one_process_work(imports):
    proc = run_python("import sys\n" + imports + "\n" + USE_BOTH)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])  # 134 would be the abort
    assert "ok (2, 10)" in proc.stdout


@pytest.mark.parametrize("first", ["import tensorflow", "import keras_reference.model",
                                   "from keras_bridge.backend import import_keras\nimport_keras()",
                                   # the advice once was to import lightning_mnist first, which loads no triton
                                   "import lightning_mnist\nimport keras\nimport lightning_mnist.interop.keras_models"])
def test_tensorflow_before_lightning_mnist_is_a_clear_import_error_not_an_abort(first):
    proc = run_python(f"{first}\nimport lightning_mnist")
    assert proc.returncode == 1, proc.stderr[-2000:]
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("ImportError")]
    assert "take Keras from lightning_mnist.frameworks.import_keras() (it imports triton first) before anything " \
           "imports tensorflow, keras or keras_reference" in line


def test_keras_only_processes_never_import_torch():
    proc = run_python("import tensorflow\nimport keras_reference.model, keras_reference.train, keras_reference.cv\n"
                      "import sys\nprint(sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("level, quiet", [(None, True), ("3", True), ("0", False)])
def test_tensorflow_start_up_lines_stay_out_of_stderr_unless_asked_for(level, quiet):
    """TensorFlow's native start-up lines (absl's "before InitializeLog" banner, oneDNN's notice) print even with
    TF_CPP_MIN_LOG_LEVEL=3: the import silences them unless the user asks TensorFlow for more (0 to 2)."""
    import os

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if level is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = level
    code = "from keras_bridge.backend import import_keras\nimport_keras()\nimport os\n" \
           "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(level)  # the user's setting, or none, as it was
    assert (proc.stderr.strip() == "") == quiet, proc.stderr

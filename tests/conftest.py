"""Shared fixtures: real MNIST, the notebook's own files, a runner for the command lines, and deselection.

Tests that need what a machine may lack are deselected with a one-line reason at the end
of the run, never failed or silently passed: ``@pytest.mark.gpu`` (a CUDA GPU),
``@pytest.mark.browser`` (Chromium), and any test using the ``seed_keras``/``seed_png``
fixtures (the notebook's own files, which CI keeps in ``../shared/seed``; a clone
elsewhere can point ``MNIST_SEED_DIR`` at a copy). CI has all of them, so it runs every test.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

# Under pytest-xdist the workers share the machine's cores: each worker's torch (and the command lines it
# starts) gets its share of threads, so the workers do not oversubscribe the cores (docs/benchmarks.md).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))

import lightning_mnist  # noqa: F401  torch's half first: these tests use both frameworks in one process
from lightning_mnist.frameworks import import_keras
from mnist_common.mnist import DATA_DIR_ENV, resolve_data_dir

# Whichever test module imports Keras first, it comes after torch (keras_bridge/backend.py). A GPU machine with
# torch alone (no TensorFlow) still runs the torch files: `pytest tests/test_gpu.py` there.
if importlib.util.find_spec("keras") is not None:
    import_keras()

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SHARED_DATASETS = SHARED / "datasets"
SEED_DIR = Path(os.environ.get("MNIST_SEED_DIR") or SHARED / "seed")
SEED_KERAS = SEED_DIR / "cnn_model.keras"  # the model the notebook saved (99.22 % on the test set)
SEED_PNG = SEED_DIR / "imagen.png"  # the "4" the notebook predicted
if os.environ.get(DATA_DIR_ENV):  # absolute, for tests that change directory and for their subprocesses
    os.environ[DATA_DIR_ENV] = str(Path(os.environ[DATA_DIR_ENV]).resolve())


def chromium() -> str | None:
    """The Chromium (or Chrome) executable browser tests drive, if one is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def chromedriver() -> str | None:
    """The chromedriver Selenium drives Chromium with (Debian: the chromium-driver package)."""
    return shutil.which("chromedriver")


def _requirements(item) -> dict[str, str]:
    """What ``item`` needs that this machine lacks: requirement -> why it is missing."""
    missing = {}
    if item.get_closest_marker("gpu"):
        import torch

        if not torch.cuda.is_available():
            missing["gpu"] = "no CUDA GPU on this machine"
    if item.get_closest_marker("browser") and (chromium() is None or chromedriver() is None):
        missing["browser"] = "no Chromium and chromedriver installed (apt-get install chromium chromium-driver)"
    if {"seed_keras", "seed_png"} & set(getattr(item, "fixturenames", ())):
        absent = [p.name for p in (SEED_KERAS, SEED_PNG) if not p.is_file()]
        if absent:
            missing["seed"] = (f"the notebook's {' and '.join(absent)} are not in {SEED_DIR} (CI keeps them in "
                               f"../shared/seed; set MNIST_SEED_DIR to use a copy)")
    return missing


# The files whose tests train the most, longest first (a CI run's --durations): xdist's --dist loadfile hands the
# files out in collection order, so these go first and the short files fill in at the end, and the two
# workers finish together instead of one running a long file alone.
LONGEST_FILES = ["test_cli_fit.py", "test_bridge.py", "test_formats.py", "test_keras_reference.py",
                 "test_speed_benchmarks.py", "test_recipes.py", "test_augment_cv.py", "test_convert.py",
                 "test_serve.py", "test_import_order.py", "test_recipes_keras.py", "test_compare_frameworks.py",
                 "test_progress_bar.py", "test_hostile_inputs.py", "test_recipe_search.py", "test_serve_page.py",
                 "test_predict.py", "test_weight_regularizers_constraints.py", "test_pixel_scale.py",
                 "test_layers_preprocessing.py", "test_layers_convolution.py",
                 # each holds a training or a conversion to every format of a minute or so on a slower 2-core Xeon
                 # (2026-12-07; the whole run took 1,287 s against 1,300 s with these last: both workers were busy)
                 "test_layers_recurrent.py", "test_mixed_precision.py", "test_resume_state.py",
                 "test_nested_models.py", "test_shared_layers.py", "test_legacy_h5.py", "test_real_digits.py",
                 "test_layers_attention.py", "test_layers_1d.py", "test_output_paths.py", "test_model.py"]


DESELECTED = pytest.StashKey[dict]()  # requirement -> (why it is missing, how many tests need it)
DESELECTED_OUTPUT = "lightning_mnist_deselected"  # its name in an xdist worker's output


def pytest_collection_modifyitems(config, items):
    rank = {name: place for place, name in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: a file's tests keep their order
    deselected: dict[str, tuple[str, list]] = {}
    kept = []
    for item in items:
        missing = _requirements(item)
        for requirement, reason in missing.items():
            deselected.setdefault(requirement, (reason, []))[1].append(item)
        if not missing:
            kept.append(item)
    if deselected:
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept
    config.stash[DESELECTED] = {k: (reason, len(found)) for k, (reason, found) in deselected.items()}


def pytest_sessionfinish(session):
    # Under pytest-xdist the workers collect and deselect; what they deselected travels to the controller, which
    # writes the summary (without this, an xdist run deselected the tests silently).
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput[DESELECTED_OUTPUT] = session.config.stash.get(DESELECTED, {})


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    # every worker collects the whole suite, so any one worker's counts are the run's
    found = getattr(node, "workeroutput", {}).get(DESELECTED_OUTPUT)
    if found:
        node.config.stash[DESELECTED] = found


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    for requirement, (reason, count) in config.stash.get(DESELECTED, {}).items():
        terminalreporter.write_line(f"deselected {count} test{'s' if count > 1 else ''} needing {requirement}: {reason}")


@pytest.fixture(scope="session")
def seed_keras() -> Path:
    return SEED_KERAS


@pytest.fixture(scope="session")
def seed_png() -> Path:
    return SEED_PNG


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


def module_env(mnist_dir: Path) -> dict[str, str]:
    """The environment command-line subprocesses run in: the real MNIST folder, this checkout first."""
    return {**os.environ, DATA_DIR_ENV: str(mnist_dir), "PYTHONPATH": str(REPO)}


def run_python_module(mnist_dir: Path, module: str, *args, cwd: Path, check: bool = True, timeout: float = 600,
                      **kwargs) -> subprocess.CompletedProcess:
    """Run ``python -m <module> <args>`` in ``cwd`` as a user would; with ``check``, fail on a non-zero exit."""
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=module_env(mnist_dir),
                          capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and proc.returncode != 0:
        raise AssertionError(f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture
def run_module(mnist_dir, tmp_path):
    """``run_python_module`` in ``tmp_path`` (or ``cwd=...``)."""

    def run(module: str, *args, cwd: Path | None = None, **kwargs):
        return run_python_module(mnist_dir, module, *args, cwd=cwd or tmp_path, **kwargs)

    return run


@pytest.fixture
def run_main(mnist_dir, tmp_path, monkeypatch, capsys):
    """``run_module``'s twin in this process: a command's ``main`` (``lightning_mnist``'s or ``keras_reference``'s)
    in ``tmp_path`` (or ``cwd=...``) on the real MNIST folder, saving the start-up of torch or TensorFlow that a
    new interpreter spends; what it printed (``.out``, ``.err``). The commands' own subprocess runs are elsewhere."""

    def run(module: str, *args, cwd: Path | None = None):
        main = importlib.import_module(f"{module}.__main__").main
        monkeypatch.chdir(cwd or tmp_path)
        monkeypatch.setenv(DATA_DIR_ENV, str(mnist_dir))
        main([str(arg) for arg in args])
        return capsys.readouterr()

    return run


def both_frameworks_learn(run_main, folder: Path, architecture: str | Path, subset: int, minimum: float) -> None:
    """``fit`` and ``keras_reference train`` each train ``architecture`` afresh, one epoch on ``subset`` images at a
    learning rate of 3e-3, tested on the first 1,000 test images in Lightning: both score above ``minimum``."""
    import json

    common = ["--model.architecture", architecture, "--data.subset", str(subset), "--trainer.max_epochs", "1",
              "--model.lr", "3e-3"]
    run_main("lightning_mnist", "fit", *common, "--trainer.enable_progress_bar", "false",
             "--trainer.limit_test_batches", "2")
    run_main("keras_reference", "train", *common)
    for framework in ("lightning", "keras"):
        results = json.loads((folder / "runs" / framework / "version_0" / "results.json").read_text())
        assert results["test_acc"] > minimum, (framework, results["test_acc"])


def ctrl_c_interrupts() -> None:
    """``preexec_fn`` for a child that a test stops with SIGINT: there it raises KeyboardInterrupt, as Ctrl-C does.

    A shell without job control starts ``cmd &`` with SIGINT ignored, and children inherit that
    (Python then installs no KeyboardInterrupt handler): a test run started in the background
    would otherwise find its Ctrl-C ignored and the run finished.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def main_error(main, argv: list[str], capsys) -> tuple[int, str, str]:
    """Run a command's ``main`` in this process (saving a start-up) on bad input: (exit code, its one
    ``error:`` line, all of stderr), after checking there is exactly one such line and no traceback."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in err, err[-2000:]
    return info.value.code, errors[0], err


def main_output(main, argv: list[str], capsys) -> str:
    """What a command's ``main`` prints on stdout, run in this process, for an argv that ends by exiting
    successfully (``--print_config``)."""
    with pytest.raises(SystemExit) as info:
        main(argv)
    captured = capsys.readouterr()
    assert info.value.code in (0, None), captured.err[-2000:]
    return captured.out


class StderrNow(logging.StreamHandler):
    """A stderr handler writing to whatever ``sys.stderr`` is when it emits: pytest gives each phase of a
    test its own captured stream, and closes the one a handler would have kept from the fixture's."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


@pytest.fixture
def lightning_logging(monkeypatch):
    """Lightning's loggers as a command-line process has them, for a Lightning command run in this process.

    Imported where the root logger has no handler (a real ``python -m lightning_mnist``),
    Lightning gives its two loggers a stderr handler of their own and stops them propagating. In a
    pytest worker the root logger's handlers are pytest's: this puts Lightning's lines on the
    test's stderr, where ``capsys`` reads them in order with the command's own lines (what a refusal
    prints before its ``error:`` line, for one).
    """
    for name in ("lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        monkeypatch.setattr(logger, "handlers", [StderrNow()])
        monkeypatch.setattr(logger, "propagate", False)


@contextlib.contextmanager
def unreadable(*paths: Path):
    """Make ``paths`` unreadable to this thread for a while, as another user's files are (mode 000).

    Permissions do not stop root: a root test process lowers its permission-overriding
    capabilities (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH) from its effective set for the while,
    so its reads of these files fail with EACCES as a user's would, and raises them again after.
    """
    for path in paths:
        path.chmod(0)
    lowered = _effective_capabilities(drop=True) if os.geteuid() == 0 else None
    try:
        yield
    finally:
        if lowered is not None:
            _effective_capabilities(restore=lowered)
        for path in paths:
            path.chmod(0o644)


DAC_CAPABILITIES = (1 << 1) | (1 << 2)  # CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH (linux/capability.h)


def _effective_capabilities(drop: bool = False, restore: int | None = None) -> int:
    """Linux capget/capset (version 3) on this thread: lower the DAC capabilities, or restore an effective set."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    data = (ctypes.c_uint32 * 6)()  # {effective, permitted, inheritable} for capabilities 0-31 and 32-63
    if libc.capget(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capget")
    before = data[0]
    data[0] = restore if restore is not None else before & ~DAC_CAPABILITIES if drop else before
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "capset")
    return before


@pytest.fixture
def small_disk(tmp_path):
    """A 3 MB filesystem (tmpfs), about one checkpoint of the notebook's network and its optimizer.

    Skipped only where mounting is not permitted (not root, or a container without the capability).
    """
    where = tmp_path / "small"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(where)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"mounting a small tmpfs is not permitted here: {mounted.stderr.strip()}")
    yield where
    subprocess.run(["umount", str(where)], check=True)


def assert_one_line_error(proc, *fragments: str) -> None:
    """A clean refusal: non-zero exit, no traceback, one ``error:`` line naming ``fragments``."""
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr[-2000:]
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


# ---------------------------------------------------------------------------------------------
# A real `serve` process, shared by the API and the browser tests

SERVER_START_SECONDS = 180  # importing torch and TensorFlow and loading both models: ~12 s on 2 idle cores
SERVE_MAX_BYTES = 2_000_000  # the body limit the test server runs with (--max_bytes)
SERVE_BODY_TIMEOUT = 2.0  # ... and its --body_timeout (seconds), short so that a stalled body's test is quick


def free_port() -> int:
    """A TCP port nothing listens on now, on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A running ``python -m lightning_mnist serve``: its URL, its process, the folder it runs in, its log."""

    url: str
    process: subprocess.Popen
    workdir: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="session")
def served(tmp_path_factory, mnist_dir, seed_keras) -> Served:
    """``serve --weights seed.ckpt`` (the notebook's model as a checkpoint; Keras runs it converted in memory).

    It runs in an empty folder that must still be empty when it stops (the server writes
    nothing), on a free loopback port, and is stopped with SIGTERM at the end of the session.
    """
    from lightning_mnist.checkpoints import load_networks, save_checkpoint

    weights = tmp_path_factory.mktemp("serve_weights") / "seed.ckpt"
    [network] = load_networks(seed_keras)
    save_checkpoint(weights, network.architecture, network.state_dict())
    workdir, logs = tmp_path_factory.mktemp("serve_cwd"), tmp_path_factory.mktemp("serve_log")
    url = f"http://127.0.0.1:{free_port()}"
    log = logs / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen([sys.executable, "-m", "lightning_mnist", "serve", "--weights", str(weights),
                                    "--port", url.rsplit(":", 1)[1], "--max_bytes", str(SERVE_MAX_BYTES),
                                    "--body_timeout", str(SERVE_BODY_TIMEOUT)],
                                   cwd=workdir, env=module_env(mnist_dir), stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = Served(url, process, workdir, log)
    try:
        deadline = time.monotonic() + SERVER_START_SECONDS
        while not _healthy(url):
            assert process.poll() is None, f"serve exited with {process.returncode}:\n{server.output()}"
            assert time.monotonic() < deadline, f"serve not ready in {SERVER_START_SECONDS} s:\n{server.output()}"
            time.sleep(0.25)
        yield server
    finally:
        _stop(process)
    assert process.returncode == 0, f"serve exited with {process.returncode} on SIGTERM:\n{server.output()}"
    assert not list(workdir.iterdir()), f"serve wrote {sorted(p.name for p in workdir.iterdir())}"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
            return answer.status == 200
    except OSError:
        return False


def _stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM (LitServe stops its workers), then SIGKILL to the process group started for it if it hangs."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout)

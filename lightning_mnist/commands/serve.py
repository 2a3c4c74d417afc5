"""``python -m lightning_mnist serve --weights FILE``: predictions over HTTP and a draw-a-digit page, on LitServe.

Every flag and every model file is checked here, in one ``error:`` line and exit code 2,
before any server process starts: the weights are loaded once on PyTorch (which reads
``.ckpt``, ``.keras`` and ``cv_results.json`` without importing Keras), an ``--onnx_weights`` file
is read by ONNX Runtime, the port must be free. The serving itself is :mod:`lightning_mnist.serving`.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
import socket
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Literal

from mnist_common.cli import run
from mnist_common.errors import UserError, exit_on_user_error, one_line
from lightning_mnist.serving.uploads import BODY_TIMEOUT, MAX_BYTES

PROG = "python -m lightning_mnist serve"
MAX_BYTES_LIMIT = 1 << 30  # 1 GiB: far beyond any picture of a digit
BODY_TIMEOUT_RANGE = (1.0, 3600.0)  # seconds: less cuts off a slow phone, more is no timeout
# Each worker warms every backend up on a batch this large (Keras traces its graph per shape): 2**63 was a traceback,
# a million a worker that never started; more uploads than this seldom arrive within one --batch_timeout
LARGEST_BATCH = 1024
PROCESSES_PER_CORE = 4  # inference and HTTP processes beyond this only queue for the cores (and fill the memory)


def serve(weights: str, keras_weights: str | None = None, onnx_weights: str | None = None, port: int = 8000,
          host: Literal["127.0.0.1", "0.0.0.0", "::"] = "127.0.0.1", workers: int = 1, threads: int = 1,
          max_batch_size: int = 32, batch_timeout: float = 0.005, max_bytes: int = MAX_BYTES,
          body_timeout: float = BODY_TIMEOUT, api_servers: int = 2) -> None:
    """Serve digit predictions from PyTorch, Keras and ONNX Runtime side by side: POST /predict (?backends=torch,
    keras,onnx or any of them), a page at /, GET /health.

    Args:
        weights: the model PyTorch runs: a Lightning checkpoint (.ckpt), a Keras model (.keras, or a legacy .h5) or a
            k-fold run's cv_results.json (the mean of its folds).
        keras_weights: the model Keras runs (the same kinds of file); default: --weights, converted in memory.
        onnx_weights: the model ONNX Runtime runs (the same kinds of file, or an .onnx file of an MNIST model's
            shapes); default: --weights, exported to ONNX in memory.
        port: the TCP port to listen on (1024 to 65535).
        host: the address to bind: 127.0.0.1 (this machine only, the default), 0.0.0.0 or :: (every interface: put
            a reverse proxy with TLS, authentication, rate and body-size limits in front first; see docs/serving.md).
        workers: inference worker processes, each with the three models.
        threads: PyTorch, TensorFlow and ONNX Runtime threads in each inference worker.
        max_batch_size: requests LitServe gathers into one batch.
        batch_timeout: seconds LitServe waits to fill a batch.
        max_bytes: the largest request body accepted; larger ones get 413.
        body_timeout: seconds a request body may stall (no byte arriving), and its line and headers may take to
            arrive in all, before the request gets 408 and its connection closes (1 to 3600); a whole body may take
            four times as long.
        api_servers: HTTP server processes; they read and prepare the pictures, the costliest part of a request.
    """
    check_serve_settings(port=port, workers=workers, threads=threads, max_batch_size=max_batch_size,
                         batch_timeout=batch_timeout, max_bytes=max_bytes, body_timeout=body_timeout,
                         api_servers=api_servers)
    _check_port_free(host, port)
    onnx_model = _check_models(weights, keras_weights, onnx_weights)

    from lightning_mnist.serving.server import build_server, serve as run_server

    server = build_server(weights, keras_weights, workers=workers, threads=threads, max_batch_size=max_batch_size,
                          batch_timeout=batch_timeout, max_bytes=max_bytes, onnx_weights=onnx_weights,
                          body_timeout=body_timeout, onnx_model=onnx_model)
    shown = f"[{host}]" if ":" in host else host
    print(f"serving http://{shown}:{port}/ (the page), POST /predict, GET /health (200 once the models are loaded); "
          f"Ctrl-C stops", flush=True)
    run_server(server, host=host, port=port, api_servers=api_servers)


def check_serve_settings(port: int, workers: int, threads: int, max_batch_size: int, batch_timeout: float,
                         max_bytes: int, body_timeout: float, api_servers: int, **_others: Any) -> None:
    """The numbers ``serve`` takes, in their ranges (the model files and the port's being free are checked
    apart: these are what ``--print_config`` checks too)."""
    for name, value, low in (("port", port, 1024), ("workers", workers, 1), ("threads", threads, 1),
                             ("max_batch_size", max_batch_size, 1), ("max_bytes", max_bytes, 1024),
                             ("api_servers", api_servers, 1)):
        if value < low:
            raise UserError(f"--{name} must be at least {low}, got {value}")
    cores = os.cpu_count() or 1
    for name, value, high, why in (
            ("port", port, 65535, "the largest TCP port"),
            ("threads", threads, cores, "this machine's cores: more threads per worker only wait for each other"),
            ("workers", workers, PROCESSES_PER_CORE * cores, f"{PROCESSES_PER_CORE} per core: each holds three models"),
            ("api_servers", api_servers, PROCESSES_PER_CORE * cores, f"{PROCESSES_PER_CORE} per core"),
            ("max_bytes", max_bytes, MAX_BYTES_LIMIT, "each request body is held in memory while it is read"),
            ("max_batch_size", max_batch_size, LARGEST_BATCH, "each worker warms up on a batch this large")):
        if value > high:
            raise UserError(f"--{name} must be at most {high} ({why}), got {value}")
    if not 0 <= batch_timeout <= 1:
        raise UserError(f"--batch_timeout must be between 0 and 1 second, got {batch_timeout}")
    if not BODY_TIMEOUT_RANGE[0] <= body_timeout <= BODY_TIMEOUT_RANGE[1]:
        raise UserError(f"--body_timeout must be between {BODY_TIMEOUT_RANGE[0]:g} and {BODY_TIMEOUT_RANGE[1]:g} "
                        f"seconds, got {body_timeout}")


def _check_models(weights: str, keras_weights: str | None, onnx_weights: str | None = None) -> bytes | None:
    """Load each model file once on PyTorch (an ``.onnx`` file on ONNX Runtime): a bad file fails here, in one line,
    not in a worker. Without ``onnx_weights``, ``weights`` exported to ONNX and run by ONNX Runtime too (the runner's
    refusal of it came from the workers, two tracebacks after the server had started: hostile round 12): that graph,
    for the workers."""
    import numpy as np

    from lightning_mnist.formats.onnx_model import exported_bytes
    from lightning_mnist.predictors import load_predictor, probe_pictures, resolve

    onnx_model = None
    for flag, path in (("--weights", weights), ("--keras_weights", keras_weights), ("--onnx_weights", onnx_weights)):
        if path is None:
            continue
        try:
            onnx_file = resolve(path)[2] == "onnx"
            if onnx_file and flag != "--onnx_weights":
                raise UserError(f"{path}: an .onnx file runs on ONNX Runtime only: give it as --onnx_weights")
            # refused unless it has an MNIST model's shapes: 784 pixels in, 10 classes out
            predictors = [load_predictor(path, "onnx" if onnx_file else "torch")]
            if flag == "--weights" and onnx_weights is None:  # ONNX Runtime's model too
                onnx_model = exported_bytes(path)
                predictors.append(load_predictor(path, "onnx", onnx_model=onnx_model))
            if not all(np.isfinite(predictor.predict_proba(probe_pictures())).all() for predictor in predictors):
                raise UserError(f"{path}: the model gives non-finite probabilities (on a blank picture, a stroke or "
                                f"noise); predict refuses it too")
        except UserError as err:
            raise UserError(f"{flag} {err}" if str(err).startswith(str(path)) else f"{flag}: {err}") from None
    flag, path = ("--keras_weights", keras_weights) if keras_weights is not None else ("--weights", weights)
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as keras_check:
        refused = keras_check.submit(keras_refusal, path).result()
    if refused:
        raise UserError(f"{flag} {refused}" if refused.startswith(str(path)) else f"{flag}: {refused}")
    return onnx_model


def keras_refusal(path: str) -> str | None:
    """Why Keras cannot run ``path`` (None if it can), found in a fresh process as the inference workers are.

    The PyTorch load above reads a ``.keras`` file without Keras; a file Keras itself refuses would
    otherwise pass, start the server and fail in every worker a minute later. Loading Keras here, in
    the server's own process, would also leave TensorFlow in the process that LitServe forks.
    """
    from lightning_mnist.predictors import load_predictor

    try:
        load_predictor(path, "keras")
    except UserError as err:
        return " ".join(str(err).split())
    except Exception as err:  # whatever Keras raises on a file it cannot build
        return f"Keras cannot load it ({one_line(err)})"
    return None


def _check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            why = "is in use" if err.errno == errno.EADDRINUSE else f"cannot be bound ({err.strerror})"
            raise UserError(f"--port {port} on {host} {why}") from None


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(serve, argv, PROG, check_values=check_serve_settings)

"""Load on ``python -m lightning_mnist serve``: requests/s and latency at 1, 8 and 32 concurrent clients.

    python benchmarks/serve_load.py --weights model.ckpt                       # starts a server, 20 s a cell
    python benchmarks/serve_load.py --weights model.ckpt --seconds 5 --clients '[32]' --backends '[all]'
    python benchmarks/serve_load.py --weights model.ckpt --server_args "--workers 2 --threads 1"
    python benchmarks/serve_load.py --url http://127.0.0.1:8000                # a server already running

Each client is a thread with its own keep-alive connection that posts, one after the
other, 288x288 PNG pictures of MNIST test digits (dark ink on white: what the page's
canvas sends) for ``--seconds``, after one second of warm-up that is not counted. Every
cell runs one backend alone (``?backends=torch``, ``keras`` or ``onnx``) or all three (``all``). A request that does not
answer 200 with a digit counts as an error. Reported per cell: requests/s, p50/p90/p99
latency, errors, wrong digits, the mean batch LitServe formed, and the CPU seconds the
server's processes used per request (read from /proc; the clients' own CPU is reported
apart: they share the machine). Writes ``runs/benchmark/serve_load.json``.
"""

from __future__ import annotations

import io
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from urllib.parse import urlsplit
from pathlib import Path
from typing import Literal

import numpy as np
import requests
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import absolute_model_path, check_chosen, check_report, refusal  # noqa: E402

from mnist_common.cli import run  # noqa: E402
from mnist_common.errors import EXIT_USER_ERROR, UserError, exit_on_user_error  # noqa: E402
from mnist_common.machine import describe_machine  # noqa: E402
from mnist_common.mnist import load_mnist  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "runs" / "benchmark" / "serve_load.json"
PICTURES = 50


def digit_pictures(data_dir: str | None, count: int = PICTURES) -> list[tuple[bytes, int]]:
    """(PNG bytes, label) of MNIST test digits drawn as on the page: 288x288, dark ink on white."""
    mnist = load_mnist(data_dir)
    pictures = []
    for image, label in zip(mnist.test_images[:count], mnist.test_labels[:count]):
        buffer = io.BytesIO()
        Image.fromarray(255 - image).resize((288, 288), Image.Resampling.BICUBIC).save(buffer, "PNG")
        pictures.append((buffer.getvalue(), int(label)))
    return pictures


def cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by ``pid`` and all its descendants (Linux /proc)."""
    ticks, todo, seen = 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return ticks / os.sysconf("SC_CLK_TCK")


def run_cell(url: str, pictures, clients: int, seconds: float, backends: str, server_pid: int | None) -> dict:
    """``clients`` threads posting for 1 s of warm-up plus ``seconds``; the figures of the measured window."""
    params = {} if backends == "all" else {"backends": backends}
    start_at = time.perf_counter() + 1.0
    stop_at = start_at + seconds
    lock = threading.Lock()
    latencies, batches, errors, wrong = [], [], [], 0

    def client(k: int) -> None:
        nonlocal wrong
        session = requests.Session()
        i = k
        while (sent := time.perf_counter()) < stop_at:
            data, label = pictures[i % len(pictures)]
            i += clients
            try:
                answer = session.post(f"{url}/predict", data=data, params=params, timeout=60,
                                      headers={"Content-Type": "image/png"})
                body = answer.json()
                ok = answer.status_code == 200 and isinstance(body.get("digit"), int)
                error = None if ok else f"{answer.status_code}: {body.get('error', body)}"
            except (requests.RequestException, ValueError) as err:
                ok, error, body = False, f"{type(err).__name__}: {err}", {}
            if sent < start_at:
                continue
            with lock:
                if ok:
                    latencies.append(time.perf_counter() - sent)
                    batches.append(body["batch"])
                    wrong += body["digit"] != label
                else:
                    errors.append(error)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    time.sleep(max(0.0, start_at - time.perf_counter()))
    cpu0, own0 = (cpu_seconds(server_pid) if server_pid else None), time.process_time()
    for t in threads:
        t.join()
    window = time.perf_counter() - start_at  # until the last request that started in the window answered
    cpu1, own1 = (cpu_seconds(server_pid) if server_pid else None), time.process_time()
    ms = np.array(latencies) * 1000
    done = len(latencies)
    return {
        "backends": backends, "clients": clients, "seconds": round(window, 2), "requests": done,
        "requests_per_s": round(done / window, 1), "errors": len(errors), "first_errors": errors[:3],
        "wrong_digits": wrong, "mean_batch": round(float(np.mean(batches)), 2) if batches else None,
        "p50_ms": round(float(np.percentile(ms, 50)), 1) if done else None,
        "p90_ms": round(float(np.percentile(ms, 90)), 1) if done else None,
        "p99_ms": round(float(np.percentile(ms, 99)), 1) if done else None,
        "max_ms": round(float(ms.max()), 1) if done else None,
        "server_cpu_ms_per_request": round((cpu1 - cpu0) / done * 1000, 2) if done and cpu0 is not None else None,
        "client_cpu_share": round((own1 - own0) / window, 2),  # cores the clients themselves used
    }


def check_answering(url: str) -> None:
    """Refuse a server that does not answer ``/health`` (every request of every cell would be an error)."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=10):
            pass
    except (OSError, ValueError) as err:
        raise UserError(f"--url {url}: no server answers at {url}/health ({getattr(err, 'reason', None) or err})") \
            from None


def start_server(weights: str, keras_weights: str | None, server_args: str, log: Path) -> tuple[str, subprocess.Popen]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    command = [sys.executable, "-m", "lightning_mnist", "serve", "--weights", weights, "--port", str(port),
               *(["--keras_weights", keras_weights] if keras_weights else []), *shlex.split(server_args)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=log.parent, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:  # refused its settings (its own one line, said here), or failed
            reason = refusal(log.read_text(errors="replace"))
            if process.returncode == EXIT_USER_ERROR and reason:
                raise UserError(f"serve refuses to start: {reason}")
            raise SystemExit(f"serve exited with {process.returncode}; see {log}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return url, process
        except OSError:
            time.sleep(0.25)
    process.terminate()
    raise SystemExit(f"serve was not ready in 300 s; see {log}")


def load(weights: str | None = None, keras_weights: str | None = None, url: str | None = None,
         server_args: str = "", clients: list[int] = [1, 8, 32],  # noqa: B006
         backends: list[Literal["torch", "keras", "onnx", "all"]] = ["torch", "all"],  # noqa: B006
         seconds: float = 20.0, data_dir: str | None = None,
         output: Path = DEFAULT_OUTPUT, overwrite: bool = False) -> None:
    """Requests/s and latency of `serve` at several numbers of concurrent clients.

    Args:
        weights: what serve --weights gets (a server is started).
        keras_weights: what serve --keras_weights gets.
        url: benchmark a server already running instead.
        server_args: more serve flags, e.g. "--workers 2".
        clients: the concurrent clients of each cell.
        backends: torch, keras or onnx (that backend alone) or all (the three), one cell per value and number of
            clients.
        seconds: measured seconds a cell.
        data_dir: the folder holding MNIST/raw.
        output: the JSON report.
        overwrite: replace an --output file that is already there.
    """
    if not (weights or url):
        raise UserError("give --weights (to start a server) or --url")
    if seconds <= 0 or not clients or min(clients) < 1:
        raise UserError(f"--seconds must be positive and --clients at least 1, got {seconds} and {clients}")
    address = urlsplit(url or "")
    if url and (address.scheme not in ("http", "https") or not address.hostname):
        raise UserError(f"--url must be a server's address, http://host:port, got {url}")
    output = check_report(output, DEFAULT_OUTPUT, overwrite)
    check_chosen("backends", backends, ("torch", "keras", "onnx", "all"))
    weights = absolute_model_path(weights) if weights else None
    keras_weights = absolute_model_path(keras_weights, "--keras_weights") if keras_weights else None
    pictures = digit_pictures(data_dir)
    process = None
    if url:
        url = url.rstrip("/")
        check_answering(url)
    else:
        started = time.perf_counter()
        url, process = start_server(weights, keras_weights, server_args, output.with_suffix(".server.log"))
        print(f"server ready in {time.perf_counter() - started:.1f} s at {url} ({server_args or 'defaults'})")
    cells = []
    try:
        print("| backends | clients | requests/s | p50 ms | p90 ms | p99 ms | errors | mean batch "
              "| server CPU ms/request |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        for backend in backends:
            for count in clients:
                cell = run_cell(url, pictures, count, seconds, backend, process.pid if process else None)
                cells.append(cell)
                print(f"| {backend} | {count} | {cell['requests_per_s']} | {cell['p50_ms']} | {cell['p90_ms']} | "
                      f"{cell['p99_ms']} | {cell['errors']} | {cell['mean_batch']} | "
                      f"{cell['server_cpu_ms_per_request']} |", flush=True)
                if cell["errors"]:
                    print(f"  errors: {cell['first_errors']}", flush=True)
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
    report = {"url": url, "server_args": server_args, "weights": weights, "machine": describe_machine(),
              "cells": cells}
    output.write_text(json.dumps(report, indent=2))
    print(f"wrote {output} (load average after: {report['machine']['load_average']})")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(load, sys.argv[1:] if argv is None else argv, "python benchmarks/serve_load.py")


if __name__ == "__main__":
    main()

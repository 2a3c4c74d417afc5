"""Inference speed of one model on six runtimes, side by side, and serve's requests/s with each backend alone.

    python benchmarks/inference_speed.py --weights model.keras                     # 5 s a cell, 1 thread
    python benchmarks/inference_speed.py --weights model.keras --seconds 1 --serve_seconds 3

The same model (``--weights``: a ``.ckpt``, ``.keras`` or k-fold ``cv_results.json``) runs, on
the same MNIST test images in the Keras model's layout, as:

- eager torch: the project's networks (:class:`lightning_mnist.models.network.Probabilities`), ``torch.inference_mode``;
- ``torch.compile``: the same module compiled (compilation is warm-up, not measured);
- ``.pt2``: the ``torch.export`` program ``convert`` writes, loaded with ``torch.export.load``;
- ONNX Runtime: the ``.onnx`` model ``convert`` writes;
- Keras: the bridged Keras model, through its compiled predict function (``predict_on_batch``, as serve runs it);
- LiteRT: the ``.tflite`` file ``convert`` writes, on the LiteRT interpreter.

For each batch size (1, 32, 256) every runtime is warmed up, then called on consecutive
batches of the test images for ``--seconds``; reported: images/s, the median and 90th
percentile latency of a call, and max |p - p_eager| over the images it saw (each runs the same
model). Every runtime gets ``--threads`` threads. Then, unless ``--serve_seconds 0``,
``benchmarks/serve_load.py`` runs ``serve`` with each backend alone (``?backends=``) at 1, 8
and 32 clients. The table goes to ``docs/benchmarks.md`` (a marked section) with the command,
the CPU and the load average; the figures to ``runs/benchmark/inference_speed.json``.
"""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import lightning_mnist  # noqa: E402,F401  torch first, then Keras (lightning_mnist/frameworks.py)
from checks import absolute_model_path, check_doc, check_report  # noqa: E402
from mnist_common.cli import run  # noqa: E402
from mnist_common.errors import UserError, exit_on_user_error  # noqa: E402
from mnist_common.files import write_between_markers  # noqa: E402
from mnist_common.machine import describe_machine, load_average  # noqa: E402
from mnist_common.mnist import load_mnist  # noqa: E402

BATCHES = (1, 32, 256)
RUNTIMES = ("eager torch", "torch.compile", ".pt2 (torch.export)", "ONNX Runtime", "Keras", "LiteRT")
SECTION = "inference-speed"
DEFAULT_OUTPUT = REPO / "runs" / "benchmark" / "inference_speed.json"
MAX_THREADS = 256  # torch and TensorFlow take what they are given, and fail only when a runtime starts


def runtimes(weights: str, threads: int, folder: Path) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Each runtime's function from a batch in the Keras model's layout to probabilities, all of one model."""
    import torch

    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)
    from lightning_mnist.checkpoints import load_networks
    from lightning_mnist.formats import exported_program, litert_model, onnx_model
    from lightning_mnist.frameworks import import_keras
    from lightning_mnist.models.network import Probabilities

    module = Probabilities(load_networks(weights)).eval()
    example = (torch.zeros(2, *module.input_shape),)

    def torch_runner(model) -> Callable[[np.ndarray], np.ndarray]:
        def call(x: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model(torch.from_numpy(x)).numpy()
        return call

    compiled = torch.compile(module, dynamic=False)  # one graph per batch size: what a server's fixed batches get
    exported_program.save(module, example, folder / "model.pt2")
    onnx_model.save(module, example, folder / "model.onnx")
    session = onnx_model.session(folder / "model.onnx", threads)
    [given] = session.get_inputs()
    keras = import_keras()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    keras_model = litert_model.keras_model(module, named_output=False)
    litert_model.save(module, example, folder / "model.tflite")
    del keras
    return {
        "eager torch": torch_runner(module),
        "torch.compile": torch_runner(compiled),
        ".pt2 (torch.export)": exported_program.load(folder / "model.pt2"),
        "ONNX Runtime": lambda x: session.run(None, {given.name: x})[0],
        "Keras": lambda x: np.asarray(keras_model.predict_on_batch(x)),
        "LiteRT": litert_model.load(folder / "model.tflite", threads),
    }


def measure(call: Callable[[np.ndarray], np.ndarray], images: np.ndarray, batch: int, seconds: float,
            reference: np.ndarray) -> dict:
    """Calls on consecutive batches of ``images`` for ``seconds`` (after warm-up): images/s, latency, max |dp|."""
    starts = list(range(0, len(images) - batch + 1, batch))
    for start in starts[:3]:  # warm-up: graphs traced, compiled, allocated
        call(images[start:start + batch])
    latencies, worst, i = [], 0.0, 0
    stop_at = time.perf_counter() + seconds
    while time.perf_counter() < stop_at or len(latencies) < 3:
        start = starts[i % len(starts)]
        x = images[start:start + batch]
        began = time.perf_counter()
        p = call(x)
        latencies.append(time.perf_counter() - began)
        worst = max(worst, float(np.abs(np.asarray(p) - reference[start:start + batch]).max()))
        i += 1
    ms = np.array(latencies) * 1000
    return {"images_per_s": round(batch * len(ms) / (ms.sum() / 1000), 1), "calls": len(ms),
            "p50_ms": round(float(np.median(ms)), 3), "p90_ms": round(float(np.percentile(ms, 90)), 3),
            "max_dp": worst}


def serve_cells(weights: str, seconds: float, threads: int, data_dir: str | None, output: Path) -> list[dict]:
    """``benchmarks/serve_load.py`` with each backend alone at 1, 8 and 32 clients."""
    from serve_load import load

    load(weights=weights, server_args=f"--threads {threads}", clients=[1, 8, 32], backends=["torch", "keras", "onnx"],
         seconds=seconds, data_dir=data_dir, output=output, overwrite=True)  # the report's own companion
    return json.loads(output.read_text())["cells"]


def markdown(report: dict) -> str:
    machine = report["machine"]
    lines = [f"`{report['command']}`", "",
             f"{machine['cpu']}, {machine['cores']} cores, {report['threads']} thread(s) per runtime, "
             f"{machine['date']}, load average {machine['load_average']} before and {report['load_after']} after "
             f"(other work shares these cores: read the figures with it). Model: `{report['weights']}`.", "",
             "| runtime | " + " | ".join(f"batch {b}: images/s | p50 ms" for b in report["batches"]) +
             " | max \\|p - p_eager\\| |",
             "| --- | " + " | ".join("---: | ---:" for _ in report["batches"]) + " | ---: |"]
    for name in RUNTIMES:
        cells = [report["inference"][name][str(b)] for b in report["batches"]]
        best = [report["fastest"][str(b)] == name for b in report["batches"]]
        lines.append(f"| {name} | " + " | ".join(
            (f"**{c['images_per_s']:,.0f}**" if fast else f"{c['images_per_s']:,.0f}") + f" | {c['p50_ms']:.2f}"
            for c, fast in zip(cells, best)) + f" | {max(c['max_dp'] for c in cells):.1e} |")
    lines += ["", "Fastest per batch size (bold): " + ", ".join(
        f"{b}: {report['fastest'][str(b)]}" for b in report["batches"]) + "."]
    if report.get("serve"):
        lines += ["", f"`serve --threads {report['threads']}` (one inference worker), each backend alone "
                      f"(`?backends=`), {report['serve_seconds']:g} s a cell:", "",
                  "| backend | clients | requests/s | p50 ms | p90 ms | mean batch | errors |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for cell in report["serve"]:
            lines.append(f"| {cell['backends']} | {cell['clients']} | {cell['requests_per_s']} | {cell['p50_ms']} | "
                         f"{cell['p90_ms']} | {cell['mean_batch']} | {cell['errors']} |")
    return "\n".join(lines)


def speed(weights: str, seconds: float = 5.0, serve_seconds: float = 10.0, threads: int = 1, images: int = 2048,
          data_dir: str | None = None, doc: Path = REPO / "docs" / "benchmarks.md",
          output: Path = DEFAULT_OUTPUT, overwrite: bool = False) -> None:
    """Images/s and latency of one model on six runtimes, and serve's requests/s per backend.

    Args:
        weights: the model: a .ckpt, .keras or k-fold cv_results.json (MNIST's shapes).
        seconds: measured seconds per runtime and batch size.
        serve_seconds: measured seconds per serve cell (0: no serve cells).
        threads: threads of every runtime (and of serve's worker).
        images: how many MNIST test images the calls cycle through (at least 256).
        data_dir: the folder holding MNIST/raw.
        doc: the Markdown file the table is written into (its inference-speed section).
        output: the JSON report (and serve_load.json beside it).
        overwrite: replace an --output file that is already there.
    """
    if seconds <= 0 or serve_seconds < 0 or not 1 <= threads <= MAX_THREADS or not 256 <= images <= 10_000:
        raise UserError(f"--seconds must be positive, --serve_seconds not negative, --threads between 1 and "
                        f"{MAX_THREADS} and --images between 256 and 10000; got {seconds}, {serve_seconds}, {threads}, "
                        f"{images}")
    output = check_report(output, DEFAULT_OUTPUT, overwrite)
    check_doc(doc)
    weights = absolute_model_path(weights)
    machine = describe_machine()  # before the runs: the load they started under
    mnist = load_mnist(data_dir)
    x = np.ascontiguousarray((mnist.test_images[:images].astype(np.float32) / 255.0)[..., None])
    report = {"command": "python benchmarks/inference_speed.py " + shlex.join(sys.argv[1:]), "weights": weights,
              "machine": machine, "threads": threads, "batches": list(BATCHES), "seconds": seconds,
              "serve_seconds": serve_seconds, "inference": {}, "fastest": {}}
    with tempfile.TemporaryDirectory() as folder:
        calls = runtimes(weights, threads, Path(folder))
        reference = np.concatenate([calls["eager torch"](x[i:i + 256]) for i in range(0, len(x), 256)])
        print(f"| runtime | batch | images/s | p50 ms | p90 ms | max dp |\n| --- | --- | --- | --- | --- | --- |")
        for name in RUNTIMES:
            report["inference"][name] = {}
            for batch in BATCHES:
                cell = report["inference"][name][str(batch)] = measure(calls[name], x, batch, seconds, reference)
                print(f"| {name} | {batch} | {cell['images_per_s']} | {cell['p50_ms']} | {cell['p90_ms']} | "
                      f"{cell['max_dp']:.1e} |", flush=True)
    for batch in BATCHES:
        report["fastest"][str(batch)] = max(RUNTIMES, key=lambda n: report["inference"][n][str(batch)]["images_per_s"])
    output.parent.mkdir(parents=True, exist_ok=True)
    if serve_seconds > 0:
        report["serve"] = serve_cells(weights, serve_seconds, threads, data_dir, output.with_name("serve_load.json"))
    report["load_after"] = load_average()
    output.write_text(json.dumps(report, indent=2))
    print(f"wrote {output}; table: {write_between_markers(doc, SECTION, markdown(report), title='Benchmarks')}")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(speed, sys.argv[1:] if argv is None else argv, "python benchmarks/inference_speed.py")


if __name__ == "__main__":
    main()

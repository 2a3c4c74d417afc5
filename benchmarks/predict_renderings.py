"""How well ``predict`` reads pictures of digits, and how long one prediction takes from the command line.

1. Renders ``--count`` seeded-random MNIST test digits as users draw, scan or
   photograph them (:mod:`mnist_common.renderings`: large canvases, off centre,
   thick and thin strokes, transparency, palette, JPEG, noise, small digits,
   inverted, low contrast, 16-bit), writes them as files, and predicts them with
   the MNIST-style preprocessing and with the notebook's, reporting accuracy
   overall and per style next to the model's accuracy on the same digits as
   MNIST gives them (the ceiling).
2. Times ``python -m lightning_mnist predict imagen.png`` from process start to
   exit for both backends (``--timing_runs`` each, median), with predict's own
   ``--timings`` breakdown (start-up before predict, framework imports, loading
   weights, inference).

    python benchmarks/predict_renderings.py                          # the seed model, 1000 digits
    python benchmarks/predict_renderings.py --count 200 --timing_runs 1
    python benchmarks/predict_renderings.py --weights checkpoints/last.ckpt --keep renderings/

Writes ``predict_renderings.json`` into ``--output_dir``. Timings are for reading, never for asserting.
"""

from __future__ import annotations

import collections
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from mnist_common.cli import run  # noqa: E402
from mnist_common.errors import UserError, exit_on_user_error  # noqa: E402
from mnist_common.images.decoding import ImageError  # noqa: E402
from mnist_common.images.preparation import prepare  # noqa: E402
from mnist_common.keras_file import KERAS_SUFFIX  # noqa: E402
from mnist_common.mnist import TEST_IMAGES, load_mnist  # noqa: E402
from mnist_common.renderings import STYLES, write_renderings  # noqa: E402
from mnist_common.runs import check_writable  # noqa: E402
from mnist_common.settings import check_seed_range  # noqa: E402

SEED = REPO.parent / "shared" / "seed"


def accuracy(args, weights: Path, directory: Path) -> dict:
    from lightning_mnist.predictors import load_predictor

    mnist = load_mnist(args.data_dir)
    started = time.perf_counter()
    renderings = write_renderings(mnist.test_images, mnist.test_labels, directory, args.count, args.seed)
    render_s = time.perf_counter() - started
    predictor = load_predictor(weights, args.backend)
    labels = np.array([r.label for r in renderings])
    ceiling = predictor.predict_proba(mnist.test_images[[r.index for r in renderings]] / np.float32(255)).argmax(1)
    out = {"count": len(renderings), "seed": args.seed, "weights": str(weights), "backend": args.backend,
           "render_seconds": round(render_s, 1),
           "mnist_pixels_accuracy": float((ceiling == labels).mean()), "preprocessing": {}}
    for mode in ("mnist", "notebook"):
        started = time.perf_counter()
        pixels, failed = [], []
        for r in renderings:
            try:
                pixels.append(prepare(r.path, mode).pixels)
            except ImageError as err:
                failed.append(str(err))
                pixels.append(np.zeros((28, 28), np.float32))
        prep_s = time.perf_counter() - started
        predicted = predictor.predict_proba(np.stack(pixels)).argmax(1)
        right = predicted == labels
        by_style = collections.defaultdict(list)
        for r, ok in zip(renderings, right):
            by_style[r.style].append(bool(ok))
        out["preprocessing"][mode] = {
            "accuracy": float(right.mean()), "correct": int(right.sum()), "failed_to_read": failed,
            "ms_per_image": round(1000 * prep_s / len(renderings), 1),
            "by_style": {s: f"{sum(by_style[s])}/{len(by_style[s])}" for s in STYLES if s in by_style},
            "wrong": [f"{Path(r.path).name} -> {int(p)}" for r, p, ok in
                      zip(renderings, predicted, right) if not ok][:50],
        }
    return out


TIMINGS = re.compile(r"^timings: (.*)$", re.M)


def time_cli(args, weights: dict[str, Path]) -> list[dict]:
    rows = []
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    entries = {"python -m lightning_mnist predict": ["-m", "lightning_mnist", "predict"]}
    for entry, prefix in entries.items():
        for backend, path in weights.items():
            walls, breakdowns = [], []
            for _ in range(args.timing_runs):
                command = [sys.executable, *prefix, str(args.image), "--weights", str(path), "--backend", backend,
                           "--timings"]
                started = time.perf_counter()
                proc = subprocess.run(command, capture_output=True, text=True, env=env)  # relative paths: the user's
                walls.append(time.perf_counter() - started)
                if proc.returncode != 0:
                    raise SystemExit(f"{' '.join(command)} failed:\n{proc.stderr[-2000:]}")
                found = TIMINGS.search(proc.stderr)
                breakdowns.append(found.group(1) if found else "")
                answer = proc.stdout.splitlines()[0]
            rows.append({"entry": entry, "backend": backend, "weights": path.name,
                         "wall_seconds_median": round(statistics.median(walls), 2),
                         "wall_seconds": [round(w, 2) for w in walls], "breakdowns": breakdowns, "answer": answer})
            print(f"{entry:36s} {backend:5s} {path.name:16s} median {statistics.median(walls):5.2f} s  "
                  f"[{breakdowns[len(breakdowns) // 2]}]", flush=True)
    return rows


def measure(count: int = 1000, seed: int = 0, weights: Path = SEED / "cnn_model.keras",
            backend: Literal["torch", "keras"] = "torch", image: Path = SEED / "imagen.png", timing_runs: int = 3,
            data_dir: str | None = None, keep: Path | None = None, output_dir: Path = Path("outputs")) -> None:
    """Accuracy of predict on rendered MNIST test digits (each preprocessing), and predict's timings.

    Args:
        count: MNIST test digits to render.
        seed: the renderings' seed.
        weights: model to score (default: the notebook's seed model); a .keras file is converted to a checkpoint
            first, for the PyTorch timing.
        backend: backend for the accuracy.
        image: the picture the timing predicts.
        timing_runs: runs per backend and entry point (0: no timing).
        data_dir: holds MNIST/raw ($MNIST_DATA_DIR, else ./data).
        keep: write the renderings here (default: a temporary folder).
        output_dir: where predict_renderings.json goes.
    """
    if not 1 <= count <= TEST_IMAGES or timing_runs < 0:  # each rendering is a different test digit
        raise UserError(f"--count must be from 1 to {TEST_IMAGES} (the test digits) and --timing_runs at least 0, "
                        f"got {count} and {timing_runs}")
    check_seed_range("--seed", seed)
    check_writable(output_dir, "--output_dir")
    if not weights.is_file():
        raise UserError(f"--weights {weights}: no such file")
    if timing_runs:
        try:  # the picture the timing predicts, prepared now: a bad one is refused before minutes of scoring
            prepare(image)
        except ImageError as err:
            raise UserError(f"--image {err}") from None
    if keep is not None and keep.exists() and (not keep.is_dir() or any(keep.iterdir())):
        raise UserError(f"--keep {keep}: {'not a folder' if not keep.is_dir() else 'not empty'}; name a new or "
                        f"empty folder for the renderings")
    args = SimpleNamespace(count=count, seed=seed, weights=weights, backend=backend, image=image,
                           timing_runs=timing_runs, data_dir=data_dir, keep=keep, output_dir=output_dir)
    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights
        ckpt = weights
        if weights.suffix.lower() == KERAS_SUFFIX:
            from lightning_mnist.conversion import keras_to_checkpoint

            ckpt = Path(tmp) / "seed.ckpt"
            keras_to_checkpoint(weights, ckpt, check_images=1000, data_dir=args.data_dir)
        result = accuracy(args, ckpt if args.backend == "torch" else weights, args.keep or Path(tmp) / "renderings")
        result["weights"] = str(weights)
        print(f"{result['count']} renderings, {args.backend} backend, weights {weights}")
        print(f"  model on the same digits as MNIST pixels: {result['mnist_pixels_accuracy']:.2%}")
        for mode, r in result["preprocessing"].items():
            print(f"  --preprocess {mode:8s}: {r['accuracy']:.2%} ({r['correct']}/{result['count']}), "
                  f"{r['ms_per_image']} ms an image; by style {r['by_style']}")
        if args.timing_runs:
            result["cli_timings"] = time_cli(args, {"torch": ckpt, "keras": weights})
    args.output_dir.mkdir(parents=True, exist_ok=True)
    out = args.output_dir / "predict_renderings.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(measure, sys.argv[1:] if argv is None else argv, "python benchmarks/predict_renderings.py")


if __name__ == "__main__":
    main()

"""``python -m lightning_mnist predict IMAGE [IMAGE ...] --weights FILE``: the digit in pictures.

The notebook's last cell, for any number of PNG (or JPEG, ...) files, with either
framework:

* ``--weights`` names a Lightning checkpoint (``.ckpt``), the notebook's Keras model
  (``.keras``), or a k-fold run (its ``cv_results.json``, or the folder holding it),
  whose fold models' probabilities are averaged;
* ``--backend auto`` runs a checkpoint with PyTorch and a ``.keras`` file with Keras;
  ``torch`` or ``keras`` runs either file with that framework, converting the
  weights in memory (:mod:`lightning_mnist.convert`). Both give the same
  probabilities within 1e-5;
* every image is preprocessed the MNIST way (:mod:`mnist_common.images`), the same
  pixels for both backends; ``--preprocess notebook`` is the notebook's plain
  resize-and-invert, for comparison;
* all images are predicted as one batch. Per image the digit, its probability and
  the ten class probabilities are printed (``--json``: one JSON object a line);
  ``--show OUT.png`` draws each input, the 28x28 image the model saw and the
  probabilities.

An image that cannot be predicted (missing, not an image, truncated, blank, a
decompression bomb, ...) gets one ``error: FILE: reason`` line on stderr; the
other images are still predicted and the exit code is 2. A bad ``--weights`` file
ends the command with one error line and exit code 2.

A checkpoint run with PyTorch loads only torch (``weights_only=True``) into
:class:`~lightning_mnist.models.network.MnistCNN`, the network a
:class:`~lightning_mnist.models.MnistClassifier` wraps (its ``predict_proba`` is
this network's softmax), so start-up does not pay for importing Lightning.
"""

from __future__ import annotations

import argparse
import atexit
import gc
import json
import os
import pickle
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mnist_common.errors import ArgumentParser, EXIT_USER_ERROR, UserError, exit_on_user_error
from mnist_common.images import PREPROCESSINGS, ImageError, Prepared, prepare
from mnist_common.results import CV_RESULTS_FILE, pyplot

BACKENDS = ("auto", "torch", "keras")
CKPT_SUFFIX = ".ckpt"
KERAS_SUFFIX = ".keras"
SHOW_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
MAX_SHOWN = 40  # rows of a --show figure


# ---------------------------------------------------------------------------------------------
# What --weights names


@dataclass
class Weights:
    """The model files ``--weights`` names: one file, or a k-fold run's fold models."""

    source: Path
    paths: list[Path]
    framework: str | None = None  # "lightning" or "keras" for a k-fold run

    @property
    def ensemble(self) -> bool:
        return len(self.paths) > 1 or self.framework is not None

    def default_backend(self) -> str:
        if self.framework in ("lightning", "keras"):
            return "torch" if self.framework == "lightning" else "keras"
        return "keras" if self.paths[0].suffix.lower() == KERAS_SUFFIX else "torch"


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _check_model_file(path: Path, what: str) -> Path:
    if not path.exists():
        raise UserError(f"{what} {path}: no such file")
    if not path.is_file():
        raise UserError(f"{what} {path}: not a file")
    if path.stat().st_size == 0:
        raise UserError(f"{what} {path}: empty file (0 bytes)")
    if path.suffix.lower() not in (CKPT_SUFFIX, KERAS_SUFFIX):
        raise UserError(f"{what} {path}: expected a Lightning checkpoint ({CKPT_SUFFIX}), the notebook's Keras "
                        f"model ({KERAS_SUFFIX}) or a k-fold run's {CV_RESULTS_FILE}")
    return path


def _fold_path(model_path: str, results: Path) -> Path:
    """A fold's ``model_path``: absolute, else relative to the working directory or to the results file's folders."""
    path = Path(model_path)
    if path.is_absolute():
        return path
    for base in (Path.cwd(), results.parent, *results.parent.resolve().parents):
        if (base / path).exists():
            return base / path
    return path


def inspect_weights(value: str | os.PathLike) -> Weights:
    """Resolve ``--weights`` without importing any framework; :class:`UserError` when it cannot be used."""
    try:
        return _inspect_weights(Path(value))
    except OSError as err:  # permissions, I/O errors
        raise UserError(f"weights {value}: cannot be read ({err.strerror or _one_line(err)})") from None


def _inspect_weights(source: Path) -> Weights:
    if source.is_dir() and (source / CV_RESULTS_FILE).is_file():
        source = source / CV_RESULTS_FILE
    if source.suffix.lower() != ".json":
        return Weights(source, [_check_model_file(source, "weights")])
    if not source.is_file():
        raise UserError(f"weights {source}: no such file")
    try:
        results = json.loads(source.read_text())
    except (OSError, ValueError, UnicodeDecodeError) as err:
        raise UserError(f"weights {source}: not a readable k-fold {CV_RESULTS_FILE} ({_one_line(err)})") from None
    folds = results.get("folds") if isinstance(results, dict) else None
    if not isinstance(folds, list) or not folds or not all(
            isinstance(f, dict) and isinstance(f.get("model_path"), str) and f["model_path"] for f in folds):
        raise UserError(f"weights {source}: not a k-fold {CV_RESULTS_FILE} (it needs a list of folds, "
                        f"each with a model_path)")
    framework = results.get("framework") if results.get("framework") in ("lightning", "keras") else "unknown"
    paths = [_check_model_file(_fold_path(f["model_path"], source), f"fold {f.get('fold', i)} model")
             for i, f in enumerate(folds)]
    return Weights(source, paths, framework)


# ---------------------------------------------------------------------------------------------
# The two backends


@dataclass
class Timings:
    """Seconds spent in each phase of one command."""

    startup: float | None = None  # interpreter start to predict.main (Python and the CLI's imports)
    preprocess: float = 0.0
    imports: float = 0.0  # importing the framework
    weights: float = 0.0  # reading (and converting) the model files
    inference: float = 0.0
    output: float = 0.0
    total: float = 0.0  # predict.main, start to end

    def describe(self) -> str:
        parts = [f"{name} {value:.3f} s" for name, value in (
            ("start-up before predict", self.startup), ("preprocessing", self.preprocess),
            ("framework imports", self.imports), ("loading weights", self.weights),
            ("inference", self.inference), ("output", self.output), ("predict total", self.total),
        ) if value is not None]
        if self.startup is not None:
            parts.append(f"since process start {self.startup + self.total:.3f} s")
        return "timings: " + ", ".join(parts)


@dataclass
class Predictor:
    """Class probabilities of (N, 28, 28) float32 images from one model or the mean of several."""

    backend: str
    models: list = field(default_factory=list)

    def predict_proba(self, pixels: np.ndarray) -> np.ndarray:
        if self.backend == "torch":
            import torch

            x = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)[:, None])  # (N, 1, 28, 28)
            with torch.inference_mode():
                probs = torch.stack([model(x) for model in self.models]).mean(0)
            return probs.numpy().astype(np.float32)
        x = np.ascontiguousarray(pixels, dtype=np.float32)[..., None]  # (N, 28, 28, 1), channels-last
        probs = np.mean([np.asarray(model(x, training=False)) for model in self.models], axis=0)
        return probs.astype(np.float32)


def _torch_checkpoint_network(path: Path):
    """softmax(MnistCNN(x)) holding a Lightning checkpoint's weights, read with ``weights_only=True``.

    This is what ``MnistClassifier.predict_proba`` computes, without importing Lightning.
    """
    import torch

    from lightning_mnist.keras_weights import network_state_dict
    from lightning_mnist.models.network import MnistCNN

    with open(path, "rb") as f:
        head = f.read(4)
    if not (zipfile.is_zipfile(path) or head[:1] == b"\x80"):  # torch.save writes a zip (or, long ago, a pickle)
        raise UserError(f"weights {path}: not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise UserError(f"weights {path}: not a readable checkpoint (it holds objects that a safe, weights-only "
                        f"load refuses)") from None
    except Exception as err:  # truncated or damaged
        raise UserError(f"weights {path}: not a readable PyTorch checkpoint ({_one_line(err)})") from None
    state_dict = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise UserError(f"weights {path}: not a checkpoint of MnistClassifier "
                        f"(it holds a {type(checkpoint).__name__} without a state_dict)")
    network = MnistCNN().eval()
    network.load_state_dict(network_state_dict(state_dict, f"weights {path}"), strict=True)

    def proba(x):
        return torch.softmax(network(x), dim=1)

    return proba


def _torch_model(path: Path):
    if path.suffix.lower() == CKPT_SUFFIX:
        return _torch_checkpoint_network(path)
    from lightning_mnist.convert import load_classifier  # a .keras file, checked and converted in memory

    return load_classifier(path).predict_proba


def _keras_model(path: Path):
    from lightning_mnist.convert import load_keras_model  # checks a .keras file; converts a checkpoint in memory

    return load_keras_model(path)


def load_predictor(weights: Weights, backend: str, timings: Timings | None = None) -> Predictor:
    """The model(s) of ``weights`` on ``backend`` ("torch" or "keras"); :class:`UserError` for bad files."""
    timings = timings if timings is not None else Timings()
    started = time.perf_counter()
    if backend == "torch":
        import torch  # noqa: F401
    else:
        from mnist_common.frameworks import import_keras

        import_keras()
    loaded = time.perf_counter()
    timings.imports += loaded - started
    build = _torch_model if backend == "torch" else _keras_model
    models = []
    for path in weights.paths:
        try:
            models.append(build(path))
        except UserError as err:
            message = str(err)
            raise UserError(message if str(path) in message else f"weights {path}: {message}") from None
        except Exception as err:  # a framework failing on a file that passed the checks
            raise UserError(f"weights {path}: cannot be loaded ({_one_line(err)})") from None
    timings.weights += time.perf_counter() - loaded
    return Predictor(backend, models)


# ---------------------------------------------------------------------------------------------
# Output


@dataclass
class Prediction:
    image: Prepared
    probabilities: np.ndarray  # (10,)

    @property
    def digit(self) -> int:
        return int(np.argmax(self.probabilities))

    @property
    def probability(self) -> float:
        return float(self.probabilities[self.digit])

    def as_dict(self, backend: str, weights: Weights, preprocess: str) -> dict:
        return {"image": self.image.path, "digit": self.digit, "probability": self.probability,
                "probabilities": [float(p) for p in self.probabilities], "backend": backend,
                "weights": str(weights.source), "models": len(weights.paths), "preprocess": preprocess,
                "inverted": self.image.inverted, "size": list(self.image.size)}

    def describe(self) -> str:
        classes = "  ".join(f"{k}: {p:.4f}" for k, p in enumerate(self.probabilities))
        return f"{self.image.path}: {self.digit} (probability {self.probability:.4f})\n  {classes}"


def show(predictions: list[Prediction], out: Path, title: str) -> Path:
    """One row per image: the input, the 28x28 image the model saw, the ten probabilities."""
    plt = pyplot()
    rows = predictions[:MAX_SHOWN]
    fig, axes = plt.subplots(len(rows), 3, figsize=(10, 2.4 * len(rows)), squeeze=False,
                             gridspec_kw={"width_ratios": [1, 1, 2]})
    for (ax_in, ax_seen, ax_bar), pred in zip(axes, rows):
        if pred.image.display is not None:
            ax_in.imshow(pred.image.display)
        ax_in.set_title(Path(pred.image.path).name, fontsize=9)
        ax_seen.imshow(pred.image.pixels, cmap="gray", vmin=0.0, vmax=1.0)
        ax_seen.set_title("28x28 the model saw", fontsize=9)
        for ax in (ax_in, ax_seen):
            ax.set_xticks([])
            ax.set_yticks([])
        colours = ["C1" if k == pred.digit else "C0" for k in range(10)]
        ax_bar.bar(range(10), pred.probabilities, color=colours)
        ax_bar.set_xticks(range(10))
        ax_bar.set_ylim(0, 1)
        ax_bar.set_title(f"predicted {pred.digit} (probability {pred.probability:.4f})", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    try:
        fig.savefig(out, dpi=80)
    except (OSError, ValueError) as err:
        raise UserError(f"--show {out}: cannot be written ({_one_line(err)})") from None
    finally:
        plt.close(fig)
    return out


# ---------------------------------------------------------------------------------------------
# Command line




def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m lightning_mnist predict",
        description="Predict the digit in PNG (or JPEG, ...) images with a Lightning checkpoint, the notebook's "
                    "Keras model or a k-fold ensemble, on PyTorch or Keras.")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="picture(s) of one digit each")
    parser.add_argument("--weights", required=True, metavar="FILE",
                        help=f"a Lightning checkpoint ({CKPT_SUFFIX}), the notebook's Keras model ({KERAS_SUFFIX}), "
                             f"or a k-fold run's {CV_RESULTS_FILE} (or its folder): the mean of its fold models")
    parser.add_argument("--backend", choices=BACKENDS, default="auto",
                        help="framework that runs the model; auto: PyTorch for a checkpoint, Keras for a .keras "
                             "file (default: %(default)s)")
    parser.add_argument("--preprocess", choices=PREPROCESSINGS, default="mnist",
                        help="mnist: crop, fit 20x20, centre of mass, invert only dark-on-light (default); "
                             "notebook: the notebook's plain resize to 28x28 and invert")
    parser.add_argument("--json", action="store_true", help="print one JSON object per image and line")
    parser.add_argument("--show", metavar="OUT.png", type=Path,
                        help="save a figure: each input, the 28x28 the model saw, the ten probabilities")
    parser.add_argument("--timings", action="store_true",
                        help="print where the time went (imports, weights, inference) to stderr")
    return parser


def _seconds_since_process_start() -> float | None:
    """Seconds since this process started (Linux; None elsewhere), to include Python's own start-up."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        with open(f"/proc/{os.getpid()}/stat") as f:
            started = int(f.read().rsplit(")", 1)[1].split()[19]) / ticks
        with open("/proc/uptime") as f:
            uptime = float(f.read().split()[0])
        return max(uptime - started, 0.0)
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def _check_show(out: Path | None) -> None:
    if out is None:
        return
    if out.suffix.lower() not in SHOW_SUFFIXES:
        raise UserError(f"--show {out}: name a {', '.join(SHOW_SUFFIXES)} file")
    if not (out.parent if str(out.parent) else Path(".")).is_dir():
        raise UserError(f"--show {out}: folder {out.parent} does not exist")


def run(argv: list[str] | None = None) -> int:
    """The command; returns its exit code (0, or 2 when any image failed). Bad weights raise :class:`UserError`."""
    startup = _seconds_since_process_start()
    started = time.perf_counter()
    timings = Timings(startup=startup)
    args = build_parser().parse_args(argv)
    weights = inspect_weights(args.weights)
    backend = weights.default_backend() if args.backend == "auto" else args.backend
    _check_show(args.show)

    prepared: list[Prepared] = []
    failed = 0
    t0 = time.perf_counter()
    for path in args.images:
        try:
            prepared.append(prepare(path, args.preprocess, keep_display=args.show is not None))
        except ImageError as err:
            failed += 1
            print(f"error: {err}", file=sys.stderr, flush=True)
    timings.preprocess = time.perf_counter() - t0

    predictions: list[Prediction] = []
    if prepared:
        predictor = load_predictor(weights, backend, timings)
        t0 = time.perf_counter()
        probs = predictor.predict_proba(np.stack([p.pixels for p in prepared]))
        timings.inference = time.perf_counter() - t0
        if not np.isfinite(probs).all():
            raise UserError(f"weights {weights.source}: the model gives non-finite probabilities")
        predictions = [Prediction(p, row) for p, row in zip(prepared, probs)]

    t0 = time.perf_counter()
    for pred in predictions:
        if args.json:
            print(json.dumps(pred.as_dict(backend, weights, args.preprocess)), flush=False)
        else:
            print(pred.describe())
    sys.stdout.flush()
    if args.show is not None and predictions:
        if len(predictions) > MAX_SHOWN:
            print(f"note: --show draws the first {MAX_SHOWN} of {len(predictions)} images", file=sys.stderr)
        where = f"{len(weights.paths)} fold models of {weights.source}" if weights.ensemble else str(weights.source)
        show(predictions, args.show, f"{backend} backend, {where}, {args.preprocess} preprocessing")
        if not args.json:
            print(f"figure: {args.show}")
    timings.output = time.perf_counter() - t0
    timings.total = time.perf_counter() - started
    if args.timings:
        print(timings.describe(), file=sys.stderr)
    return EXIT_USER_ERROR if failed else 0


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    # torch, Lightning and TensorFlow leave object graphs whose final garbage collection adds
    # about 2 s to the exit of a command that is done; freezing them at exit skips that work
    # (everything this command writes is flushed and closed before).
    atexit.unregister(gc.freeze)  # once, however often main() runs in one process
    atexit.register(gc.freeze)
    code = run(argv)
    if code:
        sys.exit(code)


if __name__ == "__main__":
    main()

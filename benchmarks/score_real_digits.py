"""Score a folder of labelled digit pictures with ``predict``'s own code; list and draw the misses.

Each file's label is the first character of its name (``5_owner-repo_digit.png`` is a 5), as
``fetch_real_digits.py`` writes them; files whose name does not start with a digit are skipped.
Every picture goes through exactly what ``python -m lightning_mnist predict`` runs
(:func:`mnist_common.images.preparation.prepare`, then :func:`lightning_mnist.predictors.load_predictor`'s
``predict_proba``), so a score here is a score of predict. A picture that cannot be read or
prepared counts as a miss, with its reason.

    python benchmarks/score_real_digits.py /work/real_digits --weights ../shared/seed/cnn_model.keras
    python benchmarks/score_real_digits.py FOLDER --weights runs/lightning/version_0/checkpoints/last.ckpt \\
        --preprocess notebook --output_dir outputs/real_digits

Prints the accuracy (per ``kind`` too when a manifest describes the files: ``--manifest``, or a
``real_digits.csv`` in the folder, or this folder's ``real_digits.csv`` when its file names match)
and one line per miss; writes ``<tag>.json`` (every picture's result, the accuracies and the
preprocessing times) and ``<tag>_misses.png`` (each miss: the original picture, the 28x28 the
model saw, "label->predicted probability" and the file name) into ``--output_dir``. Exit code 0
once scored, whatever the score; 2 for a bad folder, weights file or flag.
"""

from __future__ import annotations

import collections
import csv
import statistics
import sys
import time
from pathlib import Path
from typing import Literal

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fetch_real_digits import MANIFEST, out_names  # noqa: E402  (this folder is sys.path[0] when run)
from mnist_common.cli import run  # noqa: E402
from mnist_common.errors import UserError, exit_on_user_error  # noqa: E402
from mnist_common.figures import mistakes_grid  # noqa: E402
from mnist_common.images.decoding import ImageError  # noqa: E402
from mnist_common.images.preparation import prepare  # noqa: E402
from mnist_common.machine import describe_machine  # noqa: E402
from mnist_common.results import write_json  # noqa: E402

PROG = "python benchmarks/score_real_digits.py"
LABELS = "0123456789"


def labelled_files(folder: Path) -> tuple[list[Path], list[str]]:
    """(pictures whose name starts with a digit, sorted; names of the other files, skipped)."""
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder")
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    return [p for p in files if p.name[0] in LABELS], [p.name for p in files if p.name[0] not in LABELS]


def manifest_kinds(folder: Path, files: list[Path], manifest: Path | None) -> tuple[dict[str, dict], Path | None]:
    """File name -> its manifest row (kind, repository, ...), from ``manifest`` or one found beside the files."""
    candidates = [manifest] if manifest is not None else [folder / MANIFEST.name, MANIFEST]
    for candidate in candidates:
        if not candidate.is_file():
            if manifest is not None:
                raise UserError(f"--manifest {manifest}: no such file")
            continue
        with open(candidate, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or not {"label", "repository", "path", "kind"} <= set(rows[0]):
            raise UserError(f"{candidate}: not a real-digit manifest (label, repository, path, kind columns)")
        by_name = dict(zip(out_names(rows), rows))
        if manifest is not None or any(p.name in by_name for p in files):
            return by_name, candidate
    return {}, None


def score(folder: Path, weights: Path, backend: Literal["auto", "torch", "keras"] = "auto",
          preprocess: Literal["mnist", "notebook"] = "mnist", manifest: Path | None = None,
          output_dir: Path = Path("outputs/real_digits"), tag: str | None = None) -> int:
    """Score every labelled picture in a folder (label = first character of the file name) with predict's code.

    Args:
        folder: the pictures, e.g. the one fetch_real_digits.py rebuilds.
        weights: a Lightning checkpoint (.ckpt), a Keras model (.keras, or a legacy .h5) or a k-fold run's
            cv_results.json.
        backend: the framework that runs the model; auto: PyTorch for a checkpoint, Keras for a .keras file.
        preprocess: predict's --preprocess: mnist (the default) or notebook.
        manifest: the CSV describing the files (its kind column gives per-kind scores); default: a
            real_digits.csv in the folder, else benchmarks/real_digits.csv when its file names match.
        output_dir: where <tag>.json and <tag>_misses.png go.
        tag: the output files' name; default: the weights file's stem and the preprocessing.
    """
    from lightning_mnist.predictors import load_predictor, resolve

    resolve(weights, backend)  # a bad --weights fails before any picture is read
    files, skipped = labelled_files(folder)
    if not files:
        raise UserError(f"{folder}: no file whose name starts with a digit (the label)")
    rows, manifest_path = manifest_kinds(folder, files, manifest)
    tag = tag or f"{Path(weights).stem}_{preprocess}"

    prepared, errors, seconds = {}, {}, []
    for path in files:
        started = time.perf_counter()
        try:
            prepared[path.name] = prepare(path, preprocess, keep_display=True)
        except ImageError as err:
            errors[path.name] = err.reason
        seconds.append(time.perf_counter() - started)
    predictor = load_predictor(weights, backend)
    names = list(prepared)
    probabilities = (predictor.predict_proba(np.stack([prepared[n].pixels for n in names])) if names
                     else np.zeros((0, 10), np.float32))
    by_name = dict(zip(names, probabilities))

    results = []
    for path in files:
        row = rows.get(path.name, {})
        result = {"file": path.name, "label": int(path.name[0]), "kind": row.get("kind", "unknown"),
                  "repository": row.get("repository")}
        if path.name in errors:
            result.update(predicted=None, probability=None, right=False, error=errors[path.name])
        else:
            p = by_name[path.name]
            digit = int(p.argmax())
            result.update(predicted=digit, probability=round(float(p[digit]), 4),
                          probability_of_label=round(float(p[result["label"]]), 4), right=digit == result["label"],
                          size=list(prepared[path.name].size), inverted=prepared[path.name].inverted)
        results.append(result)

    right = sum(r["right"] for r in results)
    kinds = collections.defaultdict(list)
    digits = collections.defaultdict(list)
    for r in results:
        kinds[r["kind"]].append(r["right"])
        digits[r["label"]].append(r["right"])
    misses = sorted((r for r in results if not r["right"]),  # the most confident first, unreadable ones last
                    key=lambda r: (r.get("error") is not None, -(r["probability"] or 0)))
    report = {
        "folder": str(folder), "weights": str(weights), "backend": predictor.backend, "preprocess": preprocess,
        "manifest": str(manifest_path) if manifest_path else None, "images": len(results), "right": right,
        "accuracy": right / len(results),
        "sources": len({r["repository"] for r in results if r["repository"]}) or None,
        "by_kind": {k: f"{sum(v)}/{len(v)}" for k, v in sorted(kinds.items())},
        "by_digit": {str(k): f"{sum(v)}/{len(v)}" for k, v in sorted(digits.items())},
        "preprocess_ms": {"mean": round(1000 * statistics.mean(seconds), 1),
                          "median": round(1000 * statistics.median(seconds), 1),
                          "max": round(1000 * max(seconds), 1), "max_file": files[int(np.argmax(seconds))].name},
        "machine": describe_machine(), "skipped": skipped,
        "misses": [r["file"] for r in misses], "results": results,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_json(report, output_dir / f"{tag}.json")
    grid = mistakes_grid(
        np.stack([prepared[r["file"]].pixels if r["file"] in prepared else np.zeros((28, 28), np.float32)
                  for r in misses]) if misses else np.zeros((0, 28, 28), np.float32),
        [{**r, "caption": f"{r['label']}->? unreadable" if r.get("error") else None, "name": r["file"]}
         for r in misses],
        output_dir / f"{tag}_misses.png",
        f"{predictor.describe()}, {preprocess} preprocessing: {len(misses)} of {len(results)} real pictures wrong",
        pictures=[prepared[r["file"]].display if r["file"] in prepared else None for r in misses])

    print(f"{right}/{len(results)} right ({right / len(results):.1%}) in {folder}, {predictor.describe()}, "
          f"--preprocess {preprocess}")
    if rows:
        print("  by kind: " + ", ".join(f"{k} {v}" for k, v in report["by_kind"].items()))
    print("  by digit: " + ", ".join(f"{k}: {v}" for k, v in report["by_digit"].items()))
    print(f"  preprocessing: {report['preprocess_ms']['mean']} ms an image on average, median "
          f"{report['preprocess_ms']['median']}, slowest {report['preprocess_ms']['max']} "
          f"({report['preprocess_ms']['max_file']})")
    if skipped:
        print(f"  skipped {len(skipped)} file(s) whose name does not start with a digit: {', '.join(skipped[:5])}"
              + (" ..." if len(skipped) > 5 else ""))
    for r in misses:
        if r.get("error"):
            print(f"  miss {r['file']}: {r['label']} -> unreadable ({r['error']})")
        else:
            print(f"  miss {r['file']}: {r['label']} -> {r['predicted']} (p {r['probability']:.2f}; "
                  f"p of {r['label']}: {r['probability_of_label']:.2f}) [{r['kind']}]")
    print(f"report: {json_path}\nmisses: {grid}")
    return 0



@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    sys.exit(run(score, argv, PROG, positional=("folder",)))


if __name__ == "__main__":
    main()

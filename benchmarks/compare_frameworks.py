"""Lightning vs the Keras reference: same data, same settings, same machine, one run.

Each framework trains in its own process (see the import trap in REFERENCE.md),
one after the other, through its own command line; both write the shared
``results.json``, whose per-epoch history carries cumulative training seconds.

    python benchmarks/compare_frameworks.py --epochs 1                  # the notebook's settings, 1 epoch
    python benchmarks/compare_frameworks.py --epochs 10 --lightning-config configs/fast.yaml

Writes ``benchmark.json`` and ``benchmark.png`` (validation accuracy against
training seconds) into ``--output-dir``. Timings are for reading, never for asserting.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from mnist_common.mnist import load_mnist
from mnist_common.figures import pyplot
from mnist_common.results import read_json
from mnist_common.splits import make_split

REPO = Path(__file__).resolve().parents[1]


def lightning_command(args, out: Path) -> list[str]:
    command = [sys.executable, "-m", "lightning_mnist", "fit"]
    if args.lightning_config:
        command += ["--config", str(args.lightning_config)]
    else:
        command += ["--data.batch_size", args.batch_size, "--model.lr", args.lr, "--trainer.max_epochs", args.epochs]
    command += ["--trainer.accelerator", args.accelerator, "--trainer.enable_progress_bar", "false",
                "--checkpoint.dirpath", out / "checkpoints", "--trainer.logger.init_args.save_dir", out / "runs"]
    if args.subset:
        command += ["--data.subset", args.subset]
    if args.data_dir:
        command += ["--data.data_dir", args.data_dir]
    return [str(c) for c in command]


def keras_command(args, out: Path) -> list[str]:
    command = [sys.executable, "-m", "keras_reference", "train", "--epochs", args.epochs, "--batch-size",
               args.batch_size, "--lr", args.lr, "--output-dir", out, "--model-path", out / "model.keras"]
    if args.subset:
        command += ["--subset", args.subset]
    if args.data_dir:
        command += ["--data-dir", args.data_dir]
    return [str(c) for c in command]


def run(name: str, command: list[str], out: Path, num_train: int, target: float) -> dict:
    print(f"--- {name}: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"error: {name} failed (exit {proc.returncode}), see {out / f'{name}.log'}")
    results = read_json(next(out.rglob("results.json")))
    history, previous, epochs = results["history"], 0.0, []
    for row in history:
        seconds = row["seconds"] - previous
        previous = row["seconds"]
        epochs.append({"epoch": row["epoch"], "seconds": round(seconds, 2),
                       "images_per_second": round(num_train / seconds, 1), "val_acc": row["val_acc"]})
    reached = next((row["seconds"] for row in history if row["val_acc"] >= target), None)
    best = results["best_epoch"]
    return {
        "framework": name, "epochs": epochs, "test_acc": results["test_acc"], "best_epoch": best,
        "train_seconds": history[-1]["seconds"], "seconds_to_best": history[best]["seconds"],
        "seconds_to_target_val_acc": reached, "process_seconds": round(wall, 1),
        "peak_memory_mb": results.get("peak_memory_mb"), "history": history,
    }


def plot(runs: list[dict], target: float, path: Path) -> None:
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run_ in runs:
        history = run_["history"]
        ax.plot([0] + [r["seconds"] for r in history], [None] + [r["val_acc"] for r in history], marker="o",
                label=f"{run_['framework']} (test {run_['test_acc']:.2%})")
    ax.axhline(target, color="gray", linestyle=":", label=f"target {target:.1%}")
    ax.set_xlabel("training seconds (validation included)")
    ax.set_ylabel("validation accuracy")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subset", type=int, default=None, help="stratified subset of the training images")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--accelerator", choices=["cpu", "gpu"], default="cpu",
                        help="Lightning's accelerator; Keras uses a GPU whenever TensorFlow sees one")
    parser.add_argument("--lightning-config", type=Path, default=None,
                        help="train Lightning with this config instead (e.g. configs/fast.yaml)")
    parser.add_argument("--target-acc", type=float, default=0.98, help="validation accuracy to time")
    parser.add_argument("--frameworks", default="lightning,keras")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--output-dir", type=Path, default=REPO / "runs" / "benchmark")
    args = parser.parse_args()

    out = args.output_dir / time.strftime("%Y%m%d-%H%M%S")
    labels = load_mnist(args.data_dir).train_labels
    num_train = len(make_split(labels, subset=args.subset).train)
    runs = []
    for name in args.frameworks.split(","):
        folder = out / name
        folder.mkdir(parents=True)
        command = (lightning_command if name == "lightning" else keras_command)(args, folder)
        runs.append(run(name, command, folder, num_train, args.target_acc))

    report = {"settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "num_train": num_train, "runs": runs}
    if len(runs) == 2:
        light, keras = runs
        first = lambda r: r["epochs"][0]["seconds"]  # noqa: E731
        report["ratios"] = {
            "first_epoch_seconds_lightning_over_keras": round(first(light) / first(keras), 3),
            "train_seconds_lightning_over_keras": round(light["train_seconds"] / keras["train_seconds"], 3),
            "lightning_train_seconds_over_keras_seconds_to_best": round(
                light["train_seconds"] / keras["seconds_to_best"], 3),
            "test_acc_difference_points": round(100 * (light["test_acc"] - keras["test_acc"]), 2),
        }
    (out / "benchmark.json").write_text(json.dumps(report, indent=2) + "\n")
    plot(runs, args.target_acc, out / "benchmark.png")

    print(f"\n{'framework':<10} {'epoch':>5} {'seconds':>8} {'images/s':>9} {'val acc':>8}")
    for run_ in runs:
        for row in run_["epochs"]:
            print(f"{run_['framework']:<10} {row['epoch']:>5} {row['seconds']:>8.1f} "
                  f"{row['images_per_second']:>9.0f} {row['val_acc']:>8.4f}")
    for run_ in runs:
        print(f"{run_['framework']}: test acc {run_['test_acc']:.4f}, train {run_['train_seconds']:.1f} s, "
              f"best epoch {run_['best_epoch']} at {run_['seconds_to_best']:.1f} s, "
              f"val acc >= {args.target_acc} at {run_['seconds_to_target_val_acc']} s, "
              f"peak memory {run_['peak_memory_mb']} MiB, process {run_['process_seconds']} s")
    for key, value in report.get("ratios", {}).items():
        print(f"{key}: {value}")
    print(f"report: {out / 'benchmark.json'}\nfigure: {out / 'benchmark.png'}")


if __name__ == "__main__":
    main()

"""Seconds to a target validation accuracy (where a run stops) and to a target test accuracy (read off each epoch's
weights afterwards): Lightning, Keras and the plain loop.

Each contender trains the notebook's network through its own command line (as
``compare_frameworks.py`` runs them) with one recipe for speed: batch size, a one-cycle
learning rate peaking at ``--lr`` over ``--max_epochs`` epochs, the notebook's augmentation or
none, bfloat16 autocast for the torch contenders where ``--precision bf16-mixed`` (Keras'
command has no precision flag: it trains in float32), data in memory, one validation pass per
epoch. Lightning and the plain loop stop after the first epoch whose validation accuracy reaches
``--target`` (Lightning: ``EarlyStopping(stopping_threshold=...)`` on ``val/acc``) and are tested
then; Keras' command cannot stop at a threshold, so its time is that of its first epoch at the
target, read off its history, and its test accuracy is after all ``--max_epochs`` (said in
the table). Seconds are the commands' own training seconds (validation included, process start,
data loading and the final test excluded; a compile would be included).

Each contender also keeps every epoch's weights (``--checkpoint.save_top_k -1`` in both frameworks, the plain
loop's ``--keep_every_epoch``; the saving counts in the epoch's seconds), and after the runs this script
tests each of those files on the 10,000 test images, all three the same way (in torch, float32, through
the checkpoint and ``.keras`` loaders ``test`` and ``predict`` use: a Keras file's weights are Keras',
read exactly). That gives the seconds to ``--test_target`` test accuracy, what issue #23 asks for, read off
the per-epoch test accuracies as Keras' seconds are read off its history. The test figures decide
nothing: no run stops on them and no setting is chosen by them.

    python benchmarks/time_to_accuracy.py --batch_size 128 --lr 5e-3 --max_epochs 4 --augment --doc docs/benchmarks.md

Timings are for reading, never for asserting.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_frameworks import REPO, grouped_steps, run  # noqa: E402
from checks import check_chosen, check_counts, check_doc, check_marker, check_seeds  # noqa: E402

from mnist_common.cli import run as run_command  # noqa: E402
from mnist_common.errors import exit_on_user_error  # noqa: E402
from mnist_common.files import write_between_markers  # noqa: E402
from mnist_common.machine import describe_machine, load_average  # noqa: E402
from mnist_common.mnist import load_mnist  # noqa: E402
from mnist_common.results import write_json  # noqa: E402
from mnist_common.runs import allocate_run_dir  # noqa: E402
from mnist_common.splits import make_split  # noqa: E402


KEEP_EVERY_EPOCH = ("--checkpoint.save_top_k", "-1")  # both frameworks: every epoch's weights, tested afterwards
EPOCH_FILE = re.compile(r"^epoch(\d+)\b.*\.(ckpt|keras)$")  # Lightning's, Keras' and the plain loop's names


def commands(recipe: dict, out: Path) -> dict[str, list[str]]:
    """Each contender's command line for ``recipe``, writing under ``out``."""
    shared = {"--data.batch_size": recipe["batch_size"], "--model.lr": recipe["lr"], "--model.lr_schedule": "onecycle",
              "--trainer.max_epochs": recipe["max_epochs"], "--data.augment": str(recipe["augment"]).lower(),
              "--data.subset": recipe["subset"], "--data.data_dir": recipe["data_dir"],
              "--seed_everything": recipe.get("seed"), "--data.steps_per_execution": grouped_steps(recipe)}
    flags = [str(part) for key, value in shared.items() if value is not None for part in (key, value)]
    plain = {"--batch_size": recipe["batch_size"], "--lr": recipe["lr"], "--lr_schedule": "onecycle",
             "--max_epochs": recipe["max_epochs"], "--precision": recipe["precision"],
             "--target_val_acc": recipe["target"], "--subset": recipe["subset"], "--data_dir": recipe["data_dir"],
             "--seed": recipe.get("seed"), "--steps_per_execution": grouped_steps(recipe)}
    return {
        "lightning": [sys.executable, "-m", "lightning_mnist", "fit", *flags, *KEEP_EVERY_EPOCH,
                      "--trainer.precision", recipe["precision"],
                      "--trainer.enable_progress_bar", "false", "--early_stopping.monitor", "val/acc",
                      "--early_stopping.mode", "max", "--early_stopping.stopping_threshold", str(recipe["target"]),
                      "--early_stopping.patience", "100", "--output_dir", str(out / "lightning")],
        "keras": [sys.executable, "-m", "keras_reference", "train", *flags, *KEEP_EVERY_EPOCH,
                  "--early_stopping.patience", "100",
                  "--output_dir", str(out / "keras")],
        "torch": [sys.executable, str(REPO / "benchmarks" / "plain_torch_loop.py"), "--output_dir", str(out / "torch"),
                  *[str(part) for key, value in plain.items() if value is not None for part in (key, value)],
                  "--augment" if recipe["augment"] else "--no_augment", "--keep_every_epoch"],
    }


def test_every_epoch(folders: list[Path], data_dir: str | None, batch_size: int = 1000) -> list[list[float]]:
    """For each folder, the test accuracy of each epoch's weights a contender kept there, in epoch order (the test
    images read once for all).

    The project (hence torch and Lightning) is imported here, after the runs: the contenders' processes inherit
    this one's environment, which importing Lightning changes, and would share the cores with its threads.
    """
    import torch

    from lightning_mnist.checkpoints import load_classifier
    from lightning_mnist.data.datamodule import MNISTDataModule

    data = MNISTDataModule(data_dir=data_dir)
    data.setup("test")
    images, labels = data.datasets["test"].tensors

    @torch.inference_mode()
    def accuracy(path: Path) -> float:
        classifier = load_classifier(path)
        right = sum(int((classifier(images[i:i + batch_size]).argmax(1) == labels[i:i + batch_size]).sum())
                    for i in range(0, len(images), batch_size))
        return right / len(images)

    def kept(folder: Path) -> list[Path]:
        """The epoch files in ``folder``, in epoch order."""
        numbered = ((EPOCH_FILE.match(path.name), path) for path in folder.rglob("epoch*"))
        return [path for _, path in sorted((int(m.group(1)), path) for m, path in numbered if m)]

    return [[accuracy(path) for path in kept(folder)] for folder in folders]


def shown_value(value) -> str:
    """A recipe value as a shell takes it (a list quoted)."""
    return f"'{value}'" if isinstance(value, list) else str(value)


def markdown(report: dict) -> str:
    machine, recipe = report["machine"], report["recipe"]
    shown = " ".join((f"--{k}" if v else f"--no_{k}") if isinstance(v, bool) else f"--{k} {shown_value(v)}"
                     for k, v in {**recipe, "steps_per_execution": grouped_steps(recipe)}.items()
                     if v is not None and k != "data_dir")
    seeded = recipe.get("seeds") is not None
    lines = [f"`python benchmarks/time_to_accuracy.py {shown}`, {machine['date']}, {machine['cpu']} "
             f"({machine['cores']} cores), load average {machine['load_average']} before, "
             f"{report['load_average_after']} after; {report['num_train']} training images.", "",
             f"| contender |{' seed |' if seeded else ''} seconds to val acc >= {recipe['target']} | epochs then | "
             f"test acc | tested after | seconds to test acc >= {recipe['test_target']} | test acc per epoch | "
             "seconds per epoch | process s |", "| --- " * (9 + seeded) + "|"]
    for row in report["runs"]:
        reached, tested = row["seconds_to_target_val_acc"], row["seconds_to_test_target"]
        to_test = "not reached" if tested is None else f"**{tested:.1f}** (epoch {row['epochs_to_test_target']})"
        epochs = ", ".join(f"{e['seconds']:.1f}" for e in row["epochs"])
        per_epoch = ", ".join(f"{100 * acc:.2f}" for acc in row["test_acc_per_epoch"])
        seed = f" {row['seed']} |" if seeded else ""
        lines.append(f"| {row['framework']} |{seed} "
                     f"{'not reached' if reached is None else f'**{reached:.1f}**'} | "
                     f"{row['epochs_to_target'] or '-'} | {100 * row['test_acc']:.2f} % | "
                     f"{row['tested_after']} epochs | {to_test} | {per_epoch} | {epochs} | {row['process_seconds']} |")
    lines.append("")
    if seeded:
        for name in dict.fromkeys(row["framework"] for row in report["runs"]):
            times = [row["seconds_to_test_target"] for row in report["runs"] if row["framework"] == name]
            reached = sorted(t for t in times if t is not None)
            spread = f"{reached[0]:.1f}-{reached[-1]:.1f} s" if reached else "never"
            lines.append(f"- {name}: {100 * recipe['test_target']:.1f} % test accuracy in {spread} "
                         f"({len(reached)} of {len(times)} seeds).")
        lines.append("")
    best, best_test = report.get("fastest"), report.get("fastest_to_test_target")
    if best:
        lines.append(f"Fastest to the target validation accuracy: {best['framework']}, {best['seconds']:.1f} s "
                     f"(test {100 * best['test_acc']:.2f} %).")
    if best_test:
        lines.append(f"Fastest to {100 * recipe['test_target']:.1f} % test accuracy: {best_test['framework']}, "
                     f"{best_test['seconds']:.1f} s (each epoch's weights tested after the run; no run stopped or "
                     f"was chosen on them).")
    return "\n".join(lines).rstrip()


def time_to_accuracy(target: float = 0.99, test_target: float = 0.99, batch_size: int = 128, lr: float = 5e-3,
                     max_epochs: int = 3,
                     augment: bool = False, precision: Literal["32", "bf16-mixed"] = "bf16-mixed",
                     steps_per_execution: int = 1,
                     subset: int | None = None, data_dir: str | None = None, seeds: list[int] | None = None,
                     frameworks: list[Literal["lightning", "keras", "torch"]] = ("lightning", "torch", "keras"),
                     output_dir: Path = REPO / "runs" / "benchmark", doc: Path | None = None,
                     marker: str = "time-to-accuracy") -> dict:
    """Train each contender with the recipe until the target validation accuracy; print and write the table.

    Args:
        target: the validation accuracy to reach (where Lightning and the plain loop stop).
        test_target: the test accuracy whose seconds are read off each epoch's tested weights.
        batch_size: training batch size.
        lr: the one-cycle schedule's peak learning rate.
        max_epochs: the schedule's length (and the most epochs trained).
        augment: the notebook's augmentation.
        precision: ``bf16-mixed`` for the torch contenders (bfloat16 autocast), or ``32``.
        steps_per_execution: batches per Lightning training step and per call of Keras' training function
            (``--data.steps_per_execution`` of both); the plain loop takes their images at once too.
        subset: a stratified subset of the training images (for a quick check).
        data_dir: the folder holding MNIST/raw.
        seeds: run the recipe once per seed (every contender's weights, shuffling, dropout and augmentation), for
            its spread; default: one run with each command's own seed (42).
        frameworks: the contenders, in the order they run.
        output_dir: a new folder here gets the logs and time_to_accuracy.json.
        doc: also write the table into this Markdown file between its ``marker`` markers.
        marker: the name of the markers (a document can hold the tables of several recipes).
    """
    check_counts(target=target, test_target=test_target, batch_size=batch_size, lr=lr, max_epochs=max_epochs,
                 steps_per_execution=steps_per_execution, subset=subset)
    check_seeds(seeds)
    check_doc(doc)
    check_marker(marker)
    check_chosen("frameworks", frameworks, ("lightning", "keras", "torch"))
    recipe = {"target": target, "test_target": test_target, "batch_size": batch_size, "lr": lr,
              "max_epochs": max_epochs, "augment": augment, "precision": precision,
              "steps_per_execution": steps_per_execution, "subset": subset,
              "data_dir": data_dir, "seeds": None if seeds is None else list(seeds)}
    machine = describe_machine()
    out = allocate_run_dir(output_dir, "time_to_accuracy")
    num_train = len(make_split(load_mnist(data_dir).train_labels, subset=subset).train)
    runs = []
    for seed in seeds or [None]:
        folder = out if seed is None else out / f"seed_{seed}"
        folder.mkdir(exist_ok=True)
        every = commands({**recipe, "seed": seed}, folder)
        for name in frameworks:
            result = run(name, every[name], folder, num_train, target)
            reached = next((i + 1 for i, row in enumerate(result["history"]) if row["val_acc"] >= target), None)
            result.update(seed=seed, folder=str(folder / name), epochs_to_target=reached,
                          tested_after=len(result["history"]))
            runs.append(result)
    # after all the runs: no contender's time shares the cores with this testing
    for result, tested in zip(runs, test_every_epoch([Path(r["folder"]) for r in runs], data_dir), strict=True):
        if len(tested) != len(result["history"]):
            sys.exit(f"error: {result['framework']} kept {len(tested)} epochs' weights for {len(result['history'])} "
                     f"epochs trained, see {result['folder']}")
        first = next((i for i, acc in enumerate(tested) if acc >= test_target), None)
        result.update(test_acc_per_epoch=tested, epochs_to_test_target=None if first is None else first + 1,
                      seconds_to_test_target=None if first is None else result["history"][first]["seconds"])
    report = {"machine": machine, "recipe": recipe, "num_train": num_train, "runs": runs,
              "load_average_after": load_average()}
    for key, figure in (("fastest", "seconds_to_target_val_acc"), ("fastest_to_test_target", "seconds_to_test_target")):
        timed = [r for r in runs if r[figure] is not None]
        if timed:
            best = min(timed, key=lambda r: r[figure])
            report[key] = {"framework": best["framework"], "seconds": best[figure], "test_acc": best["test_acc"],
                           "seed": best["seed"]}
    write_json(report, out / "time_to_accuracy.json")
    table = markdown(report)
    print("\n" + table)
    if doc:
        print(f"table: {write_between_markers(doc, marker, table, title='Benchmarks')}")
    print(f"report: {out / 'time_to_accuracy.json'}")
    return report


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run_command(time_to_accuracy, sys.argv[1:] if argv is None else argv, "python benchmarks/time_to_accuracy.py")


if __name__ == "__main__":
    main()

"""Lightning vs the Keras reference vs a plain PyTorch loop: same data, same settings, same machine, one run.

Each contender trains in its own process, one after the other, through its own command
line (``lightning_mnist fit``, ``keras_reference train``, ``benchmarks/plain_torch_loop.py``);
all write the shared ``results.json``, whose per-epoch history carries cumulative
training seconds (validation included).

    python benchmarks/compare_frameworks.py --max_epochs 1                    # the notebook's settings
    python benchmarks/compare_frameworks.py --architecture keras_io --batch_size 128 --lr 1e-3
    python benchmarks/compare_frameworks.py --max_epochs 10 --lightning_config configs/fast.yaml
    python benchmarks/compare_frameworks.py --repeats 3 --frameworks '[lightning, torch]'

With ``--repeats N`` the contenders take turns for N rounds, every other round in the reverse order
(lightning, keras, torch; torch, keras, lightning; keras, torch, lightning; ...: ``running_orders``), so a
machine whose speed drifts slows them alike and none always runs first or after the same one; each row is the
contender's median round (by training seconds), each ratio is the median of the rounds' ratios, and every round's
ratio is listed too: the spread a single run would hide.

Writes ``benchmark.json`` and ``benchmark.png`` (validation accuracy against training
seconds) into a new folder of ``--output_dir``. The table also gives each contender's achieved
GFLOP/s (the network's training work per image, counted by ``kernel_efficiency.py``, times the
images per second) against this machine's measured float32 matmul rate. Timings are for
reading, never for asserting.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import check_chosen, check_counts, check_doc, check_fit_config  # noqa: E402

from mnist_common.cli import run as run_command
from mnist_common.errors import UserError, exit_on_user_error
from mnist_common.files import write_between_markers
from mnist_common.figures import pyplot, save_figure
from mnist_common.machine import describe_machine, load_average
from mnist_common.mnist import load_mnist
from mnist_common.model_files import load_architecture
from mnist_common.results import read_json, write_json
from mnist_common.runs import allocate_run_dir
from mnist_common.splits import make_split

REPO = Path(__file__).resolve().parents[1]
# What the Lightning path no longer does per step, against the plain loop (measured by benchmarks/step_overhead.py).
LIGHTNING_CUTS = ("the classifier steps its optimizer itself (Lightning's manual optimization) unless gradient "
                  "accumulation or clipping is asked for, which skips the automatic loop's closure and its hooks; "
                  "metrics are logged once per epoch (no per-step self.log, no .item()) and accumulate as one "
                  "running sum and count each (what torchmetrics' MeanMetric and MulticlassAccuracy would add: "
                  "step_overhead.py's lightning_torchmetrics); batches come from in-memory tensors in one indexing "
                  "op; no progress bar in these runs (what a bar adds: step_overhead.py's lightning_progress and "
                  "lightning_rich)")


def check_accelerator(accelerator: str) -> None:
    """``gpu`` where torch sees none: fit would refuse it only when its turn came, after the matmul rate's minute.
    torch is imported here only then (this script's own process trains nothing)."""
    if accelerator == "gpu":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--accelerator gpu: no CUDA device is visible here; use --accelerator cpu")


def grouped_steps(settings: dict) -> int | None:
    """The settings' ``steps_per_execution`` for a command line: None for the default, 1, which is left out, so
    the command lines (and tables) of runs without it stay as they were before the setting."""
    steps = settings.get("steps_per_execution", 1)
    return steps if steps > 1 else None


def commands(args: dict, out: Path) -> dict[str, list[str]]:
    """The command line each contender runs with ``args`` (the settings), writing under ``out``."""
    shared = {"--model.architecture": args["architecture"], "--data.batch_size": args["batch_size"],
              "--model.lr": args["lr"], "--trainer.max_epochs": args["max_epochs"], "--data.subset": args["subset"],
              "--data.data_dir": args["data_dir"], "--data.steps_per_execution": grouped_steps(args)}
    flags = [str(part) for key, value in shared.items() if value is not None for part in (key, value)]
    lightning = ["--config", str(args["lightning_config"])] if args["lightning_config"] else flags
    return {
        "lightning": [sys.executable, "-m", "lightning_mnist", "fit", *lightning, "--trainer.accelerator",
                      args["accelerator"], "--trainer.enable_progress_bar", "false", "--early_stopping.patience",
                      "100", "--output_dir", str(out / "lightning")],
        "keras": [sys.executable, "-m", "keras_reference", "train", *flags, "--early_stopping.patience", "100",
                  "--output_dir", str(out / "keras")],
        "torch": [sys.executable, str(REPO / "benchmarks" / "plain_torch_loop.py"), "--output_dir", str(out / "torch"),
                  *[str(part) for key, value in shared.items() if value is not None
                    for part in (f"--{key.split('.')[-1]}", value)]],
    }


def run(name: str, command: list[str], out: Path, num_train: int, target: float, env: dict | None = None) -> dict:
    """Run one contender's command (with ``env`` added to the environment); its per-epoch seconds and scores."""
    print(f"--- {name}: {' '.join(command)}", flush=True)
    started = time.perf_counter()
    # run where this script was started, so that relative paths (--output_dir, an architecture file) mean the same
    proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - started
    (out / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        sys.exit(f"error: {name} failed (exit {proc.returncode}), see {out / f'{name}.log'}")
    results = read_json(next((out / name).rglob("results.json")))
    history, previous, epochs = results["history"], 0.0, []
    for row in history:
        seconds = row["seconds"] - previous
        previous = row["seconds"]
        epochs.append({"epoch": row["epoch"], "seconds": round(seconds, 2),
                       "images_per_second": round(num_train / seconds, 1), "val_acc": row["val_acc"]})
    reached = next((row["seconds"] for row in history if row["val_acc"] >= target), None)
    best = results["best_epoch"]
    return {
        "framework": name, "command": " ".join(command), "epochs": epochs, "test_acc": results["test_acc"],
        "best_epoch": best,
        "train_seconds": history[-1]["seconds"], "seconds_to_best": history[best]["seconds"],
        "seconds_to_target_val_acc": reached, "process_seconds": round(wall, 1),
        "peak_memory_mb": results.get("peak_memory_mb"), "threads": results.get("threads"), "history": history,
    }


def kernel_efficiency(architecture: str, batch_size: int) -> dict:
    """``kernel_efficiency.py``'s figures (work per image, matmul rates), from its own process."""
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "kernel_efficiency.py"), "--architecture",
                           str(architecture), "--batch_size", str(batch_size)], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"error: kernel_efficiency.py failed (exit {proc.returncode}): {proc.stderr[-500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def achieved(run_: dict, num_train: int, efficiency: dict) -> tuple[float, float]:
    """GFLOP/s of a contender's training (validation seconds included) and its share of the float32 matmul rate."""
    epochs = len(run_["epochs"])
    rate = efficiency["training_flops_per_image"] * num_train * epochs / run_["train_seconds"] / 1e9
    return round(rate, 1), round(100 * rate / efficiency["matmul_gflops_float32"], 1)


def markdown(report: dict) -> str:
    """The report as the Markdown docs/benchmarks.md shows: the command, the machine, a row per contender, ratios."""
    machine, settings = report["machine"], report["settings"]
    settings = {**settings, "steps_per_execution": grouped_steps(settings)}
    shown = {k: settings[k] for k in ("architecture", "batch_size", "steps_per_execution", "lr", "max_epochs", "subset",
                                      "lightning_config") if settings.get(k) is not None}
    repeats = settings.get("repeats", 1)
    if repeats > 1:
        shown["repeats"] = repeats
    rounds = f"; each row the median of {repeats} rounds, each ratio the median of the rounds' ratios" \
        if repeats > 1 else ""
    lines = [f"`python benchmarks/compare_frameworks.py {' '.join(f'--{k} {v}' for k, v in shown.items())}`, "
             f"{machine['date']}, {machine['cpu']} ({machine['cores']} cores), load average {machine['load_average']} "
             f"before, {report['load_average_after']} after; {report['num_train']} training images{rounds}.", "",
             "| contender | seconds per epoch | images/s | training s (validation included) | test acc | "
             "peak memory MiB | GFLOP/s | % of matmul peak |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run_ in report["runs"]:
        seconds = ", ".join(f"{e['seconds']:.1f}" for e in run_["epochs"])
        speeds = ", ".join(f"{e['images_per_second']:.0f}" for e in run_["epochs"])
        lines.append(f"| {run_['framework']} | {seconds} | {speeds} | {run_['train_seconds']:.1f} | "
                     f"{100 * run_['test_acc']:.2f} % | {run_['peak_memory_mb']} | {run_['gflops']} | "
                     f"{run_['percent_of_matmul_peak']} % |")
    efficiency = report["kernel_efficiency"]
    lines += ["", "; ".join(f"{key.replace('_', ' ')}: **{value}**" for key, value in report["ratios"].items())]
    if repeats > 1:
        lines += ["", "Each round: " + "; ".join(f"{key.replace('_', ' ')} {', '.join(map(str, values))}"
                                                 for key, values in report["ratios_per_round"].items())
                  + "; the contenders ran in the orders " + ", ".join(map("-".join, report["orders_per_round"]))
                  + "."]
    lines += ["", f"Training work {efficiency['training_flops_per_image'] / 1e6:.1f} MFLOP per image (forward and "
              f"backward); a float32 matmul reaches {efficiency['matmul_gflops_float32']} GFLOP/s here "
              f"(bfloat16: {efficiency['matmul_gflops_bfloat16']}), {efficiency['threads']} threads. "
              f"Lightning's path: {LIGHTNING_CUTS}."]
    steps = settings["steps_per_execution"]
    if steps:
        lines[-1] += (f" With --steps_per_execution {steps}: each batch Lightning takes holds {steps} batches, one "
                      f"optimizer step each (its loop and hooks run once per {steps} steps); Keras compiles with "
                      f"steps_per_execution={steps}; the plain loop takes the {steps} batches' images at once too "
                      f"(the same data path), then steps as before.")
    chosen = ", ".join(f"{run_['framework']} {run_['threads']}" for run_ in report["runs"] if run_.get("threads"))
    if chosen:  # what each torch command chose at its start (fewer where other work held cores: mnist_common.threads)
        lines[-1] += f" Threads of the torch contenders' kernels: {chosen}."
    return "\n".join(lines)


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
    save_figure(fig, path, dpi=100)


def ratios(runs: dict[str, dict]) -> dict[str, float]:
    """Lightning's seconds over Keras' and the plain loop's, and the test accuracy difference, of one set of runs."""
    first = lambda r: r["epochs"][0]["seconds"]  # noqa: E731
    found = {}
    if "lightning" in runs and "keras" in runs:
        light, keras = runs["lightning"], runs["keras"]
        found.update({
            "first_epoch_seconds_lightning_over_keras": round(first(light) / first(keras), 3),
            "train_seconds_lightning_over_keras": round(light["train_seconds"] / keras["train_seconds"], 3),
            "test_acc_difference_points": round(100 * (light["test_acc"] - keras["test_acc"]), 2),
        })
    if "lightning" in runs and "torch" in runs:
        found["train_seconds_lightning_over_plain_torch"] = round(
            runs["lightning"]["train_seconds"] / runs["torch"]["train_seconds"], 3)
    return found


def running_orders(frameworks: list[str], repeats: int) -> list[tuple[str, ...]]:
    """The order the contenders run in, round by round: each contender first in turn, every order followed by
    its reverse, so that over any two rounds each pair of contenders ran in both orders (the ratios are taken
    within a round). One order kept for every round biases them: 2026-12-07, batch 128, Lightning / plain loop
    was 1.112 with Keras between them and 1.047 with the plain loop first, within the hour on one host."""
    turns = [(*frameworks[start:], *frameworks[:start]) for start in range(len(frameworks))]
    orders = [order for turn in turns for order in (turn, turn[::-1])]
    return [orders[index % len(orders)] for index in range(repeats)]


def median_round(rounds: list[dict]) -> dict:
    """The round whose training seconds are the median (the lower of the middle two for an even count)."""
    ordered = sorted(rounds, key=lambda r: r["train_seconds"])
    return ordered[(len(ordered) - 1) // 2]


def summarise(rounds: list[dict[str, dict]]) -> tuple[dict[str, dict], dict[str, float], dict[str, list[float]]]:
    """Each contender's median round; the median over rounds of each ratio; every round's ratios.

    A ratio is taken within a round (contenders that ran minutes apart, on the same machine state)
    and the median taken over rounds, so that a round another process slowed moves it least.
    """
    names = list(rounds[0])
    medians = {name: median_round([r[name] for r in rounds]) for name in names}
    per_round: dict[str, list[float]] = {}
    for one in rounds:
        for key, value in ratios(one).items():
            per_round.setdefault(key, []).append(value)
    return medians, {key: round(statistics.median(values), 3) for key, values in per_round.items()}, per_round


def compare(max_epochs: int = 1, architecture: str = "notebook", batch_size: int = 32, lr: float = 1e-4,
            subset: int | None = None, data_dir: str | None = None, accelerator: Literal["cpu", "gpu"] = "cpu",
            lightning_config: Path | None = None, target_acc: float = 0.98,
            frameworks: list[Literal["lightning", "keras", "torch"]] = ("lightning", "keras", "torch"),
            repeats: int = 1, output_dir: Path = REPO / "runs" / "benchmark", doc: Path | None = None,
            steps_per_execution: int = 1) -> None:
    """Train each contender with the same settings, one after the other; report seconds per epoch and ratios.

    Args:
        max_epochs: epochs each contender trains (no early stopping).
        architecture: the network (a preset or a description file), the same for all.
        batch_size: training batch size.
        lr: Adam's learning rate.
        subset: a stratified subset of the training images.
        data_dir: the folder holding MNIST/raw.
        accelerator: Lightning's accelerator; Keras uses a GPU whenever TensorFlow sees one.
        lightning_config: train Lightning with this config instead (e.g. configs/fast.yaml).
        target_acc: the validation accuracy whose time to reach is reported.
        frameworks: the contenders, in the order they run in the first round (the next in its reverse, ...).
        repeats: rounds; in each every contender trains once, in turn, every other round in the reverse order.
            Rows are the median rounds, ratios the medians of the rounds' ratios.
        output_dir: a new folder here gets the logs, benchmark.json and benchmark.png.
        doc: also write the table into this Markdown file, between its ``compare-<architecture>-b<batch>``
            markers (``...-b<batch>-x<steps>`` with ``steps_per_execution``) (docs/benchmarks.md).
        steps_per_execution: batches per Lightning training step and per call of Keras' training function
            (``--data.steps_per_execution`` of both; the plain loop takes their images at once too).
    """
    check_counts(max_epochs=max_epochs, batch_size=batch_size, subset=subset, repeats=repeats, lr=lr,
                 target_acc=target_acc, steps_per_execution=steps_per_execution)
    check_doc(doc)
    check_chosen("frameworks", frameworks, ("lightning", "keras", "torch"))
    check_fit_config("lightning_config", lightning_config)
    load_architecture(architecture)  # a name or file every contender can build, before the matmul rate's minute
    check_accelerator(accelerator)
    args = dict(locals())
    machine = describe_machine()  # before the runs: the load they started under
    out = allocate_run_dir(output_dir, "compare")
    labels = load_mnist(data_dir).train_labels
    num_train = len(make_split(labels, subset=subset).train)
    efficiency = kernel_efficiency(architecture, batch_size)
    rounds, orders = [], running_orders(frameworks, repeats)
    for index, order in enumerate(orders):
        folder = out if repeats == 1 else out / f"round-{index}"
        every = commands(args, folder)
        rounds.append({name: run(name, every[name], folder, num_train, target_acc) for name in order})
    runs, report_ratios, per_round = summarise(rounds)
    for run_ in runs.values():
        run_["gflops"], run_["percent_of_matmul_peak"] = achieved(run_, num_train, efficiency)
    report = {"machine": machine, "kernel_efficiency": efficiency,
              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in args.items()},
              "num_train": num_train, "runs": list(runs.values()), "ratios": report_ratios,
              "ratios_per_round": per_round, "orders_per_round": [list(order) for order in orders],
              "train_seconds_per_round": {name: [r[name]["train_seconds"] for r in rounds] for name in frameworks}}
    report["load_average_after"] = load_average()
    write_json(report, out / "benchmark.json")
    plot(list(runs.values()), target_acc, out / "benchmark.png")

    print(f"\n{'contender':<10} {'epoch':>5} {'seconds':>8} {'images/s':>9} {'val acc':>8}")
    for run_ in runs.values():
        for row in run_["epochs"]:
            print(f"{run_['framework']:<10} {row['epoch']:>5} {row['seconds']:>8.1f} "
                  f"{row['images_per_second']:>9.0f} {row['val_acc']:>8.4f}")
    for run_ in runs.values():
        print(f"{run_['framework']}: test acc {run_['test_acc']:.4f}, train {run_['train_seconds']:.1f} s, "
              f"val acc >= {target_acc} at {run_['seconds_to_target_val_acc']} s, "
              f"peak memory {run_['peak_memory_mb']} MiB, process {run_['process_seconds']} s, "
              f"{run_['threads'] or 'its own'} threads, "
              f"{run_['gflops']} GFLOP/s = {run_['percent_of_matmul_peak']} % of the float32 matmul rate "
              f"({efficiency['matmul_gflops_float32']} GFLOP/s)")
    for key, value in report["ratios"].items():
        print(f"{key}: {value}" + (f" (rounds: {per_round[key]})" if repeats > 1 else ""))
    machine = report["machine"]
    print(f"on {machine['cpu']} ({machine['cores']} cores), load average {machine['load_average']} before, "
          f"{report['load_average_after']} after")
    if doc:
        name = f"compare-{Path(str(architecture)).stem}-b{batch_size}" + (
            f"-x{steps_per_execution}" if steps_per_execution > 1 else "")
        print(f"table: {write_between_markers(doc, name, markdown(report), title='Benchmarks')}")
    print(f"report: {out / 'benchmark.json'}\nfigure: {out / 'benchmark.png'}")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run_command(compare, sys.argv[1:] if argv is None else argv, "python benchmarks/compare_frameworks.py")


if __name__ == "__main__":
    main()

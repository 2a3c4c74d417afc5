"""Epoch by epoch, Lightning against the Keras reference at the notebook's settings, over several seeds.

    python benchmarks/epoch_gap.py                                   # 5 seeds, 10 epochs (about 1 hour on 2 cores)
    python benchmarks/epoch_gap.py --max_epochs 3 --doc docs/dynamics.md
    python benchmarks/epoch_gap.py --max_epochs 3 --lightning_flags '[--model.keras_adam, "true"]' --label keras_adam

Each (framework, seed) is one real run of its command line (``python -m lightning_mnist fit`` with the
defaults, which are the notebook's, or ``python -m keras_reference train``), early stopping out of the
way (``--early_stopping.patience 100``) so every seed has every epoch; its ``results.json`` history is
read back. For every epoch the script reports, for both frameworks, the mean and standard deviation
over the seeds of the training loss (the mean over the epoch's batches as the model trains: Keras'
``History`` and Lightning's ``train/loss`` both are) and of the validation accuracy, and the mean
difference Lightning - Keras. ``--lightning_flags`` / ``--keras_flags`` change one thing on one side,
to test a suspect one variable at a time; ``--label`` names such a measurement (its JSON, its table's
markers). Writes ``<output_dir>/<label>.json`` and, with ``--doc``, the table
between that file's ``epoch-gap-<label>`` markers. Timings are never the point here; the CPU and
the load average are recorded anyway.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from mnist_common.cli import run  # noqa: E402
from mnist_common.errors import UserError, exit_on_user_error  # noqa: E402
from mnist_common.files import write_between_markers  # noqa: E402
from mnist_common.machine import describe_machine, load_average  # noqa: E402
from mnist_common.runs import check_writable  # noqa: E402
from recipes import run_logged  # noqa: E402  (this folder is sys.path[0] when run)
from checks import check_command_line, check_counts, check_doc, check_seeds  # noqa: E402

FRAMEWORKS = {"lightning": ["lightning_mnist", "fit", "--trainer.enable_progress_bar", "false"],
              "keras": ["keras_reference", "train"]}
METRICS = ("train_loss", "val_acc")


def command_line(command: list[str], flags: list[str], max_epochs: int, seed: int, subset: int | None,
                 data_dir: str | None) -> list[str]:
    """A run's command line after ``python -m <module>``: the command, the flags measured, then the settings every
    run of a measurement shares (early stopping kept out of the way), in the run's own folder."""
    argv = [*command, *flags, "--trainer.max_epochs", str(max_epochs), "--early_stopping.patience", "100",
            "--seed_everything", str(seed), "--output_dir", "."]
    argv += ["--data.subset", str(subset)] if subset else []
    return argv + (["--data.data_dir", data_dir] if data_dir else [])


def history(framework: str, seed: int, folder: Path, flags: list[str], max_epochs: int, subset: int | None,
            data_dir: str | None) -> list[dict]:
    """The per-epoch rows of one run (run now, or read back if ``folder`` already holds this very run)."""
    module, *command = FRAMEWORKS[framework]
    argv = command_line(command, flags, max_epochs, seed, subset, data_dir)
    done = folder / "run.json"
    if done.exists():
        record = json.loads(done.read_text())
        if record["argv"] != argv:
            raise UserError(f"{folder} holds a run of `{' '.join(record['argv'])}`, not of `{' '.join(argv)}`: "
                            "choose another --label or --output_dir")
        return record["history"]
    folder.mkdir(parents=True, exist_ok=True)
    print(f"--- {framework} seed {seed}: python -m {module} {' '.join(argv)}", flush=True)
    seconds = run_logged([sys.executable, "-m", module, *argv], folder, f"{framework} seed {seed}")
    [path] = folder.rglob("results.json")
    rows = [{key: row[key] for key in ("epoch", *METRICS)} for row in json.loads(path.read_text())["history"]]
    done.write_text(json.dumps({"argv": argv, "history": rows, "process_seconds": round(seconds, 1),
                                "load_average_after": load_average()}, indent=2) + "\n")
    return rows


def run_name(flags: list[str], max_epochs: int, subset: int | None) -> str:
    """The folder of one framework's runs with these settings: measurements that share them share the runs (the
    Keras runs at its defaults serve every measurement that changes only Lightning)."""
    name = "_".join(flag.lstrip("-").replace(".", "-").replace("/", "-") for flag in flags) or "defaults"
    return f"{name}_e{max_epochs}" + (f"_s{subset}" if subset else "")


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def compare(runs: dict[str, dict[int, list[dict]]], max_epochs: int) -> list[dict]:
    """Per epoch and metric: each framework's mean and sd over the seeds, and the paired difference Lightning - Keras."""
    seeds = sorted(runs["lightning"])
    rows = []
    for epoch in range(max_epochs):
        row = {"epoch": epoch + 1}
        for metric in METRICS:
            values = {fw: [runs[fw][s][epoch][metric] for s in seeds] for fw in FRAMEWORKS}
            for fw in FRAMEWORKS:
                row[f"{fw}_{metric}"] = mean_sd(values[fw])
            row[f"diff_{metric}"] = mean_sd([a - b for a, b in zip(values["lightning"], values["keras"])])
        rows.append(row)
    return rows


def markdown(report: dict) -> str:
    m = report["machine"]
    flags = "; ".join(f"{fw}: `{' '.join(report[f'{fw}_flags'])}`" for fw in FRAMEWORKS if report[f"{fw}_flags"])
    lines = [f"Written by `python benchmarks/epoch_gap.py {report['invocation']}` on {m['cpu']} ({m['cores']} cores, "
             f"load average {report['load_average_before']} before), {m['date']}: seeds "
             f"{', '.join(map(str, report['seeds']))}, {report['max_epochs']} epochs"
             + (f", subset {report['subset']}" if report["subset"] else ", all 54,000 training images")
             + (f"; changed: {flags}" if flags else "; both at their defaults (the notebook's settings)") + ".",
             "Mean ± standard deviation over the seeds; the difference is Lightning - Keras, paired by seed; "
             "**bold** where |mean difference| is more than the larger of the two frameworks' standard deviations; "
             "the last column of each metric, t, is the paired t statistic (mean difference / its standard "
             "error; |t| above 2.78 is a difference at the 5 % level with 5 seeds).", "",
             "| epoch | train loss, Lightning | train loss, Keras | difference | t | val acc %, Lightning | "
             "val acc %, Keras | difference (points) | t |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in report["epochs"]:
        cells = [str(row["epoch"])]
        for metric, scale, digits in (("train_loss", 1, 4), ("val_acc", 100, 2)):
            (lm, ls), (km, ks), (dm, ds) = (row[f"{k}_{metric}"] for k in ("lightning", "keras", "diff"))
            cells += [f"{scale * lm:.{digits}f} ± {scale * ls:.{digits}f}", f"{scale * km:.{digits}f} ± "
                      f"{scale * ks:.{digits}f}"]
            diff = f"{scale * dm:+.{digits}f} ± {scale * ds:.{digits}f}"
            cells.append(f"**{diff}**" if abs(dm) > max(ls, ks) else diff)
            n = len(report["seeds"])
            cells.append(f"{dm / (ds / math.sqrt(n)):+.2f}" if n > 1 and ds > 0 else "")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def measure(seeds: list[int] = [0, 1, 2, 3, 4], max_epochs: int = 10,  # noqa: B006
            lightning_flags: list[str] = [], keras_flags: list[str] = [],  # noqa: B006
            label: str = "notebook", subset: int | None = None, data_dir: str | None = None,
            output_dir: str = "runs/epoch_gap", doc: str | None = None) -> Path:
    """Train both frameworks at the notebook's settings for every seed; tabulate training loss and val accuracy.

    Args:
        seeds: one run per framework and seed (``--seed_everything``).
        max_epochs: epochs of every run (early stopping is kept out of the way).
        lightning_flags: extra flags for ``python -m lightning_mnist fit`` (one suspect at a time).
        keras_flags: extra flags for ``python -m keras_reference train``.
        label: names this measurement: its JSON and its markers in ``doc``.
        subset: train on a stratified subset of this many images (quick looks only).
        data_dir: the folder holding MNIST/raw (default: each command's own default).
        output_dir: runs go to ``<output_dir>/runs/<framework>/<its flags>/seed_<S>`` (reused by every
            measurement with the same settings), the report to ``<output_dir>/<label>.json``.
        doc: write the table into this Markdown file, between its ``epoch-gap-<label>`` markers.
    """
    check_seeds(seeds)
    check_counts(max_epochs=max_epochs, subset=subset)
    if not label.replace("-", "").replace("_", "").isalnum():
        raise UserError(f"--label {label!r}: letters, digits, '-' and '_' only")
    check_doc(doc)
    check_writable(output_dir, "--output_dir")
    flags = {"lightning": lightning_flags, "keras": keras_flags}
    for fw, extra in flags.items():  # the flags added to the commands, read by the commands themselves
        if extra:
            module, *command = FRAMEWORKS[fw]
            check_command_line(f"{fw}_flags", str(list(extra)),
                               [module, *command_line(command, extra, max_epochs, seeds[0], subset, data_dir)])
    before = load_average()
    out = Path(output_dir).resolve()
    runs: dict[str, dict[int, list[dict]]] = {fw: {} for fw in FRAMEWORKS}
    for seed in seeds:  # seed by seed, both frameworks: a measurement stopped part way has whole pairs to reuse
        for fw in FRAMEWORKS:
            folder = out / "runs" / fw / run_name(flags[fw], max_epochs, subset) / f"seed_{seed}"
            runs[fw][seed] = history(fw, seed, folder, flags[fw], max_epochs, subset, data_dir)
    invocation = " ".join(sys.argv[1:]) if os.path.basename(sys.argv[0]) == "epoch_gap.py" else ""
    report = {"machine": describe_machine(), "invocation": invocation, "load_average_before": (before or ["?"])[0],
              "load_average_after": (load_average() or ["?"])[0], "seeds": seeds, "max_epochs": max_epochs,
              "subset": subset, "label": label, "lightning_flags": lightning_flags, "keras_flags": keras_flags,
              "epochs": compare(runs, max_epochs), "runs": runs}
    path = out / f"{label}.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    table = markdown(report)
    print(f"{table}\n\nresults: {path}")
    if doc:
        print(f"table: {write_between_markers(doc, f'epoch-gap-{label}', table, title='Epoch gap')}")
    return path


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(measure, sys.argv[1:] if argv is None else argv, prog="benchmarks/epoch_gap.py")


if __name__ == "__main__":
    main()

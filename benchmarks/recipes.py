"""The recipes table: each recipe for several seeds, through the real command lines.

    python benchmarks/recipes.py                                   # every recipe, seeds 0 1 2 (a few hours on 2 cores)
    python benchmarks/recipes.py --recipes '[best]' --seeds '[0]'  # one recipe, one seed
    python benchmarks/recipes.py --subset 1000 --max_epochs 1 --doc /tmp/recipes.md   # a quick look

Every run is its own process in a fresh working directory (``<output_dir>/<recipe>/seed_<S>``):
``python -m lightning_mnist fit --config configs/X.yaml --seed_everything S``, ``... cv --config
configs/best.yaml --seed_everything S`` or ``python -m keras_reference train|cv [--config configs/X.yaml]
--seed_everything S`` (the same config files: keras_reference runs their one-cycle recipe too); its
``results.json`` (``cv_results.json``) is read back. Writes ``<output_dir>/recipes.json`` and the
table between the markers of ``--doc`` (the prose around them is kept). Timings are for reading:
the machine's load average before and after is recorded beside them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from mnist_common.cli import run  # noqa: E402
from mnist_common.errors import UserError, exit_on_user_error  # noqa: E402
from mnist_common.files import between_markers, write_between_markers  # noqa: E402
from mnist_common.machine import describe_machine, load_average  # noqa: E402
from mnist_common.runs import check_writable  # noqa: E402
from checks import check_chosen, check_counts, check_doc, check_marker, check_seeds  # noqa: E402



@dataclass
class Recipe:
    name: str
    framework: str  # "lightning" or "keras"
    command: list[str]  # after ``python -m <module>``, without the seed

    @property
    def module(self) -> str:
        return "lightning_mnist" if self.framework == "lightning" else "keras_reference"

    def argv(self, seed: int, subset: int | None, max_epochs: int | None) -> list[str]:
        """The command line after ``python -m <module>``: both packages spell these flags alike."""
        argv = [*self.command, "--seed_everything", str(seed), "--output_dir", "."]
        argv += ["--data.subset", str(subset)] if subset else []
        argv += ["--trainer.max_epochs", str(max_epochs)] if max_epochs else []
        if self.framework == "lightning":
            argv += ["--trainer.enable_progress_bar", "false"]
        return argv


RECIPES = [
    Recipe("notebook", "lightning", ["fit", "--config", "configs/notebook.yaml"]),
    Recipe("notebook", "keras", ["train"]),
    Recipe("fast", "lightning", ["fit", "--config", "configs/fast.yaml"]),
    Recipe("fast", "keras", ["train", "--config", "configs/fast.yaml"]),
    Recipe("best", "lightning", ["fit", "--config", "configs/best.yaml"]),
    Recipe("best", "keras", ["train", "--config", "configs/best.yaml"]),
    Recipe("best-ensemble", "lightning", ["cv", "--config", "configs/best.yaml"]),
    Recipe("best-ensemble", "keras", ["cv", "--config", "configs/best.yaml"]),
    Recipe("resnet", "lightning", ["fit", "--config", "configs/resnet.yaml"]),
    Recipe("resnet", "keras", ["train", "--config", "configs/resnet.yaml"]),
]
RecipeName = Literal[tuple(dict.fromkeys(recipe.name for recipe in RECIPES))]  # what --recipes may name
Framework = Literal["lightning", "keras"]


def run_logged(command: list[str], folder: Path, what: str) -> float:
    """Run ``command`` in ``folder``, this checkout first on the import path, its output in ``output.log``;
    return its seconds. A failure ends the script with one line naming ``what`` and the log."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    started = time.perf_counter()
    with open(folder / "output.log", "w") as log:
        proc = subprocess.run(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        sys.exit(f"error: {what} failed (exit {proc.returncode}), see {folder / 'output.log'}")
    return time.perf_counter() - started


def fingerprint(argv: list[str]) -> str:
    """What a finished run is reused for: its command line and the text of the configs it names. A run
    of an older ``configs/best.yaml`` must not stand in the table for the current one."""
    digest = hashlib.sha256(" ".join(argv).encode())
    for arg in argv:
        if arg.startswith("configs/"):
            digest.update((REPO / arg).read_bytes())
    return digest.hexdigest()


def run_once(recipe: Recipe, seed: int, folder: Path, subset: int | None, max_epochs: int | None) -> dict:
    """Run one recipe with one seed in ``folder``; the figures its results file holds.

    A finished run leaves ``run.json`` and is not run again (the table can be written from runs made
    by several invocations, each recipe when the machine is free) as long as its command and configs
    are unchanged; a run of other settings is refused, not overwritten. An unfinished one is started afresh.
    """
    argv = recipe.argv(seed, subset, max_epochs)
    done = folder / "run.json"
    if done.exists():
        record = json.loads(done.read_text())
        if record.get("fingerprint") != fingerprint(argv):
            raise UserError(f"{folder} holds a run of other settings than `{' '.join(argv)}` with today's "
                            f"configs: move it away or choose another --output_dir")
        print(f"--- {recipe.name} ({recipe.framework}), seed {seed}: done before, {done}", flush=True)
        return record
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    print(f"--- {recipe.name} ({recipe.framework}), seed {seed}: python -m {recipe.module} {' '.join(argv)}", flush=True)
    command = [sys.executable, "-m", recipe.module, *(str(REPO / a) if a.startswith("configs/") else a for a in argv)]
    seconds = run_logged(command, folder, f"{recipe.name} ({recipe.framework}) seed {seed}")
    if recipe.command[0] == "cv":
        [path] = folder.rglob("cv_results.json")
        results = json.loads(path.read_text())
        folds = results["folds"]
        record = {"seed": seed, "test_acc": results["ensemble_test_acc"], "results": str(path),
                  "epochs": [f["epochs"] for f in folds], "fold_test_acc": [f["test_acc"] for f in folds],
                  "train_seconds": round(sum(f["history"][-1]["seconds"] for f in folds), 1)}
    else:
        [path] = folder.rglob("results.json")
        results = json.loads(path.read_text())
        record = {"seed": seed, "test_acc": results["test_acc"], "results": str(path), "epochs": results["epochs"],
                  "best_epoch": results["best_epoch"], "train_seconds": round(results["history"][-1]["seconds"], 1)}
    record.update(process_seconds=round(seconds, 1), load_average_after=load_average(), fingerprint=fingerprint(argv))
    done.write_text(json.dumps(record, indent=2) + "\n")
    return record


def summary(recipe: Recipe, runs: list[dict]) -> dict:
    accs = [r["test_acc"] for r in runs]
    return {"recipe": recipe.name, "framework": recipe.framework,
            "command": f"python -m {recipe.module} {' '.join(recipe.command)} --seed_everything S",
            "test_acc_mean": statistics.fmean(accs) if accs else None,
            "test_acc_std": statistics.stdev(accs) if len(accs) > 1 else None,
            "train_seconds_mean": statistics.fmean(r["train_seconds"] for r in runs) if runs else None,
            "process_seconds_mean": statistics.fmean(r["process_seconds"] for r in runs) if runs else None,
            "runs": runs}


COLUMNS = ["recipe", "framework", "command", "epochs", "test accuracy, mean ± std (n-1)", "per seed",
           "training s (mean)", "command s (mean)", "load after", "measured"]
NOT_MEASURED = "not measured yet"


def row_cells(summary_: dict, report: dict) -> list[str]:
    """One table row: a recipe in one framework, its figures over the seeds run, and where and when."""
    head = [summary_["recipe"], summary_["framework"]]
    runs = summary_["runs"]
    if not runs:  # --table_only, and no run of it finished yet
        return head + [f"`{summary_['command']}`", NOT_MEASURED] + [""] * (len(COLUMNS) - 4)
    m = report["machine"]
    epochs = "; ".join("+".join(map(str, r["epochs"])) if isinstance(r["epochs"], list) else str(r["epochs"])
                       for r in runs)
    std = f" ± {100 * summary_['test_acc_std']:.2f}" if summary_["test_acc_std"] is not None else ""
    quick = (f", subset {report['subset']}" if report["subset"] else "") + (
        f", at most {report['max_epochs']} epochs" if report["max_epochs"] else "")
    return head + [
        f"`{summary_['command']}`", epochs, f"**{100 * summary_['test_acc_mean']:.2f}**{std} %",
        ", ".join(f"{100 * r['test_acc']:.2f}" for r in runs), f"{summary_['train_seconds_mean']:.0f}",
        f"{summary_['process_seconds_mean']:.0f}",
        ", ".join(str((r.get("load_average_after") or ["?"])[0]) for r in runs),
        f"{m['cpu']}, {m['cores']} cores, {m['date']}, seeds {', '.join(str(r['seed']) for r in runs)}{quick}"]


def earlier_rows(table: str) -> dict[tuple[str, str], list[str]]:
    """The rows a table written earlier holds, by (recipe, framework), each with its ``measured`` cell.

    Tables written before rows carried their own ``measured`` cell said it once, in the line above
    the table ("Measured on CPU, N CPU cores, ...; table written DATE. ... Seeds 0, 1, 2."): it is
    moved into each of their rows.
    """
    machine = re.search(r"Measured on (.+?), (\d+) CPU cores.*?table written (\S+?)\.", table)
    seeds = re.search(r"Seeds ([\d, ]+)", table)
    rows = {}
    for line in table.splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if not line.startswith("| ") or cells[0] in ("recipe", "---") or len(cells) < 3:
            continue
        if len(cells) == len(COLUMNS) - 1:  # the older layout
            measured = ""
            if machine and seeds and cells[3] not in ("", NOT_MEASURED):  # its seeds: the first, one per figure
                ran = seeds[1].replace(" ", "").split(",")[:len(cells[5].split(","))]
                measured = f"{machine[1]}, {machine[2]} cores, {machine[3]}, seeds {', '.join(ran)}"
            cells.append(measured)
        rows[cells[0], cells[1]] = (cells + [""] * len(COLUMNS))[:len(COLUMNS)]
    return rows


def markdown(report: dict, earlier: str = "") -> str:
    """The table: this invocation's rows, and the rows of ``earlier`` (the table as it was) for every
    recipe and framework it measured and this invocation did not, so the table is built over several
    invocations, each row saying where, when and with which seeds it was measured."""
    rows = earlier_rows(earlier)
    for summary_ in report["recipes"]:
        cells = row_cells(summary_, report)
        kept = rows.get((cells[0], cells[1]))
        if cells[3] != NOT_MEASURED or kept is None or kept[3] in ("", NOT_MEASURED):
            rows[cells[0], cells[1]] = cells
    order = [(r.name, r.framework) for r in RECIPES]
    lines = [
        "Each row is one recipe in one framework over several seeds, measured on the machine, day and seeds "
        "its last column names (rows are rewritten when their recipe is run again, the others kept). Runs share "
        "the machine with whatever else ran: `load after` is the 1-minute load average after each run (2.0 on "
        "2 cores is the run alone). The script adds `--trainer.enable_progress_bar false` to the Lightning "
        "commands.",
        "",
        "| " + " | ".join(COLUMNS) + " |",
        "| " + " | ".join("---" for _ in COLUMNS) + " |",
    ]
    for key in sorted(rows, key=lambda k: order.index(k) if k in order else len(order)):
        lines.append("| " + " | ".join(rows[key]) + " |")
    return "\n".join(lines)


def benchmark(recipes: list[RecipeName] = ["notebook", "fast", "best", "best-ensemble"],  # noqa: B006
            frameworks: list[Framework] = ["lightning", "keras"], seeds: list[int] = [0, 1, 2],  # noqa: B006
            output_dir: str = "runs/recipes", doc: str = str(REPO / "docs" / "recipes.md"), table: str = "recipes",
            subset: int | None = None, max_epochs: int | None = None, table_only: bool = False) -> Path:
    """Run recipes for several seeds and write the table.

    Args:
        recipes: which of notebook, fast, best, best-ensemble, resnet (the resnet preset with the notebook's recipe).
        frameworks: lightning, keras.
        seeds: one run per seed (``--seed_everything`` / ``--seed``).
        output_dir: where each run's working directory and recipes.json go.
        doc: the Markdown file whose table (between the markers) is replaced.
        table: the markers' name in ``doc`` (``recipes`` for the notebook's network, ``resnet`` for the preset).
        subset: train on a stratified subset of this many images (quick looks only).
        max_epochs: cap every run's epochs (quick looks only).
        table_only: run nothing; write the table from the runs already finished (each recipe with the seeds
            it has: a long recipe may have fewer; one with none says it is not measured yet).
    """
    check_chosen("recipes", recipes, get_args(RecipeName))
    check_chosen("frameworks", frameworks, get_args(Framework))
    check_seeds(seeds)
    check_counts(subset=subset, max_epochs=max_epochs)
    check_doc(doc)
    check_marker(table, "table")
    check_writable(output_dir, "--output_dir")
    out = Path(output_dir).resolve()
    summaries = []
    for recipe in RECIPES:
        if recipe.name not in recipes or recipe.framework not in frameworks:
            continue
        folders = {seed: out / f"{recipe.name}-{recipe.framework}" / f"seed_{seed}" for seed in seeds}
        if table_only:
            folders = {seed: folder for seed, folder in folders.items() if (folder / "run.json").exists()}
        runs = [run_once(recipe, seed, folder, subset, max_epochs) for seed, folder in folders.items()]
        summaries.append(summary(recipe, runs))
    report = {"machine": {**describe_machine(), "gpu": "none used (CPU runs)"}, "seeds": seeds, "subset": subset,
              "max_epochs": max_epochs, "recipes": summaries}
    json_path = out / f"{table}.json"
    out.mkdir(parents=True, exist_ok=True)  # --table_only before any run has made it
    json_path.write_text(json.dumps(report, indent=2) + "\n")
    markdown_table = markdown(report, between_markers(doc, table))
    write_between_markers(doc, table, markdown_table, title="Recipes")
    print(f"{markdown_table}\n\nresults: {json_path}\ntable: {doc}")
    return json_path


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(benchmark, sys.argv[1:] if argv is None else argv, prog="benchmarks/recipes.py")


if __name__ == "__main__":
    main()

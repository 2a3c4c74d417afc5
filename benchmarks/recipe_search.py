"""The search behind configs/best.yaml: one ``fit`` per line of a plan, judged on VALIDATION figures only.

    python benchmarks/recipe_search.py benchmarks/search/plan.tsv       # run what is not done yet, then the table
    python benchmarks/recipe_search.py benchmarks/search/plan.tsv --table_only

A plan has one line per setting: ``name<TAB>flags for python -m lightning_mnist fit`` (``#`` starts a
comment; ``.yaml`` paths are relative to the repository); it is read again after every run, so
lines can be added while it works. Each run gets its own folder ``<output_dir>/<name>/`` and
leaves ``summary.json`` there. The summary and the
table hold the validation accuracy and loss per epoch and the training seconds; the test figures
``fit`` prints at its end are never read here (the choice must not see the test set).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from mnist_common.cli import run  # noqa: E402
from mnist_common.errors import exit_on_user_error  # noqa: E402
from mnist_common.files import write_between_markers  # noqa: E402
from mnist_common.machine import load_average  # noqa: E402
from recipes import run_logged  # noqa: E402  (this folder is sys.path[0] when run)


def plan_lines(plan: Path) -> list[tuple[str, str]]:
    lines = [line.split("\t", 1) for line in plan.read_text().splitlines() if line.strip() and line[0] != "#"]
    return [(name.strip(), flags.strip()) for name, flags in lines]


def fit(name: str, flags: str, folder: Path) -> dict:
    """One ``fit`` with ``flags`` in ``folder``; its validation figures (never the test ones)."""
    folder.mkdir(parents=True, exist_ok=True)
    flags = [str(REPO / f) if f.endswith(".yaml") else f for f in flags.split()]
    command = [sys.executable, "-m", "lightning_mnist", "fit", *flags, "--trainer.enable_progress_bar", "false",
               "--output_dir", "."]
    run_logged(command, folder, name)
    results = json.loads(next(folder.rglob("results.json")).read_text())
    history, best = results["history"], results["best_epoch"]
    summary = {"name": name, "flags": " ".join(flags).replace(f"{REPO}/", ""), "epochs": len(history),
               "best_epoch": best, "val_acc": [round(r["val_acc"], 4) for r in history],
               "val_loss": [round(r["val_loss"], 4) for r in history],
               "val_acc_best": history[best]["val_acc"], "val_loss_best": history[best]["val_loss"],
               "val_acc_last3": statistics.fmean(r["val_acc"] for r in history[-3:]),
               "train_seconds": round(history[-1]["seconds"], 1), "load_after": (load_average() or [None])[0]}
    (folder / "summary.json").write_text(json.dumps(summary) + "\n")
    return summary


def table(summaries: list[dict]) -> str:
    lines = ["| setting | flags (after `fit`) | epochs | val acc, tested epoch | val acc, mean of last 3 | "
             "val loss, tested epoch | training s |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in summaries:
        lines.append(f"| {s['name']} | `{s['flags']}` | {s['epochs']} (tested {s['best_epoch'] + 1}) | "
                     f"{100 * s['val_acc_best']:.2f} | {100 * s['val_acc_last3']:.2f} | {s['val_loss_best']:.4f} | "
                     f"{s['train_seconds']:.0f} |")
    return "\n".join(lines)


def search(plan: str, output_dir: str = "runs/search", table_only: bool = False, doc: str | None = None) -> None:
    """Run every setting of a plan that has no summary yet, then print the table of validation figures.

    Args:
        plan: a file of ``name<TAB>fit flags`` lines.
        output_dir: each setting runs in ``<output_dir>/<name>/``.
        table_only: only print the table of the settings already run.
        doc: also write the table into this Markdown file (between its ``search`` markers), e.g. docs/recipes.md.
    """
    plan_path, out = Path(plan).resolve(), Path(output_dir).resolve()
    while not table_only:
        todo = [(n, f) for n, f in plan_lines(plan_path) if not (out / n / "summary.json").exists()]
        if not todo:
            break
        name, flags = todo[0]
        started = time.strftime("%H:%M")
        s = fit(name, flags, out / name)
        print(f"{started} {name}: val acc {s['val_acc_best']:.4f} (last 3: {s['val_acc_last3']:.4f}), "
              f"{s['train_seconds']:.0f} s", flush=True)
    done = [out / n / "summary.json" for n, _ in plan_lines(plan_path)]
    text = table([json.loads(p.read_text()) for p in done if p.exists()])
    print(text)
    if doc:
        print(f"table: {write_between_markers(doc, 'search', text)}")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(search, sys.argv[1:] if argv is None else argv, prog="benchmarks/recipe_search.py", positional=("plan",))


if __name__ == "__main__":
    main()

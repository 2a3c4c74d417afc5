"""An epoch alone, then beside one and two busy processes: how each framework copes with shared cores.

For each contender (``lightning_mnist fit``, the plain torch loop, ``keras_reference train``,
each through its own command line, as ``compare_frameworks.py`` runs them), one epoch of
``--subset`` images is timed with 0, 1 and 2 competing processes, each a Python busy loop pinned
to nothing (the kernel shares the cores between them and the training), started before the
training and stopped after it; every competitor also ends by itself after
``--competitor_seconds``. The torch contenders run twice: with the project's thread settings
(``mnist_common.threads``: one thread per core left free when the command starts) and with one
thread per core whatever else runs (``OMP_NUM_THREADS`` = the core count, torch's default), so the
table shows both what the setting buys beside other work and what it costs alone. Rounds interleave everything
(``--repeats``); medians are reported, with the CPU and the load average.

    python benchmarks/shared_machine.py --subset 6000 --repeats 2 --doc docs/benchmarks.md

Timings are for reading, never for asserting.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_frameworks import REPO, commands, run  # noqa: E402
from checks import check_chosen, check_counts, check_doc  # noqa: E402

from mnist_common.cli import run as run_command  # noqa: E402
from mnist_common.errors import UserError, exit_on_user_error  # noqa: E402
from mnist_common.files import write_between_markers  # noqa: E402
from mnist_common.machine import describe_machine, load_average  # noqa: E402
from mnist_common.mnist import load_mnist  # noqa: E402
from mnist_common.results import write_json  # noqa: E402
from mnist_common.runs import allocate_run_dir  # noqa: E402
from mnist_common.splits import make_split  # noqa: E402

BUSY_LOOP = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass"
# The thread settings each torch contender runs under: the project's (nothing added), and libgomp's own default.
POLICIES = {"project": {}, "all-cores": {"OMP_NUM_THREADS": str(os.cpu_count() or 1)}}
TORCH_CONTENDERS = ("lightning", "torch")


def competitors(count: int, seconds: float) -> list[subprocess.Popen]:
    """``count`` busy Python processes, each ending by itself after ``seconds``."""
    return [subprocess.Popen([sys.executable, "-c", BUSY_LOOP.format(seconds=seconds)]) for _ in range(count)]


def stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        process.kill()
        process.wait()


def markdown(report: dict) -> str:
    """The table docs/benchmarks.md shows: epoch seconds alone and beside busy processes, and the ratios."""
    machine, s = report["machine"], report["settings"]
    levels = s["competitors"]
    lines = [f"`python benchmarks/shared_machine.py --subset {s['subset']} --batch_size {s['batch_size']} "
             f"--repeats {s['repeats']}`, {machine['date']}, {machine['cpu']} ({machine['cores']} cores), load average "
             f"{machine['load_average']} before, {report['load_average_after']} after; {report['num_train']} training "
             f"images, one epoch (validation included), median of {s['repeats']}.", "",
             "| contender | threads | " + " | ".join(f"s with {k} busy" for k in levels) + " | "
             + " | ".join(f"{k} busy / alone" for k in levels if k) + " |",
             "| --- | --- | " + " | ".join("---" for _ in levels) + " | " + " | ".join("---" for k in levels if k) + " |"]
    for row in report["rows"]:
        seconds = " | ".join(f"{row['seconds'][str(k)]:.1f}" for k in levels)
        ratios = " | ".join(f"**{row['ratio'][str(k)]:.2f}**" for k in levels if k)
        lines.append(f"| {row['framework']} | {row['policy']} | {seconds} | {ratios} |")
    if report.get("alone_project_over_all_cores"):
        lines += ["", "Alone, the project's setting against one thread per core: " + "; ".join(
            f"{name} {ratio:.3f}x" for name, ratio in report["alone_project_over_all_cores"].items())]
    return "\n".join(lines)


def shared(subset: int = 6000, batch_size: int = 32, repeats: int = 1, competitor_levels: list[int] = (0, 1, 2),
           frameworks: list[Literal["lightning", "torch", "keras"]] = ("lightning", "torch", "keras"),
           policies: list[Literal["project", "all-cores"]] = ("project", "all-cores"), competitor_seconds: float = 600.0,
           data_dir: str | None = None, output_dir: Path = REPO / "runs" / "benchmark",
           doc: Path | None = None) -> dict:
    """Time one epoch of each contender alone and beside busy processes; print and write the table.

    Args:
        subset: stratified subset of the training images (90 % trains, 10 % validates).
        batch_size: training batch size.
        repeats: rounds; each round runs every contender at every level once.
        competitor_levels: how many busy processes run beside the training.
        frameworks: the contenders.
        policies: thread settings for the torch contenders: ``project`` (mnist_common.threads) and/or
            ``all-cores`` (torch's default). Keras keeps TensorFlow's own.
        competitor_seconds: a busy process ends by itself after this long, whatever happens here.
        data_dir: the folder holding MNIST/raw.
        output_dir: a new folder here gets the logs and shared_machine.json.
        doc: also write the table into this Markdown file between its ``shared-machine`` markers.
    """
    check_counts(subset=subset, batch_size=batch_size, repeats=repeats, competitor_seconds=competitor_seconds)
    check_doc(doc)
    check_chosen("frameworks", frameworks, ("lightning", "torch", "keras"))
    check_chosen("policies", policies, ("project", "all-cores"))
    if any(level < 0 for level in competitor_levels):
        raise UserError(f"--competitor_levels must be counts of 0 or more, got {list(competitor_levels)}")
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in dict(locals()).items()}
    settings["competitors"] = list(competitor_levels)
    machine = describe_machine()
    out = allocate_run_dir(output_dir, "shared")
    num_train = len(make_split(load_mnist(data_dir).train_labels, subset=subset).train)
    args = {"architecture": "notebook", "batch_size": batch_size, "lr": 1e-4, "max_epochs": 1, "subset": subset,
            "data_dir": data_dir, "lightning_config": None, "accelerator": "cpu"}
    cases = [(name, policy) for name in frameworks for policy in (policies if name in TORCH_CONTENDERS else ["own"])]
    seconds: dict[tuple, list[float]] = {}
    for round_ in range(repeats):
        for level in competitor_levels:
            for name, policy in cases:
                folder = out / f"{name}-{policy}-busy{level}-round{round_}"
                folder.mkdir()
                busy = competitors(level, competitor_seconds)
                try:
                    result = run(name, commands(args, folder)[name], folder, num_train, 1.0,
                                 env=POLICIES.get(policy, {}))
                finally:
                    stop(busy)
                seconds.setdefault((name, policy, level), []).append(result["epochs"][0]["seconds"])
                print(f"{name} ({policy}), {level} busy: {result['epochs'][0]['seconds']:.2f} s", flush=True)
    rows = []
    for name, policy in cases:
        median = {level: statistics.median(seconds[name, policy, level]) for level in competitor_levels}
        alone = median.get(0)
        rows.append({"framework": name, "policy": policy, "seconds": {str(k): v for k, v in median.items()},
                     "all_seconds": {str(k): seconds[name, policy, k] for k in competitor_levels},
                     "ratio": {str(k): round(v / alone, 3) for k, v in median.items() if alone}})
    report = {"machine": machine, "settings": settings, "num_train": num_train, "rows": rows,
              "load_average_after": load_average()}
    if 0 in competitor_levels and {"project", "all-cores"} <= set(policies):
        alone = {(r["framework"], r["policy"]): r["seconds"]["0"] for r in rows}
        report["alone_project_over_all_cores"] = {name: round(alone[name, "project"] / alone[name, "all-cores"], 3)
                                                  for name in frameworks if name in TORCH_CONTENDERS}
    write_json(report, out / "shared_machine.json")
    table = markdown(report)
    print("\n" + table)
    if doc:
        print(f"table: {write_between_markers(doc, 'shared-machine', table, title='Benchmarks')}")
    print(f"report: {out / 'shared_machine.json'}")
    return report


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run_command(shared, sys.argv[1:] if argv is None else argv, "python benchmarks/shared_machine.py")


if __name__ == "__main__":
    main()

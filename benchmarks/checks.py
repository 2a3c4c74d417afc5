"""The checks every speed benchmark makes before any work (its counts, its output files): one line, exit 2."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

from mnist_common.errors import UserError
from mnist_common.files import check_output_file
from mnist_common.settings import MAX_LR, check_seed_range, check_subset

FRACTIONS = {"target", "target_acc", "target_val_acc", "test_target"}  # accuracies, whatever the flag is called
# Counts above which a run would only ask for more memory than a machine has (a 10^8-sided matrix: 40 PB)
MAX_COUNTS = {"batch_size": 60_000, "size": 32_768}
MARKER_NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")  # a document's table markers: <!-- name:begin ... -->


def check_counts(**values: float | int | None) -> None:
    """Refuse counts below 1 (``--steps 0``), rates of 0 or less or infinite, a ``target`` accuracy outside
    (0, 1], a ``subset`` of fewer images than a stratified split takes or more than there are, a ``seed`` numpy
    refuses and an ``lr`` the commands refuse (above :data:`MAX_LR`)."""
    for name, value in values.items():
        if value is None:
            continue
        if name == "subset":
            check_subset("--subset", value)
        elif name == "seed":
            check_seed_range("--seed", value)
        elif name == "lr" and not 0 < value <= MAX_LR:
            raise UserError(f"--lr must be a positive number up to {MAX_LR:g} (Adam's step size), got {value}")
        elif name in FRACTIONS:
            if not 0 < value <= 1:
                raise UserError(f"--{name} must be an accuracy in (0, 1], got {value}")
        elif isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise UserError(f"--{name} must be at least 1, got {value}")
            if value > MAX_COUNTS.get(name, math.inf):
                raise UserError(f"--{name} must be at most {MAX_COUNTS[name]:,}, got {value:,}")
        elif not (value > 0 and math.isfinite(value)):
            raise UserError(f"--{name} must be a finite number more than 0, got {value}")


def check_report(path: str | os.PathLike, default: str | os.PathLike, overwrite: bool) -> Path:
    """A JSON report's path: a ``.json`` name, and a file already there replaced only with ``--overwrite`` (the
    script's default report is its own, rewritten each run). Checked before any work."""
    path = Path(path)
    if path.suffix.lower() != ".json":
        raise UserError(f"--output {path}: the report is JSON; give a .json file name")
    own = path.absolute() == Path(default).absolute()
    if own:
        path.parent.mkdir(parents=True, exist_ok=True)  # runs/benchmark, made on a first run
    return check_output_file(path, "--output", overwrite=overwrite or own)


def check_doc(path: str | os.PathLike | None) -> None:
    """A Markdown file the table goes into (its markers), checked before any work: a ``.md`` name of UTF-8 text."""
    if path is None:
        return
    path = Path(path)
    if path.suffix.lower() != ".md":
        raise UserError(f"--doc {path}: the table goes into a Markdown file; give a .md file name")
    try:
        if path.exists():
            path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"--doc {path}: not a readable UTF-8 text file ({getattr(err, 'strerror', None) or err})") \
            from None


def absolute_model_path(value: str, flag: str = "--weights") -> str:
    """A model given to a server these scripts start (a file, or a k-fold run's folder), as an absolute path: the
    server runs in the report's folder. A URL is left as it is; a missing path is refused before any work."""
    if "://" in value:
        return value
    if not Path(value).exists():
        raise UserError(f"{flag} {value}: no such file or folder")
    return str(Path(value).absolute())


def check_chosen(flag: str, chosen, allowed) -> None:
    """A list of contenders (``--frameworks``, ``--backends``, ``--policies``): at least one, none twice; what
    each may be, jsonargparse has checked."""
    chosen = list(chosen)
    if not chosen:
        raise UserError(f"--{flag} []: give at least one of {', '.join(allowed)}")
    twice = sorted({name for name in chosen if chosen.count(name) > 1})
    if twice:
        raise UserError(f"--{flag} names {', '.join(twice)} twice; give each once")


def check_fit_config(flag: str, path: str | os.PathLike | None) -> None:
    """A config file a ``fit`` run will be given, read by ``fit --print_config`` itself before any work (the
    file, its YAML and every setting's type); its one ``error:`` line is said for the flag."""
    if path is not None:
        check_command_line(flag, str(path), ["lightning_mnist", "fit", "--config", str(path)])


def check_command_line(flag: str, given: str, argv: list[str]) -> None:
    """A command line a run will get (``python -m <argv>``, built from the flag's value ``given``), read by that
    command's own ``--print_config`` before any work: each flag's name, value and type, as the run would read
    them, refused in the command's one ``error:`` line, said for the flag."""
    command = argv[1]
    done = subprocess.run([sys.executable, "-m", *argv, "--print_config"], capture_output=True, text=True,
                          cwd=Path.cwd())
    if done.returncode != 0:
        reason = refusal(done.stderr) or f"{command} exited {done.returncode}"
        raise UserError(f"--{flag} {given}: `{command}` refuses it ({reason})")


def refusal(output: str) -> str | None:
    """What a command of this project said when it refused its input: its last ``error:`` line, without the prefix
    (None if it printed none), to be said again by the script that ran it."""
    errors = [line for line in output.splitlines() if line.startswith("error:")]
    return errors[-1].removeprefix("error:").strip() if errors else None


def check_seeds(seeds: list[int] | None, flag: str = "seeds") -> None:
    """A list of seeds, one run each: one or more, none twice (two runs of one seed are one run), each in the
    range the commands' ``--seed_everything`` takes. None: the scripts' own seed."""
    if seeds is None:
        return
    for seed in seeds:
        check_seed_range(f"--{flag}", seed)
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--{flag} {list(seeds)}: give one or more different seeds")


def check_marker(marker: str, flag: str = "marker") -> None:
    """Refuse a ``--marker`` (or the flag named) that could not name a table's markers in a Markdown file."""
    if not MARKER_NAME.fullmatch(marker):
        raise UserError(f"--{flag} {marker!r}: a name of lower-case letters, digits and dashes")

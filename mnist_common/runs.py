"""Run folders: each run owns one folder from its start, so runs started side by side never share files.

``{output_dir}/{framework}/version_N`` (``cv_N`` for a k-fold run) holds everything one run
writes: its configuration, metrics, checkpoints or ``.keras`` models, results and
figures. The number is taken with an atomic ``mkdir``: two runs started in the same
folder at the same moment get two folders. Paths a run records (in ``results.json``,
``cv_results.json``) are relative to its folder, so a moved or copied project still
finds them.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from mnist_common.errors import UserError, path_text
from mnist_common.files import os_reason

DEFAULT_OUTPUT_DIR = "runs"
CHECKPOINTS = "checkpoints"
RESUME_FILE = "last.ckpt"


def refuse_dangling_link(path: Path, what: str) -> None:
    """Refuse ``path`` where it or a folder above it is a symbolic link to nothing (``mkdir`` would say only "File
    exists" of it), naming the link and where it points."""
    for part in (path, *path.parents):
        if part.is_symlink() and not part.exists():
            raise UserError(f"{what} {path_text(path)}: {path_text(part)} is a symbolic link to "
                            f"{path_text(os.readlink(part))}, which does not exist")


def writable_dir(path: str | os.PathLike, what: str) -> Path:
    """Create ``path`` if needed and prove a file can be written there, before any work is spent.

    A name the system refuses (too long, a NUL byte from a config file) is one line naming it, not a traceback.
    """
    path = Path(path)
    try:
        refuse_dangling_link(path, what)
        if path.exists() and not path.is_dir():
            raise UserError(f"{what} {path_text(path)} is a file, not a folder")
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except (OSError, ValueError) as err:
        raise UserError(f"{what} {path_text(path)} is not writable: {os_reason(err)}") from None
    return path


def check_writable(path: str | os.PathLike, what: str) -> Path:
    """Prove that ``path`` could be created and written, without creating anything (a check before work).

    Every part of the name is looked up (``os.stat``), so a name the system would refuse when the run creates
    it (a part too long, a NUL byte) is refused now, in one line naming it.
    """
    path = Path(path)
    existing = path
    try:
        refuse_dangling_link(path.parent, what)
        while existing != existing.parent:
            try:
                os.stat(existing)
                break
            except (FileNotFoundError, NotADirectoryError):  # not there (yet), or under a file: look further up
                existing = existing.parent
        if not existing.is_dir():
            raise UserError(f"{what} {path_text(path)}: {path_text(existing)} is a file, not a folder")
        with tempfile.TemporaryFile(dir=existing):
            pass
    except (OSError, ValueError) as err:
        raise UserError(f"{what} {path_text(path)} is not writable: {os_reason(err)}") from None
    return path


_CREATED_WITH: dict[Path, Path] = {}  # run folder -> the outermost folder its allocation created


def allocate_run_dir(parent: str | os.PathLike, prefix: str = "version") -> Path:
    """Create and return ``parent/{prefix}_N`` for the smallest N not taken, atomically (``os.mkdir``)."""
    outermost = Path(parent)
    while not outermost.parent.exists() and outermost.parent != outermost.parent.parent:
        outermost = outermost.parent
    created = None if outermost.exists() else outermost
    parent = writable_dir(parent, "output folder")
    pattern = re.compile(rf"{re.escape(prefix)}_(\d+)$")
    taken = [int(m.group(1)) for p in parent.iterdir() if (m := pattern.match(p.name))]
    index = max(taken, default=-1) + 1
    while True:
        candidate = parent / f"{prefix}_{index}"
        try:
            candidate.mkdir()
            _CREATED_WITH[candidate] = created or candidate
            return candidate
        except FileExistsError:  # another run took it a moment ago
            index += 1


def latest_resumable_run(parent: str | os.PathLike) -> Path | None:
    """The run folder under ``parent`` whose ``checkpoints/last.ckpt`` was written most recently, if any."""
    parent = Path(parent)
    found = [p for p in parent.glob(f"version_*/{CHECKPOINTS}/{RESUME_FILE}") if p.is_file()]
    return max(found, key=lambda p: p.stat().st_mtime).parent.parent if found else None


def run_dir_of_checkpoint(path: str | os.PathLike) -> Path | None:
    """The run folder a checkpoint lives in (``<run>/checkpoints/x.ckpt``), or None for a checkpoint elsewhere."""
    path = Path(path).resolve()
    return path.parent.parent if path.parent.name == CHECKPOINTS else None


def relative_to_run(path: str | os.PathLike, run_dir: str | os.PathLike) -> str:
    """``path`` as recorded in a run's results: relative to the run folder when inside it."""
    path, run_dir = Path(path).resolve(), Path(run_dir).resolve()
    return str(path.relative_to(run_dir)) if path.is_relative_to(run_dir) else str(path)


def discard_if_empty_of_work(run_dir: str | os.PathLike) -> bool:
    """Remove a run folder that holds no checkpoint or model yet (a run that failed before doing any work).

    The folders its allocation created around it go too, where nothing else is in them.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or any(run_dir.rglob("*.ckpt")) or any(run_dir.rglob("*.keras")):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    outermost = _CREATED_WITH.pop(run_dir, run_dir)
    folder = run_dir.parent
    while outermost != run_dir and folder.is_relative_to(outermost):
        try:
            folder.rmdir()  # only if empty
        except OSError:
            break
        folder = folder.parent
    return True


_HELD: list[int] = []  # the run folders this process trains in, locked (open descriptors) until release_runs()


def hold_run(run: Path) -> bool:
    """Lock the run folder ``run`` for this process until :func:`release_runs` or its end, however it ends (the
    system's ``flock``, which a killed process lets go of too); False where another process holds it: two
    processes training one run, a resume of a run still training, interleave its metrics.csv and checkpoints."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock to take
        return True
    try:
        descriptor = os.open(run, os.O_RDONLY)
    except OSError:  # a folder it may write but not read: the checks of the run's files say what is wrong
        return True
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(descriptor)
        return False
    _HELD.append(descriptor)
    return True


def release_runs() -> None:
    """Let go of every run folder :func:`hold_run` locked (a command is over; the next, in this process, may take
    them)."""
    while _HELD:
        os.close(_HELD.pop())

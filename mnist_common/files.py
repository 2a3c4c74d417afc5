"""Atomic file writes: a file appears whole at its name, or not at all.

Everything the project writes for a user to keep (checkpoints, ``.keras`` models, results,
histories, figures) goes through :func:`write_atomically`: it is written to a temporary
file beside its destination, optionally checked, then renamed over the destination in one
step. An interrupted or failed write leaves the previous file (or nothing) and no
temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from mnist_common import errors
from mnist_common.errors import UserError, path_text


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(destination: str | os.PathLike, write: Callable[[Path], Any],
                     check: Callable[[Path], Any] | None = None, make_parents: bool = False,
                     replace: bool = False) -> Any:
    """``write(tmp)``, then ``check(tmp)`` (its result is returned), then rename ``tmp`` to ``destination``.

    The temporary file keeps the destination's suffix, in lower case (some writers, Keras' among them,
    insist on it). On any failure nothing is left behind and the exception propagates. A destination that did not
    exist when the write began is created only if it still does not (another run's file, or a folder, that appeared
    meanwhile is left as it is, and refused): the commands' overwrite checks hold to the end. ``replace``: put the file
    in place whatever appeared meanwhile (bytes every run writes alike, such as a verified download).
    """
    destination = Path(destination)
    existed = destination.exists() or destination.is_symlink()
    if make_parents:
        destination.parent.mkdir(parents=True, exist_ok=True)
    if not destination.parent.is_dir():
        raise UserError(f"cannot write {destination}: folder {destination.parent} does not exist")
    tmp = None
    try:
        try:
            with errors.sigterm_deferred():  # the temporary is not left by a SIGTERM before its name is kept
                fd, name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.stem}.",
                                            suffix=destination.suffix.lower())
                tmp = Path(name)
                os.close(fd)
        except OSError as err:
            raise UserError(f"cannot write to {destination.parent}: {err.strerror or err}") from None
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        result = check(tmp) if check is not None else None
        if errors.TERMINATING:  # a SIGTERM that a library swallowed on the way: the file is not put in place
            raise errors.Terminated
        if existed or replace:
            os.replace(tmp, destination)
        else:
            _create(tmp, destination)
        return result
    except OSError as err:
        if err.errno is not None:  # say which file could not be written (a full disk names none), not the temporary
            raise OSError(err.errno, err.strerror, str(destination)) from err
        raise
    finally:
        if tmp is not None:
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def temporary_folder(prefix: str | None = None) -> Iterator[str]:
    """``tempfile.TemporaryDirectory``'s folder, removed however the ``with`` ends, a SIGTERM's Terminated too.

    ``TemporaryDirectory`` registers the folder's clean-up only after ``mkdtemp`` returned: a SIGTERM between the
    two left the folder for good (the commands' quick exit skips the finalizers at exit). Here the folder is made
    with SIGTERM deferred (:func:`~mnist_common.errors.sigterm_deferred`) inside the ``try`` that removes it.
    """
    folder = None
    try:
        with errors.sigterm_deferred():
            folder = tempfile.mkdtemp(prefix=prefix)
        yield folder
    finally:
        if folder is not None and os.path.lexists(folder):
            shutil.rmtree(folder)


def _create(tmp: Path, destination: Path) -> None:
    """``tmp`` at ``destination``, which must not exist: a hard link fails if anything is there by then."""
    appeared = UserError(f"{path_text(destination)} appeared while it was being written (another run's?); it was "
                         f"left as it is, and nothing was written (--overwrite replaces it)")
    try:
        os.link(tmp, destination)
    except FileExistsError:
        raise appeared from None
    except OSError:  # a file system without hard links: the check and the rename as close together as can be
        if destination.exists() or destination.is_symlink():
            raise appeared from None
        os.replace(tmp, destination)


def check_readable(path: str | os.PathLike, label: str) -> Path:
    """``path`` if one byte of it can be read; else :class:`UserError` ``<label>: cannot be read (<why>)``.

    A file that exists but cannot be opened (no permission, an I/O error) must be refused for what it
    is, not taken for a damaged file by a reader that swallows the ``OSError`` (``zipfile.is_zipfile``
    calls it "not a zip archive") or let its traceback through.
    """
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as err:
        raise UserError(f"{label}: cannot be read ({err.strerror or err})") from None
    return Path(path)


def os_reason(err: BaseException) -> str:
    """Why the system refused a path, in its words: "File name too long", "embedded null byte", ..."""
    text = getattr(err, "strerror", None) or str(err).strip() or type(err).__name__
    return text.splitlines()[0]


def _same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):  # either is missing or unnamable: not the same existing file
        return False


def check_output_file(path: str | os.PathLike, label: str, overwrite: bool = False,
                      inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """``path`` if a command may write its file there; else :class:`UserError` ``<label> <path>: <why>``.

    Checked before any work, so that a refusal costs nothing (not a built model, not a printed prediction):
    the name must be one the system accepts, its folder must exist and take a file (one is created and removed),
    and an existing file is replaced only when the user said so (``--overwrite``): a command's output is often
    the result of minutes of work, or a figure someone keeps, and a typo must not cost it silently. A link, even
    a dangling or looping one, is an existing file. Never replaced, even with ``--overwrite``: one of the
    command's ``inputs`` (the picture being predicted), or what is not a regular file (a device, a FIFO), which
    the atomic rename would swap for one.
    """
    path = Path(path)
    name = f"{label} {path_text(path)}"
    try:
        link = os.lstat(path)  # not Path.exists(): that follows a link, and a dangling one "does not exist"
    except (FileNotFoundError, NotADirectoryError):
        link = None
    except (OSError, ValueError) as err:  # a name too long, a NUL byte, a folder that cannot be searched
        raise UserError(f"{name}: {os_reason(err)}") from None
    if link is not None:
        try:
            mode = os.stat(path).st_mode  # what a link points to
        except OSError:  # a dangling or looping link: the link itself
            mode = link.st_mode
        if stat.S_ISDIR(mode):
            raise UserError(f"{name}: is a folder; name the file to write")
        for source in inputs:
            if _same_file(path, source):
                raise UserError(f"{name}: is one of the command's inputs ({path_text(source)}); name another file")
        if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
            raise UserError(f"{name}: is not a regular file (a device, FIFO or socket); name a file to write")
        if not overwrite:
            raise UserError(f"{name}: already exists; give --overwrite to replace it, or name another file")
    folder = path.parent
    if not folder.is_dir():
        raise UserError(f"{name}: folder {path_text(folder)} {'is a file' if folder.exists() else 'does not exist'}")
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise UserError(f"{name}: cannot write in folder {path_text(folder)} ({os_reason(err)})") from None
    return path


def write_text(destination: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``destination`` atomically (creating its folder); return the path."""
    write_atomically(destination, lambda tmp: tmp.write_text(text), make_parents=True)
    return Path(destination)


def _marked(text: str, name: str) -> tuple[int, int] | None:
    """Where ``<!-- name:begin ... -->`` starts in ``text`` and where ``<!-- name:end -->`` starts after it
    (-1 if missing); None without a begin marker."""
    start = text.find(f"<!-- {name}:begin")
    return None if start < 0 else (start, text.find(f"<!-- {name}:end -->", start))


def between_markers(path: str | os.PathLike, name: str) -> str:
    """What lies between ``<!-- name:begin ... -->`` and ``<!-- name:end -->`` in a Markdown file ("" if none)."""
    path = Path(path)
    text = path.read_text() if path.exists() else ""
    span = _marked(text, name)
    if span is None or span[1] < 0 or "\n" not in text[span[0]:span[1]]:
        return ""
    return text[text.index("\n", span[0]) + 1:span[1]]


def write_between_markers(path: str | os.PathLike, name: str, text: str, title: str = "") -> Path:
    """Replace what lies between ``<!-- name:begin ... -->`` and ``<!-- name:end -->`` in a Markdown file.

    Benchmark scripts write their tables into ``docs/`` this way, so the figures there come from
    the script while the prose around them is kept. A file without the markers gets them at its end
    (a missing file is created, under ``title``).
    """
    path = Path(path)
    begin, end = f"<!-- {name}:begin (written by a script: do not edit by hand) -->", f"<!-- {name}:end -->"
    old = path.read_text() if path.exists() else (f"# {title}\n\n" if title else "")
    span = _marked(old, name)
    if span is None:
        head, tail = old.rstrip("\n") + "\n\n", "\n"
    else:
        head = old[:span[0]]
        tail = old[span[1] + len(end):] if span[1] >= 0 else "\n"
    return write_text(path, f"{head}{begin}\n{text}\n{end}{tail}")

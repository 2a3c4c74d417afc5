"""One-line errors for bad input, shared by every command line of the project."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import signal
import sys
import threading
from typing import Callable, Iterator, TypeVar

EXIT_USER_ERROR = 2
PATH_TEXT_LIMIT = 200  # characters of a path a message shows whole
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # what a shell reports of a writer whose pipe's reader went away (128 + SIGPIPE)
EXIT_TERMINATED = 143  # what a shell reports of a process SIGTERM ended (128 + SIGTERM)
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a write refused for want of space

F = TypeVar("F", bound=Callable[..., object])


class UserError(Exception):
    """Bad input a user can fix (missing data, wrong file, bad flag).

    Command lines print ``error: <message>`` on one line and exit with code 2
    instead of showing a traceback.
    """


class Terminated(KeyboardInterrupt):
    """SIGTERM (``timeout``, ``kill``, a container's stop) raised where the program is, as Ctrl-C raises
    KeyboardInterrupt: the ``finally`` blocks on the way out remove temporary files and folders
    (:func:`stop_cleanly_on_sigterm`). A KeyboardInterrupt, so that no ``except Exception`` swallows it."""


TERMINATING: list[int] = []  # the signal number once SIGTERM has been raised as Terminated in this process
DEFERRING: list[int] = []  # a sigterm_deferred section the main thread is in: the SIGTERMs raised before it


@contextlib.contextmanager
def sigterm_deferred() -> Iterator[None]:
    """A SIGTERM that arrives inside the ``with`` raises its :class:`Terminated` as the section ends, not inside it.

    For the few statements between making a temporary and the ``try`` that removes it (``mkstemp`` and its
    name kept; ``mkdtemp`` and its folder's clean-up registered): a Terminated raised between them left the
    temporary behind for good. Only the main thread defers (Python runs signal handlers there); elsewhere, and
    where :func:`stop_cleanly_on_sigterm` did not install the handler, the section changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    DEFERRING.append(len(TERMINATING))
    try:
        yield
    finally:
        before = DEFERRING.pop()
    if not DEFERRING and len(TERMINATING) > before:  # a SIGTERM came in the section (an outer one raises its own)
        raise Terminated


def stop_cleanly_on_sigterm() -> None:
    """From now on SIGTERM raises :class:`Terminated` in this process (:func:`exit_on_user_error` says so and exits
    143). Processes forked from it later (LitServe's) inherit the handler: there SIGTERM keeps its default meaning.

    A library may install its own handler over this one and call this one from it (Lightning's, while a Trainer
    runs). Where one of :data:`LEFT_TO_THE_LIBRARY` then says the library stops the work cleanly itself (Lightning,
    while a fit trains: at the next batch, its checkpoint saved), this handler leaves the signal to it."""
    signal.signal(signal.SIGTERM, functools.partial(_raise_terminated, os.getpid()))


# Whether the library whose SIGTERM handler calls this project's stops the work cleanly itself now (see
# stop_cleanly_on_sigterm); a command that runs under such a library adds its own question here
LEFT_TO_THE_LIBRARY: list[Callable[[], bool]] = []


def _raise_terminated(main_pid: int, signum: int, frame) -> None:
    if os.getpid() == main_pid:
        installed = signal.getsignal(signum)
        called_by_another = not (isinstance(installed, functools.partial) and installed.func is _raise_terminated)
        if called_by_another and any(stops_cleanly() for stops_cleanly in LEFT_TO_THE_LIBRARY):
            return
        TERMINATING.append(signum)
        if DEFERRING:  # raised when the section ends (sigterm_deferred)
            return
        raise Terminated
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


TERMINAL_COLOURS = re.compile(r"\x1b\[[0-9;]*m")


def one_line(err: BaseException, limit: int = 300, after: str | None = None) -> str:
    """``Type: first line of the message``, for wrapping a library's exception into a one-line error; ``after``: the
    message from the last place it says this on (what follows pages of context)."""
    message = str(err).rpartition(after)[2] if after else str(err)
    text = TERMINAL_COLOURS.sub("", message).strip().splitlines()  # (torch's exporter colours its own messages)
    return f"{type(err).__name__}: {text[0] if text else ''}"[:limit]


def escaped(path: str | os.PathLike) -> str:
    """``path`` whole, on one line: control characters escaped as Python writes them (``\\n``, ``\\x1b``), so a
    newline in a name cannot start a line of its own and an escape sequence cannot reach the terminal."""
    text = str(path)
    return text if text.isprintable() else repr(text)[1:-1]


def path_text(path: str | os.PathLike) -> str:
    """``path`` as a one-line message shows it: :func:`escaped`, and a name too long to read cut in its middle (its
    start and end say which)."""
    text = escaped(path)
    return text if len(text) <= PATH_TEXT_LIMIT else f"{text[:100]}...{text[-60:]}"


MAX_ERROR_CHARACTERS = 4_000  # an error line of a real refusal is under 1,000


def error_line(message: object) -> str:
    """``error: <message>`` on one line, as every command prints it: runs of whitespace (a message's own line breaks)
    become one space, and any other character that is not printable (a NUL or a terminal escape sequence in a file
    name the message quotes) is escaped as Python writes it in a string (``\\x00``, ``\\x1b``)."""
    text = " ".join(str(message).split())
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(text) > MAX_ERROR_CHARACTERS:  # a value the message quotes may be megabytes (a list of a million sizes)
        cut = len(text) - MAX_ERROR_CHARACTERS
        text = f"{text[:MAX_ERROR_CHARACTERS - 500]} ... ({cut:,} characters left out) ... {text[-500:]}"
    return "error: " + text


def discard_stdout() -> None:
    """Send what is left of standard output nowhere: a pipe whose reader went away fails every flush, the
    interpreter's last one too (which Python would report as an exception ignored)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # no standard output at all
        pass


def stdout_or_nowhere() -> None:
    """A command started with its standard output closed (``>&-``: Python's ``sys.stdout`` is None) writes it
    nowhere, as ``print`` then does, rather than failing with a traceback where a library writes to
    ``sys.stdout`` itself (jsonargparse's ``--print_config``) or flushes it."""
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")


def exit_on_user_error(main: F) -> F:
    """Decorate a ``main()`` so that a :class:`UserError` ends the process cleanly, and so does an output that
    cannot be written: closed from the start, or a pipe whose reader went away."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        stdout_or_nowhere()
        try:
            try:
                return main(*args, **kwargs)
            except Exception:
                # Terminated raised inside a library that made an error of its own of it (TensorFlow's tracer, an
                # AttributeError, which the export then reported as its own failure): the SIGTERM is what happened
                if TERMINATING:
                    raise Terminated from None
                raise
        except UserError as err:
            print(error_line(err), file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)
        except Terminated:
            print("terminated (SIGTERM)", file=sys.stderr)
            sys.exit(EXIT_TERMINATED)
        except KeyboardInterrupt:
            print("interrupted", file=sys.stderr)
            sys.exit(EXIT_INTERRUPTED)
        except BrokenPipeError:  # the reader of its output went away (``predict digits/ | head``): done, silently
            discard_stdout()
            sys.exit(EXIT_BROKEN_PIPE)
        except OSError as err:
            if err.errno == errno.ENAMETOOLONG:  # a name given on the command line or in a file, wherever it is used
                print(error_line(f"{path_text(err.filename or '')}: a name longer than the file system takes "
                                 f"({err.strerror})"), file=sys.stderr)
                sys.exit(EXIT_USER_ERROR)
            if err.errno not in DISK_FULL:
                raise
            # files are written whole or not at all (mnist_common.files), so nothing partial was left
            where = f" writing {err.filename}" if err.filename else ""
            print(f"error: no space left on the device{where}: free some space and run it again", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)

    return wrapper  # type: ignore[return-value]


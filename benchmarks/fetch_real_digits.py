"""Rebuild the real handwritten-digit set listed in ``real_digits.csv`` from its source repositories.

The images are other people's files in public GitHub repositories, so this project
keeps only a manifest (repository, commit, path, sha256, label, ...) and this script,
never the images. Each file is read at its recorded commit, from a local bare copy of
the repository when ``--mirrors`` has one, else from a blob-less clone of
``https://github.com/OWNER/NAME`` that fetches only the blobs it reads. Its sha256
must match the manifest, so a rebuilt set is byte for byte the one that was measured.

    python benchmarks/fetch_real_digits.py OUT_DIR [--mirrors DIR] [--manifest CSV]

A file is written as ``OUT_DIR/<label>_<owner>-<name>_<basename>``: the label is the
first character, as ``python -m lightning_mnist predict`` users read it back. Where two
rows would share that name, both use their whole path instead of the basename.

``git`` and the project's command-line helper only. Prints one line per failure and a summary; the exit
code is 0 only when every file was written and verified.
"""

from __future__ import annotations

import csv
import hashlib
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from mnist_common.cli import run  # noqa: E402
from mnist_common.errors import UserError, exit_on_user_error  # noqa: E402

MANIFEST = Path(__file__).with_name("real_digits.csv")
GITHUB = "https://github.com/{repository}"
GIT_TIMEOUT_S = 600  # one clone or one read; a hung network must not hang the script


def out_names(rows: list[dict]) -> list[str]:
    """The file name of each row: label first, then repository, then basename (whole path where names clash)."""
    def name(row: dict, part: str) -> str:
        owner, repo = row["repository"].split("/")
        return f"{row['label']}_{owner}-{repo}_{part}"

    short = [name(row, Path(row["path"]).name) for row in rows]
    clashes = {n for n, count in Counter(short).items() if count > 1}
    return [name(row, row["path"].replace("/", "-")) if n in clashes else n for row, n in zip(rows, short)]


def git(git_dir: Path, *args: str) -> bytes:
    """Output of ``git --git-dir=GIT_DIR ARGS``; CalledProcessError (with stderr) when git fails."""
    return subprocess.run(["git", f"--git-dir={git_dir}", *args], capture_output=True, check=True,
                          timeout=GIT_TIMEOUT_S).stdout


def local_git_dir(mirrors: Path | None, repository: str) -> Path | None:
    """A git directory for OWNER/NAME under ``mirrors``, or None.

    Layouts: ``owner+name/repo`` (a bare snapshot, as ``/work/.mirror`` holds them) or
    ``owner+name/repo/.git``, and plain clones ``owner+name`` or ``owner/name``, bare or not.
    """
    if mirrors is None:
        return None
    owner, name = repository.split("/")
    for base in (mirrors / f"{owner}+{name}" / "repo", mirrors / f"{owner}+{name}", mirrors / owner / name):
        for candidate in (base / ".git", base):
            if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
                return candidate
    return None


def clone(repository: str, into: Path) -> Path:
    """A bare, blob-less clone of the GitHub repository: history now, each file's bytes only when read."""
    subprocess.run(["git", "clone", "--quiet", "--bare", "--filter=blob:none", GITHUB.format(repository=repository),
                    str(into)], capture_output=True, check=True, timeout=GIT_TIMEOUT_S)
    return into


def read_blob(git_dir: Path, commit: str, path: str) -> bytes:
    """The file's bytes at ``commit``. ``cat-file blob`` gives them raw, with no textconv or filters."""
    try:
        return git(git_dir, "cat-file", "blob", f"{commit}:{path}")
    except subprocess.CalledProcessError as missing:  # a commit no branch reaches any more: ask GitHub by name
        try:
            git(git_dir, "fetch", "--quiet", "--filter=blob:none", "origin", commit)
        except subprocess.CalledProcessError:  # a mirror has no origin; GitHub does not have it either
            raise missing from None
        return git(git_dir, "cat-file", "blob", f"{commit}:{path}")


def why(err: Exception) -> str:
    """One line saying why git (or the file system) failed: git's last stderr line where there is one."""
    if isinstance(err, subprocess.CalledProcessError):
        lines = (err.stderr or b"").decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"git exited with {err.returncode}"
    if isinstance(err, subprocess.TimeoutExpired):
        return f"git took more than {GIT_TIMEOUT_S} s"
    return f"{type(err).__name__}: {err}"


def rebuild(rows: list[dict], out_dir: Path, mirrors: Path | None, scratch: Path) -> int:
    """Write and verify every row's file; print one line per failure; return the number of failures."""
    out_dir.mkdir(parents=True, exist_ok=True)
    git_dirs: dict[str, Path | Exception] = {}  # per repository: its git dir, or why there is none (cloned once)
    failures = 0
    for row, name in zip(rows, out_names(rows)):
        repository, where = row["repository"], f"{row['repository']}@{row['commit'][:12]}:{row['path']}"
        if repository not in git_dirs:
            try:
                git_dirs[repository] = (local_git_dir(mirrors, repository)
                                        or clone(repository, scratch / repository.replace("/", "+")))
            except (subprocess.SubprocessError, OSError) as err:
                git_dirs[repository] = err
        source = git_dirs[repository]
        try:
            if isinstance(source, Exception):
                raise source
            data = read_blob(source, row["commit"], row["path"])
        except (subprocess.SubprocessError, OSError) as err:
            print(f"FAILED {name}: cannot read {where} ({why(err)})", file=sys.stderr)
            failures += 1
            continue
        digest = hashlib.sha256(data).hexdigest()
        if digest != row["sha256"]:
            print(f"FAILED {name}: {where} has sha256 {digest}, the manifest says {row['sha256']}", file=sys.stderr)
            failures += 1
            continue
        (out_dir / name).write_bytes(data)
    return failures


def fetch(out_dir: Path, mirrors: Path | None = None, manifest: Path = MANIFEST) -> int:
    """Rebuild the real-digit set from its source repositories; every file's sha256 is checked.

    Args:
        out_dir: folder to write the images into.
        mirrors: local copies of the repositories (owner+name/repo, owner+name or owner/name); repositories not
            found there are cloned from GitHub.
        manifest: the CSV of files (repository, commit, path, sha256, label, ...).
    """
    try:
        with open(manifest, newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as err:
        raise UserError(f"--manifest {manifest}: {err.strerror}") from None
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file, not a folder")
    with tempfile.TemporaryDirectory(prefix="real-digits-") as scratch:
        failures = rebuild(rows, out_dir, mirrors, Path(scratch))
    repositories = len({row["repository"] for row in rows})
    print(f"{len(rows) - failures} of {len(rows)} files from {repositories} repositories written to {out_dir}"
          + (f"; {failures} failed" if failures else ", all sha256 verified"))
    return failures


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    return 1 if run(fetch, sys.argv[1:] if argv is None else argv, "python benchmarks/fetch_real_digits.py",
                    positional=("out_dir",)) else 0


if __name__ == "__main__":
    sys.exit(main())

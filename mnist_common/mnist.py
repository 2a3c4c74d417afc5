"""Read (and if needed download) MNIST as uint8 numpy arrays.

The files are kept in torchvision's layout, ``<data_dir>/MNIST/raw/*-ubyte``, so a
directory torchvision has already filled works as it is. Every file is checked
against its SHA-256 before it is used: a truncated or corrupt file is an error,
never silently wrong pixels.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mnist_common.errors import UserError, path_text
from mnist_common.files import os_reason, write_atomically

DATA_DIR_ENV = "MNIST_DATA_DIR"
DEFAULT_DATA_DIR = "./data"
NUM_CLASSES = 10
IMAGE_SIZE = 28
TRAIN_IMAGES, TEST_IMAGES = 60_000, 10_000

# SHA-256 of the uncompressed IDX files (the same files torchvision extracts).
SHA256 = {
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}


def idx_bytes(*shape: int) -> int:
    """An IDX file's size (:func:`_read_idx`): its magic number, a size per axis, then a byte a value."""
    return 4 + 4 * len(shape) + math.prod(shape)


# Their sizes, so that a mirror's answer is read and uncompressed no further (a 4 MB gzip of 4 GiB of zeros took 8 GB
# before its checksum was looked at)
SIZES = {"train-images-idx3-ubyte": idx_bytes(TRAIN_IMAGES, IMAGE_SIZE, IMAGE_SIZE),
         "train-labels-idx1-ubyte": idx_bytes(TRAIN_IMAGES),
         "t10k-images-idx3-ubyte": idx_bytes(TEST_IMAGES, IMAGE_SIZE, IMAGE_SIZE),
         "t10k-labels-idx1-ubyte": idx_bytes(TEST_IMAGES)}
MAX_DOWNLOAD = 16 << 20  # bytes read of a mirror's answer: the largest file is 9.9 MB compressed
# torchvision's mirrors, tried in order; files there are gzip-compressed.
MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)


@dataclass(frozen=True)
class MNIST:
    """The four MNIST arrays: images (N, 28, 28) uint8, labels (N,) uint8."""

    train_images: np.ndarray
    train_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """``data_dir`` if given, else ``$MNIST_DATA_DIR``, else ``./data``."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR)


def raw_dir(data_dir: str | os.PathLike | None = None) -> Path:
    return resolve_data_dir(data_dir) / "MNIST" / "raw"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _problem(directory: Path, detail: str) -> UserError:
    expected = ", ".join(SHA256)
    return UserError(f"MNIST data in {directory}: {detail} (expected {expected}; "
                     f"choose another data directory or set ${DATA_DIR_ENV})")


def _download(name: str, directory: Path) -> None:
    """Fetch ``name``.gz from the first mirror that answers; verify; keep it uncompressed."""
    errors = []
    for mirror in MIRRORS:
        try:
            with urllib.request.urlopen(f"{mirror}{name}.gz", timeout=30) as response:
                payload = response.read(MAX_DOWNLOAD + 1)
            data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(payload, SIZES[name] + 1)  # a gzip member
        except (OSError, EOFError, zlib.error) as err:  # URLError and timeouts are OSErrors
            errors.append(f"{mirror}: {err}")
            continue
        if len(payload) > MAX_DOWNLOAD or len(data) != SIZES[name]:
            errors.append(f"{mirror}: not MNIST's file (more than {MAX_DOWNLOAD:,} bytes, or not "
                          f"{SIZES[name]:,} uncompressed)")
            continue
        if hashlib.sha256(data).hexdigest() != SHA256[name]:
            errors.append(f"{mirror}: checksum mismatch")
            continue
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as err:  # a symbolic link loop on the way, a file where a folder should be, ...
            raise _problem(directory, f"the folder cannot be made ({err.strerror or err})") from None
        # whole or not at all: a full disk or a SIGTERM mid-write leaves no partial file in the data folder
        write_atomically(directory / name, lambda tmp: tmp.write_bytes(data), replace=True)  # another run's: alike
        return
    raise _problem(directory, f"{name} is missing and could not be downloaded ({'; '.join(errors)})")


def ensure_files(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Make sure the four files are present and intact; return their directory."""
    folder = resolve_data_dir(data_dir)
    try:
        a_file = folder.exists() and not folder.is_dir()
    except OSError:
        a_file = False  # said below, where the folder is listed
    if a_file:  # a download could not go there either
        raise UserError(f"data folder {path_text(folder)}: not a folder (give --data_dir the folder holding "
                        f"MNIST/raw, or set ${DATA_DIR_ENV})")
    directory = raw_dir(data_dir)
    if directory.exists():
        try:
            os.listdir(directory)
        except OSError as err:  # a file where the folder should be, no permission, ...
            raise _problem(directory, f"the folder cannot be listed ({err.strerror or err})") from None
    for name, checksum in SHA256.items():
        path = directory / name
        if path.exists() and not path.is_file():  # a link to a device or a pipe (endless reads), a folder
            raise _problem(directory, f"{name} is {_kind(path)}, not a file; remove it (a download would put the "
                                      f"file in its place)")
        if not path.is_file():
            if not download:
                raise _problem(directory, f"{name} is missing")
            _download(name, directory)
        try:
            intact = _intact(path, name, checksum)
        except OSError as err:
            raise _problem(directory, f"{name} cannot be read: {err.strerror or err}") from None
        if not intact:
            raise _problem(directory, f"{name} is corrupt or truncated (SHA-256 mismatch)")
    return directory


# The files this process found intact, by identity and change time: a command run in the same process again, a
# k-fold's folds, a test suite, each hashed the 55 MB again (0.1 s a time, 10 s of one test file's 5 minutes).
# A write to a file, or another file put in its place, changes its inode or ctime (which no user can set back).
_INTACT: set[tuple] = set()


def _intact(path: Path, name: str, checksum: str) -> bool:
    """Whether ``path`` holds MNIST's ``name`` (its size and SHA-256; a larger file is not read), hashed once per
    process while the file stays the same."""
    info = path.stat()
    key = (name, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)
    if key in _INTACT:
        return True
    if info.st_size != SIZES[name] or _sha256(path) != checksum:
        return False
    _INTACT.add(key)
    return True


def _kind(path: Path) -> str:
    """What a path that is no regular file leads to, in words."""
    mode = path.stat().st_mode
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
             (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"))
    return next((kind for test, kind in kinds if test(mode)), "not a regular file")


def files_present(data_dir: str | os.PathLike | None = None) -> bool:
    """Whether the four files are already here and intact (nothing is downloaded to find out)."""
    try:
        ensure_files(data_dir, download=False)
    except UserError:
        return False
    return True


def _read_idx(path: Path, ndim: int) -> np.ndarray:
    raw = path.read_bytes()
    magic = int.from_bytes(raw[:4], "big")
    if magic != 0x0800 + ndim:
        raise _problem(path.parent, f"{path.name} is not an IDX file of {ndim} dimensions")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    # copy: frombuffer views are read-only, and torch wants writable arrays
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape).copy()


def load_train_labels(data_dir: str | os.PathLike | None = None, download: bool = True) -> np.ndarray:
    """The 60,000 training labels alone (60 KB), for checks that need no images."""
    return _read_idx(ensure_files(data_dir, download) / "train-labels-idx1-ubyte", 1)


def load_mnist(data_dir: str | os.PathLike | None = None, download: bool = True) -> MNIST:
    """Load the 60,000 training and 10,000 test images and labels as uint8 arrays."""
    directory = ensure_files(data_dir, download)
    return MNIST(
        train_images=_read_idx(directory / "train-images-idx3-ubyte", 3),
        train_labels=_read_idx(directory / "train-labels-idx1-ubyte", 1),
        test_images=_read_idx(directory / "t10k-images-idx3-ubyte", 3),
        test_labels=_read_idx(directory / "t10k-labels-idx1-ubyte", 1),
    )


def check_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """The MNIST folder with its four files present and intact, checked before work that reads them.

    A mistyped ``--data_dir`` (or ``$MNIST_DATA_DIR``) is refused in one line, not found after a model was built
    and a download into the wrong folder failed; the default ``./data`` is filled as ``fit`` fills it.
    """
    folder = resolve_data_dir(data_dir)
    try:
        missing = not folder.is_dir()
    except OSError as err:
        raise UserError(f"data folder {path_text(folder)}: {os_reason(err)}") from None
    if missing and (folder.exists() or folder != Path(DEFAULT_DATA_DIR)):  # the default is made if missing
        what = "not a folder" if folder.exists() else "no such folder"
        raise UserError(f"data folder {path_text(folder)}: {what} (give --data_dir the folder holding "
                        f"MNIST/raw, or set ${DATA_DIR_ENV})")
    return ensure_files(data_dir)

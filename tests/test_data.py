"""The shared MNIST loader and splits: real files, exact counts, leak-free stratified splits."""

from __future__ import annotations

import gzip
import http.server
import os
import re
import shutil
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from mnist_common import mnist as mnist_module
from mnist_common.errors import UserError, exit_on_user_error
from mnist_common.mnist import SHA256, load_mnist
from mnist_common.splits import kfold_splits, make_split, stratified_subset

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def test_arrays_have_mnist_shapes_types_and_label_counts(mnist):
    assert mnist.train_images.shape == (60000, 28, 28) and mnist.test_images.shape == (10000, 28, 28)
    for array in (mnist.train_images, mnist.train_labels, mnist.test_images, mnist.test_labels):
        assert array.dtype == np.uint8
    assert mnist.train_images.max() == 255 and mnist.train_images.min() == 0
    assert np.bincount(mnist.train_labels).tolist() == TRAIN_COUNTS
    assert np.bincount(mnist.test_labels).tolist() == TEST_COUNTS


def _class_shares(labels):
    return np.bincount(labels, minlength=10) / len(labels)


def test_holdout_is_disjoint_complete_stratified_and_seeded(mnist):
    labels = mnist.train_labels
    split = make_split(labels, val_fraction=0.1, seed=42)
    assert len(split.val) == 6000 and len(split.train) == 54000
    assert not np.intersect1d(split.train, split.val).size
    assert np.array_equal(np.union1d(split.train, split.val), np.arange(60000))
    np.testing.assert_allclose(_class_shares(labels[split.val]), _class_shares(labels), atol=2e-4)
    again = make_split(labels, val_fraction=0.1, seed=42)
    assert np.array_equal(split.val, again.val)
    assert not np.array_equal(split.val, make_split(labels, val_fraction=0.1, seed=7).val)


def test_subset_is_stratified_and_split_inside_itself(mnist):
    labels = mnist.train_labels
    subset = stratified_subset(labels, 3000, seed=42)
    assert len(subset) == 3000 == len(np.unique(subset))
    np.testing.assert_allclose(_class_shares(labels[subset]), _class_shares(labels), atol=1e-3)
    split = make_split(labels, subset=3000, val_fraction=0.2, seed=42)
    assert len(split.train) == 2400 and len(split.val) == 600
    assert set(split.train) | set(split.val) == set(subset)


def test_kfold_partitions_the_training_images_like_the_notebook(mnist):
    labels = mnist.train_labels
    folds = kfold_splits(labels, 5, seed=42)
    vals = [f.val for f in folds]
    assert np.array_equal(np.sort(np.concatenate(vals)), np.arange(60000))  # each image validates once
    for fold in folds:
        assert not np.intersect1d(fold.train, fold.val).size
        np.testing.assert_allclose(_class_shares(labels[fold.val]), _class_shares(labels), atol=2e-4)
    fold2 = make_split(labels, num_folds=5, fold=2, seed=42)
    assert np.array_equal(fold2.val, folds[2].val)


@pytest.mark.parametrize("kwargs, message", [
    ({"subset": 70000}, "subset"),
    ({"val_fraction": 1.5}, "val_fraction"),
    ({"num_folds": 1}, "num_folds"),
    ({"num_folds": 3, "fold": 3}, "fold"),
])
def test_bad_split_arguments_are_user_errors(mnist, kwargs, message):
    with pytest.raises(UserError, match=message):
        make_split(mnist.train_labels, **kwargs)


@pytest.mark.parametrize("name, value, kind", [("num_folds", "two", "a whole number"), ("fold", 1.5, "a whole number"),
                                               ("batch_size", True, "a whole number"), ("rotation", "10", "a number"),
                                               ("val_fraction", None, "a number")])
def test_data_settings_of_another_type_are_refused_in_words(name, value, kind):
    """A checkpoint records the data settings unparsed: ``num_folds: "two"`` in one was a traceback where a resumed
    run compared it (hostile round 13); each setting's type is checked with its range."""
    from mnist_common.settings import check_data_settings

    settings = dict(batch_size=32, eval_batch_size=500, val_fraction=0.1, subset=None, num_folds=5, fold=0,
                    rotation=10.0, zoom=0.1, shift=0.1, shear=0.0)
    check_data_settings(**settings)
    with pytest.raises(UserError, match=rf"^--data.{name} must be {kind}, got {re.escape(repr(value))}$"):
        check_data_settings(**{**settings, name: value})


def test_truncated_or_missing_file_is_a_one_line_user_error(mnist_dir, tmp_path):
    shutil.copytree(mnist_dir / "MNIST", tmp_path / "MNIST")
    victim = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
    victim.chmod(0o644)
    victim.write_bytes(victim.read_bytes()[:5000])
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte is corrupt or truncated"):
        load_mnist(tmp_path)
    victim.unlink()
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte is missing"):
        load_mnist(tmp_path, download=False)
    # a link to a device was "missing" (and read without end where its size was not known); a pipe the same
    for kind, make in (("a character device", lambda: victim.symlink_to("/dev/zero")),
                       ("a named pipe", lambda: os.mkfifo(victim)), ("a folder", victim.mkdir)):
        make()
        for download in (True, False):
            with pytest.raises(UserError, match=f"t10k-labels-idx1-ubyte is {kind}, not a file; remove it"):
                load_mnist(tmp_path, download=download)
        victim.rmdir() if kind == "a folder" else victim.unlink()
    victim.write_bytes(b"\0" * 20_000_000)  # larger than the file: not read to be refused
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte is corrupt or truncated"):
        load_mnist(tmp_path)


def test_each_file_is_hashed_once_and_a_change_in_place_is_still_found(mnist_dir, tmp_path, monkeypatch):
    """Each file is hashed once per process while it stays the same (a command run again in-process, k folds, the
    tests); a byte changed in place, with the file's size and modification time put back, is still found."""
    from mnist_common import mnist as data

    shutil.copytree(mnist_dir / "MNIST", tmp_path / "MNIST")
    hashed = []
    monkeypatch.setattr(data, "_sha256", lambda path, real=data._sha256: hashed.append(path.name) or real(path))
    for _ in range(3):
        data.ensure_files(tmp_path, download=False)
    assert sorted(hashed) == sorted(data.SHA256)  # four files, once each
    victim = tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte"
    victim.chmod(0o644)
    before = victim.stat()
    changed = bytearray(victim.read_bytes())
    changed[-1] ^= 1
    victim.write_bytes(changed)
    os.utime(victim, ns=(before.st_atime_ns, before.st_mtime_ns))  # as a user can; the change time moves still
    assert victim.stat().st_size == before.st_size and victim.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(UserError, match="train-labels-idx1-ubyte is corrupt or truncated"):
        data.ensure_files(tmp_path, download=False)
    assert hashed[-1] == "train-labels-idx1-ubyte" and len(hashed) == 5


class QuietRequestHandler(http.server.SimpleHTTPRequestHandler):
    """A file server's handler that keeps its request log off standard error (the commands' one-line errors)."""

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def mirror(mnist_dir, tmp_path, monkeypatch):
    """A local HTTP mirror serving the gzipped IDX files, as the real mirrors do."""
    served = tmp_path / "mirror"
    served.mkdir()
    for name in SHA256:
        (served / f"{name}.gz").write_bytes(gzip.compress((mnist_dir / "MNIST" / "raw" / name).read_bytes(), 1))
    handler = partial(QuietRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(mnist_module, "MIRRORS", (f"http://127.0.0.1:{server.server_port}/",))
    yield served
    server.shutdown()


def test_download_fetches_verifies_and_loads(mirror, tmp_path, mnist):
    target = tmp_path / "downloaded"
    data = load_mnist(target)
    assert np.array_equal(data.test_labels, mnist.test_labels)
    assert sorted(p.name for p in (target / "MNIST" / "raw").iterdir()) == sorted(SHA256)


def test_download_with_wrong_checksum_is_refused(mirror, tmp_path):
    (mirror / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(10_004)))
    with pytest.raises(UserError, match="checksum mismatch"):
        load_mnist(tmp_path / "downloaded")


def test_a_full_disk_during_the_download_is_one_line_and_leaves_no_partial_file(mirror, small_disk, capsys):
    """The download wrote each file to a temporary beside it and renamed it, but removed nothing on failure: a full
    disk left a partial ``tmp*`` file of megabytes in MNIST/raw and an OSError that named no file.
    Now the command's one line names the file, and the folder holds nothing of it."""
    @exit_on_user_error
    def command() -> None:
        load_mnist(small_disk / "data")

    with pytest.raises(SystemExit) as exited:
        command()
    raw = small_disk / "data" / "MNIST" / "raw"
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: no space left on the device writing {raw / 'train-images-idx3-ubyte'}: free some space and run it "
        f"again"]
    assert list(raw.iterdir()) == []


@pytest.mark.parametrize("command", ["fit", "cv"])
def test_a_training_command_whose_download_fills_the_disk_says_to_run_it_again(command, mirror, small_disk, tmp_path,
                                                                               capsys, monkeypatch):
    """The training commands fetch MNIST before their run folder is made; a full disk then said "resume with
    --ckpt_path last", a run that had never started."""
    from lightning_mnist.training.cli import main

    monkeypatch.delenv("MNIST_DATA_DIR", raising=False)
    with pytest.raises(SystemExit) as exited:
        main([command, "--data.data_dir", str(small_disk / "data"), "--output_dir", str(tmp_path / "runs")])
    assert exited.value.code == 2
    written = small_disk / "data" / "MNIST" / "raw" / "train-images-idx3-ubyte"
    assert capsys.readouterr().err.splitlines()[-1:] == [
        f"error: no space left on the device writing {written}: free some space, then run it again (no run had "
        f"started)"]
    assert not (tmp_path / "runs").exists() and list((small_disk / "data" / "MNIST" / "raw").iterdir()) == []


def test_a_file_another_download_put_in_place_meanwhile_is_replaced_by_the_same_bytes(mirror, tmp_path, monkeypatch):
    """Two runs downloading into one folder at once write the same verified bytes: the second to finish replaces
    the first's file (a command's own outputs are refused instead when one appears while they are written)."""
    from mnist_common import files

    target = tmp_path / "data" / "MNIST" / "raw"
    written = files.write_atomically

    def another_run_first(destination, write, **kwargs):
        def write_after_the_other(tmp):
            Path(destination).write_bytes(b"another run's copy")
            write(tmp)
        return written(destination, write_after_the_other, **kwargs)

    monkeypatch.setattr(mnist_module, "write_atomically", another_run_first)
    data = load_mnist(tmp_path / "data")
    assert len(data.train_labels) == 60_000
    assert sorted(p.name for p in target.iterdir()) == sorted(SHA256)


def test_a_data_folder_that_loops_is_one_line_where_the_download_would_go(mirror, tmp_path):
    """A data folder that is a symbolic link loop, or whose MNIST/raw links to itself, looks missing, and the
    download's mkdir raised: an OSError or FileExistsError traceback (hostile round 7)."""
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    (tmp_path / "self" / "MNIST").mkdir(parents=True)
    (tmp_path / "self" / "MNIST" / "raw").symlink_to(tmp_path / "self" / "MNIST" / "raw")
    for folder in ("loop", "self"):
        with pytest.raises(UserError, match=r"MNIST data in .*: the folder cannot be made \((Too many levels of "
                                            r"symbolic links|File exists)"):
            load_mnist(tmp_path / folder)


def test_a_mirrors_answer_is_read_and_uncompressed_no_further_than_mnists_sizes(mirror, tmp_path):
    """A mirror's answer was read whole and uncompressed whole before its checksum was looked at: a 4 MB gzip of
    4 GiB of zeros took 8 GB, or a MemoryError traceback (hostile round 7). A plain http mirror is one of the two."""
    (mirror / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(bytes(64 << 20), 1))
    with pytest.raises(UserError, match=r"t10k-images-idx3-ubyte is missing and could not be downloaded \(http://"
                                        r"127\.0\.0\.1:\d+/: not MNIST's file \(more than 16,777,216 bytes, or not "
                                        r"7,840,016 uncompressed\)\)"):
        load_mnist(tmp_path / "downloaded")

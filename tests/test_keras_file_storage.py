"""A ``.keras`` file whose weights live outside it, by any HDF5 mechanism, is refused by every reader.

HDF5 lets a dataset keep its bytes in another file (external storage, virtual datasets)
and a name point elsewhere (external and soft links); a filter may load a plugin. Each
crafted file below swaps the notebook's first ``conv2d`` bias for one of these, aimed at a
local "secret" file, and every command that reads ``.keras`` files must refuse it in one
line before any byte of the secret reaches a model.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import main_error
from mnist_common.errors import UserError
from mnist_common.keras_file import read_keras_file
from lightning_mnist.__main__ import main

TARGET = "layers/conv2d/vars/1"  # the notebook's first bias: 32 float32 values
SECRET = b"root:x:0:0:root:/root:/bin/bash\n" * 8  # 256 bytes, enough for 32 float32


def _rewrite(seed_keras: Path, out: Path, swap) -> Path:
    """A copy of the seed file whose model.weights.h5 has TARGET replaced by ``swap(h5, name, shape, dtype)``."""
    with zipfile.ZipFile(seed_keras) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    buffer = io.BytesIO()
    with h5py.File(io.BytesIO(members["model.weights.h5"]), "r") as source, h5py.File(buffer, "w") as h5:
        for key in source:
            source.copy(source[key], h5, name=key)
        shape, dtype = h5[TARGET].shape, h5[TARGET].dtype
        del h5[TARGET]
        swap(h5, TARGET, shape, dtype)
    members["model.weights.h5"] = buffer.getvalue()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out


def _secret_h5(folder: Path) -> Path:
    path = folder / "secret.h5"
    with h5py.File(path, "w") as h5:
        h5.create_dataset("bias", data=np.frombuffer(SECRET[:128], dtype=np.float32))
    return path


def _external_storage(folder):
    secret = folder / "secret.txt"
    secret.write_bytes(SECRET)
    return lambda h5, name, shape, dtype: h5.create_dataset(name, shape=shape, dtype=dtype,
                                                            external=[(str(secret), 0, 128)])


def _virtual(folder):
    secret = _secret_h5(folder)

    def swap(h5, name, shape, dtype):
        layout = h5py.VirtualLayout(shape=shape, dtype=dtype)
        layout[:] = h5py.VirtualSource(str(secret), "bias", shape=shape)
        h5.create_virtual_dataset(name, layout)
    return swap


def _external_link(folder):
    secret = _secret_h5(folder)

    def swap(h5, name, shape, dtype):
        h5[name] = h5py.ExternalLink(str(secret), "bias")
    return swap


def _soft_link(folder):
    def swap(h5, name, shape, dtype):
        h5.create_dataset("elsewhere", data=np.frombuffer(SECRET[:128], dtype=np.float32))
        h5[name] = h5py.SoftLink("/elsewhere")
    return swap


def _plugin_filter(folder):
    return lambda h5, name, shape, dtype: h5.create_dataset(
        name, data=np.frombuffer(SECRET[:128], dtype=np.float32), compression="lzf")


MECHANISMS = {"external storage": (_external_storage, "external file"),
              "virtual dataset": (_virtual, "virtual dataset"),
              "external link": (_external_link, "ExternalLink"),
              "soft link": (_soft_link, "SoftLink"),
              "unexpected filter": (_plugin_filter, "filter 32000")}


@pytest.fixture(scope="module")
def crafted(tmp_path_factory, seed_keras) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("crafted")
    return {label: _rewrite(seed_keras, folder / f"{label.replace(' ', '_')}.keras", make(folder))
            for label, (make, _) in MECHANISMS.items()}


@pytest.mark.parametrize("label", MECHANISMS)
def test_reader_refuses_weights_outside_the_file(crafted, label, tmp_path):
    # Proof that the crafted file works as an attack when read naively: h5py resolves it to the secret.
    extracted = tmp_path / "model.weights.h5"
    with zipfile.ZipFile(crafted[label]) as archive:
        extracted.write_bytes(archive.read("model.weights.h5"))
    with h5py.File(extracted, "r") as h5:
        assert np.asarray(h5[TARGET]).tobytes() == SECRET[:128]
    with pytest.raises(UserError) as refusal:
        read_keras_file(crafted[label])
    message = str(refusal.value)
    assert "\n" not in message and str(crafted[label]) in message and MECHANISMS[label][1] in message, message
    assert "does not keep its weights inside itself" in message


def test_a_file_of_more_names_than_its_weights_need_is_refused_before_they_are_walked(seed_keras, tmp_path):
    """Each HDF5 name costs ~0.2 ms to check: a crafted file of a million hard links to one weight took 210 s to be
    refused. Names past what the architecture's weights and optimizer variables need are refused first (the notebook's
    file holds 66; its 26 weights and layers allow 272)."""
    def many_names(h5, name, shape, dtype):
        h5.create_dataset(name, data=np.zeros(shape, dtype))
        for index in range(1_000):
            h5[f"spare/{index}"] = h5[name]  # hard links to one dataset: each a name to check
    crafted = _rewrite(seed_keras, tmp_path / "names.keras", many_names)
    with pytest.raises(UserError, match=r"names\.keras: model\.weights\.h5 holds more than 272 HDF5 names, more than "
                                        r"this architecture's weights and their optimizer variables need$"):
        read_keras_file(crafted)
    with zipfile.ZipFile(seed_keras) as archive:
        names = []
        with h5py.File(io.BytesIO(archive.read("model.weights.h5")), "r") as h5:
            h5.visit_links(names.append)
    assert len(names) == 66


@pytest.mark.parametrize("argv", [
    ["predict", "{seed_png}", "--weights", "{file}", "--backend", "torch"],
    ["test", "--ckpt_path", "{file}"],
    ["convert", "{file}", "{tmp}/out.ckpt"],
    ["fit", "--model.architecture", "{file}", "--trainer.max_epochs", "1"],
], ids=lambda argv: argv[0])
def test_every_command_refuses_it_in_one_line(crafted, argv, seed_png, tmp_path, mnist_dir, capsys):
    file = crafted["external storage"]
    args = [a.format(seed_png=seed_png, file=file, tmp=tmp_path) for a in argv]
    code, line, _ = main_error(main, [*args, *(["--data.data_dir", str(mnist_dir)] if argv[0] in ("test", "fit")
                                                 else [])], capsys)
    assert code == 2 and "external file" in line, line
    assert not (tmp_path / "out.ckpt").exists()

"""The conversions ``.keras -> .ckpt``, ``.ckpt -> .keras`` and a legacy ``.h5`` to either, each proven before its
file appears.

Each writes to a temporary file beside the destination, read that file back
the way a user would (the checkpoint weights-only; the ``.keras`` file through the
project's checks and ``keras.saving.load_model(safe_mode=True)``), run the source model
and the re-read one on the same inputs (:mod:`lightning_mnist.interop.parity`) and only
then rename it into place. A difference above 1e-5 on any probability leaves no file.
"""

from __future__ import annotations

import os
from pathlib import Path

from mnist_common.files import write_atomically
from mnist_common.keras_file import KerasFile
from mnist_common.legacy_h5 import is_legacy_h5
from lightning_mnist.checkpoints import network_of, read_checkpoint, save_checkpoint
from lightning_mnist.interop.keras_models import keras_model_from_torch, load_checked, load_legacy_h5, save_model
from lightning_mnist.interop.parity import DEFAULT_CHECK_IMAGES, ParityReport, proven_on_check_inputs
from lightning_mnist.interop.proof import ConversionCheckFailed  # noqa: F401  (re-exported)


def keras_to_checkpoint(keras_path: str | os.PathLike, ckpt_path: str | os.PathLike,
                        check_images: int = DEFAULT_CHECK_IMAGES,
                        data_dir: str | os.PathLike | None = None) -> tuple[ParityReport, KerasFile]:
    """Write a Lightning checkpoint of a checked ``.keras`` file's architecture and weights (or a legacy ``.h5``
    file's, as Keras reads it: :func:`keras_bridge.files.load_legacy_h5`).

    The file's optimizer is ignored (reported in the returned :class:`KerasFile`).
    """
    ckpt_path = Path(ckpt_path)
    model, info = load_legacy_h5(keras_path) if is_legacy_h5(keras_path) else load_checked(keras_path)
    network = network_of(info)  # what Keras loaded too
    source = {"path": str(info.path), "keras_version": info.keras_version, "date_saved": info.date_saved,
              "optimizer_ignored": info.optimizer}

    def check(tmp: Path) -> ParityReport:
        reread = read_checkpoint(tmp).network()
        return proven_on_check_inputs(reread, model, ckpt_path, check_images, data_dir)

    report = write_atomically(ckpt_path, lambda tmp: save_checkpoint(tmp, info.architecture, network.state_dict(),
                                                                     keras_source=source), check)
    return report, info


def checkpoint_to_keras(ckpt_path: str | os.PathLike, keras_path: str | os.PathLike,
                        check_images: int = DEFAULT_CHECK_IMAGES,
                        data_dir: str | os.PathLike | None = None) -> ParityReport:
    """Write the ``.keras`` model of a checkpoint: its architecture, its weights, compiled like the notebook.

    The file loads in a plain Keras (no torch, no project code) with
    ``keras.saving.load_model(path, safe_mode=True)`` and trains further there.
    """
    keras_path = Path(keras_path)
    checkpoint = read_checkpoint(ckpt_path)
    network = checkpoint.network()
    model = keras_model_from_torch(checkpoint.architecture, checkpoint.weights, as_given=True)

    def check(tmp: Path) -> ParityReport:
        reloaded, _ = load_checked(tmp)
        return proven_on_check_inputs(network, reloaded, keras_path, check_images, data_dir)

    return save_model(model, keras_path, check)


def legacy_h5_to_keras(h5_path: str | os.PathLike, keras_path: str | os.PathLike,
                       check_images: int = DEFAULT_CHECK_IMAGES,
                       data_dir: str | os.PathLike | None = None) -> tuple[ParityReport, KerasFile]:
    """Write a legacy HDF5 model file (Keras 2's or Keras 3's ``model.save("model.h5")``) as a Keras 3 ``.keras`` file.

    Keras reads the checked file (:func:`keras_bridge.files.load_legacy_h5`, which refuses layers the bridge does
    not take before anything is written); the file written is read back as any ``.keras`` file is, and its torch
    network proven against the model Keras read from the ``.h5``. The model is saved uncompiled.
    """
    model, info = load_legacy_h5(h5_path)

    def check(tmp: Path) -> ParityReport:
        _, written = load_checked(tmp)
        return proven_on_check_inputs(network_of(written), model, keras_path, check_images, data_dir)

    return save_model(model, keras_path, check), info

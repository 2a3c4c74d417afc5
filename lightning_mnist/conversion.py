"""The two conversions, ``.keras -> .ckpt`` and ``.ckpt -> .keras``, each proven before its file appears.

Both directions write to a temporary file beside the destination, read that file back
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
from lightning_mnist.checkpoints import read_checkpoint, save_checkpoint
from lightning_mnist.interop.keras_models import keras_model_from_torch, load_checked, save_model
from lightning_mnist.interop.parity import DEFAULT_CHECK_IMAGES, ParityReport, proven_on_check_inputs
from lightning_mnist.interop.proof import ConversionCheckFailed  # noqa: F401  (re-exported)
from lightning_mnist.interop.weights import keras_to_torch
from lightning_mnist.models.network import KerasNetwork


def keras_to_checkpoint(keras_path: str | os.PathLike, ckpt_path: str | os.PathLike,
                        check_images: int = DEFAULT_CHECK_IMAGES,
                        data_dir: str | os.PathLike | None = None) -> tuple[ParityReport, KerasFile]:
    """Write a Lightning checkpoint of a checked ``.keras`` file's architecture and weights.

    The file's optimizer is ignored (reported in the returned :class:`KerasFile`).
    """
    ckpt_path = Path(ckpt_path)
    model, info = load_checked(keras_path)
    network = KerasNetwork(info.architecture)
    network.load_state_dict(keras_to_torch(info.architecture, info.weights), strict=True)  # what Keras loaded too
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
    model = keras_model_from_torch(checkpoint.architecture, checkpoint.weights)

    def check(tmp: Path) -> ParityReport:
        reloaded, _ = load_checked(tmp)
        return proven_on_check_inputs(network, reloaded, keras_path, check_images, data_dir)

    return save_model(model, keras_path, check)

"""The one place that reads and writes checkpoints, and loads a model from any file the project accepts.

Wherever a model is loaded (``test``, ``predict``, ``serve``, ``convert``, the ensemble),
these are the files accepted:

===================  ==============================  ================================  ===========================
file                 what it is                      on torch                          on Keras
===================  ==============================  ================================  ===========================
``*.ckpt``           a Lightning checkpoint          its network (read weights-only)   converted in memory
``*.keras``          a Keras 3 model                 converted in memory (no Keras)    checked, then safe_mode load
``cv_results.json``  a k-fold run (or its folder)    the mean of its fold models       the same
===================  ==============================  ================================  ===========================

A checkpoint is read with ``torch.load(weights_only=True)``, so reading one can run no
code; it records its network's architecture description in its hyper-parameters, so no
flag is needed to rebuild it. Older checkpoints still load: those whose description has no
``format_version`` (a chain whose modules were named as a ``.keras`` file names weights), and
those of the project's first version (the notebook's network with ``conv1``/``bn1``/... keys
and no description).

Paths a ``cv_results.json`` records are relative to its folder (absolute in older files).
"""

from __future__ import annotations

import importlib.metadata
import io
import json
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import urlparse

import torch

from mnist_common.architecture import Architecture, ArchitectureError
from mnist_common.architecture.description import MAX_PARAMETERS
from mnist_common.documents import MAX_DOCUMENT_DEPTH, beyond_floats, count_values, value_depth
from mnist_common.errors import UserError, one_line
from mnist_common.files import check_readable, write_atomically
from mnist_common.keras_file import KERAS_SUFFIX, KerasFile, check_file, read_keras_file
from mnist_common.legacy_h5 import LEGACY_SUFFIXES
from mnist_common.results import CV_RESULTS_FILE
from mnist_common.settings import MAX_FOLDS
from lightning_mnist.interop.weights import TorchWeights, check_state_dict, keras_to_torch
from lightning_mnist.models.network import KerasNetwork

if TYPE_CHECKING:
    from lightning_mnist.models import MnistClassifier

CKPT_SUFFIX = ".ckpt"
# Values a checkpoint's recorded settings may hold: the largest network (2,000 layers, each spelled out) records
# under 100,000; shared references in a crafted pickle can stand for billions
MAX_RECORDED_VALUES = 1_000_000
RESULTS_SUFFIX = ".json"
MAX_REMOTE_BYTES = 1 << 30
NETWORK_PREFIX = "network."
# The first version's module names for the notebook's network -> Keras' names, which the network now uses.
LEGACY_MODULES = {"conv1": "conv2d", "bn1": "batch_normalization", "conv2": "conv2d_1",
                  "bn2": "batch_normalization_1", "dense1": "dense", "dense2": "dense_1"}
ACCEPTED = (f"a Lightning checkpoint ({CKPT_SUFFIX}), a Keras model ({KERAS_SUFFIX}, or a legacy "
            f"{LEGACY_SUFFIXES[0]}) or a k-fold run's {CV_RESULTS_FILE}")


@dataclass
class Checkpoint:
    """A checked checkpoint: its network's architecture and weights, the classifier's settings, the rest."""

    path: Path
    architecture: Architecture
    weights: TorchWeights  # the network's state dict, keys without "network."
    hparams: dict[str, Any] = field(default_factory=dict)  # the classifier's hyper-parameters
    contents: dict[str, Any] = field(default_factory=dict, repr=False)  # everything the file holds

    def network(self) -> KerasNetwork:
        network = KerasNetwork(self.architecture)
        network.load_state_dict(self.weights, strict=True)
        return network.eval()


def _legacy_weights(state_dict: dict[str, Any]) -> dict[str, Any] | None:
    """A first-version notebook checkpoint's weights under the network's current names, else None."""
    renamed = {}
    for key, value in state_dict.items():
        module, _, attribute = key.partition(".")
        if module not in LEGACY_MODULES:
            return None
        if attribute != "num_batches_tracked":  # torch's BatchNorm counter; unused with a fixed momentum
            renamed[f"{LEGACY_MODULES[module]}.{attribute}"] = value
    return renamed


def _version_1_weights(architecture: Architecture, state_dict: dict[str, Any]) -> dict[str, Any]:
    """A version-1 checkpoint's weights under its layers' names: version 1 named each module as the layer's
    weights are named inside a ``.keras`` file (by class, ``conv2d_1``), whatever the layer was called."""
    layer_of = {stored: name for name, stored in architecture.storage_names.items()}
    renamed = {}
    for key, value in state_dict.items():
        module, _, attribute = str(key).partition(".")
        renamed[f"{layer_of.get(module, module)}.{attribute}"] = value
    return renamed


def model_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` if it is a non-empty local file that can be read; else a one-line :class:`UserError`."""
    return check_readable(check_file(path, what), f"{what} {path}".strip())


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and check a checkpoint (weights only); :class:`UserError` naming what is wrong with it."""
    path = model_file(path, "checkpoint")
    with open(path, "rb") as f:
        head = f.read(2)
    if not (zipfile.is_zipfile(path) or head[:1] == b"\x80"):  # torch.save writes a zip (long ago, a pickle)
        raise UserError(f"{path} is not a PyTorch checkpoint (neither a zip archive nor a pickle)")
    try:
        with warnings.catch_warnings():  # what torch says of a file's odd contents (a sparse tensor's check):
            warnings.simplefilter("ignore")  # the contents are checked below, and refused in one line
            contents = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(err))
        what = f"code ({found.group(1)})" if found else "objects that are not plain weights"
        raise UserError(f"{path} holds {what} that a safe, weights-only load refuses; it was not loaded") from None
    except Exception as err:  # truncated, damaged, not a torch file
        raise UserError(f"{path} is not a readable PyTorch checkpoint ({one_line(err)})") from None
    state_dict = contents.get("state_dict", contents) if isinstance(contents, dict) else None
    if not isinstance(state_dict, dict):  # the file's object, or its "state_dict" entry: say which
        held = f"a {type(contents).__name__}" if not isinstance(contents, dict) else \
            f"a dict whose state_dict is a {type(state_dict).__name__}"
        raise UserError(f"{path} is not a model checkpoint (it holds {held}, not weights by name)")
    if any(str(k).startswith(NETWORK_PREFIX) for k in state_dict):  # a key without it is then named as unexpected
        state_dict = {k.removeprefix(NETWORK_PREFIX) if isinstance(k, str) else k: v for k, v in state_dict.items()}
    hparams = contents.get("hyper_parameters") if isinstance(contents.get("hyper_parameters"), dict) else {}
    if count_values(hparams, MAX_RECORDED_VALUES) > MAX_RECORDED_VALUES:  # before anything walks or prints them
        raise UserError(f"{path}: its recorded settings (hyper_parameters) hold more than {MAX_RECORDED_VALUES:,} "
                        f"values (shared references that expand?); a checkpoint of the largest network this "
                        f"bridge builds records under a tenth of that")
    if value_depth(hparams) > MAX_DOCUMENT_DEPTH:  # jsonargparse's recursive walk of them ran out of stack
        raise UserError(f"{path}: its recorded settings (hyper_parameters) nest lists or mappings more than "
                        f"{MAX_DOCUMENT_DEPTH} deep (a run records a few levels)")
    if beyond_floats(hparams):
        raise UserError(f"{path}: its recorded settings (hyper_parameters) hold a whole number beyond any float "
                        f"(more than 309 digits), which no setting takes")
    hparams = dict(hparams)
    description = hparams.get("architecture")
    if isinstance(description, dict):
        try:
            architecture = Architecture.from_config(description, source=f"{path} (its recorded architecture)")
        except ArchitectureError as err:
            raise UserError(str(err)) from None
        if "format_version" not in description:
            state_dict = _version_1_weights(architecture, state_dict)
    elif description is None and (legacy := _legacy_weights(state_dict)) is not None:
        architecture, state_dict = Architecture.load("notebook"), legacy
    else:
        raise UserError(f"{path} records no architecture this project can rebuild (not a checkpoint of "
                        f"lightning_mnist's classifier)")
    hparams["architecture"] = architecture.to_config()
    weights = check_state_dict(architecture, state_dict, str(path))
    return Checkpoint(path=path, architecture=architecture, weights=weights, hparams=hparams, contents=contents)


def fetch_model_file(url: str, folder: Path) -> Path:
    """Copy a remote model file (``https://``, or any fsspec protocol) into ``folder``, named as in the URL.

    Lightning would unpickle a URL with ``weights_only=False``; fetched here, the file is then read
    like a local one of its kind (a checkpoint weights-only, a ``.keras`` file checked), and what
    that refuses is refused in one line.
    """
    import fsspec

    target = folder / (Path(urlparse(url).path).name or "remote.ckpt")
    try:
        with fsspec.open(url, "rb") as source, open(target, "wb") as copy:
            while block := source.read(1 << 20):
                if copy.tell() + len(block) > MAX_REMOTE_BYTES:
                    raise UserError(f"{url}: larger than {MAX_REMOTE_BYTES >> 20} MiB, more than any checkpoint "
                                    f"of these networks")
                copy.write(block)
    except UserError:
        raise
    except Exception as err:  # unknown protocol, network errors, HTTP errors
        raise UserError(f"{url}: cannot be fetched ({one_line(err)})") from None
    return target


def save_checkpoint(path: str | os.PathLike, architecture: Architecture, weights: TorchWeights,
                    hparams: dict[str, Any] | None = None, **extra: Any) -> Path:
    """Write (atomically) a checkpoint that ``MnistClassifier.load_from_checkpoint`` and ``test --ckpt_path`` accept."""
    contents = {
        "state_dict": {f"{NETWORK_PREFIX}{k}": v.detach().cpu().contiguous() for k, v in weights.items()},
        "hyper_parameters": {**(hparams or {}), "architecture": architecture.to_config()},
        "hparams_name": "kwargs",
        "pytorch-lightning_version": importlib.metadata.version("lightning"),
        "epoch": 0,
        "global_step": 0,
        **extra,
    }
    serialized = io.BytesIO()
    torch.save(contents, serialized)  # first in memory: a full disk then fails as an OSError, not inside torch
    write_atomically(path, lambda tmp: tmp.write_bytes(serialized.getbuffer()))
    return Path(path)


# ---------------------------------------------------------------------------------------------
# Loading a model from any accepted file


def keras_file_network(path: str | os.PathLike) -> KerasNetwork:
    """The torch network of a checked ``.keras`` file; its weights are read from the file, Keras is not imported."""
    return network_of(read_keras_file(model_file(path, ""))).eval()


def network_of(info: KerasFile) -> KerasNetwork:
    """The torch network of what a checked Keras file holds (a ``.keras`` file's, or a legacy ``.h5`` one's)."""
    network = KerasNetwork(info.architecture)
    network.load_state_dict(keras_to_torch(info.architecture, info.weights), strict=True)
    return network


def fold_model_paths(results_path: str | os.PathLike, accepted: str = ACCEPTED) -> tuple[Path, list[Path], str]:
    """(the cv_results.json, its fold model files, its framework); a folder holding one is accepted too.
    ``accepted``: what the command takes, named where the folder holds no results."""
    source = Path(results_path)
    if source.is_dir():
        if not (source / CV_RESULTS_FILE).is_file():
            if all((source / part).is_file() for part in ("config.json", "model.weights.h5")):
                raise UserError(f"{results_path}: a Keras model saved unzipped (save_model(..., zipped=False)); save "
                                f"it as a .keras file (model.save(\"model.keras\")) and name that")
            raise UserError(f"{results_path}: a folder without a {CV_RESULTS_FILE} (a k-fold run's folder holds one); "
                            f"name {accepted}")
        source = source / CV_RESULTS_FILE
    check_file(source, "k-fold results")
    try:
        results = json.loads(source.read_text())
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as err:  # (nested past Python's stack)
        raise UserError(f"{source}: not a readable k-fold {CV_RESULTS_FILE} ({one_line(err)})") from None
    folds = results.get("folds") if isinstance(results, dict) else None
    if not isinstance(folds, list) or not folds or not all(
            isinstance(f, dict) and isinstance(f.get("model_path"), str) and f["model_path"] for f in folds):
        raise UserError(f"{source}: not a k-fold {CV_RESULTS_FILE} (it needs a list of folds, each with a "
                        f"model_path)")
    if len(folds) > MAX_FOLDS:
        raise UserError(f"{source}: {len(folds)} folds, more than the {MAX_FOLDS} a k-fold run trains at most")
    paths, named = [], {}  # the folds' model files, each file by the first fold naming it
    for i, fold in enumerate(folds):
        path = Path(fold["model_path"])
        path = path if path.is_absolute() else source.parent / path
        label = fold.get("fold", i)
        what = f"{source}: fold {label} model"
        if path.suffix.lower() not in TORCH_LOADERS:
            raise UserError(f"{what} {path}: expected a checkpoint ({CKPT_SUFFIX}) or a Keras model ({KERAS_SUFFIX})")
        model_file(path, what)
        # a hand-edited list naming one model twice would weigh it twice in the ensemble
        same = path.resolve()
        if same in named:
            raise UserError(f"{source}: folds {named[same]} and {label} name the same model file {path}; a k-fold "
                            f"run keeps one model a fold, and its ensemble weighs each once")
        named[same] = label
        paths.append(path)
    return source, paths, str(results.get("framework", ""))


def _single_file_kind(path: Path, accepted: str = ACCEPTED) -> str:
    suffix = path.suffix.lower()
    if path.is_dir() or suffix == RESULTS_SUFFIX:
        return RESULTS_SUFFIX
    if suffix not in TORCH_LOADERS:  # the one table of the model files read here
        model_file(path, "model")
        raise UserError(f"{path}: expected {accepted}")
    return suffix


def _legacy_h5_network(path: Path) -> KerasNetwork:
    """The torch network of a legacy ``.h5`` model file, which only Keras reads (see keras_bridge.files)."""
    from lightning_mnist.interop.keras_models import load_legacy_h5

    return network_of(load_legacy_h5(model_file(path, ""))[1]).eval()


# suffix -> how to get a torch network (and a Keras model) from one file of that kind
TORCH_LOADERS: dict[str, Callable[[Path], KerasNetwork]] = {
    CKPT_SUFFIX: lambda path: read_checkpoint(path).network(),
    KERAS_SUFFIX: keras_file_network,
    **dict.fromkeys(LEGACY_SUFFIXES, _legacy_h5_network),
}


def _keras_from_checkpoint(path: Path) -> tuple[Any, Architecture]:
    from lightning_mnist.interop.keras_models import keras_model_from_torch

    checkpoint = read_checkpoint(path)
    return keras_model_from_torch(checkpoint.architecture, checkpoint.weights), checkpoint.architecture


def _keras_from_keras_file(path: Path) -> tuple[Any, Architecture]:
    from lightning_mnist.interop.keras_models import load_checked

    model, info = load_checked(model_file(path, ""))
    return model, info.architecture


def _keras_from_legacy_h5(path: Path) -> tuple[Any, Architecture]:
    from lightning_mnist.interop.keras_models import load_legacy_h5

    model, info = load_legacy_h5(model_file(path, ""))
    return model, info.architecture


KERAS_LOADERS: dict[str, Callable[[Path], tuple[Any, Architecture]]] = {
    CKPT_SUFFIX: _keras_from_checkpoint,
    KERAS_SUFFIX: _keras_from_keras_file,
    **dict.fromkeys(LEGACY_SUFFIXES, _keras_from_legacy_h5),
}


def model_files(path: str | os.PathLike, accepted: str = ACCEPTED) -> tuple[Path, list[Path], str]:
    """(source, model files, default backend) for what ``--weights``/``--ckpt_path`` names; ``accepted`` says what
    the command takes when it is none of them."""
    if "://" in str(path):
        check_file(str(path), "model")  # refused in one line: these commands read local files
    if not str(path).strip():  # Path("") is the current folder
        raise UserError(f"'': an empty name; name {accepted}")
    path = Path(path)
    if _single_file_kind(path, accepted) == RESULTS_SUFFIX:
        source, paths, framework = fold_model_paths(path, accepted)
        return source, paths, "keras" if framework == "keras" else "torch"
    return path, [path], "keras" if path.suffix.lower() in (KERAS_SUFFIX, *LEGACY_SUFFIXES) else "torch"


def load_networks(path: str | os.PathLike) -> list[KerasNetwork]:
    """The torch network(s) of a model file, or the fold networks of a k-fold run; eval mode."""
    source, paths, _ = model_files(path)
    return _within_bound(source, paths, TORCH_LOADERS, lambda network: network.architecture)


def load_keras_models(path: str | os.PathLike) -> list[tuple[Any, Architecture]]:
    """(Keras model, its architecture) of a model file, or of a k-fold run's folds (checkpoints converted in memory)."""
    source, paths, _ = model_files(path)
    return _within_bound(source, paths, KERAS_LOADERS, lambda loaded: loaded[1])


def _within_bound(source: Path, paths: list[Path], loaders: dict, architecture_of: Callable) -> list:
    """Each of ``paths`` loaded, a k-fold run's folds together held to the bound one network has
    (:data:`MAX_PARAMETERS`): a 2 KB checkpoint can stand for a network of 99 million weights (every weight a view of
    one stored number), and 100 folds of them for 40 GB."""
    loaded, total = [], 0
    for path in paths:
        loaded.append(loaders[path.suffix.lower()](path))
        total += sum(architecture_of(loaded[-1]).parameter_count())
        if len(paths) > 1 and total > MAX_PARAMETERS:
            raise UserError(f"{source}: its folds' networks hold {total:,} weight values by fold {len(loaded) - 1}, "
                            f"more than one network may ({MAX_PARAMETERS:,}); an ensemble is held to it too")
    return loaded


def load_classifier(path: str | os.PathLike) -> MnistClassifier:
    """A classifier in eval mode: one model file's, or the k-fold ensemble of a ``cv_results.json``."""
    from lightning_mnist.models import MnistClassifier, MnistEnsemble

    networks = load_networks(path)
    if len(networks) > 1 or _single_file_kind(Path(path)) == RESULTS_SUFFIX:
        return MnistEnsemble(networks).eval()
    classifier = MnistClassifier(architecture=networks[0].architecture.to_config())
    classifier.network.load_state_dict(networks[0].state_dict(), strict=True)
    return classifier.eval()

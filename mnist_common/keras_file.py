"""Read and check a Keras 3 ``.keras`` file before any framework sees it (zip, JSON and HDF5 only).

A ``.keras`` file is a zip of ``config.json`` (the model), ``metadata.json`` and
``model.weights.h5``. Nothing in it is trusted until:

* the zip holds exactly those three members, of sane sizes, with good CRCs;
* ``config.json`` is a Sequential or single-input, single-output Functional model of
  supported, built-in Keras layers, or of such models (:func:`~mnist_common.architecture.keras_config.read_keras_config`:
  a ``Lambda``, a custom class or an unsupported setting is refused, naming the layer);
* ``model.weights.h5`` keeps every byte inside itself (:func:`check_storage`: no external
  storage, virtual dataset, soft or external link, or filter other than HDF5's built-in
  deflate, shuffle and Fletcher-32), so no weight can be read from another file;
* it holds exactly the weights that architecture implies, of the right shapes and dtypes
  (float32, but Normalization's int64 ``count``), finite, with non-negative variances.

Only then may Keras load it (``keras_bridge.files.load_checked`` does, with
``safe_mode=True``); the torch side needs no Keras at all, it maps these arrays.
The optimizer named in the compile config is reported and ignored.
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mnist_common.architecture import Architecture
from mnist_common.architecture.layers import shape_text
from mnist_common.architecture.keras_config import read_keras_config
from mnist_common.errors import UserError, escaped, one_line, path_text

KERAS_SUFFIX = ".keras"
MEMBERS = ("config.json", "metadata.json", "model.weights.h5")
MAX_JSON_BYTES = 4 << 20
MAX_WEIGHTS_BYTES = 1 << 30
OPTIMIZER_GROUP = "optimizer/"
# HDF5 filters that only re-encode bytes held in the file; any other (szip, n-bit, a plugin) is refused
# before a value is read, since a plugin filter would load a shared library named by the environment.
BUILTIN_FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32"}
# HDF5 names (links) in a weights file: a model of MAX_LAYERS layers stores about 2 groups and a few weights (and their
# optimizer variables) for each; a file with millions of links took minutes to walk before its refusal
MAX_H5_LINKS = 50_000
INSIDE_LAYOUTS = ("COMPACT", "CONTIGUOUS", "CHUNKED")


@dataclass
class KerasFile:
    """What a checked ``.keras`` file holds."""

    path: Path
    architecture: Architecture
    weights: dict[str, list[np.ndarray]]  # Keras layer name -> its arrays, Keras' order and layout
    keras_version: str
    date_saved: str
    optimizer: str  # the compile config's optimizer, described (it is ignored)
    optimizer_variables: int  # saved optimizer state variables (not imported)
    # a nested model's layer -> (the models holding it, ..., its own name) in the Keras model (see read_keras_config)
    keras_paths: dict[str, tuple[str, ...]] = field(default_factory=dict)
    kind: str = "file"  # "legacy HDF5 file": a model.save("model.h5") file, read through Keras (see legacy_h5)

    def describe(self) -> str:
        saved = f", {self.optimizer_variables} saved optimizer variables" if self.optimizer_variables else ""
        date = f" saved {self.date_saved}" if self.date_saved else ""
        return escaped(f"{self.path}: Keras {self.keras_version} {self.kind}{date}, architecture "  # the file's words
                       f"{self.architecture.name} ({len(self.architecture.layers)} layers); optimizer: "
                       f"{self.optimizer}{saved} (ignored, only the weights are converted)")


def check_file(path: str | os.PathLike, what: str = "") -> Path:
    """``path`` as a Path if it is an existing, non-empty regular file; :class:`UserError` otherwise."""
    label = f"{what} {path_text(path)}".strip()
    if "://" in str(path):
        raise UserError(f"{label}: a URL; this command reads local files (download it first)")
    path = Path(path)
    if not path.exists():
        raise UserError(f"{label}: no such file")
    if not path.is_file():
        raise UserError(f"{label}: not a file")
    if path.stat().st_size == 0:
        raise UserError(f"{label}: empty file (0 bytes)")
    return path


ENCRYPTED = 0x1  # a zip member's general-purpose flag bit 0 (APPNOTE 4.4.4)


def _read_members(path: Path) -> dict[str, bytes]:
    if not zipfile.is_zipfile(path):
        with path.open("rb") as file:
            start = file.read(4)
        if start == b"PK\x03\x04":  # a zip's first member, without the directory that ends every whole archive
            raise UserError(f"{path} is not a .keras file: a zip archive's start without its end (truncated, "
                            f"copied or downloaded only in part?)")
        raise UserError(f"{path} is not a .keras file (not a zip archive)")
    try:
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
            if sorted(names) != sorted(MEMBERS):
                raise UserError(f"{path} is not a Keras 3 model file: it holds {', '.join(names) or 'nothing'}, "
                                f"expected exactly {', '.join(MEMBERS)}")
            encrypted = [info.filename for info in archive.infolist() if info.flag_bits & ENCRYPTED]
            if encrypted:
                raise UserError(f"{path}: encrypted members ({', '.join(encrypted)}); Keras writes none and "
                                f"reads none")
            sizes = {info.filename: info.file_size for info in archive.infolist()}
            limits = {"config.json": MAX_JSON_BYTES, "metadata.json": MAX_JSON_BYTES,
                      "model.weights.h5": MAX_WEIGHTS_BYTES}
            too_big = [f"{name} ({sizes[name]:,} bytes)" for name, limit in limits.items() if sizes[name] > limit]
            if too_big:
                raise UserError(f"{path}: {', '.join(too_big)} larger than any model this bridge converts")
            return {name: archive.read(name) for name in MEMBERS}  # checks every member's CRC-32
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError, NotImplementedError) as err:
        raise UserError(f"{path} is corrupt ({one_line(err)})") from None


def _read_json(raw: bytes, member: str, path: Path) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as err:
        raise UserError(f"{path} is corrupt ({member} is not JSON: {one_line(err)})") from None
    if not isinstance(value, dict):
        raise UserError(f"{path} is corrupt ({member} is not a JSON object)")
    return value


def check_storage(h5: Any, path: Path, what: str = "model.weights.h5", most: int = MAX_H5_LINKS,
                  reason: str = "more than any model this bridge converts stores") -> None:
    """Refuse an HDF5 file any of whose objects or bytes may live outside it (see the module docstring).

    HDF5 lets a dataset's bytes sit in another file (external storage, virtual datasets) and
    a name point into another file (external links) or elsewhere (soft links). Read without
    Keras, such a "weight" would be another file's bytes, so every link and every dataset's
    storage is checked before any value is read. Checking a link costs about 0.2 ms, so the
    links are counted first (a cheaper walk, which stops past ``most``): more are refused,
    ``reason`` saying why that is too many.
    """
    import h5py
    from h5py import h5d

    links = 0

    def count(name: str) -> bool | None:
        nonlocal links
        links += 1
        return True if links > most else None  # a value other than None stops the walk

    h5.visit_links(count)
    if links > most:
        raise UserError(f"{path}: {what} holds more than {most:,} HDF5 names, {reason}")
    inside = {getattr(h5d, layout) for layout in INSIDE_LAYOUTS}
    problems: list[str] = []

    def visit(name: str, link: Any) -> None:
        if not isinstance(link, h5py.HardLink):
            problems.append(f"{name} is a {type(link).__name__} (links that leave the file are not accepted)")
            return
        dataset = h5.get(name)
        if not isinstance(dataset, h5py.Dataset):
            return
        plist = dataset.id.get_create_plist()
        if dataset.is_virtual or plist.get_layout() not in inside:
            problems.append(f"{name} is a virtual dataset (its values live in other files)")
        elif plist.get_external_count():
            problems.append(f"{name} keeps its values in an external file")
        for index in range(plist.get_nfilters()):
            code = plist.get_filter(index)[0]
            if code not in BUILTIN_FILTERS:
                problems.append(f"{name} is encoded with HDF5 filter {code} (accepted: "
                                f"{', '.join(BUILTIN_FILTERS.values())})")

    h5.visititems_links(visit)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise UserError(f"{path}: refused, {what} does not keep its weights inside itself: "
                        f"{problems[0]}{more}")


def check_weight_value(value: np.ndarray, weight_name: str, label: str, path: str | os.PathLike) -> None:
    """A weight's values as a trained model has them: finite; counts and variances not negative."""
    if not np.isfinite(value).all():
        raise UserError(f"{path}: {label} holds NaN or infinite values")
    if weight_name == "count" and (value < 0).any():  # Normalization's
        raise UserError(f"{path}: {label} is negative, a count of examples")
    if weight_name.endswith("variance") and (value < 0).any():  # BatchNorm's, Normalization's
        raise UserError(f"{path}: {label} holds negative variances")


def check_weight_values(architecture: Architecture, weights: dict[str, list[np.ndarray]],
                        path: str | os.PathLike) -> None:
    """:func:`check_weight_value` for each weight of ``weights`` (layer name -> its arrays, in Keras' order)."""
    for node, _, shapes in architecture.weight_shapes():
        for (weight_name, _), value in zip(shapes, weights.get(node.name, [])):
            check_weight_value(np.asarray(value), weight_name, f"{node.name} {weight_name}", path)


def links_needed(architecture: Architecture, weights: int) -> int:
    """The most HDF5 names a Keras 3 ``model.weights.h5`` of ``architecture`` may hold (``weights`` arrays): a
    layer's group and its ``vars`` (nested models' layers a few more), each weight and up to three optimizer variables
    for it (Adam keeps two), a few of the optimizer's own; measured files hold a quarter of this."""
    return 8 * (len(architecture.nodes) + weights) + 64


def _read_weights(h5_bytes: bytes, architecture: Architecture, storage: dict[str, str],
                  path: Path) -> tuple[dict[str, list[np.ndarray]], int]:
    """Every weighted layer's arrays from model.weights.h5 (``storage``: layer name -> its path under ``layers/``),
    checked; and the number of optimizer variables."""
    import h5py

    expected = {f"layers/{storage[node.name]}/{node.layer.weight_path(i)}":
                (node.name, weight_name, shape, np.dtype(node.layer.weight_dtype(weight_name)))
                for node, _, weights in architecture.weight_shapes()
                for i, (weight_name, shape) in enumerate(weights)}
    try:
        with h5py.File(io.BytesIO(h5_bytes), "r") as h5:
            check_storage(h5, path, most=links_needed(architecture, len(expected)),
                          reason="more than this architecture's weights and their optimizer variables need")
            datasets: dict[str, Any] = {}
            h5.visititems(lambda name, obj: datasets.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
            model_sets = {name for name in datasets if not name.startswith(OPTIMIZER_GROUP)}
            if model_sets != set(expected):
                missing, extra = sorted(set(expected) - model_sets), sorted(model_sets - set(expected))
                raise UserError(f"{path}: model.weights.h5 does not hold this architecture's weights "
                                f"(missing {', '.join(missing[:3]) or 'none'}; unexpected {', '.join(extra[:3]) or 'none'})")
            weights: dict[str, list[np.ndarray]] = {}
            for key, (layer, weight_name, shape, dtype) in expected.items():
                dataset, label = datasets[key], f"{layer} {weight_name}"
                if dataset.dtype != dtype:
                    raise UserError(f"{path}: {label} is stored as {dataset.dtype}, expected {dtype}")
                if tuple(dataset.shape) != tuple(shape):
                    raise UserError(f"{path}: {label} has shape {tuple(dataset.shape)}, but the architecture in "
                                    f"config.json needs {tuple(shape)}")
                value = np.asarray(dataset[()], dtype=dtype)
                check_weight_value(value, weight_name, label, path)
                weights.setdefault(layer, []).append(value)
            return weights, len(datasets) - len(model_sets)
    except UserError:
        raise
    except Exception as err:  # h5py raises OSError, KeyError, ValueError... on damaged files
        raise UserError(f"{path} is corrupt (model.weights.h5 cannot be read: {one_line(err)})") from None


def describe_optimizer(config: dict[str, Any]) -> str:
    compile_config = config.get("compile_config") or {}
    optimizer = compile_config.get("optimizer") if isinstance(compile_config, dict) else None
    if not compile_config:
        return "none (the model was saved uncompiled)"
    if optimizer is None:
        return "the compile config names none, so Keras would build its default RMSprop (lr 0.001)"
    if isinstance(optimizer, str):
        return f"{optimizer} (default settings)"
    if isinstance(optimizer, dict):
        settings = optimizer.get("config") if isinstance(optimizer.get("config"), dict) else {}
        lr = settings.get("learning_rate")
        known = isinstance(lr, (int, float)) and not isinstance(lr, bool) and abs(lr) < 1e300  # a number, not 10**400
        return f"{str(optimizer.get('class_name'))[:80]}" + (f" (lr {lr:.3g})" if known else "")
    return repr(optimizer)[:80]


def build_shapes(config: Any) -> Iterator[tuple[str, list]]:
    """(layer name, shape) for each shape a layer's ``build_config`` in ``config`` declares (its ``input_shape``,
    an attention's ``query_shape``, ...: each list of sizes or nulls in it), walked without recursion."""
    pending = [(config, "?")]
    while pending:
        value, layer = pending.pop()
        if isinstance(value, dict):
            if "class_name" in value:  # a layer's entry (its name beside its config, or in it for a wrapped one)
                inner = value.get("config") if isinstance(value.get("config"), dict) else {}
                layer = str(value.get("name") or inner.get("name") or layer)
            build = value.get("build_config")
            if isinstance(build, dict):
                shapes = [build]
                while shapes:
                    item = shapes.pop()
                    if isinstance(item, dict):
                        shapes.extend(item.values())
                    elif isinstance(item, list) and item and all(
                            d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in item):
                        yield layer, item
                    elif isinstance(item, list):
                        shapes.extend(item)
            pending.extend((child, layer) for key, child in value.items() if key != "build_config")
        elif isinstance(value, list):
            pending.extend((child, layer) for child in value)


def check_build_shapes(config: Any, architecture: Architecture, path: Path) -> None:
    """Refuse a layer whose ``build_config`` declares an input larger than any tensor of the model: the checks read
    the model's shapes from its layers, but Keras builds each layer at its ``build_config`` when it loads the file,
    allocating weights for that input before any are compared (a Dense built for 100 million inputs in a 30 KB
    file: 13 GB)."""
    largest = max(math.prod(shape) for shape in (architecture.input_shape, *architecture.shapes.values()))
    for layer, shape in build_shapes(config):
        values = math.prod(size for size in shape[1:] if size is not None)  # the batch first, as Keras writes it
        if values > largest:
            raise UserError(f"{path}: layer {escaped(layer)[:100]}'s build_config declares an input of shape "
                            f"{shape_text(tuple(shape[1:]))} ({values:,} values), larger than any tensor of the "
                            f"model ({largest:,}); Keras would build its weights for it")


def read_keras_file(path: str | os.PathLike) -> KerasFile:
    """Check ``path`` as described in the module docstring; :class:`UserError` naming what is wrong."""
    path = check_file(path)
    raw = _read_members(path)
    config = _read_json(raw["config.json"], "config.json", path)
    metadata = _read_json(raw["metadata.json"], "metadata.json", path)
    try:
        graph = read_keras_config(config, str(path))
    except (AttributeError, TypeError, KeyError, IndexError, RecursionError) as err:  # JSON of an unexpected structure
        raise UserError(f"{path} is corrupt (unexpected config.json structure: {one_line(err)})") from None
    check_build_shapes(config, graph.architecture, path)
    weights, optimizer_variables = _read_weights(raw["model.weights.h5"], graph.architecture, graph.storage, path)
    return KerasFile(path=path, architecture=graph.architecture, weights=weights, keras_paths=graph.keras_paths,
                     keras_version=str(metadata.get("keras_version", "?")),
                     date_saved=str(metadata.get("date_saved", "?")), optimizer=describe_optimizer(config),
                     optimizer_variables=optimizer_variables)

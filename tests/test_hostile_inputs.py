"""Hostile and clumsy inputs of issue #20 that cut across commands: files that exist but cannot be read,
outputs that would overwrite a file or land on a folder, a ``.keras`` file named by URL, and the
temporary folder a killed run must not litter.

Each class is checked on every command that meets it: one ``error:`` line naming the file and why,
exit code 2, nothing written.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from conftest import main_error, unreadable
from lightning_mnist.__main__ import main
from mnist_common.model_files import load_architecture


def digit_png(path: Path) -> Path:
    """A drawn "1": enough for predict to get as far as the weights."""
    picture = Image.new("L", (60, 60), 255)
    ImageDraw.Draw(picture).line([(30, 8), (30, 52)], fill=0, width=5)
    picture.save(path)
    return path


@pytest.fixture
def model_files(tmp_path, seed_keras):
    """A checkpoint, a .keras file, a k-fold results file naming the checkpoint, a digit to predict."""
    from lightning_mnist.checkpoints import load_networks, save_checkpoint

    shutil.copy(seed_keras, tmp_path / "model.keras")
    [network] = load_networks(seed_keras)
    save_checkpoint(tmp_path / "model.ckpt", network.architecture, network.state_dict())
    (tmp_path / "cv_results.json").write_text(json.dumps({"framework": "lightning", "folds": [
        {"fold": 0, "model_path": "model.ckpt"}]}))
    digit_png(tmp_path / "digit.png")
    return tmp_path


def test_a_k_fold_run_is_held_to_the_weights_one_network_may_have(model_files, monkeypatch, capsys):
    """A 2 KB checkpoint can stand for a network of 99 million weights (each a view of one stored number), and a
    results file naming 100 of them for 40 GB: the folds together are held to one network's bound. Here the bound
    is set to 2.5 notebooks and three folds are named."""
    import lightning_mnist.checkpoints
    from lightning_mnist.checkpoints import load_networks

    [network] = load_networks(model_files / "model.ckpt")
    each = sum(network.architecture.parameter_count())
    for k in (1, 2):
        shutil.copy(model_files / "model.ckpt", model_files / f"model_{k}.ckpt")
    (model_files / "three.json").write_text(json.dumps({"framework": "lightning", "folds": [
        {"fold": k, "model_path": name} for k, name in enumerate(("model.ckpt", "model_1.ckpt", "model_2.ckpt"))]}))
    monkeypatch.setattr(lightning_mnist.checkpoints, "MAX_PARAMETERS", int(2.5 * each))
    monkeypatch.chdir(model_files)
    for argv in (["predict", "digit.png", "--weights", "three.json"], ["test", "--ckpt_path", "three.json"]):
        code, error, _ = main_error(main, argv, capsys)
        assert code == 2 and error == (f"error: three.json: its folds' networks hold {3 * each:,} weight values by "
                                       f"fold 2, more than one network may ({int(2.5 * each):,}); an ensemble is "
                                       f"held to it too"), error
    assert len(load_networks("cv_results.json")) == 1  # one fold: its own bound, as any file's


UNREADABLE = {  # command line, the file made unreadable, what the one line must say
    "validate a checkpoint": (["validate", "--ckpt_path", "model.ckpt"], "model.ckpt",
                              "checkpoint model.ckpt: cannot be read (Permission denied)"),
    "test a .keras file": (["test", "--ckpt_path", "model.keras"], "model.keras",
                           "model.keras: cannot be read (Permission denied)"),
    "test a k-fold run's fold": (["test", "--ckpt_path", "cv_results.json"], "model.ckpt",
                                 "fold 0 model model.ckpt: cannot be read (Permission denied)"),
    "predict with a .keras file": (["predict", "digit.png", "--weights", "model.keras", "--backend", "torch"],
                                   "model.keras", "model.keras: cannot be read (Permission denied)"),
    "predict on Keras": (["predict", "digit.png", "--weights", "model.keras", "--backend", "keras"],
                         "model.keras", "model.keras: cannot be read (Permission denied)"),
    "convert a .keras file": (["convert", "model.keras", "out.ckpt"], "model.keras",
                              "model.keras: cannot be read (Permission denied)"),
    "convert a checkpoint": (["convert", "model.ckpt", "out.keras"], "model.ckpt",
                             "model.ckpt: cannot be read (Permission denied)"),
}


@pytest.mark.parametrize("case", list(UNREADABLE))
def test_a_file_that_cannot_be_read_is_said_so(case, model_files, monkeypatch, capsys):
    """Not "not a zip archive", not a traceback: the file, and that it cannot be read, and why."""
    args, victim, fragment = UNREADABLE[case]
    monkeypatch.chdir(model_files)
    before = sorted(p.name for p in model_files.rglob("*"))
    with unreadable(model_files / victim):
        code, error, _ = main_error(main, args, capsys)
    assert code == 2 and fragment in error, error
    assert "zip" not in error
    assert sorted(p.name for p in model_files.rglob("*")) == before


def _tampered_checkpoint(folder: Path, change) -> str:
    """model.ckpt with ``change`` made to its state dict (which a weights-only load still reads), as tampered.ckpt."""
    import torch

    contents = torch.load(folder / "model.ckpt", weights_only=True)
    change(contents["state_dict"])
    torch.save(contents, folder / "tampered.ckpt")
    return "tampered.ckpt"


def _encrypted_keras_file(folder: Path) -> str:
    """model.keras with every member flagged encrypted (general-purpose bit 0, in each local and central header)."""
    data = bytearray((folder / "model.keras").read_bytes())
    for signature, flags_at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = data.find(signature)
        while at >= 0:
            data[at + flags_at] |= 1
            at = data.find(signature, at + 4)
    (folder / "tampered.keras").write_bytes(bytes(data))
    return "tampered.keras"


def _first_weight(state_dict: dict) -> str:
    return next(iter(state_dict))


TAMPERED = {  # the file made, what the one line says of it
    "a number as a key": (lambda d: _tampered_checkpoint(d, lambda sd: sd.update({5: sd[_first_weight(sd)]})),
                          "does not hold the weights of its architecture sequential (unexpected 5)"),
    "a sparse weight": (lambda d: _tampered_checkpoint(d, lambda sd: sd.update(
        {_first_weight(sd): sd[_first_weight(sd)].to_sparse()})), "is a sparse_coo tensor on the cpu device"),
    "a weight without values": (lambda d: _tampered_checkpoint(d, lambda sd: sd.update(
        {_first_weight(sd): sd[_first_weight(sd)].to("meta")})), "is a strided tensor on the meta device"),
    "encrypted .keras members": (_encrypted_keras_file,
                                 "encrypted members (metadata.json, config.json, model.weights.h5)"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
@pytest.mark.parametrize("command", ["convert", "predict", "test"])
def test_a_tampered_model_file_is_refused_in_one_line(case, command, model_files, monkeypatch, capsys):
    """Were tracebacks (a key that is no string, a sparse or a meta tensor, which a weights-only load reads, and
    zipfile's "password required") or, for the sparse weight, a line of torch's warning before the error."""
    make, fragment = TAMPERED[case]
    monkeypatch.chdir(model_files)
    name = make(model_files)
    argv = {"convert": ["convert", name, "out.onnx"], "predict": ["predict", "digit.png", "--weights", name],
            "test": ["test", "--ckpt_path", name, "--output_dir", "runs"]}[command]
    before = sorted(p.name for p in model_files.rglob("*"))
    code, error, err = main_error(main, argv, capsys)
    assert code == 2 and error.startswith(f"error: {name}") and fragment in error, error
    assert err.strip() == error, err
    assert sorted(p.name for p in model_files.rglob("*")) == before


def test_a_sparse_weight_is_the_one_line_of_a_real_command_line(model_files, run_module):
    """torch's warning on loading a sparse tensor came before the error line (in this process pytest keeps
    warnings apart, so only a real command line shows it)."""
    name = _tampered_checkpoint(model_files, lambda sd: sd.update({"extra": sd[_first_weight(sd)].to_sparse()}))
    proc = run_module("lightning_mnist", "predict", "digit.png", "--weights", name, cwd=model_files, check=False)
    assert proc.returncode == 2 and proc.stdout == "", proc
    assert proc.stderr.strip() == "error: tampered.ckpt does not hold the weights of its architecture sequential " \
                                  "(unexpected extra)", proc.stderr


def test_a_k_fold_run_of_too_many_folds_is_refused_before_any_is_read(model_files, monkeypatch, capsys):
    """3,000 folds naming one checkpoint were read one by one (minutes, gigabytes) before a prediction."""
    monkeypatch.chdir(model_files)
    (model_files / "many").mkdir()
    (model_files / "many" / "cv_results.json").write_text(json.dumps({"framework": "lightning", "folds": [
        {"fold": i, "model_path": "../model.ckpt"} for i in range(101)]}))
    for argv in (["predict", "digit.png", "--weights", "many"], ["convert", "many", "out.pt2"]):
        code, error, _ = main_error(main, argv, capsys)
        assert code == 2 and error == "error: many/cv_results.json: 101 folds, more than the 100 a k-fold run " \
                                      "trains at most", error


def test_a_k_fold_run_naming_one_model_twice_is_refused(model_files, monkeypatch, capsys):
    """A hand-edited cv_results.json listing one model under two folds (by another spelling of its path too) weighed
    it twice in the ensemble, silently."""
    monkeypatch.chdir(model_files)
    (model_files / "twice").mkdir()
    (model_files / "twice" / "cv_results.json").write_text(json.dumps({"framework": "lightning", "folds": [
        {"fold": 0, "model_path": "../model.ckpt"}, {"fold": 1, "model_path": "../twice/../model.ckpt"}]}))
    (model_files / "again").mkdir()
    (model_files / "again" / "cv_results.json").write_text(json.dumps({"framework": "lightning", "folds": [
        {"fold": 0, "model_path": "../model.ckpt"}, {"fold": 0, "model_path": "../model.ckpt"}]}))
    for argv in (["predict", "digit.png", "--weights", "twice"], ["convert", "twice", "out.pt2"]):
        code, error, _ = main_error(main, argv, capsys)
        assert code == 2 and error == "error: twice/cv_results.json: folds 0 and 1 name the same model file " \
                                      "twice/../twice/../model.ckpt; a k-fold run keeps one model a fold, and its " \
                                      "ensemble weighs each once", error
    code, error, _ = main_error(main, ["predict", "digit.png", "--weights", "again"], capsys)
    assert code == 2 and error.startswith("error: again/cv_results.json: folds 0 and 0 name the same"), error


def test_a_librarys_coloured_message_is_one_plain_line():
    """torch's ONNX exporter colours its messages: a refusal quoting one showed ``\\x1b[96m`` (zoo round 10)."""
    from mnist_common.errors import one_line

    said = one_line(RuntimeError("Failed to decompose. \x1b[96mThis is step 2/3\x1b[0m of exporting\nNext steps:"))
    assert said == "RuntimeError: Failed to decompose. This is step 2/3 of exporting"


def test_a_keras_files_own_words_reach_the_terminal_escaped(model_files, mnist_dir, monkeypatch, capsys):
    """metadata.json's date_saved and the model's name (any text a file holds) went to stdout raw: a newline, a
    terminal escape. The layer table stays a table, a line a layer (escaping it whole put it on one line)."""
    import zipfile

    monkeypatch.chdir(model_files)
    with zipfile.ZipFile("model.keras") as source, zipfile.ZipFile("odd.keras", "w") as odd:
        for name in source.namelist():
            data = source.read(name)
            if name == "metadata.json":
                data = json.dumps({**json.loads(data), "date_saved": "\n\x1b[31mRED"}).encode()
            if name == "config.json":
                config = json.loads(data)
                config["config"]["name"] = "net\n\x1b[2J"
                data = json.dumps(config).encode()
            odd.writestr(name, data)
    main(["convert", "odd.keras", "odd.ckpt", "--data_dir", str(mnist_dir)])
    out = capsys.readouterr().out
    assert "saved \\n\\x1b[31mRED," in out and "\x1b" not in out, out
    lines = out.splitlines()
    assert "net\\n\\x1b[2J: 10 classes" in lines, out
    layers = load_architecture(model_files / "model.keras").layers
    assert all(sum(line.startswith(f"  {layer.name} ({layer.type})") for line in lines) == 1 for layer in layers), out


def test_a_build_config_larger_than_the_model_is_refused_before_keras_builds_it(model_files, monkeypatch, capsys):
    """Keras builds each layer at its ``build_config`` when it loads a file, allocating its weights for that input
    before any are compared: a 30 KB file's Dense declared for 100 million inputs took 13 GB (hostile round 7)."""
    import zipfile

    monkeypatch.chdir(model_files)
    with zipfile.ZipFile("model.keras") as source, zipfile.ZipFile("built.keras", "w") as built:
        for name in source.namelist():
            data = source.read(name)
            if name == "config.json":
                config = json.loads(data)
                dense = next(e for e in config["config"]["layers"] if e["class_name"] == "Dense")
                dense["build_config"] = {"input_shape": [None, 100_000_000]}
                data = json.dumps(config).encode()
            built.writestr(name, data)
    for backend in ("keras", "torch"):
        code, error, _ = main_error(main, ["predict", "digit.png", "--weights", "built.keras", "--backend", backend],
                                    capsys)
        assert code == 2 and error.startswith(f"error: built.keras: layer {dense['config']['name']}'s build_config "
                                              f"declares an input of shape 100000000 (100,000,000 values), larger "
                                              f"than any tensor of the model"), error


OUTPUTS = {  # a command line writing `target`, and the flag its refusal names
    "convert": (["convert", "model.keras", "{target}"], "out.ckpt", "dst"),
    "predict --show": (["predict", "digit.png", "--weights", "model.ckpt", "--show", "{target}"], "shown.png", "--show"),
    "augment-preview": (["augment-preview", "{target}", "--count", "2", "--rows", "1"], "preview.png", "output"),
}


@pytest.mark.parametrize("command", list(OUTPUTS))
def test_an_output_never_overwrites_a_file_or_lands_on_a_folder_unasked(command, model_files, monkeypatch, capsys):
    args, name, flag = OUTPUTS[command]
    monkeypatch.chdir(model_files)
    target = model_files / name
    target.write_bytes(b"a file someone keeps")
    code, error, _ = main_error(main, [a.format(target=name) for a in args], capsys)
    assert code == 2 and error == (f"error: {flag} {name}: already exists; give --overwrite to replace it, or name "
                                   f"another file"), error
    assert target.read_bytes() == b"a file someone keeps"
    target.unlink()
    target.mkdir()
    code, error, _ = main_error(main, [a.format(target=name) for a in args], capsys)
    assert code == 2 and error == f"error: {flag} {name}: is a folder; name the file to write", error
    assert list(target.iterdir()) == []


def test_overwrite_replaces_the_file_when_asked(model_files, monkeypatch, mnist_dir, capsys):
    monkeypatch.chdir(model_files)
    (model_files / "preview.png").write_bytes(b"an old preview")
    main(["augment-preview", "preview.png", "--count", "2", "--rows", "1", "--data_dir", str(mnist_dir),
          "--overwrite"])
    with Image.open(model_files / "preview.png") as figure:
        assert figure.format == "PNG"
    assert "augmentation preview: preview.png" in capsys.readouterr().out


def test_a_keras_file_by_url_is_tested_like_a_local_one(model_files, run_module, mnist_dir, monkeypatch, capsys):
    """``test --ckpt_path <URL of a .keras file>`` (the real command line): fetched, then read as a .keras file, not
    as a checkpoint; the local file's score comes from the same command in this process."""
    from mnist_common.mnist import DATA_DIR_ENV

    proc = run_module("lightning_mnist", "test", "--ckpt_path", (model_files / "model.keras").as_uri(),
                      "--trainer.enable_progress_bar", "false", cwd=model_files)
    monkeypatch.chdir(model_files)
    monkeypatch.setenv(DATA_DIR_ENV, str(mnist_dir))
    main(["test", "--ckpt_path", "model.keras", "--trainer.enable_progress_bar", "false"])
    scores = []
    for stdout in (proc.stdout, capsys.readouterr().out):
        [row] = [line for line in stdout.splitlines() if "test/acc" in line]
        scores.append(float(row.split("│")[2]))
    assert scores[0] == scores[1] == pytest.approx(0.9922, abs=1e-4)  # the notebook's own model


@pytest.mark.parametrize("command", ["test", "validate", "fit"])
def test_a_bad_checkpoint_by_url_is_named_by_its_url(command, tmp_path, monkeypatch, capsys):
    """The file is fetched into a temporary folder and read there; its refusal names the URL the user gave."""
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    url = (tmp_path / "notes.ckpt").as_uri()
    monkeypatch.chdir(tmp_path)
    code, error, _ = main_error(main, [command, "--ckpt_path", url], capsys)
    assert code == 2 and error == f"error: {url} is not a PyTorch checkpoint (neither a zip archive nor a pickle)", error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.ckpt"]


LAUGHS = "\n".join(["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
                   + [f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]" for a, b in zip("abcdefgh", "bcdefghi")]
                   + ["model: {lr: 0.001}"])  # 9**9 lols in 500 bytes


@pytest.mark.parametrize("command", [["fit"], ["cv"], ["predict", "digit.png", "--weights", "model.ckpt"],
                                     ["convert", "model.ckpt", "out.keras"], ["keras_reference", "train"]])
def test_a_billion_laughs_config_is_refused_fast(command, tmp_path, monkeypatch, capsys):
    """Nested YAML aliases: refused in one line, with the bound, before anything expands (in well under a second)."""
    import time

    from keras_reference.__main__ import main as keras_main

    (tmp_path / "laughs.yaml").write_text(LAUGHS)
    monkeypatch.chdir(tmp_path)
    program, args = (keras_main, command[1:]) if command[0] == "keras_reference" else (main, command)
    started = time.perf_counter()
    code, error, _ = main_error(program, [*args, "--config", "laughs.yaml"], capsys)
    assert time.perf_counter() - started < 5
    assert code == 2 and "expands to 490,329,068 values through its aliases, more than the limit of 100,000" in error, error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["laughs.yaml"]


@pytest.mark.parametrize("depth, fragment", [(80, "nests lists or mappings 81 deep, more than 64"),
                                             (600, "nests lists or mappings more than 64 deep")])
@pytest.mark.parametrize("command", [["fit"], ["predict", "digit.png", "--weights", "model.ckpt"],
                                     ["keras_reference", "train"]])
def test_a_config_nested_deep_is_refused_in_one_line(command, depth, fragment, tmp_path, monkeypatch, capsys):
    """Lists nested 500 to 800 deep (under the YAML parser's own limit) ran jsonargparse past Python's stack: a
    RecursionError traceback of 3,000 lines (hostile round 6)."""
    from keras_reference.__main__ import main as keras_main

    (tmp_path / "deep.yaml").write_text("model:\n  lr: 0.001\nx: " + "[" * depth + "]" * depth + "\n")
    monkeypatch.chdir(tmp_path)
    program, args = (keras_main, command[1:]) if command[0] == "keras_reference" else (main, command)
    code, error, _ = main_error(program, [*args, "--config", "deep.yaml"], capsys)
    assert code == 2 and "--config deep.yaml: a YAML config or value " + fragment in error, error


@pytest.mark.parametrize("command", [["fit"], ["keras_reference", "train"]])
def test_a_config_of_thousands_of_keys_in_one_mapping_is_refused_in_one_line(command, tmp_path, monkeypatch, capsys):
    """49,000 unknown keys under ``model:`` kept jsonargparse busy 22 s before its one line (hostile round 9): a
    mapping of more keys than any group of settings has is refused before jsonargparse reads it."""
    from keras_reference.__main__ import main as keras_main

    (tmp_path / "wide.yaml").write_text("model:\n" + "".join(f"  k{i}: 1\n" for i in range(1001)))
    monkeypatch.chdir(tmp_path)
    program, args = (keras_main, command[1:]) if command[0] == "keras_reference" else (main, command)
    code, error, _ = main_error(program, [*args, "--config", "wide.yaml"], capsys)
    assert code == 2 and "--config wide.yaml: a YAML config or value gives 1,001 keys in one mapping, more than " \
                         "1,000" in error, error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.yaml"]


@pytest.mark.parametrize("command", [["fit"], ["cv"], ["convert", "model.ckpt", "out.keras"], ["keras_reference", "train"]])
def test_a_config_that_gives_a_key_twice_is_refused_naming_it(command, tmp_path, monkeypatch, capsys):
    """YAML takes no key twice; PyYAML would keep the last without a word, so the run would train on a value the
    reader of the file may not see. Refused in one line naming the key and both lines; YAML's merge keys still
    override on purpose."""
    from keras_reference.__main__ import main as keras_main

    (tmp_path / "twice.yaml").write_text("model:\n  lr: 0.01\n  label_smoothing: 0.1\n  lr: 0.001\n")
    monkeypatch.chdir(tmp_path)
    program, args = (keras_main, command[1:]) if command[0] == "keras_reference" else (main, command)
    code, error, _ = main_error(program, [*args, "--config", "twice.yaml"], capsys)
    assert code == 2 and error.startswith("error: --config twice.yaml: a YAML mapping gives model.lr twice "
                                          "(lines 2 and 4); keep one"), error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["twice.yaml"]


def test_a_flag_value_that_gives_a_key_twice_is_refused_and_merge_keys_are_not(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, error, _ = main_error(main, ["fit", "--trainer.callbacks", "[{class_path: EarlyStopping, init_args: "
                                       "{monitor: val/loss, patience: 3, monitor: val/acc}}]"], capsys)
    assert code == 2 and "a YAML mapping gives [0].init_args.monitor twice (lines 1 and 1)" in error, error
    (tmp_path / "merged.yaml").write_text("model:\n  <<: {lr: 0.01, label_smoothing: 0.1}\n  lr: 0.02\n")
    with pytest.raises(SystemExit) as printed_config:
        main(["fit", "--config", "merged.yaml", "--print_config"])
    printed = capsys.readouterr().out
    assert printed_config.value.code == 0
    assert "lr: 0.02" in printed and "label_smoothing: 0.1" in printed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["merged.yaml"]


def test_a_setting_given_nested_and_dotted_in_one_config_is_refused(tmp_path, monkeypatch, capsys):
    """jsonargparse reads ``model: {lr: ..}`` and ``model.lr: ..`` as one setting and keeps whichever came last, in
    either order (hostile round 6): settings are compared by their dotted names, in lists too."""
    monkeypatch.chdir(tmp_path)
    for text, twice in (("model:\n  lr: 0.001\nmodel.lr: 0.5\n", "model.lr twice (lines 2 and 3)"),
                        ("model.lr: 0.5\nmodel:\n  lr: 0.001\n", "model.lr twice (lines 1 and 3)"),
                        ("trainer:\n  callbacks:\n    - class_path: EarlyStopping\n      init_args.patience: 2\n"
                         "      init_args: {patience: 5, monitor: val/loss}\n",
                         "trainer.callbacks[0].init_args.patience twice (lines 4 and 5)")):
        (tmp_path / "dotted.yaml").write_text(text)
        code, error, _ = main_error(main, ["fit", "--config", "dotted.yaml", "--print_config"], capsys)  # (taken: 0)
        assert code == 2 and error.startswith(f"error: --config dotted.yaml: a YAML mapping gives {twice}"), error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dotted.yaml"]


@pytest.mark.parametrize("args, shown", [(["--data.subset", "!!int"], "'!!int' (line 1)"),
                                         (["--config", "tagged.yaml"], "'!!int' (line 2)"),
                                         (["--model.lr", "!!float 1e-3"], "'!!float' (line 1)")])
def test_a_yaml_tag_is_refused_naming_it(args, shown, tmp_path, monkeypatch, capsys):
    """A tag alone read as an empty value of no flag ("'' (line 1) is None to YAML 1.1"), and a tagged value reads
    in YAML 1.1 whatever its quotes (``!!int "0100"`` was 64): a config has no use for tags."""
    (tmp_path / "tagged.yaml").write_text('data:\n  subset: !!int "0100"\n')
    monkeypatch.chdir(tmp_path)
    code, error, _ = main_error(main, ["fit", *args, "--print_config"], capsys)  # (taken: prints, exit 0)
    assert code == 2 and f"the YAML tag {shown} is not taken here; write the value plainly" in error, error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tagged.yaml"]


@pytest.mark.parametrize("command", [["fit"], ["test"], ["cv"], ["keras_reference", "train"]])
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_config_number_of_thousands_of_digits_is_refused_in_one_line(command, suffix, tmp_path, monkeypatch,
                                                                       capsys):
    """Python reads no integer of more than 4,300 digits: a config holding one was a ValueError traceback inside the
    config's reader (hostile round 8)."""
    from keras_reference.__main__ import main as keras_main

    (tmp_path / f"big{suffix}").write_text('{"model": {"lr": 1' + "0" * 5_000 + "}}\n")
    monkeypatch.chdir(tmp_path)
    program, args = (keras_main, command[1:]) if command[0] == "keras_reference" else (main, command)
    code, error, _ = main_error(program, [*args, "--config", f"big{suffix}", "--print_config"], capsys)
    assert code == 2 and error == (f"error: --config big{suffix}: a number of 5,001 characters (line 1), longer than "
                                   f"any setting's (at most 300)"), error
    # 401 digits: past every float, which a float setting's reader met with an OverflowError traceback (round 8)
    code, error, _ = main_error(program, [*args, "--model.lr", "1" + "0" * 400, "--print_config"], capsys)
    assert code == 2 and error == ("error: --model.lr 100000000000...: a number of 401 characters, longer than any "
                                   "setting's (at most 300; a float holds 309 digits)"), error


@pytest.mark.parametrize("model", ["fold_0.pt", "fold_0"])
def test_predict_refuses_a_k_fold_run_whose_fold_model_is_of_no_known_kind(model, model_files, monkeypatch, capsys):
    shutil.copy(model_files / "model.ckpt", model_files / model)  # a real checkpoint under a name of no known kind
    (model_files / "odd.json").write_text(json.dumps({"framework": "lightning", "folds": [
        {"fold": 0, "model_path": model}]}))
    monkeypatch.chdir(model_files)
    code, error, _ = main_error(main, ["predict", "digit.png", "--weights", "odd.json"], capsys)
    assert code == 2 and f"fold 0 model {model}: expected a checkpoint (.ckpt) or a Keras model (.keras)" in error


@pytest.mark.parametrize("suffix", [".ckpt", ".pt2", ".onnx"])
def test_a_full_disk_is_one_line_for_the_other_commands_too(suffix, model_files, small_disk, monkeypatch, capsys,
                                                            mnist_dir):
    """convert onto a full disk: one line naming the file, exit 2, no partial or temporary file left. A .pt2 aborted
    the process in torch's C++ writer (SIGABRT, a 33-frame backtrace), an .onnx was "its network cannot be
    exported"."""
    (small_disk / "filler").write_bytes(bytes(2_900_000))  # what is left is less than a checkpoint
    monkeypatch.chdir(model_files)
    code, error, _ = main_error(main, ["convert", "model.keras", str(small_disk / f"out{suffix}"), "--check_images",
                                       "10", "--data_dir", str(mnist_dir)], capsys)
    assert code == 2 and error == (f"error: no space left on the device writing {small_disk / f'out{suffix}'}: free "
                                   f"some space and run it again"), error
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


def test_a_pdf_figure_on_a_full_disk_is_one_line(small_disk, monkeypatch, capsys):
    """matplotlib's PDF writer, failing on a full disk, failed again as it closed its stream: an AttributeError
    traceback in place of the one line a .png or .svg gets (hostile round 10)."""
    filler = os.open(small_disk / "filler", os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(filler, bytes(65536)):  # the disk full to its last byte
            pass
    except OSError:
        pass
    finally:
        os.close(filler)
    code, error, _ = main_error(main, ["augment-preview", "--count", "2", "--rows", "1", str(small_disk / "a.pdf")],
                                capsys)
    assert code == 2 and error == (f"error: no space left on the device writing {small_disk / 'a.pdf'}: free some "
                                   f"space and run it again"), error
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler"]


@pytest.mark.parametrize("command", [["predict", "digit.png", "--weights", "model.ckpt"], ["serve"],
                                     ["convert", "model.ckpt", "out.keras"], ["augment-preview", "out.png"],
                                     ["keras_reference", "cv"], ["fit"]])
@pytest.mark.parametrize("content, expected", [
    ("# caf\u00e9\n".encode("latin-1"), "--config bad.yaml: not UTF-8 text (byte 0xe9 at position 5); save the file "
                                        "as UTF-8"),
    (b"", "--config bad.yaml: the file holds nothing; a config file maps settings to values"),
    (b"- model\n- lr: 0.1\n", "--config bad.yaml: the file holds a YAML list, not settings by name"),
    (b"model:\n  lr: [0.1\n", "--config bad.yaml: not valid YAML: did not find expected ',' or ']' at line 3, "
                               "column 1"),
    # hostile round 12: jsonargparse read the file named there too; its refusals named neither file (one of
    # /etc/passwd echoed the file's lines)
    (b"config: /etc/passwd\n", "--config bad.yaml: its config: /etc/passwd names another config file, which is "
                                "not read from within one here"),
])
def test_a_config_that_is_not_utf8_or_not_settings_is_named_in_one_line(command, content, expected, tmp_path,
                                                                         monkeypatch, capsys):
    """jsonargparse would let a UnicodeDecodeError escape with a traceback that names no file, says only
    "Unexpected config" of an empty file or a list, and names neither the file nor its line of a YAML error."""
    from keras_reference.__main__ import main as keras_main

    (tmp_path / "bad.yaml").write_bytes(content)
    monkeypatch.chdir(tmp_path)
    program, args = (keras_main, command[1:]) if command[0] == "keras_reference" else (main, command)
    code, error, _ = main_error(program, [*args, "--config", "bad.yaml"], capsys)
    assert code == 2 and expected in error, error
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


@pytest.mark.parametrize("args, expected", [
    (["augment-preview", "out.png", "--seed", "99999999999999999999"], "--seed must be from 0 to 4294967295"),
    (["augment-preview", "out.png", "--seed", "-1"], "--seed must be from 0 to 4294967295, got -1"),
    (["frobnicate"], "unknown command 'frobnicate'; choose from fit, validate, test, cv, convert"),
])
def test_a_refusal_is_the_only_line(args, expected, tmp_path, monkeypatch, capsys):
    """The error line alone: no usage text before it, no traceback after work began."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2 and err.strip().splitlines() == [err.strip()] and expected in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_diverged_training_that_monitors_accuracy_says_so_too(tmp_path, lightning_logging, monkeypatch, capsys):
    """nan weights still score a finite accuracy (every image gets the same class), so a run that keeps the best
    val/acc has a "best" checkpoint of nan weights: fit looks at its weights and says the training diverged."""
    monkeypatch.chdir(tmp_path)
    code, error, _ = main_error(main, ["fit", "--data.subset", "600", "--trainer.max_epochs", "1",
                                       "--trainer.limit_train_batches", "5", "--optimizer", "torch.optim.SGD",
                                       "--optimizer.lr", "50", "--checkpoint.monitor", "val/acc", "--checkpoint.mode",
                                       "max", "--early_stopping.monitor", "val/acc", "--early_stopping.mode", "max",
                                       "--trainer.enable_progress_bar", "false", "--output_dir", "runs"], capsys)
    assert code == 2 and error.startswith("error: training diverged: the best checkpoint"), error
    assert "holds nan or infinite weights (val/acc 0." in error and "lower the learning rate" in error
    assert list((tmp_path / "runs" / "lightning" / "version_0" / "checkpoints").glob("*.ckpt"))


@pytest.mark.parametrize("command", [["predict", "digit.png", "--weights", "bomb.ckpt"],
                                     ["convert", "bomb.ckpt", "out.keras"], ["test", "--ckpt_path", "bomb.ckpt"]])
def test_a_checkpoint_whose_settings_expand_to_billions_is_refused_at_once(command, model_files, monkeypatch, capsys):
    """A pickle's shared references let a 4 KB checkpoint record a list that expands to 10**9 values (a helper's):
    whatever walked or printed them (a refusal's repr, jsonargparse) spent half a minute and 2.7 GB to end in a
    MemoryError traceback. Counted first, refused in one line."""
    import time

    import torch

    contents = torch.load(model_files / "model.ckpt", weights_only=True)
    laughs = [1]
    for _ in range(9):
        laughs = [laughs] * 10
    contents["hyper_parameters"]["architecture"]["layers"][0]["filters"] = laughs
    torch.save(contents, model_files / "bomb.ckpt")
    assert (model_files / "bomb.ckpt").stat().st_size < (model_files / "model.ckpt").stat().st_size + 10_000
    monkeypatch.chdir(model_files)
    started = time.perf_counter()
    code, error, _ = main_error(main, command, capsys)
    assert time.perf_counter() - started < 20
    assert code == 2 and "bomb.ckpt: its recorded settings (hyper_parameters) hold more than 1,000,000 values" in \
        error, error
    assert not (model_files / "out.keras").exists()


@pytest.mark.parametrize("command", [["test", "--ckpt_path", "deep.ckpt"], ["predict", "digit.png", "--weights",
                                                                           "deep.ckpt"]])
def test_a_checkpoint_whose_settings_nest_deep_is_refused_in_one_line(command, model_files, monkeypatch, capsys):
    """A recorded setting of lists 900 deep ran jsonargparse's walk of a resumed or tested run's settings past
    Python's stack: a 2,981-line RecursionError traceback (hostile round 7)."""
    import torch

    contents = torch.load(model_files / "model.ckpt", weights_only=True)
    deep: list = []
    for _ in range(200):  # (900 in the helper's file; pickling that deep needs a higher recursion limit)
        deep = [deep]
    contents["hyper_parameters"]["notes"] = deep
    torch.save(contents, model_files / "deep.ckpt")
    monkeypatch.chdir(model_files)
    code, error, _ = main_error(main, command, capsys)
    assert code == 2 and error == ("error: deep.ckpt: its recorded settings (hyper_parameters) nest lists or mappings "
                                   "more than 64 deep (a run records a few levels)"), error


def test_a_refusal_quoting_a_huge_value_stays_a_readable_line(tmp_path, monkeypatch, capsys):
    """A description whose ``filters`` is a list of 200,000 numbers was refused in a 2.7 MB error line (a helper's):
    the line keeps its start and end, and says how much it left out."""
    (tmp_path / "long.yaml").write_text(json.dumps({"input_shape": [28, 28, 1], "layers": [
        {"type": "Conv2D", "filters": list(range(200_000)), "kernel_size": 3}, {"type": "Flatten"},
        {"type": "Dense", "units": 10}]}))
    monkeypatch.chdir(tmp_path)
    code, error, _ = main_error(main, ["fit", "--model.architecture", "long.yaml"], capsys)
    assert code == 2 and len(error) < 4_100 and "filters must be a positive integer, got [0, 1, 2, 3" in error, error
    assert re.search(r" \.\.\. \([\d,]+ characters left out\) \.\.\. .*199999\]", error), error[-200:]


def test_a_checkpoint_that_holds_no_weights_by_name_says_what_it_holds(tmp_path, capsys):
    """A list of tensors, or a dict whose ``state_dict`` is a list: "it holds a dict" named the wrong object."""
    import torch

    torch.save([torch.zeros(2)], tmp_path / "list.ckpt")
    torch.save({"state_dict": [torch.zeros(2)]}, tmp_path / "entry.ckpt")
    for name, held in (("list.ckpt", "a list"), ("entry.ckpt", "a dict whose state_dict is a list")):
        code, error, _ = main_error(main, ["test", "--ckpt_path", str(tmp_path / name)], capsys)
        assert code == 2 and error == f"error: {tmp_path / name} is not a model checkpoint (it holds {held}, not " \
                                      f"weights by name)", error

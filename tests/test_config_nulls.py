"""``null`` in a ``--config`` file, and other values of the wrong shape there, on every command.

jsonargparse takes a None value for "not given" and does not check its type, so ``model: {lr: null}``
in a config file reached the commands (a TypeError, an AttributeError, a seed of None after TensorFlow
loaded) though ``--model.lr null`` is refused. Each case here must end as the flag's line does: one
``error:`` line naming the setting and what it takes, exit code 2, nothing written. Settings whose type
admits null (``data.subset``, ``trainer.max_epochs``, ``checkpoint.dirpath``...) keep taking it.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from PIL import Image

from conftest import main_error, main_output, module_env
from keras_reference.__main__ import main as keras_main
from lightning_mnist.__main__ import main as lightning_main

EMA = "lightning_mnist.training.callbacks.EMAWeightAveraging"

# command line (before --config), the config file, what the one line must say
LIGHTNING = {
    "fit model.lr": (["fit"], "model: {lr: null}", "--model.lr: expected float, got null"),
    "fit model.label_smoothing": (["fit"], "model: {label_smoothing: null}",
                                  "--model.label_smoothing: expected float, got null"),
    "fit model.weight_decay": (["fit"], "model: {weight_decay: null}", "--model.weight_decay: expected float, got null"),
    "fit model.architecture": (["fit"], "model: {architecture: null}",
                               "--model.architecture: expected str or dict, got null"),
    "fit data.batch_size": (["fit"], "data: {batch_size: null}", "--data.batch_size: expected int, got null"),
    "fit data.eval_batch_size": (["fit"], "data: {eval_batch_size: null}",
                                 "--data.eval_batch_size: expected int, got null"),
    "fit data.val_fraction": (["fit"], "data: {val_fraction: null}", "--data.val_fraction: expected float, got null"),
    "fit data.rotation": (["fit"], "data: {rotation: null}", "--data.rotation: expected float, got null"),
    "fit data.split_seed": (["fit"], "data: {split_seed: null}", "--data.split_seed: expected int, got null"),
    "fit early_stopping.patience": (["fit"], "early_stopping: {patience: null}",
                                    "--early_stopping.patience: expected int, got null"),
    "fit early_stopping.min_delta": (["fit"], "early_stopping: {min_delta: null}",
                                     "--early_stopping.min_delta: expected float, got null"),
    "fit checkpoint.save_top_k": (["fit"], "checkpoint: {save_top_k: null}",
                                  "--checkpoint.save_top_k: expected int, got null"),
    "fit checkpoint": (["fit"], "checkpoint: null", "--checkpoint: expected a mapping of its settings"),
    "fit trainer": (["fit"], "trainer: null", "--trainer: expected a mapping of its settings"),
    "fit model": (["fit"], "model: null", "--model: expected a mapping of its settings"),
    "fit data": (["fit"], "data: null", "--data: expected a mapping of its settings"),
    "fit early_stopping": (["fit"], "early_stopping: null", "--early_stopping: expected a mapping of its settings"),
    "fit output_dir": (["fit"], "output_dir: null", "--output_dir: expected str, got null"),
    "fit seed_everything": (["fit"], "seed_everything: null", "--seed_everything: expected bool or int, got null"),
    "cv data.batch_size": (["cv"], "data: {batch_size: null}", "--data.batch_size: expected int, got null"),
    "test data.eval_batch_size": (["test"], "data: {eval_batch_size: null}",
                                  "--data.eval_batch_size: expected int, got null"),
    "convert check_images": (["convert", "model.ckpt", "out.keras"], "check_images: null",
                             "--check_images: expected int, got null"),
    "augment-preview count": (["augment-preview", "preview.png"], "count: null", "--count: expected int, got null"),
    "augment-preview rotation": (["augment-preview", "preview.png"], "rotation: null",
                                 "--rotation: expected float, got null"),
    "serve port": (["serve", "--weights", "model.ckpt"], "port: null", "--port: expected int, got null"),
    "serve batch_timeout": (["serve", "--weights", "model.ckpt"], "batch_timeout: null",
                            "--batch_timeout: expected float, got null"),
    "fit model a number": (["fit"], "model: 5", "--model: expected a mapping of its settings (see --print_config), got 5"),
    "fit data a list": (["fit"], "data: [1, 2]", "--data: expected a mapping of its settings (see --print_config), "
                                                "got [1, 2]"),
    "validate trainer a word": (["validate", "--ckpt_path", "model.ckpt"], "trainer: true",
                                "--trainer: expected a mapping of its settings (see --print_config), got true"),
    "cv model a number": (["cv"], "model: 5", "--model: expected a mapping of its settings"),
    # a set is YAML's only by its tag, which no config needs: refused naming the tag
    "fit model a set": (["fit"], "model: !!set {a, b}", "the YAML tag '!!set' (line 1) is not taken here"),
    "predict images a word": (["predict"], "images: digit.png\nweights: model.ckpt",
                              "--images: expected list of str, got digit.png"),
    "predict images null": (["predict"], "images: null\nweights: model.ckpt",
                            "--images: expected list of str, got null"),
    "predict json null": (["predict"], "images: [digit.png]\nweights: model.ckpt\njson: null",
                          "--json: expected bool, got null"),
}

KERAS = {
    "train model.lr": (["train"], "model: {lr: null}", "--model.lr: expected float, got null"),
    "train model.label_smoothing": (["train"], "model: {label_smoothing: null}",
                                    "--model.label_smoothing: expected float, got null"),
    "train data.batch_size": (["train"], "data: {batch_size: null}", "--data.batch_size: expected int, got null"),
    "train data.val_fraction": (["train"], "data: {val_fraction: null}",
                                "--data.val_fraction: expected float, got null"),
    "cv data.rotation": (["cv"], "data: {rotation: null}", "--data.rotation: expected float, got null"),
    "train early_stopping.patience": (["train"], "early_stopping: {patience: null}",
                                      "--early_stopping.patience: expected int, got null"),
    "train checkpoint.save_top_k": (["train"], "checkpoint: {save_top_k: null}",
                                    "--checkpoint.save_top_k: expected int, got null"),
    "train model": (["train"], "model: null", "--model: expected a mapping of its settings"),
    "train trainer": (["train"], "trainer: null", "--trainer: expected a mapping of its settings"),
    "train checkpoint": (["train"], "checkpoint: null", "--checkpoint: expected a mapping of its settings"),
    "train seed_everything": (["train"], "seed_everything: null", "--seed_everything: expected int, got null"),
    "cv output_dir": (["cv"], "output_dir: null", "--output_dir: expected str, got null"),
    "train model a number": (["train"], "model: 5", "--model: expected a mapping of its settings"),
    "cv data a list": (["cv"], "data: [1, 2]", "--data: expected a mapping of its settings"),
    "train model a set": (["train"], "model: !!set {a}", "the YAML tag '!!set' (line 1) is not taken here"),
    "EMA init_args a list": (["train"], f"trainer: {{callbacks: [{{class_path: {EMA}, init_args: [1, 2]}}]}}",
                             "EMAWeightAveraging init_args [1, 2]: init_args must be a mapping"),
    "EMA init_args a word": (["train"], f"trainer: {{callbacks: [{{class_path: {EMA}, init_args: abc}}]}}",
                             "EMAWeightAveraging init_args 'abc': init_args must be a mapping"),
}

CASES = {**{f"lightning_mnist {k}": (lightning_main, *v) for k, v in LIGHTNING.items()},
         **{f"keras_reference {k}": (keras_main, *v) for k, v in KERAS.items()}}


@pytest.fixture
def scratch(tmp_path, monkeypatch):
    """A folder holding the files the command lines name (which need not be valid: the config is refused first)."""
    monkeypatch.chdir(tmp_path)
    Image.new("L", (28, 28), 255).save(tmp_path / "digit.png")
    (tmp_path / "model.ckpt").write_bytes(b"not read: the config is refused before")
    return tmp_path


@pytest.mark.parametrize("case", list(CASES))
def test_a_null_in_a_config_file_is_refused_as_the_flag_is(case, scratch, capsys):
    main, args, config, fragment = CASES[case]
    (scratch / "c.yaml").write_text(config + "\n")
    before = sorted(p.name for p in scratch.rglob("*"))
    code, error, _ = main_error(main, [*args, "--config", "c.yaml"], capsys)
    assert code == 2 and fragment in error, error
    assert sorted(p.name for p in scratch.rglob("*")) == before


@pytest.mark.parametrize("args", [["fit", "--config", "pipe.yaml"], ["fit", "--model", "pipe.yaml"],
                                  ["fit", "--config", "/dev/zero"], ["predict", "digit.png", "--config", "pipe.yaml"],
                                  ["convert", "model.ckpt", "out.onnx", "--config", "pipe.yaml"], ["train", "--config",
                                                                                              "pipe.yaml"]])
def test_a_config_that_is_a_pipe_or_a_device_is_refused_not_waited_on(args, scratch, capsys):
    """A reader of a pipe waits for a writer for good, and /dev/zero never ends: refused, naming the flag."""
    os.mkfifo(scratch / "pipe.yaml")
    main = keras_main if args[0] == "train" else lightning_main
    code, error, _ = main_error(main, args, capsys)
    flag = args[-2]
    assert code == 2 and f"{flag} {args[-1]}: a pipe, a socket or a device, not a file" in error, error


# A group's settings given as a file (--model my.yaml) or inline (--model '{lr: 0.001}'): jsonargparse said only
# "Unable to load config" for anything else, twice
GROUP_SOURCES = {
    "a folder": (lightning_main, ["fit", "--model", "folder"], "--model folder: a folder; give a YAML file of "
                 "--model's settings, or them inline, e.g. --model '{lr: 0.001}'"),
    "no such file": (lightning_main, ["cv", "--trainer", "missing.yaml"], "--trainer missing.yaml: no such file; give "
                     "a YAML file of --trainer's settings"),
    "a number": (keras_main, ["train", "--data", "5"], "--data 5: neither a file nor settings by name; give a YAML "
                 "file of --data's settings, or them inline, e.g. --data '{batch_size: 64}'"),
    "an empty value": (lightning_main, ["fit", "--trainer", ""],
                       "--trainer: an empty value; give a YAML file of --trainer's settings"),
    "an empty file": (lightning_main, ["fit", "--model", "empty.yaml"], "--model empty.yaml: the file holds nothing; "
                      "a file of --model's settings maps them to values, e.g. 'lr: 0.001'"),
    "a list in the file": (keras_main, ["train", "--model", "list.yaml"], "--model list.yaml: the file holds a YAML "
                           "list, not settings by name"),
    "inline settings that are not YAML": (lightning_main, ["fit", "--model", "{lr: [0.1}"],
                                          "--model {lr: [0.1}: not valid YAML: expected ',' or ']', but got '}' at "
                                          "line 1, column 10"),
    "an empty --config": (keras_main, ["cv", "--config", ""], "--config '': an empty name; give a YAML file"),
}


# A wrong value among a group's settings (in its file, or inline) is named as the flag's would be, not in
# jsonargparse's prose about the file ("Unable to load config ... Does not validate against any of the Union
# subtypes ... Given value: 5", some 600 characters)
GROUP_VALUES = {
    "a word for a number, in the file": (lightning_main, ["fit", "--model", "model.yaml"], "lr: fast\n",
                                         "--model.lr: expected float, got fast"),
    "a number for a logger, in the file": (lightning_main, ["fit", "--trainer", "trainer.yaml"], "logger: 5\n",
                                           "--trainer.logger: expected Logger or list of Logger or bool or null, "
                                           "got 5"),
    "a number for a logger, in a --config file": (lightning_main, ["cv", "--config", "run.yaml"],
                                                  "trainer:\n  logger: 5\n",
                                                  "--trainer.logger: expected Logger or list of Logger"),
    "a list for a number, in the file": (keras_main, ["train", "--data", "data.yaml"], "batch_size: [64]\n",
                                         "--data.batch_size: expected int, got [64]"),
    "a word for a number, inline": (lightning_main, ["fit", "--data", "{batch_size: many}"], None,
                                    "--data.batch_size: expected int, got many"),
}


# A setting that does not exist: jsonargparse names it; the line adds the setting meant, or where they are listed
UNKNOWN_SETTINGS = {
    "a misspelt flag": (keras_main, ["train", "--data.batchsize", "64"], None,
                        "unrecognized arguments: --data.batchsize 64; did you mean --data.batch_size?"),
    "a misspelt group": (lightning_main, ["fit", "--modle.lr", "0.01"], None, "did you mean --model.lr?"),
    "a misspelt setting, inline": (lightning_main, ["fit", "--trainer", "{max_epoch: 1}"], None,
                                   "'trainer.max_epoch'; did you mean --trainer.max_epochs?"),
    "a misspelt setting, in a --config file": (keras_main, ["train", "--config", "run.yaml"], "model:\n  lrate: 1\n",
                                               "'model.lrate'; did you mean --model.lr?"),
    "a positional argument given as a flag": (lightning_main, ["convert", "--src", "m.keras", "m.onnx"], None,
                                              "unrecognized arguments: --src; src is given by its place on the "
                                              "command line, without --"),  # it said "did you mean --src?"
    "a flag like no other": (lightning_main, ["cv", "--banana", "3"], None,
                             "unrecognized arguments: --banana 3; --help lists the settings"),
    "no space after the colon, inline": (lightning_main, ["fit", "--model", "{lr:0.01}"], None,
                                         "--model {lr:0.01}: 'lr:0.01' is one key with no value (YAML takes "
                                         "'name: value', a space after the colon); write --model '{lr: 0.01}'"),
    "no space after the colon, in a --config file": (lightning_main, ["fit", "--config", "run.yaml"],
                                                     "data: {batch_size:64}\n", "'data.batch_size:64'; YAML takes "
                                                     "'name: value', with a space after the colon"),
}


@pytest.mark.parametrize("case", list(GROUP_VALUES))
def test_a_wrong_value_among_a_groups_settings_is_named_like_its_flag(case, scratch, capsys):
    assert_refused_in_one_line(*GROUP_VALUES[case], scratch, capsys)


@pytest.mark.parametrize("case", list(UNKNOWN_SETTINGS))
def test_a_setting_that_does_not_exist_is_named_with_the_one_meant(case, scratch, capsys):
    assert_refused_in_one_line(*UNKNOWN_SETTINGS[case], scratch, capsys)


def assert_refused_in_one_line(main, args, text, expected, scratch, capsys):
    """``main(args)`` (with ``text`` in the file the last argument names) exits 2 with ``expected`` in one short
    line, and writes nothing."""
    if text is not None:
        (scratch / args[-1]).write_text(text)
    before = sorted(p.name for p in scratch.rglob("*"))
    code, error, _ = main_error(main, args, capsys)
    assert code == 2 and expected in error, error
    assert len(error) < 200 and sorted(p.name for p in scratch.rglob("*")) == before


@pytest.mark.parametrize("case", list(GROUP_SOURCES))
def test_a_groups_settings_that_are_neither_a_file_nor_inline_are_named(case, scratch, capsys):
    main, args, fragment = GROUP_SOURCES[case]
    (scratch / "folder").mkdir()
    (scratch / "empty.yaml").write_text("")
    (scratch / "list.yaml").write_text("- 1\n- 2\n")
    before = sorted(p.name for p in scratch.rglob("*"))
    code, error, _ = main_error(main, args, capsys)
    assert code == 2 and fragment in error, error
    assert sorted(p.name for p in scratch.rglob("*")) == before


def test_a_groups_settings_inline_or_in_a_file_are_taken(scratch, capsys):
    (scratch / "model.yaml").write_text("lr: 0.5\n")
    for given in ("model.yaml", "{lr: 0.5}"):
        assert "lr: 0.5" in main_output(lightning_main, ["fit", "--model", given, "--print_config"], capsys), given


def test_keras_refuses_a_null_seed_before_tensorflow_loads(scratch, mnist_dir):
    """``seed_everything: null`` failed inside Keras, after TensorFlow had loaded (seconds, and its log lines)."""
    (scratch / "c.yaml").write_text("seed_everything: null\n")
    probe = ("import sys\nfrom keras_reference.__main__ import main\ntry:\n    main(['train', '--config', 'c.yaml'])\n"
             "except SystemExit as done:\n    print(done.code, 'tensorflow' in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", probe], cwd=scratch, env=module_env(mnist_dir), capture_output=True,
                          text=True, timeout=300)
    assert proc.stdout.split() == ["2", "False"], proc.stdout + proc.stderr
    assert proc.stderr.strip() == "error: --seed_everything: expected int, got null"
    assert sorted(p.name for p in scratch.iterdir()) == ["c.yaml", "digit.png", "model.ckpt"]


class Parsed(Exception):
    """Raised in place of a command's own checks: the command line got through the parse, with these settings."""


OPTIONAL_NULLS = ("data: {data_dir: null, subset: null, num_folds: null}\ntrainer: {max_epochs: null}\n"
                  "checkpoint: {dirpath: null}\nmodel: {lr: null}\n")  # model.lr: overridden by the flag below


def test_lightning_takes_null_where_the_type_admits_it(scratch, monkeypatch):
    from lightning_mnist.training.cli import MnistCLI

    def parsed(self, subcommand, config):
        raise Parsed(config)

    monkeypatch.setattr(MnistCLI, "_check", parsed)
    (scratch / "c.yaml").write_text(OPTIONAL_NULLS)
    with pytest.raises(Parsed) as info:
        lightning_main(["fit", "--config", "c.yaml", "--model.lr", "0.01"])
    config = info.value.args[0]
    assert (config.data.subset, config.data.num_folds, config.trainer.max_epochs, config.checkpoint.dirpath) == \
        (None, None, None, None)
    assert config.model.lr == 0.01


def test_keras_takes_null_where_the_type_admits_it(scratch, monkeypatch):
    from keras_reference.config import RunSettings

    def parsed(self, command):
        raise Parsed(self)

    monkeypatch.setattr(RunSettings, "check", parsed)
    (scratch / "c.yaml").write_text("data: {data_dir: null, subset: null, num_folds: null}\ntrainer: {callbacks: null}\n"
                                    "model: {lr: null}\n")  # model.lr: overridden by the flag below
    with pytest.raises(Parsed) as info:
        keras_main(["train", "--config", "c.yaml", "--model.lr", "0.01"])
    settings = info.value.args[0]
    assert (settings.data.subset, settings.data.num_folds, settings.trainer.callbacks) == (None, None, None)
    assert settings.model.lr == 0.01


@pytest.mark.parametrize("main, command", [(lightning_main, "fit"), (lightning_main, "cv"), (keras_main, "train")],
                         ids=["fit", "cv", "keras train"])
def test_the_printed_config_with_its_nulls_is_taken_back(main, command, scratch, monkeypatch, capsys):
    """``--print_config`` writes every setting, dozens of them null (optimizer, ckpt_path, trainer.logger...):
    the file it prints is a valid config, none of its nulls refused."""
    from keras_reference.config import RunSettings
    from lightning_mnist.training.cli import MnistCLI

    def parsed(*args):
        raise Parsed()

    monkeypatch.setattr(MnistCLI, "_check", parsed)
    monkeypatch.setattr(RunSettings, "check", parsed)
    with pytest.raises(SystemExit):
        main([command, "--print_config"])
    printed = capsys.readouterr().out
    assert "null" in printed
    (scratch / "full.yaml").write_text(printed)
    with pytest.raises(Parsed):
        main([command, "--config", "full.yaml"])

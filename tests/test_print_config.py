"""``--print_config`` refuses what the command would refuse, and prints only what a run can use.

jsonargparse prints the config while it parses, before any check of the command's could run, so
``fit --model.lr -1 --print_config`` used to print a config with exit code 0 that ``fit --config``
then refused. Now every command checks its values first (the checks that read no data and write
nothing) and refuses in one ``error:`` line, exit code 2, printing nothing; a good config still
prints, and printing one never downloads MNIST or writes a file.
"""

from __future__ import annotations

import pytest
import yaml

from conftest import main_error
from keras_reference.__main__ import main as keras_main
from lightning_mnist.__main__ import main as lightning_main

# command line (the bad value in it), what the one line must say
REFUSED = {
    "fit lr": (["fit", "--model.lr", "-1"], "--model.lr must be a positive number"),
    "fit batch size": (["fit", "--data.batch_size", "0"], "--data.batch_size must be at least 1, got 0"),
    "fit min above max epochs": (["fit", "--trainer.min_epochs", "5", "--trainer.max_epochs", "2"],
                                 "--trainer.min_epochs 5: more than --trainer.max_epochs 2"),
    "fit max_steps 0": (["fit", "--trainer.max_steps", "0"], "--trainer.max_steps 0: fit would train no step"),
    "fit unknown accelerator": (["fit", "--trainer.accelerator", "abacus"],
                                "--trainer.accelerator abacus: not an accelerator Lightning knows"),
    "fit monitor": (["fit", "--early_stopping.monitor", "val/f1"], "--early_stopping.monitor val/f1: not a metric"),
    "cv one fold": (["cv", "--data.num_folds", "1"], "--data.num_folds must be between 2 and 100"),
    "fit steps per execution with clipping": (["fit", "--data.steps_per_execution", "2", "--trainer.gradient_clip_val",
                                               "1"], "--data.steps_per_execution 2 with --trainer.gradient_clip_val"),
    "cv folds of too few images": (["cv", "--data.subset", "20"], "cannot split 20 images into --data.num_folds 5"),
    "test no batch": (["test", "--trainer.limit_test_batches", "0"], "`test` would score no batch"),
    "validate weights_only": (["validate", "--weights_only", "false"], "--weights_only false"),
    "keras train lr": (["keras_reference", "train", "--model.lr", "2"], "--model.lr must be a positive number"),
    "keras train top_k": (["keras_reference", "train", "--checkpoint.save_top_k", "3"], "--checkpoint.save_top_k 3"),
    "keras cv subset": (["keras_reference", "cv", "--data.subset", "20"], "cannot split 20 images"),
    "convert check_images": (["convert", "model.keras", "model.ckpt", "--check_images", "0"],
                             "--check_images must be between 1 and 10000, got 0"),
    "convert to a URL": (["convert", "model.ckpt", "https://example.com/m.keras"], "a URL; convert writes a local file"),
    "predict show": (["predict", "digit.png", "--weights", "model.ckpt", "--show", "figure.txt"],
                     "--show figure.txt: name a .png"),
    "serve port": (["serve", "--weights", "model.ckpt", "--port", "80"], "--port must be at least 1024, got 80"),
    "serve batch_timeout": (["serve", "--weights", "model.ckpt", "--batch_timeout", "5"],
                            "--batch_timeout must be between 0 and 1 second"),
    "augment-preview count": (["augment-preview", "grid.png", "--count", "0"], "--count must be between 1 and 40"),
    "augment-preview suffix": (["augment-preview", "grid.txt"], "grid.txt: name a .png"),
}


def program_of(command: list[str]):
    return (keras_main, command[1:]) if command[0] == "keras_reference" else (lightning_main, command)


@pytest.mark.parametrize("case", list(REFUSED))
def test_print_config_refuses_what_the_command_refuses(case, tmp_path, monkeypatch, capsys):
    command, expected = REFUSED[case]
    monkeypatch.chdir(tmp_path)
    program, args = program_of(command)
    for at in (len(args), 1):  # after the flags, and right after the command
        code, error, _ = main_error(program, [*args[:at], "--print_config", *args[at:]], capsys)
        assert code == 2 and expected in error, error
    assert capsys.readouterr().out == ""  # nothing printed as if it were a good config
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", [["fit", "--model.lr", "0.01", "--trainer.max_epochs", "3"],
                                     ["cv", "--data.num_folds", "3"], ["test"], ["validate"],
                                     ["keras_reference", "train", "--model.lr", "0.01"],
                                     ["convert", "model.keras", "model.ckpt", "--check_images", "100"],
                                     ["serve", "--weights", "model.ckpt", "--port", "8080"],
                                     ["predict", "digit.png", "--weights", "model.ckpt", "--show", "figure.png"],
                                     ["augment-preview", "grid.png", "--count", "12"]])
def test_a_good_config_still_prints_with_the_values_given(command, tmp_path, monkeypatch, capsys):
    """What a run would take prints (with --print_config's own flags too), exit code 0, and nothing is written;
    the files it names need not exist yet (a config is often written before them)."""
    monkeypatch.chdir(tmp_path)
    program, args = program_of(command)
    with pytest.raises(SystemExit) as printed:
        program([*args, "--print_config=skip_default"] if command[0] == "fit" else [*args, "--print_config"])
    assert printed.value.code == 0
    config = yaml.safe_load(capsys.readouterr().out)
    given = dict(zip(args[1::2], args[2::2])) if args[0].startswith(("fit", "cv")) else {}
    for flag, value in given.items():  # the flags given are in what it printed
        group, key = flag[2:].split(".")
        assert str(config[group][key]) == value, (flag, config[group])
    if command[0] == "fit":  # skip_default: the flags given, not the defaults
        assert set(config) == {"model", "trainer"}, config
    assert list(tmp_path.iterdir()) == []


def test_printing_a_config_downloads_nothing_and_checks_the_split_only_with_the_data_here(tmp_path, monkeypatch,
                                                                                          capsys):
    """Without the data, the values are still checked and the config prints without fetching MNIST; the checks
    that need the training labels (the folds a subset allows, steps against the split's batches) wait for it."""
    empty = tmp_path / "no_data"
    monkeypatch.chdir(tmp_path)
    code, error, _ = main_error(lightning_main, ["fit", "--data.data_dir", str(empty), "--data.download", "true",
                                                 "--model.lr", "0", "--print_config"], capsys)
    assert code == 2 and "--model.lr must be a positive number" in error, error
    for program, args in ((lightning_main, ["cv", "--data.subset", "20"]), (keras_main, ["cv", "--data.subset", "20"]),
                          (lightning_main, ["fit", "--trainer.max_steps", "0"])):
        with pytest.raises(SystemExit) as printed:
            program([*args, "--data.data_dir", str(empty), "--data.download", "true", "--print_config"])
        assert printed.value.code == 0
        assert yaml.safe_load(capsys.readouterr().out)["data"]["data_dir"] == str(empty)
    assert not empty.exists()  # nothing downloaded, no folder made


def test_print_config_refuses_in_a_real_process(run_module, tmp_path):
    proc = run_module("lightning_mnist", "fit", "--model.lr", "-1", "--print_config", check=False)
    assert proc.returncode == 2 and proc.stdout == "", proc.stdout
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--model.lr must be a positive number" in errors[0] and "Traceback" not in proc.stderr
    assert "args parameter" not in proc.stderr  # no LightningCLI warning about its args from the check's parse
    proc = run_module("keras_reference", "train", "--data.batch_size", "0", "--print_config", check=False)
    assert proc.returncode == 2 and proc.stdout == "" and proc.stderr.startswith("error: --data.batch_size"), \
        proc.stderr


@pytest.mark.parametrize("given", ["as a list", "from the process"])
def test_only_the_named_subcommand_gets_a_parser(given, tmp_path, monkeypatch, capsys):
    """LightningCLI builds a parser for every subcommand it is given (the Trainer's, the model's and the data's
    signatures read each time: 0.13 s of a command's start-up): the training commands give it the one named, whether
    the command line is handed to ``main`` (the tests) or read from the process (``python -m lightning_mnist``),
    and cv keeps its own defaults."""
    import sys

    from lightning_mnist.training import cli

    built = []
    real = cli.MnistCLI.subcommands
    monkeypatch.setattr(cli.MnistCLI, "subcommands", lambda self: built.append(list(real(self))) or real(self))
    monkeypatch.chdir(tmp_path)
    argv = ["cv", "--print_config"]
    monkeypatch.setattr(sys, "argv", ["lightning_mnist", *argv] if given == "from the process" else ["pytest"])
    with pytest.raises(SystemExit) as printed:
        cli.main(argv if given == "as a list" else None)
    assert printed.value.code == 0 and yaml.safe_load(capsys.readouterr().out)["data"]["num_folds"] == 5
    assert built and all(names == ["cv"] for names in built), built

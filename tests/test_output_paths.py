"""Where a command writes: outputs it must refuse before any work, and names the system refuses.

A folder that takes no file, a data folder that is not there, a link (even a dangling or looping one)
where the output goes, the command's own input named as its output, a FIFO or a device named as the
output, and names too long or holding a NUL byte (from a config file). Each is refused before any work
(no prediction printed, no model built) in one ``error:`` line naming the path and why, exit code 2, and
nothing is written or replaced: input bytes unchanged, a link still the same link.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from conftest import main_error, unreadable
from keras_reference.__main__ import main as keras_main
from lightning_mnist.__main__ import main

LONG = "x" * 300  # more than a file name may hold (255 bytes on Linux)


class KeepOutput:
    """``capsys`` for :func:`main_error` that keeps what the command printed to stdout, for the test to check."""

    def __init__(self, capsys) -> None:
        self.capsys, self.out = capsys, ""

    def readouterr(self):
        captured = self.capsys.readouterr()
        self.out = captured.out
        return captured


def refused(argv: list[str], capsys, program=main) -> tuple[str, str]:
    """(the one ``error:`` line, stdout) of a command that must exit 2."""
    kept = KeepOutput(capsys)
    code, error, _ = main_error(program, argv, kept)
    assert code == 2, error
    return error, kept.out


@pytest.fixture
def work(tmp_path, seed_keras, monkeypatch):
    """A folder to run in, holding the notebook's model as a checkpoint and a drawn "1" to predict."""
    from lightning_mnist.checkpoints import load_networks, save_checkpoint

    [network] = load_networks(seed_keras)
    save_checkpoint(tmp_path / "model.ckpt", network.architecture, network.state_dict())
    picture = Image.new("L", (60, 60), 255)
    ImageDraw.Draw(picture).line([(30, 8), (30, 52)], fill=0, width=5)
    picture.save(tmp_path / "digit.png")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def contents(folder: Path) -> dict[str, bytes | str]:
    """Every name under ``folder`` and what it holds (a link: where it points), to prove nothing changed."""
    return {str(p.relative_to(folder)): os.readlink(p) if p.is_symlink() else p.read_bytes() if p.is_file() else ""
            for p in sorted(folder.rglob("*"))}


COMMANDS = {  # a command line writing `{target}` (a name with the suffix given), and the label its refusal names
    "convert": (["convert", "model.ckpt", "{target}"], ".keras", "dst"),
    "predict --show": (["predict", "digit.png", "--weights", "model.ckpt", "--show", "{target}"], ".png", "--show"),
    "augment-preview": (["augment-preview", "{target}", "--count", "2", "--rows", "1"], ".png", "output"),
}


def command_line(command: str, target: str, *extra: str) -> tuple[list[str], str]:
    """(argv writing ``target`` plus the command's suffix, the label its refusal names)."""
    args, suffix, label = COMMANDS[command]
    return [a.format(target=target + suffix) for a in args] + list(extra), label


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_folder_that_takes_no_file_is_refused_before_any_work(command, work, capsys):
    """Was: predict printed its prediction, convert built the Keras model (5 s), and only then the write failed."""
    folder = work / "read_only"
    folder.mkdir()
    argv, label = command_line(command, "read_only/out")
    before = contents(work)
    with unreadable(folder):  # root too: its permission-overriding capabilities are lowered for the while
        folder.chmod(0o555)  # a folder that can be listed and searched, not written
        error, out = refused(argv, capsys)
    folder.chmod(0o755)
    assert error.startswith(f"error: {label} read_only/out") and "cannot write in folder read_only" in error, error
    assert "Permission denied" in error and out == "", (error, out)
    assert contents(work) == before


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_output_under_a_file_is_refused(command, work, capsys):
    """A folder name that is a file: root cannot write there either."""
    argv, label = command_line(command, "digit.png/out")
    before = contents(work)
    error, out = refused(argv, capsys)
    assert error.startswith(f"error: {label} digit.png/out") and error.endswith(": folder digit.png is a file"), error
    assert out == "" and contents(work) == before


@pytest.mark.parametrize("command", ["convert", "augment-preview"])
@pytest.mark.parametrize("folder, reason", [("nowhere", "no such folder"), ("digit.png", "not a folder"),
                                            ("/dev/null", "not a folder")])
def test_a_data_folder_that_is_not_there_is_refused_before_any_work(command, folder, reason, work, capsys):
    """Was: convert built the model, then tried to download MNIST into the mistyped folder and printed the failure
    (and a file or a device given as the folder was said not to exist)."""
    argv, _ = command_line(command, "out", "--data_dir", str(work / folder))
    error, out = refused(argv, capsys)
    assert error == (f"error: data folder {work / folder}: {reason} (give --data_dir the folder holding "
                     f"MNIST/raw, or set $MNIST_DATA_DIR)"), error
    assert out == "" and sorted(p.name for p in work.iterdir()) == ["digit.png", "model.ckpt"]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("link", ["dangling", "loop"])
def test_a_link_is_an_existing_file(command, link, work, capsys):
    """``Path.exists()`` is False for a dangling or looping link: the commands used to replace it silently."""
    argv, label = command_line(command, "odd")
    name = argv[argv.index("odd" + COMMANDS[command][1])]
    os.symlink("missing" if link == "dangling" else name, work / name)
    before = contents(work)
    error, out = refused(argv, capsys)
    assert error == f"error: {label} {name}: already exists; give --overwrite to replace it, or name another file"
    assert out == "" and contents(work) == before and (work / name).is_symlink()


@pytest.mark.parametrize("argv, label, victim", [
    (["predict", "digit.png", "--weights", "model.ckpt", "--show", "digit.png"], "--show digit.png", "digit.png"),
    (["predict", "digit.png", "--weights", "model.ckpt", "--show", "same.png"], "--show same.png", "digit.png"),
    (["convert", "model.ckpt", "same.keras"], "dst same.keras", "model.ckpt"),
], ids=["predict onto its picture", "predict onto a link to its picture", "convert onto a link to its source"])
def test_an_input_is_never_the_output_even_with_overwrite(argv, label, victim, work, capsys):
    """Was: ``predict img.png --show img.png --overwrite`` replaced the picture with the figure."""
    os.symlink(victim, work / "same.png")
    os.symlink(victim, work / "same.keras")
    before = contents(work)
    error, out = refused([*argv, "--overwrite"], capsys)
    assert error.startswith(f"error: {label}: is one of the command's inputs ("), error
    assert out == "" and contents(work) == before


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("kind", ["fifo", "link to a device"])
def test_an_output_that_is_not_a_regular_file_is_refused_even_with_overwrite(command, kind, work, capsys):
    """Was: the atomic rename swapped a device node (or a FIFO) for a regular file."""
    argv, label = command_line(command, "odd", "--overwrite")
    name = argv[argv.index("odd" + COMMANDS[command][1])]
    if kind == "fifo":
        os.mkfifo(work / name)
    else:
        os.symlink(os.devnull, work / name)
    error, out = refused(argv, capsys)
    assert error == (f"error: {label} {name}: is not a regular file (a device, FIFO or socket); name a file to "
                     f"write"), error
    assert out == ""
    assert stat.S_ISFIFO(os.lstat(work / name).st_mode) if kind == "fifo" else os.readlink(work / name) == os.devnull


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_output_name_too_long_is_one_shortened_line(command, work, capsys):
    argv, label = command_line(command, LONG)
    error, out = refused(argv, capsys)
    assert error.startswith(f"error: {label} xxx") and "...xxx" in error and error.endswith(": File name too long")
    assert len(error) < 300 and out == ""
    assert sorted(p.name for p in work.iterdir()) == ["digit.png", "model.ckpt"]


@pytest.mark.parametrize("argv", [["convert", f"{LONG}.keras", "out.ckpt"], ["test", "--ckpt_path", f"{LONG}.ckpt"],
                                  ["validate", "--ckpt_path", f"{LONG}.ckpt"], ["convert", LONG, "out.pt2"]],
                         ids=["convert", "test", "validate", "convert a folder"])
def test_an_input_name_too_long_is_one_shortened_line(argv, work, capsys):
    """Was a traceback (OSError: File name too long, from Path.is_dir) before any other check named the file."""
    error, out = refused(argv, capsys)
    assert "xxx...xxx" in error and "File name too long" in error and len(error) < 300 and out == "", error
    assert sorted(p.name for p in work.iterdir()) == ["digit.png", "model.ckpt"]


@pytest.mark.parametrize("program, command, framework", [(main, "fit", "lightning"),
                                                         (keras_main, "train", "keras")])
@pytest.mark.parametrize("output_dir, reason", [(LONG, "File name too long"), ("a\0b", "embedded null")],
                         ids=["too long", "NUL byte"])
def test_an_output_dir_the_system_refuses_is_one_line(program, command, framework, output_dir, reason, tmp_path,
                                                      monkeypatch, capsys):
    """Was an ``OSError: [Errno 36]`` traceback (a name too long), or ``ValueError: embedded null byte`` (from a
    config file, whose YAML can hold a NUL byte that a command line cannot)."""
    monkeypatch.chdir(tmp_path)
    quoted = output_dir.replace("\0", "\\0")  # YAML's escape for a NUL byte, in a double-quoted string
    (tmp_path / "config.yaml").write_text(f'output_dir: "{quoted}"\n')
    error, _ = refused([command, "--config", "config.yaml"], capsys, program)
    shown = "x" * 100 + "..." if output_dir == LONG else "a\\x00b/"
    assert error.startswith(f"error: --output_dir {shown}") and f"is not writable: {reason}" in error, error
    assert len(error) < 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]


@pytest.mark.parametrize("program, command", [(main, "fit"), (main, "cv"), (keras_main, "train")])
def test_an_output_dir_too_deep_for_a_runs_files_is_refused_before_any_work(program, command, tmp_path, monkeypatch,
                                                                           capsys):
    """A folder whose path leaves no room below it for a run's checkpoints (each name short enough, 4,000 bytes in
    all): the run trained a whole epoch, then failed to write its first checkpoint and removed its folder."""
    deep = tmp_path
    while len(os.fsencode(str(deep))) < 3800:
        deep = deep / ("c" * 200)
    deep = deep / ("c" * (4000 - len(os.fsencode(str(deep))) - 1))  # 4,000 bytes: 96 left below it
    deep.mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    error, out = refused([command, "--output_dir", str(deep)], capsys, program)
    assert error.startswith(f"error: --output_dir ...{'c' * 40}: a path of {len(os.fsencode(str(deep))):,} bytes "
                            f"leaves no room for a run's files below it"), error
    assert out == "" and list(deep.iterdir()) == []
    if program is main:  # the run's checkpoint folder given by path: the same room for its checkpoints' names
        for flag in ("--checkpoint.dirpath", "--trainer.callbacks"):
            value = str(deep) if flag.startswith("--checkpoint") else (
                f"[{{class_path: ModelCheckpoint, init_args: {{dirpath: '{deep}'}}}}]")
            error, out = refused([command, flag, value, "--output_dir", "runs", "--data.subset", "200",
                                  "--trainer.max_epochs", "1"], capsys, program)  # (a short run, were it taken)
            assert f"...{'c' * 40}: a path of {len(os.fsencode(str(deep))):,} bytes leaves no room" in error, error
        assert list(tmp_path.iterdir()) == [tmp_path / ("c" * 200)]  # no run folder


@pytest.mark.parametrize("program, command", [(main, "fit"), (main, "cv"), (keras_main, "train")])
@pytest.mark.parametrize("output_dir", ["gone", "gone/runs"])
def test_an_output_dir_through_a_link_to_nothing_names_the_link(program, command, output_dir, tmp_path,
                                                                 monkeypatch, capsys):
    """A symbolic link to a folder that is not there (a moved disk): ``mkdir`` said only "File exists"."""
    monkeypatch.chdir(tmp_path)
    os.symlink(tmp_path / "unmounted" / "disk", "gone")
    error, _ = refused([command, "--output_dir", output_dir], capsys, program)
    assert error == (f"error: --output_dir {output_dir}: gone is a symbolic link to {tmp_path}/unmounted/disk, which "
                     f"does not exist"), error
    assert os.listdir(tmp_path) == ["gone"]


@pytest.mark.parametrize("program, argv", [(main, ["fit"]), (main, ["test", "--ckpt_path", "model.ckpt"]),
                                           (keras_main, ["train"])], ids=["fit", "test", "keras train"])
def test_a_data_folder_from_the_environment_that_is_a_file_is_said_to_be_one(program, argv, work, monkeypatch,
                                                                             capsys):
    """Was "train-images-idx3-ubyte is missing and could not be downloaded", as if the folder were empty."""
    monkeypatch.setenv("MNIST_DATA_DIR", str(work / "digit.png"))
    error, _ = refused([*argv, "--output_dir", str(work / "runs")], capsys, program)
    assert error == (f"error: data folder {work / 'digit.png'}: not a folder (give --data_dir the folder holding "
                     f"MNIST/raw, or set $MNIST_DATA_DIR)"), error
    assert sorted(p.name for p in work.iterdir()) == ["digit.png", "model.ckpt"]


def test_an_image_name_holding_a_nul_byte_is_one_line(work, capsys):
    """Was ``ValueError: embedded null byte`` from reading a picture a config file named."""
    (work / "p.yaml").write_text('images: ["a\\0b.png"]\nweights: model.ckpt\n')
    error, out = refused(["predict", "--config", "p.yaml"], capsys)
    assert error == "error: a\\x00b.png: cannot be read (embedded null byte)" and out == "", error



def test_a_config_naming_no_image_is_refused(work, capsys):
    """``images: []`` in a config answered nothing, exit 0."""
    (work / "p.yaml").write_text("images: []\nweights: model.ckpt\n")
    error, out = refused(["predict", "--config", "p.yaml"], capsys)
    assert error == "error: images: an empty list; give one or more pictures, or folders of them" and out == "", error


@pytest.mark.parametrize("program, argv, shown", [
    (main, ["convert", "red\x1b[31m.keras", "out.ckpt"], "red\\x1b[31m.keras"),
    (main, ["convert", "cv_results.json", "out.pt2"], "fold 0 model a\\x00b\\x1b[2J.ckpt: no such file"),
    (main, ["predict", "digit.png", "--weights", "bell\x07\x7f.ckpt"], "bell\\x07\\x7f.ckpt"),
    (keras_main, ["train", "--model.architecture", "w\x1b]0;title\x07.keras"], "w\\x1b]0;title\\x07.keras"),
    (main, ["convert", "two\nlines.keras", "out.ckpt"], "error: two\\nlines.keras: no such file"),
    (main, ["test", "--ckpt_path", "two\nlines.ckpt"], "error: checkpoint two\\nlines.ckpt: no such file"),
    (main, ["fit", "--model.architecture", "two\nlines.yaml"], "architecture file two\\nlines.yaml: no such file"),
], ids=["convert", "fold model path", "predict", "keras train", "convert newline", "test newline", "fit newline"])
def test_control_characters_in_a_refused_name_are_escaped(program, argv, shown, work, capsys):
    """A NUL or a terminal escape sequence in a name the refusal quotes (a fold's model_path in a cv_results.json
    held both) reached stderr raw: now escaped as Python writes them, on the one line; a newline, which the line
    showed as a space (another name), as ``\\n``."""
    (work / "cv_results.json").write_text('{"folds": [{"model_path": "a\\u0000b\\u001b[2J.ckpt"}]}')
    error, out = refused(argv, capsys, program)
    assert shown in error and error.isprintable() and out == "", error
    assert sorted(p.name for p in work.iterdir()) == ["cv_results.json", "digit.png", "model.ckpt"]


def test_control_characters_in_a_written_name_are_escaped(work, capsys):
    """``convert``'s report quotes its source and destination: an escape sequence in the name (one that clears the
    screen) reached stdout raw; now escaped as in the error lines."""
    main(["convert", "model.ckpt", "new\x1b[2J.keras", "--check_images", "8"])
    out = capsys.readouterr().out
    assert "wrote new\\x1b[2J.keras, a Keras 3 model" in out and out.replace("\n", "").isprintable(), out
    assert (work / "new\x1b[2J.keras").is_file()


def test_the_checks_still_let_an_output_be_written(work, mnist_dir, capsys):
    """The new checks leave nothing behind: a figure over a replaced file, beside its one input, and no more."""
    shutil.copy(work / "digit.png", work / "old.png")
    main(["predict", "digit.png", "--weights", "model.ckpt", "--show", "old.png", "--overwrite"])
    assert "figure: old.png" in capsys.readouterr().out
    assert (work / "old.png").read_bytes() != (work / "digit.png").read_bytes()
    assert sorted(p.name for p in work.iterdir()) == ["digit.png", "model.ckpt", "old.png"]


def test_only_a_training_runs_own_checkpoint_folder_is_taken_for_one(tmp_path):
    """A rerun of a run's saved config.yaml takes a checkpoint.dirpath that is that run's own checkpoints/ as "this
    run's own"; a user's ./checkpoints beside a project's config.yaml stays the user's."""
    from lightning_mnist.training.outputs import a_runs_own_checkpoints

    for folder in ("runs/lightning/version_3", "runs/lightning/cv_0/fold_1", "project", "runs/lightning/version_4"):
        (tmp_path / folder / "checkpoints").mkdir(parents=True)
        if folder != "runs/lightning/version_4":  # a folder of that name without the run's saved settings
            (tmp_path / folder / "config.yaml").write_text("model: {}\n")
    assert a_runs_own_checkpoints(tmp_path / "runs/lightning/version_3/checkpoints")
    assert a_runs_own_checkpoints(tmp_path / "runs/lightning/cv_0/fold_1/checkpoints")
    assert not a_runs_own_checkpoints(tmp_path / "project/checkpoints")
    assert not a_runs_own_checkpoints(tmp_path / "runs/lightning/version_4/checkpoints")
    assert not a_runs_own_checkpoints(tmp_path / "runs/lightning/version_3")
    # the folder, however its path is spelled: a run's checkpoints mixed with another's through a link (a helper's)
    (tmp_path / "elsewhere").symlink_to(tmp_path / "runs/lightning/version_3/checkpoints")
    assert a_runs_own_checkpoints(tmp_path / "elsewhere")
    assert a_runs_own_checkpoints(tmp_path / "runs/lightning/version_3/checkpoints/../checkpoints")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    assert not a_runs_own_checkpoints(tmp_path / "loop")


@pytest.mark.parametrize("appears", ["file", "folder"])
def test_a_destination_that_appears_while_it_is_written_is_left_as_it_is(appears, tmp_path):
    """``convert`` checks its destination at the start; a file another run (or the user) put there while the model was
    converted was replaced without --overwrite, and a folder that appeared gave an IsADirectoryError traceback (a
    helper's). Whatever appeared is left as it is, refused in one line, and nothing else is left behind."""
    from mnist_common.errors import UserError
    from mnist_common.files import write_atomically

    target = tmp_path / "model.ckpt"

    def write(tmp: Path) -> None:
        tmp.write_bytes(b"the new model")
        if appears == "file":
            target.write_text("precious")
        else:
            target.mkdir()

    with pytest.raises(UserError, match=r"model\.ckpt appeared while it was being written \(another run's\?\); it "
                                        r"was left as it is"):
        write_atomically(target, write)
    assert (target.read_text() == "precious") if appears == "file" else target.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt"]
    target.unlink() if appears == "file" else target.rmdir()
    write_atomically(target, lambda tmp: tmp.write_bytes(b"the new model"))  # nothing there: written
    write_atomically(target, lambda tmp: tmp.write_bytes(b"again"))  # there from the start: replaced, as asked
    assert target.read_bytes() == b"again"

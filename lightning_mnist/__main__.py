"""``python -m lightning_mnist COMMAND [flags]``: every command, listed in one table.

``fit``, ``validate``, ``test`` and ``cv`` are LightningCLI subcommands
(:mod:`lightning_mnist.training.cli`); the others are jsonargparse programs in
:mod:`lightning_mnist.commands`. Each module is imported only when its command runs, so
``predict`` does not pay for Lightning. Every command takes ``--help``, ``--config FILE``
and ``--print_config``.
"""

from __future__ import annotations

import importlib
import os
import sys

from mnist_common.errors import UserError, exit_on_user_error, stop_cleanly_on_sigterm
from mnist_common.environment import check_environment
from mnist_common.threads import configure_threads

PROG = "python -m lightning_mnist"
# Commands whose work is all written when they return: the program ends there, skipping the
# interpreter's final clean-up of torch's and TensorFlow's object graphs (about 2 s, and
# triton's bindings would print "nanobind: leaked ..." lines while being torn down).
QUICK_EXIT = {"predict", "convert"}
TRAINER = "lightning_mnist.training.cli:main"
# command -> ("module:function" taking the remaining argv, one-line summary)
COMMANDS: dict[str, tuple[str, str]] = {
    "fit": (TRAINER, "train a network (the notebook's by default), then test its best checkpoint"),
    "validate": (TRAINER, "score a checkpoint, .keras file or k-fold ensemble on the validation split"),
    "test": (TRAINER, "score a checkpoint, .keras file or k-fold ensemble on the 10,000 test images"),
    "cv": (TRAINER, "stratified k-fold cross-validation, a fresh model per fold, and their ensemble"),
    "convert": ("lightning_mnist.commands.convert:main", "a model file to .ckpt, .keras, .pt2, .onnx, .tflite, proven"),
    "predict": ("lightning_mnist.commands.predict:main", "the digit in your pictures: PyTorch, Keras or ONNX Runtime"),
    "serve": ("lightning_mnist.commands.serve:main", "PyTorch, Keras and ONNX Runtime over HTTP, a draw-a-digit page"),
    "augment-preview": ("lightning_mnist.commands.augment_preview:main", "draw digits and augmented copies of them"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} COMMAND [--help] [--config FILE] [--print_config] [flags]", "", "commands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items()]
    lines += ["", f"Run `{PROG} COMMAND --help` for a command's flags."]
    return "\n".join(lines)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return
    if argv[0] not in COMMANDS:
        raise UserError(f"unknown command {argv[0]!r}; choose from {', '.join(COMMANDS)} (`{PROG} --help` says "
                        f"what each does)")
    module, function = COMMANDS[argv[0]][0].split(":")
    check_environment()  # torch's OpenMP pool would only warn about a bad value; Keras fails where first imported
    if module == TRAINER.split(":")[0]:
        configure_threads()  # before torch loads: one thread per core that is free now (mnist_common.threads)
    target = getattr(importlib.import_module(module), function)
    target(argv if module == TRAINER.split(":")[0] else argv[1:])  # LightningCLI takes the subcommand too


def program() -> None:
    """``python -m lightning_mnist``: :func:`main`, then a quick exit for the commands that allow it."""
    code = 0
    if len(sys.argv) > 1 and sys.argv[1] in COMMANDS:  # a command ended by SIGTERM removes its temporaries (a fit
        stop_cleanly_on_sigterm()  # that trains: Lightning's handler, which calls this one, stops it between batches)
    try:
        main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if isinstance(done.code, str):
            print(done.code, file=sys.stderr)
    if len(sys.argv) > 1 and sys.argv[1] in QUICK_EXIT:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    program()

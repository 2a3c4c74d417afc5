"""``python -m lightning_mnist COMMAND``.

``fit``, ``validate``, ``test`` and ``cv`` are LightningCLI subcommands (see cli.py);
``convert``, ``predict`` and ``augment-preview`` are small programs of their own. Lightning
is imported only for the former, so ``predict`` answers without paying for it.
"""

from __future__ import annotations

import importlib
import sys

from mnist_common.allocator import keep_freed_memory
from mnist_common.errors import exit_on_user_error

# Commands that are not Trainer methods: name -> "module:function" taking the remaining argv.
EXTRA_COMMANDS = {
    "convert": "lightning_mnist.convert:main",
    "predict": "lightning_mnist.predict:main",
    "augment-preview": "lightning_mnist.data.preview:main",
}


@exit_on_user_error
def main(args: list[str] | None = None) -> None:
    argv = sys.argv[1:] if args is None else args
    if argv and argv[0] in EXTRA_COMMANDS:
        module, function = EXTRA_COMMANDS[argv[0]].split(":")
        return getattr(importlib.import_module(module), function)(argv[1:])
    from lightning_mnist.cli import MnistCLI

    keep_freed_memory()  # training: reuse freed activations instead of faulting in fresh pages
    MnistCLI(args=args)  # None: LightningCLI reads sys.argv itself


if __name__ == "__main__":
    main()

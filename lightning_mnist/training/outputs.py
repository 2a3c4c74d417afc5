"""Where a run's outputs go: its logger(s), checkpoints and default root, all in the run's own folder.

Used by the CLI for every run and by ``cv`` for each fold's sub-folder; a module of its own so that
neither imports the other.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from mnist_common.runs import CHECKPOINTS

RUN_CONFIG_FILE = "config.yaml"  # the settings LightningCLI saves in each run folder
RUN_PREFIX = {"fit": "version", "cv": "cv", "test": "test", "validate": "validate"}  # <prefix>_N per command
# The folders whose checkpoints/ a training made: fit's version_N, a k-fold run's fold_k (a user's own
# ./checkpoints beside a project's config.yaml is not one)
TRAINING_RUN_FOLDER = re.compile(rf"({RUN_PREFIX['fit']}|fold)_\d+")


def a_runs_own_checkpoints(dirpath) -> bool:
    """Whether ``dirpath`` is some run folder's own ``checkpoints/`` (its parent holds the run's saved settings).

    A run's saved ``config.yaml`` names that folder as its ``checkpoint.dirpath``: given again as a config
    (rerunning a run's settings), it means "the run's own folder", not "that old run's folder". The folder is
    what the path leads to: a symbolic link to it, or a path through ``..``, is it too.
    """
    if not dirpath or "://" in str(dirpath):
        return False
    folder = Path(os.path.realpath(dirpath))  # realpath: a link loop is left as it is, not an error
    return (folder.name == CHECKPOINTS and TRAINING_RUN_FOLDER.fullmatch(folder.parent.name) is not None
            and (folder.parent / RUN_CONFIG_FILE).is_file())


def point_outputs_at(config, run_dir: Path) -> None:
    """Send the config's logger(s), checkpoints and default root into ``run_dir``.

    The checkpoints go to ``run_dir/checkpoints`` unless the config names a folder of the user's own; a
    folder that is another run's own ``checkpoints/`` (from that run's saved config) is not one.
    """
    trainer = config.trainer
    loggers = trainer.logger if isinstance(trainer.logger, list) else [trainer.logger]
    for logger in loggers:
        init_args = getattr(logger, "init_args", None)
        if init_args is not None and "save_dir" in init_args:
            init_args.save_dir = str(run_dir)
            for key in ("name", "version"):
                if key in init_args:
                    init_args[key] = ""  # the run folder is the log folder itself
    trainer.default_root_dir = str(run_dir)
    if "checkpoint" in config:
        asked, own = config.checkpoint.dirpath, run_dir / CHECKPOINTS
        if a_runs_own_checkpoints(asked):
            if Path(asked).resolve() != own.resolve():
                print(f"checkpoints: {own}, not {asked}, which is the checkpoint folder of the run whose settings "
                      f"these are")
            asked = None
        if not asked:
            config.checkpoint.dirpath = str(own)

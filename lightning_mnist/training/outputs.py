"""Where a run's outputs go: its logger(s), checkpoints and default root, all in the run's own folder.

Used by the CLI for every run and by ``cv`` for each fold's sub-folder; a module of its own so that
neither imports the other.
"""

from __future__ import annotations

from pathlib import Path

from mnist_common.runs import CHECKPOINTS


def point_outputs_at(config, run_dir: Path) -> None:
    """Send the config's logger(s), checkpoints and default root into ``run_dir``."""
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
    if "checkpoint" in config and not config.checkpoint.dirpath:
        config.checkpoint.dirpath = str(run_dir / CHECKPOINTS)

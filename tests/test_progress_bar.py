"""The training commands' progress bar: Rich's, brought up to date a few times a second, not after every batch."""

from __future__ import annotations

import yaml
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import RichProgressBar

from lightning_mnist.data.datamodule import MNISTDataModule
from lightning_mnist.models import MnistClassifier
from lightning_mnist.training.callbacks import ProgressBar

BATCHES = 24


def counting(bar_class):
    """``bar_class`` counting its updates while training (each gathers the logged metrics: the per-batch work that
    costs), and the train bar's position at each epoch's end."""

    class Counting(bar_class):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, **kwargs)
            self.train_updates, self.ends = 0, []

        def get_metrics(self, trainer, pl_module):
            self.train_updates += trainer.training
            return super().get_metrics(trainer, pl_module)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            task = self.progress.tasks[self.train_progress_bar_id]
            self.ends.append((task.completed, task.total))
            super().on_train_epoch_end(trainer, pl_module)

    return Counting


def fit_with(bar, mnist_dir, tmp_path) -> None:
    seed_everything(0)
    data = MNISTDataModule(data_dir=str(mnist_dir), batch_size=32, subset=BATCHES * 32 * 10 // 9)
    Trainer(max_epochs=2, limit_train_batches=BATCHES, limit_val_batches=2, num_sanity_val_steps=0, logger=False,
            enable_checkpointing=False, enable_model_summary=False, callbacks=[bar],
            default_root_dir=tmp_path).fit(MnistClassifier(), datamodule=data)


def test_progress_bar_updates_a_few_times_a_second_and_ends_each_epoch_full(mnist_dir, tmp_path):
    """Lightning's bar does its per-batch work after every batch; ours at most updates_per_second times a second
    and at the epoch's last batch, so the bar still reads every batch at the end of an epoch."""
    lightnings = counting(RichProgressBar)()
    fit_with(lightnings, mnist_dir, tmp_path)
    ours = counting(ProgressBar)(updates_per_second=1e-3)  # one update in 1000 s: the first batch and the last
    fit_with(ours, mnist_dir, tmp_path)
    assert lightnings.ends == ours.ends == [(BATCHES, BATCHES)] * 2
    assert lightnings.train_updates == 2 * (BATCHES + 1)  # every batch of both epochs, and each epoch's end
    assert ours.train_updates == 1 + 2 * (1 + 1)  # the run's first batch; each epoch's last batch and its end


def test_fit_uses_the_project_bar_unless_told_otherwise(run_module, run_main, tmp_path):
    """fit's default progress bar is ours (written in the run's config.yaml, so a rerun of that file keeps it);
    a progress bar of the user's own stays the only one, and --trainer.enable_progress_bar false has none.
    The first run goes through the command line; the three others run in this process."""
    quick = ("--data.subset", "1000", "--trainer.max_epochs", "1", "--trainer.limit_val_batches", "2",
             "--trainer.limit_test_batches", "2")  # not 1: in this worker, which imported TensorFlow, 1 reads as 1.0

    def callbacks(folder: str, *flags: str, in_process: bool = False) -> list[str]:
        run = run_main if in_process else run_module
        run("lightning_mnist", "fit", *flags, *quick, "--output_dir", folder)  # a --config first
        [config] = (tmp_path / folder).rglob("config.yaml")
        return [c["class_path"] for c in yaml.safe_load(config.read_text())["trainer"]["callbacks"] or []]

    assert callbacks("default") == ["lightning_mnist.training.callbacks.ProgressBar"]
    [saved] = (tmp_path / "default").rglob("config.yaml")  # a run's own config, rerun with the bar off
    first_checkpoints = sorted((tmp_path / "default").rglob("*.ckpt"))
    assert callbacks("again", "--config", str(saved), "--trainer.enable_progress_bar", "false", in_process=True) == []
    assert callbacks("rerun", "--config", str(saved), in_process=True) == [
        "lightning_mnist.training.callbacks.ProgressBar"]  # one
    # the saved config names its run's checkpoint folder; each rerun keeps its checkpoints in its own
    assert sorted((tmp_path / "default").rglob("*.ckpt")) == first_checkpoints and len(first_checkpoints) == 2
    for rerun in ("again", "rerun"):
        assert len(list((tmp_path / rerun / "lightning/version_0/checkpoints").glob("*.ckpt"))) == 2
    assert callbacks("tqdm", "--trainer.callbacks+=TQDMProgressBar", in_process=True) == [
        "lightning.pytorch.callbacks.TQDMProgressBar"]
    # a callback given alone, not in a list (Lightning takes either), whose default is an enum member (Timer's
    # interval, Interval.step, declared str): a traceback, then "Does not validate against any of the Union subtypes"
    timer = '{"class_path": "lightning.pytorch.callbacks.Timer", "init_args": {"duration": "00:01:00:00"}}'
    assert callbacks("timer", "--trainer.callbacks", timer, in_process=True) == [
        "lightning.pytorch.callbacks.Timer", "lightning_mnist.training.callbacks.ProgressBar"]
    [config] = (tmp_path / "timer").rglob("config.yaml")
    assert yaml.safe_load(config.read_text())["trainer"]["callbacks"][0]["init_args"]["interval"] == "step"

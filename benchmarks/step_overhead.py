"""What a Lightning training step costs beyond the plain loop's: timed side by side, and profiled.

Every contender trains the same network (fresh weights from the same seed) on the first
``--steps`` batches of the same in-memory data, in this one process, and the contenders take
turns (plain, lightning, ..., plain, lightning, ...) for ``--repeats`` rounds, so a machine
that other work shares slows them alike; the medians and the spread are printed with the CPU
and the load average. The time counted runs from the start of the epoch to the end of its last
step (no validation, no checkpoint): the per-step cost. It is split in two: the step itself (the
plain loop's forward, loss, backward and update; the Lightning module's ``training_step``, which
also updates its metrics and goes through Lightning's ``manual_backward`` and optimizer wrapper),
and the loop around it (fetching the batch, hooks, progress counters). Contenders:

* ``plain``: ``plain_torch_loop.train_steps``, the floor.
* ``lightning``: the Trainer as ``lightning_mnist fit`` builds it: its checkpoint, early
  stopping, history and random-state callbacks, its CSV logger, no progress bar (as
  ``compare_frameworks.py`` runs it).
* ``lightning_progress``: the same with the command's default progress bar (the project's
  ``ProgressBar``: Rich's, brought up to date ten times a second).
* ``lightning_rich``: the same with Lightning's own default, ``RichProgressBar`` (updated every batch).
* ``lightning_bare``: no logger, no callbacks, no checkpointing: Lightning's loop alone.
* ``lightning_no_metrics``: ``lightning`` with a module that updates no metric in training steps.
* ``lightning_torchmetrics``: ``lightning`` with torchmetrics' ``MeanMetric`` and ``MulticlassAccuracy`` for the
  epoch means, which the classifier used before its one running sum and count each (``EpochMean``).
* ``lightning_automatic``: ``lightning`` with Lightning's automatic optimization (its closure and hooks), which
  the classifier used before it stepped its optimizer itself.
* ``lightning_grouped``: ``lightning`` with ``--data.steps_per_execution 8`` (Keras' ``steps_per_execution``): each
  batch Lightning takes holds 8 batches, one optimizer step each, so its loop runs once per 8 steps; timed per
  optimizer step (``--steps`` rounded up to a multiple of 8).
* ``lightning_grouped_unwrapped``: ``lightning_grouped`` whose module calls ``loss.backward()`` and the torch
  optimizer's ``step`` itself, around Lightning's ``manual_backward`` and optimizer wrapper (their hooks,
  precision plugin and step counting): what those cost, measured by leaving them out; not a way to train.
* ``plain_grouped``: ``plain`` taking the images of 8 batches at once (augmented in one call, as the data
  module's grouped batches are), then one step on each: ``lightning_grouped``'s floor (``--steps`` rounded up
  alike).

``--precision bf16-mixed``: every contender's forward passes in bfloat16 under autocast (Lightning's
``Trainer(precision="bf16-mixed")``, the plain loop's ``torch.autocast``).

``--profile`` also runs one epoch of ``lightning`` under Lightning's ``SimpleProfiler`` (time per
hook) and prints torch.profiler's busiest operators for both loops.

    python benchmarks/step_overhead.py --steps 300 --repeats 5 --batch_size 32
"""

from __future__ import annotations

import math
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal, get_args

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_torch_loop import build, train_steps  # noqa: E402  (sets the thread policy before torch starts)
from checks import check_chosen, check_counts, check_doc, check_marker  # noqa: E402

import torch  # noqa: E402
from lightning.pytorch import Callback, Trainer, seed_everything  # noqa: E402
from lightning.pytorch.callbacks import EarlyStopping, RichProgressBar  # noqa: E402
from lightning.pytorch.loggers import CSVLogger  # noqa: E402

from lightning_mnist.data.datamodule import MNISTDataModule  # noqa: E402
from lightning_mnist.models import MnistClassifier  # noqa: E402
from lightning_mnist.models.classifier import STAGES  # noqa: E402
from lightning_mnist.training.callbacks import EpochHistory, ProgressBar, RandomState, RunCheckpoint  # noqa: E402
from mnist_common.allocator import keep_freed_memory  # noqa: E402
from mnist_common.cli import run  # noqa: E402
from mnist_common.errors import UserError, exit_on_user_error  # noqa: E402
from mnist_common.files import write_between_markers  # noqa: E402
from mnist_common.machine import describe_machine, load_average  # noqa: E402

Contender = Literal["plain", "lightning", "lightning_progress", "lightning_rich", "lightning_bare",
                    "lightning_no_metrics", "lightning_torchmetrics", "lightning_automatic", "lightning_grouped",
                    "lightning_grouped_unwrapped", "plain_grouped"]
GROUPED = 8  # the *_grouped contenders' steps per execution
Precision = Literal["32", "bf16-mixed"]


class StepClock(Callback):
    """Seconds from the start of the training epoch to the end of its ``steps``-th batch."""

    def __init__(self, steps: int) -> None:
        self.steps, self.started, self.seconds = steps, 0.0, None

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx + 1 == self.steps:
            self.seconds = time.perf_counter() - self.started


class WithoutTrainingMetrics(MnistClassifier):
    """The classifier minus the training-step metric updates: what they cost, measured by leaving them out."""

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels = batch
        loss = torch.nn.functional.cross_entropy(self(images), labels)
        self.optimize(loss)
        return loss


class WithTorchmetrics(MnistClassifier):
    """The classifier with torchmetrics' own mean and accuracy classes, as it had them before ``EpochMean``."""

    def __init__(self, **kwargs) -> None:
        from torchmetrics.aggregation import MeanMetric
        from torchmetrics.classification import MulticlassAccuracy

        super().__init__(**kwargs)
        for stage in STAGES:
            self.metrics[f"{stage}/loss"] = MeanMetric(nan_strategy="disable")
            self.metrics[f"{stage}/acc"] = MulticlassAccuracy(self.architecture.num_classes, average="micro",
                                                              validate_args=False)

    def _shared_step(self, batch, stage: str) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        logits = self(images)
        losses = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
        self.metrics[f"{stage}/loss"].update(losses.detach())
        self.metrics[f"{stage}/acc"].update(logits.detach(), labels)
        if stage in self._unlogged_stages:
            self._unlogged_stages.discard(stage)
            self.log_dict({name: metric for name, metric in self.metrics.items() if name.startswith(f"{stage}/")},
                          on_step=False, on_epoch=True)
        return losses.mean(), logits


class WithoutStepWrappers(MnistClassifier):
    """The classifier stepping the torch optimizer itself, around Lightning's ``manual_backward`` and optimizer
    wrapper: what they cost per step, measured by leaving them out (the Trainer's step count stays at 0)."""

    def optimize(self, loss: torch.Tensor) -> None:
        optimizer = self.optimizers(use_pl_optimizer=False)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule = self.lr_schedulers()
        if schedule is not None:
            schedule.step()


class AlternatingSteps(MnistClassifier):
    """The classifier stepping in one of four ways, the next every execution of ``GROUPED`` steps: Lightning's
    ``manual_backward`` or ``loss.backward()``, then the wrapped optimizer's ``step`` or the torch optimizer's;
    each update's seconds kept by way. Alternating inside one run, the ways meet the same state of the machine,
    which separate runs (minutes apart on a shared host) do not; not a way to train (the Trainer's step count
    misses the unwrapped steps)."""

    WAYS = {(True, True): "manual_backward, wrapped step", (True, False): "manual_backward, torch step",
            (False, True): "loss.backward(), wrapped step", (False, False): "loss.backward(), torch step"}

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.updates = 0
        self.seconds: dict[tuple[bool, bool], list[float]] = {way: [] for way in self.WAYS}

    def optimize(self, loss: torch.Tensor) -> None:
        manual_backward, wrapped_step = way = list(self.WAYS)[(self.updates // GROUPED) % len(self.WAYS)]
        self.updates += 1
        started = time.perf_counter()
        optimizer = self.optimizers(use_pl_optimizer=wrapped_step)
        optimizer.zero_grad(set_to_none=True)
        if manual_backward:
            self.manual_backward(loss)
        else:
            loss.backward()
        optimizer.step()
        self.seconds[way].append(time.perf_counter() - started)


class AutomaticOptimization(MnistClassifier):
    """The classifier under Lightning's automatic optimization (its closure and hooks), as it trained before."""

    @property
    def automatic_optimization(self) -> bool:
        return True


def lightning_trainer(contender: str, steps: int, folder: Path, clock: StepClock,
                      precision: Precision = "32") -> Trainer:
    """A one-epoch Trainer of ``steps`` training batches, configured as ``contender`` says."""
    common = dict(max_epochs=1, limit_train_batches=steps, limit_val_batches=1, num_sanity_val_steps=0,
                  enable_model_summary=False, accelerator="cpu", devices=1, precision=precision)
    if contender == "lightning_bare":
        return Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False, callbacks=[clock],
                       **common)
    callbacks = [RunCheckpoint(dirpath=folder / "checkpoints", monitor="val/loss", save_last=True),
                 EarlyStopping(monitor="val/loss", patience=100), EpochHistory(), RandomState(), clock]
    bar = {"lightning_progress": ProgressBar, "lightning_rich": RichProgressBar}.get(contender)
    return Trainer(logger=CSVLogger(folder), callbacks=callbacks + ([bar()] if bar else []), default_root_dir=folder,
                   enable_progress_bar=bar is not None, **common)


def timed_training_step(model: MnistClassifier, step_seconds: list[float]) -> None:
    """Make ``model.training_step`` append its seconds to ``step_seconds``.

    The wrapper keeps the signature, which Lightning reads to decide what to pass.
    """
    training_step = model.training_step

    def timed(batch, batch_idx: int):
        started = time.perf_counter()
        output = training_step(batch, batch_idx)
        step_seconds.append(time.perf_counter() - started)
        return output

    model.training_step = timed


def time_once(contender: str, data: MNISTDataModule, steps: int, lr: float, seed: int,
              folder: Path, precision: Precision = "32") -> tuple[float, float | None]:
    """Seconds per step of ``contender`` over ``steps`` batches from fresh weights, and of those in the step itself
    (None where the step cannot be timed apart: under automatic optimization)."""
    seed_everything(seed, verbose=False)
    in_step: list[float] = []
    grouped = GROUPED if "_grouped" in contender else 1
    steps = grouped * math.ceil(steps / grouped)  # whole executions, in both loops
    if contender.startswith("plain"):
        network, optimizer = build("notebook", lr)
        x, y = data.datasets["train"].tensors
        started = time.perf_counter()
        taken = train_steps(network, optimizer, x, y, data.hparams.batch_size, data.augmentation, steps=steps,
                            bf16=precision == "bf16-mixed", step_seconds=in_step, steps_per_execution=grouped)
        return (time.perf_counter() - started) / taken, sum(in_step) / taken
    model_class = {"lightning_no_metrics": WithoutTrainingMetrics, "lightning_torchmetrics": WithTorchmetrics,
                   "lightning_automatic": AutomaticOptimization,
                   "lightning_grouped_unwrapped": WithoutStepWrappers}.get(contender, MnistClassifier)
    model = model_class(lr=lr)
    if contender != "lightning_automatic":  # there the step runs inside the optimizer's closure, hooks and all
        timed_training_step(model, in_step)
    if grouped > 1:  # the same images, GROUPED batches to each batch Lightning takes
        data, tensors = MNISTDataModule(**{**data.hparams, "steps_per_execution": grouped}), data.datasets
        data.datasets = tensors  # the same images in memory: nothing to read again
    batches = steps // grouped
    clock = StepClock(batches)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        lightning_trainer(contender, batches, Path(tmp), clock, precision).fit(model, datamodule=data)
    return clock.seconds / steps, (sum(in_step) / steps if in_step else None)


def check_alternation(steps: int, epoch_steps: int) -> None:
    """Refuse an ``--alternate`` run too short for each of :class:`AlternatingSteps`' ways to run twice (its first
    execution is left out of its median): ``steps`` asked for, ``epoch_steps`` in an epoch (the run is one)."""
    needed = 2 * GROUPED * len(AlternatingSteps.WAYS)
    if min(steps, epoch_steps) < needed:
        short = f"--steps x --repeats ({steps})" if steps < needed else f"an epoch at this --batch_size ({epoch_steps})"
        raise UserError(f"--alternate needs {needed} training steps, two executions of {GROUPED} for each of its "
                        f"{len(AlternatingSteps.WAYS)} ways; {short} gives fewer")


def wrapper_cost(data: MNISTDataModule, steps: int, lr: float, seed: int, folder: Path,
                 precision: Precision = "32") -> dict[str, float]:
    """Median microseconds of an update (zero_grad, backward, step) in each of :class:`AlternatingSteps`' ways, over
    one run of ``steps`` grouped steps (at most an epoch's)."""
    seed_everything(seed, verbose=False)
    grouped = MNISTDataModule(**{**data.hparams, "steps_per_execution": GROUPED})
    grouped.datasets = data.datasets  # the same images in memory
    model = AlternatingSteps(lr=lr)
    batches = math.ceil(steps / GROUPED)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        lightning_trainer("lightning_grouped", batches, Path(tmp), StepClock(batches), precision).fit(
            model, datamodule=grouped)
    return {name: round(1e6 * statistics.median(model.seconds[way][GROUPED:]), 1)  # each way's first execution out
            for way, name in AlternatingSteps.WAYS.items()}


def profile(data: MNISTDataModule, steps: int, lr: float, seed: int, folder: Path, precision: Precision = "32") -> None:
    """Lightning's time per hook, then torch's busiest operators in each loop (both in ``precision``)."""
    from lightning.pytorch.profilers import SimpleProfiler
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    seed_everything(seed, verbose=False)
    profiler = SimpleProfiler(dirpath=folder, filename="simple")
    Trainer(profiler=profiler, max_epochs=1, limit_train_batches=steps, limit_val_batches=1, num_sanity_val_steps=0,
            enable_model_summary=False, enable_progress_bar=False, logger=CSVLogger(folder), precision=precision,
            callbacks=[RunCheckpoint(dirpath=folder / "ckpt", monitor="val/loss"), EpochHistory(), RandomState()],
            default_root_dir=folder).fit(MnistClassifier(lr=lr), datamodule=data)
    print(profiler.summary())
    for contender in ("plain", "lightning"):
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            time_once(contender, data, steps, lr, seed, folder, precision)
        print(f"--- torch.profiler, {contender}, {steps} steps")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))


def overhead(steps: int = 300, repeats: int = 5, batch_size: int = 32, augment: bool = False, lr: float = 1e-4,
             contenders: list[Contender] = ("plain", "lightning", "lightning_bare", "lightning_no_metrics"),
             precision: Precision = "32", threads: int | None = None, data_dir: str | None = None, seed: int = 42,
             profile_run: bool = False, alternate: bool = False, doc: Path | None = None,
             marker: str = "step-overhead") -> dict:
    """Time each contender's training steps, interleaved; print medians, spreads and ratios to ``plain``.

    Args:
        steps: training batches per timing.
        repeats: rounds; each round times every contender once, in turn.
        batch_size: training batch size.
        augment: the notebook's augmentation (on each batch, in both loops).
        lr: Adam's learning rate.
        contenders: which loops to time, in the order each round runs them.
        precision: ``bf16-mixed``: every contender's forward passes in bfloat16 under autocast.
        threads: torch's intra-op threads (default: the training commands' choice).
        data_dir: the folder holding MNIST/raw.
        seed: seed of the weights and the shuffling.
        profile_run: also print Lightning's per-hook profile and torch.profiler's busiest operators.
        alternate: also time an update with and without Lightning's ``manual_backward`` and optimizer wrapper,
            alternating the four ways every 8 steps inside one run of ``steps * repeats`` steps (at most an
            epoch's), and add the medians under the table.
        doc: also write the table into this Markdown file between its ``marker`` markers.
        marker: the name of the markers (a document can hold the tables of several settings).
    """
    check_counts(steps=steps, repeats=repeats, batch_size=batch_size, threads=threads, lr=lr, seed=seed)
    check_doc(doc)
    check_marker(marker)
    check_chosen("contenders", contenders, get_args(Contender))
    keep_freed_memory()
    if threads is not None:
        torch.set_num_threads(threads)
    machine = describe_machine()
    data = MNISTDataModule(data_dir=data_dir, batch_size=batch_size, augment=augment)
    data.prepare_data()
    data.setup("fit")
    if alternate:  # each way two executions at least: its first is left out of its median
        check_alternation(steps * repeats, len(data.datasets["train"]) // batch_size)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    in_step: dict[str, list[float | None]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory(prefix="step_overhead_") as tmp:
        for name in contenders:  # one untimed round: first-call costs (allocator, oneDNN primitives) out of the way
            time_once(name, data, min(steps, 20), lr, seed, Path(tmp), precision)
        for _ in range(repeats):
            for name in contenders:
                total, inside = time_once(name, data, steps, lr, seed, Path(tmp), precision)
                times[name].append(total)
                in_step[name].append(inside)
        if profile_run:
            profile(data, steps, lr, seed, Path(tmp), precision)
        wrappers = wrapper_cost(data, steps * repeats, lr, seed, Path(tmp), precision) if alternate else None
    # what the others are measured against: the plain loop, else the grouped plain loop (the grouped contenders' floor)
    floor_name = next((name for name in ("plain", "plain_grouped") if name in times), None)
    floor = statistics.median(times[floor_name]) if floor_name else None
    report = {"machine": machine, "floor": floor_name, "load_average_after": load_average(),
              "threads": torch.get_num_threads(),
              "batch_size": batch_size, "steps": steps, "repeats": repeats, "augment": augment,
              "precision": precision, "contenders": {}}
    lines = [f"`python benchmarks/step_overhead.py --steps {steps} --repeats {repeats} --batch_size {batch_size}"
             f"{' --augment' if augment else ''}{f' --precision {precision}' if precision != '32' else ''}"
             f" --contenders '[{', '.join(contenders)}]'{' --alternate' if alternate else ''}"
             f"{f' --threads {threads}' if threads is not None else ''}`, {machine['date']}, {machine['cpu']} "
             f"({machine['cores']} cores), "
             f"{torch.get_num_threads()} threads, load average {machine['load_average']} before, "
             f"{report['load_average_after']} after.", "",
             f"| contender | ms per step (median) | min | max | ms over {floor_name or 'plain'} | "
             f"/ {floor_name or 'plain'} | ms in the step | ms around it |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, values in times.items():
        median = statistics.median(values)
        row = {"ms_per_step": [round(1000 * v, 3) for v in values], "median_ms": round(1000 * median, 3)}
        if floor:
            row["over_plain_ms"] = round(1000 * (median - floor), 3)
            row["ratio_to_plain"] = round(median / floor, 3)
        inside = [v for v in in_step[name] if v is not None]
        if inside:  # medians of each round's split (not the total's median minus the step's)
            row["in_step_ms"] = round(1000 * statistics.median(inside), 3)
            row["around_step_ms"] = round(1000 * statistics.median(t - i for t, i in zip(values, inside)), 3)
        report["contenders"][name] = row
        split = (f"{row['in_step_ms']:.2f} | {row['around_step_ms']:.2f}" if inside else "- | -")
        lines.append(f"| {name} | {1000 * median:.2f} | {1000 * min(values):.2f} | {1000 * max(values):.2f} | "
                     + (f"{row['over_plain_ms']:+.3f} | {row['ratio_to_plain']:.3f}" if floor else "- | -")
                     + f" | {split} |")
    if wrappers:
        report["wrappers_us"] = wrappers
        bare = wrappers[AlternatingSteps.WAYS[False, False]]
        lines += ["", f"An update (zero_grad, backward, step) in one run of `lightning_grouped`, the ways alternated "
                      f"every {GROUPED} steps, median microseconds: " + "; ".join(
                          f"{name} {us:.0f} ({us - bare:+.0f})" for name, us in wrappers.items()) + "."]
    table = "\n".join(lines)
    print("\n" + table)
    if doc:
        print(f"table: {write_between_markers(doc, marker, table, title='Benchmarks')}")
    return report


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(overhead, sys.argv[1:] if argv is None else argv, "python benchmarks/step_overhead.py")


if __name__ == "__main__":
    main()

"""The same training as ``lightning_mnist fit``, as a plain PyTorch loop: the floor Lightning is measured against.

Same network (built from the same description, channels-last), same pixels and split,
same Adam (Keras' epsilon, fused), same batch size and shuffling per epoch, the same
augmentation when asked (the data module's own, applied to each batch), the same thread
settings as the training commands (:mod:`mnist_common.threads`), validation after every
epoch; no Lightning, no metrics objects, no checkpoints, no early stopping. Writes a
``results.json`` with the shared per-epoch ``history`` (cumulative seconds), so
``compare_frameworks.py`` reads it like the two frameworks' own.

    python benchmarks/plain_torch_loop.py --max_epochs 1 --output_dir runs/benchmark/torch

:func:`train_steps` is the loop itself; ``step_overhead.py`` and ``shared_machine.py`` time it
beside Lightning's.
"""

from __future__ import annotations

import math
import re
import sys
import time
from pathlib import Path
from typing import Literal

from mnist_common.threads import configure_threads

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import check_counts  # noqa: E402

configure_threads()  # before torch's thread pool starts: the training commands' settings
import torch  # noqa: E402  (after the thread settings, which must precede torch's thread pool)
import torch.nn.functional as F  # noqa: E402
from torch.optim.lr_scheduler import OneCycleLR  # noqa: E402

from lightning_mnist.checkpoints import save_checkpoint  # noqa: E402
from lightning_mnist.data.datamodule import MNISTDataModule  # noqa: E402
from lightning_mnist.models import KerasNetwork  # noqa: E402
from lightning_mnist.training.cuda_probe import stop_probing_for_cuda  # noqa: E402
from mnist_common.allocator import keep_freed_memory  # noqa: E402
from mnist_common.model_files import load_architecture  # noqa: E402
from mnist_common.cli import run  # noqa: E402
from mnist_common.errors import UserError, exit_on_user_error  # noqa: E402
from mnist_common.results import RunResults, write_json  # noqa: E402
from mnist_common.runs import check_writable  # noqa: E402
from mnist_common.schedules import ONE_CYCLE  # noqa: E402

KERAS_EPSILON = 1e-7
EPOCHS_FOLDER = "checkpoints"  # --keep_every_epoch: each epoch's weights, as Lightning's checkpoints folder
CUDA_DEVICE = re.compile(r"cuda(:\d+)?")  # --device: cuda, or cuda:N for the N-th GPU


@torch.inference_mode()
def evaluate(network: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500,
             bf16: bool = False):
    network.eval()
    with torch.autocast(images.device.type, dtype=torch.bfloat16, enabled=bf16):
        logits = torch.cat([network(images[i:i + batch_size].contiguous(memory_format=torch.channels_last)).float()
                            for i in range(0, len(images), batch_size)])
    return F.cross_entropy(logits, labels).item(), (logits.argmax(1) == labels).float().mean().item()


def build(architecture: str = "notebook", lr: float = 1e-4,
          device: str = "cpu") -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    """The network (channels-last) and the Adam the Lightning module configures (Keras' epsilon, fused).

    Importing this project imports Lightning, whose GPU check would cost this loop's optimizer a
    driver query per step that a plain PyTorch program does not pay: stopped, as the commands stop it.
    """
    stop_probing_for_cuda()
    network = KerasNetwork(load_architecture(architecture)).to(device, memory_format=torch.channels_last)
    return network, torch.optim.Adam(network.parameters(), lr=lr, eps=KERAS_EPSILON, fused=True)


def train_steps(network: torch.nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                batch_size: int, augmentation=None, steps: int | None = None, scheduler=None,
                bf16: bool = False, step_seconds: list[float] | None = None, steps_per_execution: int = 1) -> int:
    """One epoch over ``x`` in a fresh random order (or its first ``steps`` batches); the steps taken.

    ``bf16``: the forward pass under ``torch.autocast`` in bfloat16, as Lightning's ``bf16-mixed`` precision does.
    ``step_seconds``: gets the seconds of each step's forward, loss, backward and update (the work a
    Lightning ``training_step`` does), so that the rest is what the loop around it costs.
    ``steps_per_execution``: the images of this many batches are taken (and augmented) at once, as the data
    module's setting of that name hands them to Lightning; then one step on each batch, as without it.
    """
    network.train()
    order = torch.randperm(len(x), device=x.device)
    taken, chunk = 0, batch_size * steps_per_execution
    for start in range(0, len(x), chunk):
        indices = order[start:start + chunk]
        images, labels = x[indices], y[indices]
        if augmentation is not None:
            images = augmentation(images)
        for batch_images, batch_labels in zip(images.split(batch_size), labels.split(batch_size)):
            if steps is not None and taken >= steps:
                return taken
            started = time.perf_counter() if step_seconds is not None else 0.0
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = network(batch_images.contiguous(memory_format=torch.channels_last))
                loss = F.cross_entropy(logits, batch_labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
            if step_seconds is not None:
                step_seconds.append(time.perf_counter() - started)
            taken += 1
    return taken


def check_device(device: str) -> None:
    """``cpu``, or ``cuda`` / ``cuda:N`` naming a GPU torch sees: refused in one line before any work."""
    if device == "cpu":
        return
    if not CUDA_DEVICE.fullmatch(device):
        raise UserError(f"--device {device}: give cuda, cuda:N (the GPU's index) or cpu")
    count = torch.cuda.device_count()
    if not count:
        raise UserError(f"--device {device}: no CUDA device is visible here; use --device cpu to check the script")
    if int(device.partition(":")[2] or 0) >= count:
        raise UserError(f"--device {device}: torch sees {count} CUDA device(s), cuda:0 to cuda:{count - 1}")


def train(output_dir: Path, architecture: str = "notebook", max_epochs: int = 1, batch_size: int = 32,
          lr: float = 1e-4, subset: int | None = None, data_dir: str | None = None, seed: int = 42,
          augment: bool = False, threads: int | None = None, lr_schedule: Literal["constant", "onecycle"] = "constant",
          precision: Literal["32", "bf16-mixed"] = "32", target_val_acc: float | None = None, device: str = "cpu",
          compile_mode: Literal["default", "reduce-overhead", "max-autotune"] | None = None,
          keep_every_epoch: bool = False, steps_per_execution: int = 1) -> Path:
    """Train with a plain loop; write ``results.json`` in ``output_dir``.

    Args:
        output_dir: where results.json goes.
        architecture: a preset or description file, as --model.architecture takes.
        max_epochs: epochs to train.
        batch_size: training batch size.
        lr: Adam's learning rate.
        subset: a stratified subset of the training images.
        data_dir: the folder holding MNIST/raw.
        seed: seed of the weights and the shuffling.
        augment: the notebook's augmentation (the data module's ``--data.augment``).
        threads: torch's intra-op threads (default: the training commands' choice, see mnist_common.threads).
        lr_schedule: ``onecycle``: the classifier's one-cycle schedule over ``max_epochs``, stepped per batch.
        precision: ``bf16-mixed``: forward passes in bfloat16 under autocast, as Lightning's precision flag.
        target_val_acc: stop after the first epoch whose validation accuracy reaches this.
        device: where the data (all of it, once) and the network live: ``cpu``, ``cuda``, ``cuda:1``...
        compile_mode: ``torch.compile`` the network in this mode (``reduce-overhead``: CUDA graphs on a GPU);
            the compilation happens in the first epoch and is counted in its seconds.
        keep_every_epoch: save each epoch's weights as ``checkpoints/epochNN.ckpt`` (numbered from 0, a
            checkpoint ``test --ckpt_path`` reads), as ``fit --checkpoint.save_top_k -1`` keeps them; counted in
            the epoch's seconds, as Lightning's checkpoints are.
        steps_per_execution: take the images of this many batches at once (the data module's
            ``--data.steps_per_execution``); the steps are the same.
    """
    check_counts(max_epochs=max_epochs, batch_size=batch_size, lr=lr, subset=subset, threads=threads,
                 target_val_acc=target_val_acc, steps_per_execution=steps_per_execution, seed=seed)
    check_device(device)
    check_writable(output_dir, "--output_dir")
    keep_freed_memory()  # as the training commands do
    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    data = MNISTDataModule(data_dir=data_dir, batch_size=batch_size, subset=subset, augment=augment)
    data.prepare_data()
    data.setup("fit")
    (x, y), (x_val, y_val), (x_test, y_test) = ((t.to(device) for t in data.datasets[s].tensors)
                                                for s in ("train", "val", "test"))
    network, optimizer = build(architecture, lr, device)
    weights = network  # the compiled module's state dict names its parameters apart
    if keep_every_epoch:
        (output_dir / EPOCHS_FOLDER).mkdir(parents=True, exist_ok=True)
    if compile_mode is not None:
        network = torch.compile(network, mode=compile_mode)
    scheduler = None
    if lr_schedule == "onecycle":  # the classifier's schedule, from the same shared shape
        scheduler = OneCycleLR(optimizer, max_lr=lr, total_steps=max_epochs * math.ceil(len(x) / batch_size),
                               **ONE_CYCLE.torch_kwargs())
    bf16 = precision == "bf16-mixed"
    history, seconds, started = [], 0.0, time.perf_counter()
    for epoch in range(max_epochs):
        epoch_started = time.perf_counter()
        train_steps(network, optimizer, x, y, batch_size, data.augmentation, scheduler=scheduler, bf16=bf16,
                    steps_per_execution=steps_per_execution)
        val_loss, val_acc = evaluate(network, x_val, y_val, bf16=bf16)
        if keep_every_epoch:
            save_checkpoint(output_dir / EPOCHS_FOLDER / f"epoch{epoch:02d}.ckpt", weights.architecture,
                            weights.state_dict())
        seconds += time.perf_counter() - epoch_started
        history.append({"epoch": epoch, "seconds": round(seconds, 3), "val_loss": val_loss, "val_acc": val_acc})
        print(f"epoch {epoch}: {history[-1]['seconds']:.1f} s, val acc {val_acc:.4f}", flush=True)
        if target_val_acc is not None and val_acc >= target_val_acc:
            break
    test_loss, test_acc = evaluate(network, x_test, y_test, bf16=bf16)
    results = RunResults(framework="torch", test_acc=test_acc, test_loss=test_loss, model_path="", epochs=len(history),
                         best_epoch=len(history) - 1, wall_seconds=round(time.perf_counter() - started, 2),
                         history=history, config={"architecture": architecture, "batch_size": batch_size, "lr": lr,
                                                  "augment": augment, "lr_schedule": lr_schedule,
                                                  "precision": precision, "device": device,
                                                  "compile_mode": compile_mode, "keep_every_epoch": keep_every_epoch,
                                                  "steps_per_execution": steps_per_execution},
                         threads=torch.get_num_threads())
    return write_json(results, output_dir / "results.json")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    print(f"results: {run(train, sys.argv[1:] if argv is None else argv, 'python benchmarks/plain_torch_loop.py')}")


if __name__ == "__main__":
    main()

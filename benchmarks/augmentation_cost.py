"""What the notebook's augmentation costs next to one training step (batch 32, CPU by default).

    python benchmarks/augmentation_cost.py [--device cuda] [--batch_size 32] [--steps 300]

Times the augmentation of a batch and one full training step (forward, backward,
Adam) of the notebook's network on the same batch, interleaved, and prints the ratio.
"""

from __future__ import annotations

import statistics
import sys
import time
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from mnist_common.cli import run
from mnist_common.errors import UserError, exit_on_user_error
from mnist_common.mnist import load_mnist
from lightning_mnist.data import NotebookAugmentation
from lightning_mnist.data.datamodule import to_tensor
from lightning_mnist.models import MnistClassifier


def timed(fn, device: str, repeats: int) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls."""
    samples = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure(device: str = "cpu", batch_size: int = 32, steps: int = 300, data_dir: str | None = None) -> None:
    """The on-device augmentation's cost beside one training step of the notebook's network.

    Args:
        device: cpu or cuda.
        batch_size: images in the batch.
        steps: timed steps of each (in 5 interleaved rounds).
        data_dir: the folder holding MNIST/raw.
    """
    if batch_size < 1 or steps < 5:
        raise UserError(f"--batch_size must be at least 1 and --steps at least 5, got {batch_size} and {steps}")
    if device not in ("cpu", "cuda") or (device == "cuda" and not torch.cuda.is_available()):
        raise UserError(f"--device must be cpu or cuda (where torch sees a CUDA device), got {device}")
    args = SimpleNamespace(device=device, batch_size=batch_size, steps=steps, data_dir=data_dir)
    mnist = load_mnist(args.data_dir)
    images = to_tensor(mnist.train_images[: args.batch_size]).to(args.device)
    labels = torch.from_numpy(mnist.train_labels[: args.batch_size]).long().to(args.device)
    model = MnistClassifier().to(args.device).train()
    optimizer = model.configure_optimizers()
    augment = NotebookAugmentation().to(args.device)

    def step():
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()

    for _ in range(30):  # warm-up: allocator, oneDNN primitives
        step()
        augment(images)
    step_seconds, augment_seconds = [], []
    for _ in range(5):  # interleaved, so machine noise hits both alike
        step_seconds.append(timed(step, args.device, args.steps // 5))
        augment_seconds.append(timed(lambda: augment(images), args.device, args.steps // 5))
    step_s, augment_s = statistics.median(step_seconds), statistics.median(augment_seconds)
    print(f"device {args.device}, batch {args.batch_size}: training step {step_s * 1e3:.2f} ms, "
          f"augmentation {augment_s * 1e3:.2f} ms, ratio {augment_s / step_s:.1%}")


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(measure, sys.argv[1:] if argv is None else argv, "python benchmarks/augmentation_cost.py")


if __name__ == "__main__":
    main()

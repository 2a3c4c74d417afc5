"""What the notebook's augmentation costs next to one training step (batch 32, CPU by default).

    python benchmarks/augmentation_cost.py [--device cuda] [--batch-size 32] [--steps 300]

Times the augmentation of a batch and one full training step (forward, backward,
Adam) of the notebook's network on the same batch, interleaved, and prints the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()

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


if __name__ == "__main__":
    main()

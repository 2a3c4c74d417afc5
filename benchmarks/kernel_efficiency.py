"""How close a training step comes to the machine's limit: its floating-point work, and the matmul rate.

Prints (or returns) one JSON object: the floating-point operations of one training image's
forward and backward pass through the network (counted by ``torch.utils.flop_counter``: the
convolutions and matrix products, which are nearly all of it), and the rate a large matrix
product reaches here in float32 and in bfloat16, with the training commands' thread settings.
``compare_frameworks.py`` divides the first by the measured seconds per image to get each
contender's achieved GFLOP/s, and that by the float32 rate: the share of the machine's
practical peak a training epoch uses.

    python benchmarks/kernel_efficiency.py --batch_size 32
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from mnist_common.threads import configure_threads

sys.path.insert(0, str(Path(__file__).resolve().parent))
from checks import check_counts  # noqa: E402

configure_threads()  # the training commands' settings, before torch starts its pool
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from lightning_mnist.models import KerasNetwork  # noqa: E402
from mnist_common.cli import run  # noqa: E402
from mnist_common.errors import exit_on_user_error  # noqa: E402
from mnist_common.model_files import load_architecture  # noqa: E402


def training_flops_per_image(architecture: str = "notebook", batch_size: int = 32) -> float:
    """Forward and backward floating-point operations of one training step, per image."""
    network = KerasNetwork(load_architecture(architecture)).train()
    images, labels = torch.rand(batch_size, 1, 28, 28), torch.randint(0, 10, (batch_size,))
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(network(images), labels).backward()
    return counter.get_total_flops() / batch_size


def matmul_gflops(dtype: torch.dtype = torch.float32, size: int = 2048, seconds: float = 1.0) -> float:
    """The best rate of ``size``-square matrix products over about ``seconds``, in GFLOP/s."""
    a, b = torch.rand(size, size, dtype=dtype), torch.rand(size, size, dtype=dtype)
    a @ b  # first call: the library's set-up
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        a @ b
        best = max(best, 2 * size**3 / (time.perf_counter() - started) / 1e9)
    return best


def efficiency(architecture: str = "notebook", batch_size: int = 32, seconds: float = 1.0, size: int = 2048) -> dict:
    """The figures, as one JSON object on stdout.

    Args:
        architecture: the network.
        batch_size: the batch the step is counted at (per-image work barely depends on it).
        seconds: how long each matmul rate is measured.
        size: the matrices' side.
    """
    check_counts(batch_size=batch_size, seconds=seconds, size=size)
    report = {"training_flops_per_image": training_flops_per_image(architecture, batch_size),
              "matmul_gflops_float32": round(matmul_gflops(torch.float32, size, seconds), 1),
              "matmul_gflops_bfloat16": round(matmul_gflops(torch.bfloat16, size, seconds), 1),
              "threads": torch.get_num_threads()}
    print(json.dumps(report))
    return report


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(efficiency, sys.argv[1:] if argv is None else argv, "python benchmarks/kernel_efficiency.py")


if __name__ == "__main__":
    main()

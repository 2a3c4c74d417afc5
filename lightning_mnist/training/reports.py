"""What a test leaves to look at: the confusion matrix and the digits the model got wrong, worst first.

Written beside ``results.json`` by ``fit``, ``test`` and ``cv`` (for the ensemble):
``confusion.png`` (torchmetrics' confusion matrix and its plot), ``mistakes.png`` (every
misclassified test digit up to :data:`mnist_common.figures.MAX_MISTAKES_SHOWN`, the most
confidently wrong first, each with its true label, the prediction and its probability)
and ``mistakes.json`` (all of them, in the same order, with their test-set indices).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
from torchmetrics.classification import MulticlassConfusionMatrix

from mnist_common.errors import escaped
from mnist_common.figures import mistakes_grid, save_figure
from mnist_common.results import write_json

CONFUSION_FILE, MISTAKES_FILE, MISTAKES_JSON = "confusion.png", "mistakes.png", "mistakes.json"
BATCH_SIZE = 1000


@dataclass
class TestReport:
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    mistakes_count: int
    confusion_png: Path
    mistakes_png: Path
    images: int  # the test images it describes: all, or the first ones a limited test pass scored
    test_set: int  # the test set's size

    def describe(self) -> str:
        part = "" if self.images == self.test_set else \
            f" (the first {self.images} of the {self.test_set} test images, as the limited test pass scored)"
        return (f"confusion matrix: {escaped(self.confusion_png)}{part}\nmistakes ({self.mistakes_count}): "
                f"{escaped(self.mistakes_png)}")


@torch.inference_mode()
def test_probabilities(model, images: torch.Tensor) -> torch.Tensor:
    """Class probabilities of ``model`` (a classifier) for every image, on the model's device."""
    model.eval()
    weight = next(model.parameters())  # its dtype too: --trainer.precision 64-true or bf16-true converts the weights
    return torch.cat([model.predict_proba(images[i:i + BATCH_SIZE].to(weight.device, weight.dtype)).float().cpu()
                      for i in range(0, len(images), BATCH_SIZE)])


def tested_probabilities(model, count: int) -> torch.Tensor | None:
    """The probabilities ``model``'s last test pass gave, for the first of the ``count`` test images in order: all of
    them, or the first batches ``limit_test_batches`` kept (one process); None where there was no such pass (a
    distributed one keeps none). They are the ones its test/acc counted, at its precision."""
    batches = getattr(model, "tested_probabilities", None)
    if not batches or sum(map(len, batches)) > count:
        return None
    return torch.cat(batches)


def images_tested(trainer, batch_size: int) -> int | None:
    """How many test images, from the first, ``trainer``'s last test pass scored in all its processes: each process
    scores its batches of the images Lightning's unshuffled DistributedSampler deals to them in turn, so together
    the first world size x batches x ``batch_size`` (or all). None where no pass says (no trainer, no test)."""
    batches = trainer.num_test_batches if trainer is not None else None
    if not batches or not math.isfinite(batches[0]):
        return None
    return trainer.world_size * int(batches[0]) * batch_size


def write_test_report(model, datamodule, run_dir: Path, title: str, trainer=None) -> TestReport:
    """Write the confusion matrix and the mistakes of ``model`` on the data module's test images.

    They describe the images the test pass just scored, from the probabilities it gave: the whole test set, or
    the first batches under ``limit_test_batches``, so the matrix's right answers are the ones test/acc counted
    (and a short test stays short: a second pass over the 10,000 images cost fit and test about a second on 2
    cores). Without such a pass (an ensemble, a distributed test) the images are scored here: those ``trainer``'s
    test pass scored (:func:`images_tested`: a distributed pass too), else all."""
    datamodule.setup("test")
    images, labels = (t.cpu() for t in datamodule.datasets["test"].tensors)  # on the GPU after a fit there
    test_set = len(images)
    probabilities = tested_probabilities(model, test_set)
    if probabilities is None:
        probabilities = test_probabilities(model, images[:images_tested(trainer, datamodule.hparams.eval_batch_size)])
    images, labels = images[:len(probabilities)], labels[:len(probabilities)]
    predicted = probabilities.argmax(1)
    num_classes = probabilities.shape[1]
    metric = MulticlassConfusionMatrix(num_classes)
    matrix = metric(predicted, labels)
    fig, ax = metric.plot(matrix, labels=[str(k) for k in range(num_classes)])
    fig.set_size_inches(7.5, 6.5)
    for text in ax.texts:  # the counts, one per cell: small enough for four digits
        text.set_fontsize(9)
    ax.set_title(f"{title}: {int(matrix.trace())} of {len(labels)} test digits right")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    confusion_png = save_figure(fig, run_dir / CONFUSION_FILE, dpi=100)

    wrong = torch.nonzero(predicted != labels).flatten()
    confidence = probabilities[wrong, predicted[wrong]]
    wrong = wrong[torch.argsort(confidence, descending=True, stable=True)]  # the most confident mistakes first
    mistakes = [{"index": int(i), "label": int(labels[i]), "predicted": int(predicted[i]),
                 "probability": round(float(probabilities[i, predicted[i]]), 4)} for i in wrong]
    write_json(mistakes, run_dir / MISTAKES_JSON)
    mistakes_png = mistakes_grid(images[wrong, 0].numpy(), mistakes, run_dir / MISTAKES_FILE,
                                 f"{title}: {len(mistakes)} of {len(labels)} test digits wrong")
    return TestReport(confusion=matrix.tolist(), mistakes_count=len(mistakes), confusion_png=confusion_png,
                      mistakes_png=mistakes_png, images=len(labels), test_set=test_set)

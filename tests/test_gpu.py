"""The GPU twins of the CPU tests: the same network, optimizer and commands on a CUDA device give what
they give on the CPU.

Every test here is marked ``gpu``: deselected with a reason where torch sees no CUDA device (CI has none),
run where one is. On the GPU, float32 convolutions and matrix products use TensorFloat-32 by default
(torch's ``allow_tf32`` settings); the comparisons of numbers turn it off, so that they hold the GPU to
float32's own rounding, while the trainings run as a user's would, with torch's defaults.
"""

from __future__ import annotations

import contextlib
import json

import pytest
import torch
from lightning.pytorch import Trainer

from lightning_mnist.data.datamodule import MNISTDataModule, to_tensor
from lightning_mnist.models import MnistClassifier
from mnist_common.architecture.description import presets

pytestmark = pytest.mark.gpu

NO_PROGRESS = ("--trainer.enable_progress_bar", "false")
IMAGES = 256  # real test digits through each network


@contextlib.contextmanager
def float32_arithmetic():
    """CUDA's float32 matrix products and convolutions in float32, not TensorFloat-32, for the block."""
    matmul = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = matmul


def train_without_dropout(model: MnistClassifier) -> None:
    """Training mode (BatchNorm on the batch's statistics) with dropout off, so both devices compute the same."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.eval()


@pytest.fixture(scope="module")
def digits(mnist):
    return to_tensor(mnist.test_images[:IMAGES]), torch.as_tensor(mnist.test_labels[:IMAGES], dtype=torch.long)


@pytest.mark.parametrize("preset", sorted(presets()))
def test_each_preset_network_gives_the_cpus_probabilities_on_the_gpu(preset, digits):
    """One set of weights, copied to the GPU: the same probabilities within float32 rounding, in inference and
    in training mode (BatchNorm on the batch's statistics; dropout off so both sides compute the same)."""
    torch.manual_seed(0)
    images, _ = digits
    cpu = MnistClassifier(architecture=preset).eval()
    gpu = MnistClassifier(architecture=preset).eval()
    gpu.load_state_dict(cpu.state_dict())
    gpu = gpu.cuda()
    with torch.no_grad(), float32_arithmetic():
        expected, found = cpu.predict_proba(images), gpu.predict_proba(images.cuda()).cpu()
        print(f"{preset} inference: probabilities {(found - expected).abs().max():.1e} apart")
        torch.testing.assert_close(found, expected, rtol=0, atol=1e-5)
        for model in (cpu, gpu):
            train_without_dropout(model)
        expected, found = cpu.predict_proba(images), gpu.predict_proba(images.cuda()).cpu()
        print(f"{preset} training mode: probabilities {(found - expected).abs().max():.1e} apart")
        # the batch's statistics, a mean and a variance over 256 x H x W values, summed in another order:
        # measured on an H200, 4.9e-5 (notebook) and 7.5e-6 (resnet)
        torch.testing.assert_close(found, expected, rtol=0, atol=1e-4)
    assert (expected.argmax(1) == found.argmax(1)).float().mean() >= 0.99  # near-ties may flip, not more


@pytest.mark.parametrize("keras_adam", [False, True], ids=["adam", "keras adam"])
def test_one_training_step_on_the_gpu_matches_the_cpus(keras_adam, digits):
    """The loss, every gradient and the fused optimizer's update on the GPU are the CPU's within float32
    rounding; the update is compared on the same gradients, since Adam divides by a gradient's own size and
    so magnifies a tiny gradient's rounding. Gradients are compared as a whole (the norm of the difference
    against the gradient's, all weights together): BatchNorm's backward subtracts means, so single entries,
    and a weight whose gradient is nearly nought, can lose digits."""
    torch.manual_seed(0)
    images, labels = digits
    models = {"cpu": MnistClassifier(lr=1e-3, keras_adam=keras_adam)}
    models["cuda"] = MnistClassifier(lr=1e-3, keras_adam=keras_adam)
    models["cuda"].load_state_dict(models["cpu"].state_dict())
    models["cuda"].cuda()
    losses, grads = {}, {}
    with float32_arithmetic():
        for device, model in models.items():
            train_without_dropout(model)
            loss = torch.nn.functional.cross_entropy(model(images.to(device)), labels.to(device))
            loss.backward()
            losses[device] = loss.item()
            grads[device] = [p.grad.detach().cpu().clone() for p in model.network.parameters()]
    assert losses["cuda"] == pytest.approx(losses["cpu"], rel=1e-5)
    errors = {name: ((on_gpu - on_cpu).norm() / on_cpu.norm()).item() for (name, _), on_cpu, on_gpu in
              zip(models["cpu"].network.named_parameters(), grads["cpu"], grads["cuda"])}
    print("gradients, relative difference:", {name: f"{error:.1e}" for name, error in errors.items()})
    whole = (torch.cat([g.flatten() for g in grads["cuda"]]) - torch.cat([g.flatten() for g in grads["cpu"]])).norm()
    # Measured on an H200: 9.4e-4 as a whole (1.1e-5 in the dense layers, 1.4e-3 to 2.8e-3 below the two
    # BatchNorms, whose batch statistics cuDNN sums its own way); a wrong gradient is off by its own size
    assert whole / torch.cat([g.flatten() for g in grads["cpu"]]).norm() < 5e-3, errors

    for on_gpu, on_cpu in zip(models["cuda"].network.parameters(), grads["cpu"]):
        on_gpu.grad = on_cpu.cuda()
    for device, model in models.items():
        optimizer = model.configure_optimizers()
        assert optimizer.defaults["fused"] is True  # the fused kernel on both devices
        optimizer.step()
    for (name, after_cpu), after_gpu in zip(models["cpu"].network.named_parameters(),
                                            models["cuda"].network.parameters()):
        torch.testing.assert_close(after_gpu.detach().cpu(), after_cpu.detach(), rtol=1e-6, atol=1e-7,
                                   msg=lambda message, name=name: f"{name}: {message}")


def test_the_data_module_keeps_mnist_where_its_trainer_computes(mnist_dir, tmp_path):
    """On a GPU Trainer the images live on the GPU (no copy from the host each step); a CPU Trainer given the
    same data module afterwards gets them back in host memory."""
    data = MNISTDataModule(data_dir=str(mnist_dir), subset=600)
    model = MnistClassifier()
    for accelerator, device in (("gpu", "cuda"), ("cpu", "cpu")):
        trainer = Trainer(accelerator=accelerator, devices=1, max_epochs=1, logger=False,
                          enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                          default_root_dir=tmp_path)
        trainer.fit(model, datamodule=data)
        assert {t.device.type for dataset in data.datasets.values() for t in dataset.tensors} == {device}
        assert trainer.global_step == 17  # 540 training images in batches of 32


@pytest.mark.parametrize("precision, steps_per_execution", [("32", 1), ("16-mixed", 1), ("16-mixed", 8)])
def test_fit_on_the_gpu_writes_a_checkpoint_the_cpu_scores_alike(precision, steps_per_execution, run_module,
                                                                  tmp_path):
    """A real fit on the GPU through the command line (augmentation on the device; float16 mixed precision, which
    only a GPU runs, with its loss scaling, also for each step of a grouped batch): it learns, and its checkpoint
    holds float32 weights that `test` on the CPU scores as the GPU did."""
    run_module("lightning_mnist", "fit", "--trainer.accelerator", "gpu", "--trainer.devices", "1",
               "--trainer.precision", precision, "--data.subset", "6000", "--data.augment", "true",
               "--data.steps_per_execution", str(steps_per_execution),
               "--model.lr", "1e-3", "--trainer.max_epochs", "2", *NO_PROGRESS, "--output_dir", "runs")
    [run] = sorted((tmp_path / "runs" / "lightning").glob("version_*"))
    results = json.loads((run / "results.json").read_text())
    assert results["config"]["trainer"]["accelerator"] == "gpu"
    assert results["config"]["data"]["steps_per_execution"] == steps_per_execution
    checkpoint_steps = torch.load(run / results["model_path"], map_location="cpu", weights_only=True)["global_step"]
    assert checkpoint_steps in (169, 2 * 169)  # 5,400 images in batches of 32, grouped or not: the best epoch's
    assert str(results["config"]["trainer"]["precision"]) == precision
    assert results["test_acc"] > 0.5, results["test_acc"]  # learns (chance: 0.1)
    checkpoint = torch.load(run / results["model_path"], map_location="cpu", weights_only=True)
    assert {w.dtype for w in checkpoint["state_dict"].values() if w.is_floating_point()} == {torch.float32}

    run_module("lightning_mnist", "test", "--ckpt_path", run / results["model_path"], "--trainer.accelerator",
               "cpu", *NO_PROGRESS, "--output_dir", "runs")
    [tested] = sorted((tmp_path / "runs" / "lightning").glob("test_*"))
    on_cpu = json.loads((tested / "results.json").read_text())["test_acc"]
    # TensorFloat-32 (or float16) on the GPU against float32 on the CPU: a few near-ties of 10,000 may flip
    assert on_cpu == pytest.approx(results["test_acc"], abs=0.005)

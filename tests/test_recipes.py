"""The recipe options (label smoothing, weight decay, an EMA of the weights), configs/best.yaml, the recipes script."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import Trainer, seed_everything
from lightning.pytorch.callbacks import EMAWeightAveraging as LightningEMAWeightAveraging
from lightning.pytorch.callbacks import ModelCheckpoint

from conftest import REPO, main_output, module_env
from mnist_common.errors import UserError
from lightning_mnist.data import MNISTDataModule
from lightning_mnist.models import MnistClassifier
from lightning_mnist.training.callbacks import EMAWeightAveraging

BEST = REPO / "configs" / "best.yaml"


@pytest.fixture(scope="module")
def batch(mnist):
    images = torch.from_numpy(mnist.train_images[:64]).float().div(255).unsqueeze(1)
    return images, torch.from_numpy(mnist.train_labels[:64]).long()


def test_label_smoothing_is_torchs_on_the_training_loss_only(batch):
    images, labels = batch
    model = MnistClassifier(label_smoothing=0.1).eval()  # eval: no dropout, the same logits every call
    with torch.no_grad():
        logits = model(images)
        train_loss, _ = model._shared_step(batch, "train")
        val_loss, _ = model._shared_step(batch, "val")
    assert train_loss.item() == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.1).item(), rel=1e-6)
    assert val_loss.item() == pytest.approx(F.cross_entropy(logits, labels).item(), rel=1e-6)
    # near-uniform logits at init: smoothing moves the loss only a little
    assert abs(train_loss.item() - val_loss.item()) > 1e-4
    with torch.no_grad():  # the default is the notebook's plain cross-entropy
        plain = MnistClassifier().eval()
        plain.load_state_dict(model.state_dict())
        assert plain._shared_step(batch, "train")[0].item() == pytest.approx(val_loss.item(), rel=1e-6)


def test_weight_decay_is_adamw_on_kernels_only():
    model = MnistClassifier(lr=1e-3, weight_decay=0.05)
    optimizer = model.configure_optimizers()
    assert type(optimizer) is torch.optim.AdamW and optimizer.defaults["fused"]
    assert optimizer.defaults["eps"] == 1e-7
    decayed, plain = optimizer.param_groups
    assert decayed["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0
    assert {p.ndim for p in decayed["params"]} == {2, 4} and {p.ndim for p in plain["params"]} == {1}
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))

    # with zero gradients Adam's step is zero, so one step only decays: w <- w * (1 - lr * decay)
    before = {name: p.detach().clone() for name, p in model.network.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    for name, p in model.network.named_parameters():
        factor = 1 - 1e-3 * 0.05 if p.ndim > 1 else 1.0
        torch.testing.assert_close(p.detach(), before[name] * factor, rtol=1e-6, atol=0)

    assert type(MnistClassifier().configure_optimizers()) is torch.optim.Adam  # the notebook's default
    with pytest.raises(UserError, match="Keras' Adam has no weight decay"):
        MnistClassifier(keras_adam=True, weight_decay=0.01)


def _ema_fit(mnist_dir, tmp_path, callback) -> tuple[MnistClassifier, Trainer, dict]:
    seed_everything(0)
    data = MNISTDataModule(data_dir=str(mnist_dir), subset=1000, batch_size=50)
    model = MnistClassifier(lr=3e-3)
    trainer = Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, default_root_dir=tmp_path,
                      callbacks=[callback, ModelCheckpoint(dirpath=tmp_path, monitor="val/loss")])
    trainer.fit(model, datamodule=data)
    checkpoint = torch.load(trainer.checkpoint_callback.best_model_path, weights_only=True)
    return model, trainer, checkpoint


def _tested_weights(model, trainer) -> dict[str, torch.Tensor]:
    trainer.test(model, datamodule=trainer.datamodule, ckpt_path="best", verbose=False)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in b)


def test_ema_weights_are_the_saved_and_the_tested_ones(mnist_dir, tmp_path):
    model, trainer, checkpoint = _ema_fit(mnist_dir, tmp_path, EMAWeightAveraging(decay=0.9))
    averaged, training = checkpoint["state_dict"], checkpoint["current_model_state"]
    assert not _same(averaged, training)  # 18 steps of training: the average has fallen behind
    # the checkpoint's state_dict (what test, predict, convert and the ensemble load) is the average, which
    # Lightning also puts into the model when training ends (one epoch: no step after the checkpoint) ...
    assert _same(averaged, {k: v for k, v in model.state_dict().items() if k in averaged})
    # ... and testing the best checkpoint scores those averaged weights, not the training ones
    assert _same(_tested_weights(model, trainer), averaged)


def test_lightnings_own_ema_would_test_the_training_weights(mnist_dir, tmp_path):
    """Why the project subclasses it: if this starts failing, Lightning fixed it and the subclass can go."""
    model, trainer, checkpoint = _ema_fit(mnist_dir, tmp_path, LightningEMAWeightAveraging(decay=0.9))
    assert _same(_tested_weights(model, trainer), checkpoint["current_model_state"])


def test_best_config_does_not_leak_into_the_defaults(tmp_path, monkeypatch, capsys):
    from lightning_mnist.__main__ import main

    monkeypatch.chdir(tmp_path)
    default = main_output(main, ["fit", "--print_config"], capsys)
    for line in ("label_smoothing: 0.0", "weight_decay: 0.0", "callbacks: null", "lr_schedule: constant",
                 "augment: false", "monitor: val/loss"):
        assert line in default, line


def test_best_config_runs_a_short_fit_of_its_recipe(run_main, tmp_path):
    run_main("lightning_mnist", "fit", "--config", BEST, "--data.subset", "2000", "--trainer.max_epochs", "1",
             "--trainer.enable_progress_bar", "false", "--output_dir", "out")
    [results_path] = tmp_path.glob("out/lightning/version_0/results.json")
    results = json.loads(results_path.read_text())
    assert results["epochs"] == 1 and 0.1 < results["test_acc"] <= 1.0
    config = results["config"]
    assert config["model"]["architecture"] == "notebook"  # the same network as the notebook's
    assert (config["model"]["lr_schedule"], config["data"]["augment"], config["data"]["batch_size"]) == (
        "onecycle", True, 128)


def test_recipes_benchmark_runs_the_commands_and_writes_the_table(mnist_dir, tmp_path):
    """benchmarks/recipes.py: the notebook recipe in each framework, the table between its markers, reruns reused."""
    doc = tmp_path / "recipes.md"
    doc.write_text("# Recipes\n\nprose before\n\n<!-- recipes:begin (written by benchmarks/recipes.py) -->\nold\n"
                   "<!-- recipes:end -->\n\nprose after\n")
    proc = subprocess.run([sys.executable, REPO / "benchmarks" / "recipes.py", "--recipes", "[notebook]",
                           "--seeds", "[3]", "--subset", "1000", "--max_epochs", "1", "--output_dir", tmp_path / "out",
                           "--doc", doc], cwd=tmp_path, env=module_env(mnist_dir),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "recipes.json").read_text())
    rows = {(s["recipe"], s["framework"]): s for s in report["recipes"]}
    assert set(rows) == {("notebook", "lightning"), ("notebook", "keras")}
    for framework in ("lightning", "keras"):
        [run] = rows["notebook", framework]["runs"]
        assert (run["seed"], run["epochs"]) == (3, 1) and 0.1 < run["test_acc"] <= 1
        assert json.loads(Path(run["results"]).read_text())["config"]["seed_everything"] == 3
    text = doc.read_text()
    assert "prose before" in text and "prose after" in text and "\nold\n" not in text
    lightning = rows["notebook", "lightning"]["runs"][0]
    assert "`python -m lightning_mnist fit --config configs/notebook.yaml --seed_everything S`" in text
    assert f"{100 * lightning['test_acc']:.2f}" in text
    # a second invocation reuses the finished runs (a table from runs made at different times) and runs nothing
    def table_only(*flags):
        return subprocess.run([sys.executable, REPO / "benchmarks" / "recipes.py", "--recipes", "[notebook]", "--seeds",
                               "[3]", "--subset", "1000", *flags, "--output_dir", tmp_path / "out", "--doc", doc,
                               "--table_only"], cwd=tmp_path, env=module_env(mnist_dir), capture_output=True,
                              text=True, timeout=120)
    again = table_only("--max_epochs", "1")
    assert again.returncode == 0 and again.stdout.count("done before") == 2, again.stdout[-2000:]
    # ... but not for other settings: a finished run of other settings is refused, not reused nor overwritten
    records = sorted((tmp_path / "out").rglob("run.json"))
    before = [r.read_text() for r in records]
    other = table_only("--max_epochs", "2")
    assert other.returncode == 2 and other.stderr.startswith("error: ") and len(other.stderr.splitlines()) == 1
    assert "another --output_dir" in other.stderr and "Traceback" not in other.stderr
    assert [r.read_text() for r in records] == before


def test_recipes_table_keeps_the_rows_it_did_not_run_and_says_which_are_not_measured_yet(mnist_dir, tmp_path):
    """--table_only with no finished run of a recipe: a row the table had with figures is kept as it was (the
    table is built over several invocations, each row naming its machine, day and seeds; the older layout, which
    said them once above the table, gets them per row), and a row it never had says "not measured yet"."""
    doc = tmp_path / "recipes.md"
    earlier = ("Measured on Some CPU, 2 CPU cores, none used (CPU runs); table written 2026-11-24. Runs share the "
               "machine. Seeds 0, 1, 2.\n\n| recipe | framework | command | epochs | test accuracy | per seed | "
               "training s | command s | load after |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n"
               "| best | lightning | `python -m lightning_mnist fit --config configs/best.yaml --seed_everything S` | "
               "30; 30; 30 | **99.52** ± 0.06 % | 99.47, 99.52, 99.58 | 382 | 394 | 2.03, 2.03, 2.07 |\n"
               "| best-ensemble | lightning | `python -m lightning_mnist cv --config configs/best.yaml "
               "--seed_everything S` | 30+30+30+30+30 | **99.62** % | 99.62 | 1847 | 1888 | 1.0 |\n"
               "| best | keras | `python -m keras_reference train --config configs/best.yaml --seed_everything S` | "
               "not measured yet | | | | | |\n")
    doc.write_text(f"prose\n<!-- recipes:begin -->\n{earlier}<!-- recipes:end -->\nafter\n")
    proc = subprocess.run([sys.executable, REPO / "benchmarks" / "recipes.py", "--recipes", "[fast,best,best-ensemble]",
                           "--output_dir", tmp_path / "out", "--doc", doc, "--table_only"],
                          cwd=tmp_path, env=module_env(mnist_dir), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = doc.read_text()
    assert text.startswith("prose\n") and text.endswith("<!-- recipes:end -->\nafter\n")
    rows = {tuple(cell.strip() for cell in line.strip("|").split("|")[:2]): [c.strip() for c in line.strip("|").split("|")]
            for line in text.splitlines() if line.startswith("| fast") or line.startswith("| best")}
    assert list(rows) == [("fast", "lightning"), ("fast", "keras"), ("best", "lightning"), ("best", "keras"),
                          ("best-ensemble", "lightning"), ("best-ensemble", "keras")]  # the script's order
    assert rows["best", "lightning"][4:6] == ["**99.52** ± 0.06 %", "99.47, 99.52, 99.58"]
    assert rows["best", "lightning"][-1] == "Some CPU, 2 cores, 2026-11-24, seeds 0, 1, 2"
    assert rows["best-ensemble", "lightning"][-1] == "Some CPU, 2 cores, 2026-11-24, seeds 0"  # one figure: one seed
    for key in [("fast", "lightning"), ("fast", "keras"), ("best", "keras"), ("best-ensemble", "keras")]:
        assert rows[key][3] == "not measured yet" and not any(rows[key][4:]), rows[key]
    assert rows["best-ensemble", "keras"][2] == "`python -m keras_reference cv --config configs/best.yaml --seed_everything S`"
    assert not list((tmp_path / "out").rglob("run.json"))  # nothing was run


def test_epoch_gap_compares_both_frameworks_epoch_by_epoch_and_reuses_its_runs(mnist_dir, tmp_path):
    """benchmarks/epoch_gap.py: one real run per framework and seed, every epoch's training loss and validation
    accuracy tabulated with the paired difference (computed from the runs' own histories), the table between its
    markers; a second measurement with the same settings runs nothing."""
    doc = tmp_path / "dynamics.md"
    doc.write_text("before\n<!-- epoch-gap-quick:begin -->\nold\n<!-- epoch-gap-quick:end -->\nafter\n")

    def measure():
        return subprocess.run([sys.executable, REPO / "benchmarks" / "epoch_gap.py", "--seeds", "[0, 1]",
                               "--max_epochs", "2", "--subset", "600", "--label", "quick", "--output_dir",
                               tmp_path / "out", "--doc", doc], cwd=tmp_path, env=module_env(mnist_dir),
                              capture_output=True, text=True, timeout=600)

    proc = measure()
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report = json.loads((tmp_path / "out" / "quick.json").read_text())
    runs = report["runs"]
    assert sorted(runs) == ["keras", "lightning"] and all(sorted(runs[fw]) == ["0", "1"] for fw in runs)
    first = report["epochs"][0]
    lightning, keras = ([runs[fw][s][0]["train_loss"] for s in ("0", "1")] for fw in ("lightning", "keras"))
    assert first["diff_train_loss"][0] == pytest.approx(statistics.fmean(a - b for a, b in zip(lightning, keras)))
    text = doc.read_text()
    assert text.startswith("before\n") and text.endswith("after\n") and "\nold\n" not in text
    assert [line.split(" | ")[0] for line in text.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")] \
        == ["| 1", "| 2"]
    records = sorted((tmp_path / "out").rglob("run.json"))
    assert len(records) == 4
    stamps = [r.stat().st_mtime_ns for r in records]
    again = measure()
    assert again.returncode == 0 and [r.stat().st_mtime_ns for r in records] == stamps  # reused, not rerun

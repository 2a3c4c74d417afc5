"""Lightning against the plain loop on a GPU: epoch seconds, and seconds to a target validation accuracy.

Contenders, each for ``--max_epochs`` epochs of the notebook's network with the same recipe
(batch size, one-cycle learning rate, precision), the data on the device once, in this one
process, stopping at the first epoch whose validation accuracy reaches ``--target``:

* ``plain``: ``plain_torch_loop.train`` on the device.
* ``plain_compiled``: the same, ``torch.compile``'d, one row for each of ``--compile_modes``
  (``reduce-overhead``: CUDA graphs), compilation counted in the first epoch.
* ``lightning``: a Trainer with the ``fit`` command's history callback and early stopping at the target.
* ``lightning_compiled``: the same with the LightningModule ``torch.compile``'d.

The table gives the first epoch (compilation and warm-up included), the last epoch, the seconds to
the target and the test accuracy then. A contender that fails (a compiler that cannot handle a mode on
this machine, say) is a row saying how, and the others still run. ``--device cpu`` runs the same on the
CPU (a quick check of the script; CPU figures come from ``compare_frameworks.py`` and
``time_to_accuracy.py``).

    python benchmarks/gpu_speed.py --device cuda --batch_size 128 --lr 5e-3 --max_epochs 4 --augment \
        --compile_modes '[reduce-overhead]'

(the run in docs/benchmarks.md; at batch 512 four epochs are 424 steps, too few for BatchNorm's
moving averages at Keras' momentum 0.99: the contenders ended at 82-87 % on an H200).

Timings are for reading, never for asserting.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Literal, get_args

sys.path.insert(0, str(Path(__file__).resolve().parent))
import plain_torch_loop  # noqa: E402  (sets the thread policy before torch starts)
from checks import check_chosen, check_counts, check_doc  # noqa: E402

import torch  # noqa: E402
from lightning.pytorch import Trainer, seed_everything  # noqa: E402
from lightning.pytorch.callbacks import EarlyStopping  # noqa: E402

from lightning_mnist.data.datamodule import MNISTDataModule  # noqa: E402
from lightning_mnist.models import MnistClassifier  # noqa: E402
from lightning_mnist.training.callbacks import EpochHistory  # noqa: E402
from mnist_common.cli import run  # noqa: E402
from mnist_common.errors import exit_on_user_error, one_line  # noqa: E402
from mnist_common.files import write_between_markers  # noqa: E402
from mnist_common.machine import describe_machine, load_average  # noqa: E402
from mnist_common.results import read_json, write_json  # noqa: E402
from mnist_common.runs import check_writable  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
Contender = Literal["plain", "plain_compiled", "lightning", "lightning_compiled"]
CompileMode = Literal["default", "reduce-overhead", "max-autotune"]


def device_name(device: str) -> str:
    return torch.cuda.get_device_name(torch.device(device)) if device.startswith("cuda") else "CPU"


def lightning_run(recipe: dict, compile_mode: str | None, folder: Path) -> dict:
    """Fit in-process on the device; the history and the test accuracy when it stopped."""
    seed_everything(recipe["seed"], verbose=False)
    data = MNISTDataModule(data_dir=recipe["data_dir"], batch_size=recipe["batch_size"], subset=recipe["subset"],
                           augment=recipe["augment"])
    data.prepare_data()
    data.setup("fit")
    device = torch.device(recipe["device"])  # the data module puts MNIST on a GPU once, as the plain loop has it
    model = MnistClassifier(lr=recipe["lr"], lr_schedule="onecycle")
    fitted = torch.compile(model, mode=compile_mode) if compile_mode else model
    history = EpochHistory()
    stop = EarlyStopping(monitor="val/acc", mode="max", stopping_threshold=recipe["target"], patience=100)
    accelerator = "gpu" if device.type == "cuda" else "cpu"
    trainer = Trainer(accelerator=accelerator, devices=[device.index or 0] if accelerator == "gpu" else 1,
                      max_epochs=recipe["max_epochs"], precision=recipe["precision"], logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, callbacks=[history, stop], default_root_dir=folder)
    trainer.fit(fitted, datamodule=data)
    tested = trainer.test(model, datamodule=data, verbose=False)[0]
    return {"history": history.history, "test_acc": tested["test/acc"]}


def plain_run(recipe: dict, compile_mode: str | None, folder: Path) -> dict:
    seed_everything(recipe["seed"], verbose=False)
    path = plain_torch_loop.train(
        folder, max_epochs=recipe["max_epochs"], batch_size=recipe["batch_size"], lr=recipe["lr"],
        subset=recipe["subset"], data_dir=recipe["data_dir"], seed=recipe["seed"], augment=recipe["augment"],
        lr_schedule="onecycle", precision=recipe["precision"], target_val_acc=recipe["target"], device=recipe["device"],
        compile_mode=compile_mode)
    results = read_json(path)
    return {"history": results["history"], "test_acc": results["test_acc"]}


def summary(name: str, result: dict, target: float) -> dict:
    if "error" in result:
        return {"contender": name, "error": result["error"]}
    history = result["history"]
    seconds = [b["seconds"] - a for a, b in zip([0.0] + [r["seconds"] for r in history], history)]
    reached = next((row["seconds"] for row in history if row["val_acc"] >= target), None)
    return {"contender": name, "first_epoch_seconds": round(seconds[0], 2), "last_epoch_seconds": round(seconds[-1], 2),
            "epochs": len(history), "seconds_to_target": reached, "test_acc": result["test_acc"],
            "val_acc": [round(row["val_acc"], 4) for row in history]}


def markdown(report: dict) -> str:
    r, machine = report["recipe"], report["machine"]
    lines = [f"`python benchmarks/gpu_speed.py --device {r['device']} --batch_size {r['batch_size']} --lr {r['lr']} "
             f"--max_epochs {r['max_epochs']}{' --augment' if r['augment'] else ''} --precision {r['precision']} "
             f"--compile_modes '[{', '.join(r['compile_modes'])}]'`, "
             f"{machine['date']}, {report['device_name']} (host {machine['cpu']}, {machine['cores']} cores, load "
             f"average {machine['load_average']}); {report['torch']}.", "",
             f"| contender | first epoch s (compile included) | last epoch s | s to val acc >= {r['target']} | "
             "epochs | test acc |", "| --- | --- | --- | --- | --- | --- |"]
    for row in report["rows"]:
        if "error" in row:
            lines.append(f"| {row['contender']} | failed: {row['error']} | | | | |")
            continue
        reached = "not reached" if row["seconds_to_target"] is None else f"**{row['seconds_to_target']:.1f}**"
        lines.append(f"| {row['contender']} | {row['first_epoch_seconds']:.2f} | {row['last_epoch_seconds']:.2f} | "
                     f"{reached} | {row['epochs']} | {100 * row['test_acc']:.2f} % |")
    ratio = report.get("last_epoch_lightning_over_plain")
    if ratio:
        lines += ["", f"Last epoch, Lightning over the plain loop: **{ratio}**."]
    return "\n".join(lines)


def gpu_speed(device: str = "cuda", target: float = 0.99, batch_size: int = 128, lr: float = 5e-3,
              max_epochs: int = 4, precision: Literal["32", "bf16-mixed", "16-mixed"] = "bf16-mixed",
              augment: bool = False,
              compile_modes: list[CompileMode] = ("default",),
              contenders: list[Contender] = ("plain", "lightning", "plain_compiled", "lightning_compiled"),
              subset: int | None = None, data_dir: str | None = None, seed: int = 42,
              output_dir: Path = REPO / "runs" / "benchmark", doc: Path | None = None) -> dict:
    """Train each contender on ``device`` until the target; print and write the table.

    Args:
        device: ``cuda`` (or ``cuda:N``), or ``cpu`` to check the script where there is no GPU.
        target: the validation accuracy to reach.
        batch_size: training batch size.
        lr: peak learning rate of the one-cycle schedule over ``max_epochs``.
        max_epochs: the schedule's length, and the most epochs trained.
        precision: ``bf16-mixed`` / ``16-mixed`` autocast, or ``32``.
        augment: the notebook's augmentation, on the device.
        compile_modes: ``torch.compile``'s modes for the compiled contenders, a row each (``reduce-overhead``:
            CUDA graphs).
        contenders: which to run, in order.
        subset: a stratified subset of the training images.
        data_dir: the folder holding MNIST/raw.
        seed: weights and shuffling.
        output_dir: gpu_speed.json goes into a new folder here.
        doc: also write the table into this Markdown file between its ``gpu-speed`` markers.
    """
    check_counts(target=target, batch_size=batch_size, lr=lr, max_epochs=max_epochs, subset=subset, seed=seed)
    check_chosen("contenders", contenders, get_args(Contender))
    check_chosen("compile_modes", compile_modes, get_args(CompileMode))
    check_doc(doc)
    plain_torch_loop.check_device(device)
    check_writable(output_dir, "--output_dir")
    recipe = {k: v for k, v in dict(locals()).items() if k not in ("contenders", "output_dir", "doc")}
    machine = describe_machine()
    rows = []
    with tempfile.TemporaryDirectory(prefix="gpu_speed_") as tmp:
        for name in contenders:
            runner = lightning_run if name.startswith("lightning") else plain_run
            for mode in compile_modes if name.endswith("_compiled") else [None]:
                label = f"{name} ({mode})" if mode else name
                try:
                    result = runner(recipe, mode, Path(tmp) / label)
                except Exception as err:  # noqa: BLE001  (a row saying how it failed; the others still run)
                    result = {"error": one_line(err)}
                rows.append(summary(label, result, target))
                print(rows[-1], flush=True)
    report = {"machine": machine, "device_name": device_name(device), "torch": f"torch {torch.__version__}",
              "recipe": recipe, "rows": rows, "load_average_after": load_average()}
    by_name = {row["contender"]: row for row in rows if "error" not in row}
    if "plain" in by_name and "lightning" in by_name:
        report["last_epoch_lightning_over_plain"] = round(
            by_name["lightning"]["last_epoch_seconds"] / by_name["plain"]["last_epoch_seconds"], 3)
    folder = output_dir / "gpu_speed"
    folder.mkdir(parents=True, exist_ok=True)
    write_json(report, folder / f"gpu_speed-{device.replace(':', '')}.json")
    table = markdown(report)
    print("\n" + table)
    if doc:
        print(f"table: {write_between_markers(doc, 'gpu-speed', table, title='Benchmarks')}")
    return report


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    run(gpu_speed, sys.argv[1:] if argv is None else argv, "python benchmarks/gpu_speed.py")


if __name__ == "__main__":
    main()

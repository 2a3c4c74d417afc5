"""A resumed run's training state, read from its checkpoint: what a tampered or damaged one is refused for.

A weights-only load reads any plain values, and Lightning restored them as they were: a list where a
mapping belongs, an optimizer of other groups, a string as a counter were tracebacks inside its restore;
Adam's moments of another shape a segmentation fault; NaN moments a run that trained on NaN; recorded
hyper-parameters of the wrong type a traceback in LightningCLI's reading of them. Each is now one
``error:`` line before any work. A one-cycle run keeps its length, and the files a checkpoint names as its
best are only ever read from the run's own checkpoint folder.
"""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import main_error
from lightning_mnist.__main__ import main

SHORT = ("--data.subset", "300", "--trainer.enable_progress_bar", "false", "--trainer.limit_test_batches", "1")


@pytest.fixture(scope="module")
def one_cycle_run(tmp_path_factory, mnist_dir):
    """One short one-cycle run with weight decay (two optimizer groups and a schedule to check): its folder."""
    from conftest import run_python_module

    work = tmp_path_factory.mktemp("resume")
    run_python_module(mnist_dir, "lightning_mnist", "fit", *SHORT, "--trainer.max_epochs", "2", "--model.lr_schedule",
                      "onecycle", "--model.weight_decay", "0.001", cwd=work)
    [run] = (work / "runs" / "lightning").glob("version_*")
    return work, run


def _first_moment(contents: dict, value) -> None:
    state = contents["optimizer_states"][0]["state"][0]
    state["exp_avg"] = value(state["exp_avg"])


def _callback(contents: dict, name: str) -> dict:
    return next(state for key, state in contents["callbacks"].items() if key.startswith(name))


TAMPERED = {  # what is changed in the run's last.ckpt, what the one line says
    "moments of another shape (was a segmentation fault)": (
        lambda c: _first_moment(c, lambda m: torch.zeros(3)),
        "exp_avg of parameter 0 is a strided tensor of shape (3,)"),
    "NaN moments (trained on NaN)": (lambda c: _first_moment(c, lambda m: torch.full_like(m, float("nan"))),
                                     "exp_avg of parameter 0 holds NaN or infinite values"),
    "a sparse moment": (lambda c: _first_moment(c, lambda m: m.to_sparse()), "is a sparse_coo tensor"),
    # hostile round 7: one float expanded to the moment's shape (stride 0) made the fused Adam step write past it
    # (SIGSEGV); moments sharing one tensor, or a negative step count, trained to NaN without a word
    "a moment over one float (was a segmentation fault)": (
        lambda c: _first_moment(c, lambda m: torch.zeros(1).expand(m.shape)),
        "exp_avg of parameter 0 is no tensor of its own (its values overlap in memory, or share another's)"),
    "two moments in one tensor (trained on NaN)": (
        lambda c: c["optimizer_states"][0]["state"][0].update(exp_avg_sq=c["optimizer_states"][0]["state"][0][
            "exp_avg"]), "exp_avg_sq of parameter 0 is no tensor of its own"),
    "a negative step count (trained on NaN)": (
        lambda c: c["optimizer_states"][0]["state"][0].update(step=torch.tensor(-5.0)),
        "step of parameter 0 is -5.0, not a count of steps"),
    # hostile round 8: torch takes a saved group's settings over the run's own, unchecked (gradient ascent, NaN, or a
    # traceback in the first step); Adam's moments left out (a KeyError); a one-cycle schedule of no steps left or a
    # curve torch lacks (tracebacks after the epoch began); a data order torch's generator cannot take, or past the
    # epoch (a traceback, or an epoch of no images)
    **{f"a parameter group's {key} of {value!r}": (
        lambda c, key=key, value=value: c["optimizer_states"][0]["param_groups"][0].update({key: value}), fragment)
       for key, value, fragment in (
           ("lr", -1e-3, "has lr -0.001; a learning rate is 0 or more, at most this run's 0.0001"),
           ("max_lr", 1e9, "has max_lr 1000000000.0; a learning rate is 0 or more, at most this run's 0.0001"),
           ("maximize", True, "has maximize True; this run's AdamW has False, which a schedule never changes"),
           ("amsgrad", True, "has amsgrad True; this run's AdamW has False"),
           ("differentiable", True, "has differentiable True; this run's AdamW has False"),
           ("eps", None, "has eps None; this run's AdamW has 1e-07"),
           ("betas", (0.9, 1.0), "has betas (0.9, 1.0); each is in [0, 1), the second this run's 0.999"),
           ("betas", (1.5, 0.999), "has betas (1.5, 0.999)"))},
    "a parameter group without its eps": (lambda c: c["optimizer_states"][0]["param_groups"][1].pop("eps"),
                                          "parameter group 1 has no eps, which AdamW reads"),
    "moments left out": (lambda c: c["optimizer_states"][0]["state"][2].pop("exp_avg"),
                         "its optimizer state for parameter 2 has no exp_avg, which Adam reads"),
    "a schedule of one step": (lambda c: c["lr_schedulers"][0].update(total_steps=1), "with steps left)"),
    "a schedule's curve that torch lacks": (lambda c: c["lr_schedulers"][0].update(_anneal_func_type="os.system"),
                                            "its learning-rate schedules' state is not what this run saves"),
    **{f"a data order of {order!r}": (lambda c, order=order: c.update(MNISTDataModule=order),
                                      "is not the training order a run saves")
       for order in ({"train_order": {"seed": 2 ** 70, "used": 32, "batches": 1}},
                     {"train_order": {"seed": "x", "used": 32, "batches": 1}}, [1, 2],
                     {"train_order": {"seed": 5, "used": -5, "batches": 1}},
                     {"train_order": {"seed": 5, "used": 10 ** 9, "batches": 1}})},
    # hostile round 9: an epoch order past this run's training split (of 300 images: Lightning's traceback after
    # the run began), an empty learning rate and a quantized moment (tracebacks in these checks), a moment of
    # integers (cast by torch without a word), a negative mean of squares (trained to NaN)
    "a data order past the run's training split": (
        lambda c: c.update(MNISTDataModule={"train_order": {"seed": 1, "used": 290, "batches": 5}}),
        "the images and batches of it taken, of its 270)"),
    "an empty learning rate": (lambda c: c["optimizer_states"][0]["param_groups"][0].update(lr=torch.tensor([])),
                               "a parameter group's settings are not finite numbers"),
    # hostile round 10: a step count of int8 passed, and wrapped to -128 at the next step (a traceback in the run)
    "a step count of int8": (lambda c: c["optimizer_states"][0]["state"][0].update(step=torch.tensor(127).to(
        torch.int8)), "step of parameter 0 is a tensor of int8; an optimizer keeps floating-point values, a "
                             "step count in float32"),
    "a quantized moment": (lambda c: _first_moment(c, lambda m: torch.quantize_per_tensor(m, 0.1, 0, torch.qint8)),
                           "exp_avg of parameter 0 is a tensor of qint8; an optimizer keeps floating-point values"),
    "a moment of integers": (lambda c: _first_moment(c, lambda m: m.to(torch.int32)),
                             "exp_avg of parameter 0 is a tensor of int32"),
    "a negative mean of squares (trained on NaN)": (
        lambda c: c["optimizer_states"][0]["state"][0].update(exp_avg_sq=-torch.ones_like(
            c["optimizer_states"][0]["state"][0]["exp_avg_sq"])),
        "exp_avg_sq of parameter 0 holds negative values; a mean of squares is 0 or more"),
    # a history row without its epoch, or of text (a traceback after the whole run); epoch counters past the
    # history (Lightning's traceback); numbers beyond every float (the checks' own OverflowError); a complex score
    "a history row without its epoch": (lambda c: _callback(c, "EpochHistory")["history"][0].pop("epoch"),
                                        "the state of its callback EpochHistory is not one it saves"),
    "a history's loss that is text": (lambda c: _callback(c, "EpochHistory")["history"][0].update(train_loss="abc"),
                                      "the state of its callback EpochHistory is not one it saves"),
    "epoch counters past the history": (
        lambda c: (c.update(epoch=10 ** 6), c["loops"]["fit_loop"]["epoch_progress"]["total"].update(
            completed=10 ** 6)), "its epoch counters (1000000, 1000000) are past the 2 epoch(s) its history records"),
    "a learning rate beyond every float": (
        lambda c: c["optimizer_states"][0]["param_groups"][0].update(lr=10 ** 400),
        "a parameter group's settings are not finite numbers"),
    "a best score beyond every float": (lambda c: _callback(c, "EarlyStopping").update(best_score=10 ** 400),
                                        "the state of its callback EarlyStopping is not one it saves"),
    "a complex best score": (lambda c: _callback(c, "EarlyStopping").update(best_score=torch.tensor(1 + 2j)),
                             "the state of its callback EarlyStopping is not one it saves"),
    "an optimizer of one group": (
        lambda c: c["optimizer_states"][0].update(param_groups=[{"lr": 0.1, "params": [0]}]),
        "has parameter groups of [1] parameters; this run's optimizer steps groups of [4, 8]"),
    "no optimizer": (lambda c: c.update(optimizer_states=[]), "it holds 0 optimizers' states"),
    "optimizer states that are a number": (lambda c: c.update(optimizer_states=7),
                                           "it holds a int as its optimizers' states"),
    "a learning rate that is text": (lambda c: c["optimizer_states"][0]["param_groups"][0].update(lr="fast"),
                                     "a parameter group's settings are not finite numbers"),
    "no loop counters": (lambda c: c.pop("loops"), "it holds no state of Lightning's training loop"),
    "a loop that is text": (lambda c: c.update(loops={"fit_loop": {"epoch_progress": "garbage"}}),
                            "loops.fit_loop.epoch_progress is 'garbage', not a counter"),
    "callbacks that are a list": (lambda c: c.update(callbacks=[1]), "holds a network's weights but no training"),
    "a callback's state that is a number": (
        lambda c: c["callbacks"].update({next(k for k in c["callbacks"] if k.startswith("RunCheckpoint")): 5}),
        "its callbacks' states are not a mapping"),
    "random states that are text (a traceback in torch)": (
        lambda c: c["callbacks"]["RandomState"].update(torch="garbage"),
        "the state of its callback RandomState is not one it saves"),
    "an early stopping count that is text (a traceback mid-run)": (
        lambda c: _callback(c, "EarlyStopping").update(wait_count="x", best_score="y"),
        "the state of its callback EarlyStopping is not one it saves"),
    "a best score that is text": (lambda c: _callback(c, "RunCheckpoint").update(best_model_score="abc"),
                                  "the state of its callback RunCheckpoint is not one it saves"),
    "an epoch that is text": (lambda c: c.update(epoch="abc"), "its epoch is 'abc', not a count"),
    "a negative global step": (lambda c: c.update(global_step=-5), "its global_step is -5, not a count"),
    "a schedule's step count that is text": (lambda c: c["lr_schedulers"][0].update(last_epoch="z"),
                                             "its learning-rate schedules' state is not what this run saves"),
    "a second schedule": (lambda c: c["lr_schedulers"].append(dict(c["lr_schedulers"][0])),
                          "(1 schedule, of numbers and settings, with steps left)"),
    "a recorded lr that is text": (lambda c: c["hyper_parameters"].update(lr="fast"),
                                   'its recorded hyper_parameters are not settings of this model (Parser key '
                                   '"model.lr": Expected a <class \'float\'>. Got value: fast)'),
    # hostile round 11: the run's own lr, kept, was given to Adam before it was checked (its traceback)
    "a recorded lr of -1": (lambda c: c["hyper_parameters"].update(lr=-1.0),
                            "the settings it records are refused: --model.lr must be a positive number up to 1 "
                            "(Adam's step size), got -1.0"),
    "a recorded NaN weight decay": (lambda c: c["hyper_parameters"].update(weight_decay=float("nan")),
                                    "the settings it records are refused: --model.weight_decay must be 0 or more"),
    "a recorded setting the model lacks": (lambda c: c["hyper_parameters"].update(class_path="os.system"),
                                           "does not accept option 'model.class_path'"),
}


@pytest.mark.parametrize("case", list(TAMPERED))
def test_a_tampered_training_state_is_refused_in_one_line_before_any_work(case, one_cycle_run, mnist_dir,
                                                                          monkeypatch, capsys):
    work, run = one_cycle_run
    change, fragment = TAMPERED[case]
    contents = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    change(contents)
    tampered = run / "checkpoints" / "tampered.ckpt"
    torch.save(contents, tampered)
    monkeypatch.chdir(work)
    monkeypatch.setenv("MNIST_DATA_DIR", str(mnist_dir))
    before = {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()}
    try:
        code, error, _ = main_error(main, ["fit", "--ckpt_path", str(tampered), *SHORT], capsys)
    finally:
        tampered.unlink()
    assert code == 2 and fragment in error, error
    del before[tampered]
    assert {p: p.stat().st_mtime_ns for p in run.rglob("*") if p.is_file()} == before  # nothing written
    assert len(list((work / "runs" / "lightning").iterdir())) == 1


@pytest.mark.parametrize("lr, fragment", [("fast", 'Parser key "model.lr"'),
                                          (10 ** 400, "hold a whole number beyond any float")])  # (an OverflowError)
def test_a_recorded_setting_of_the_wrong_type_is_one_line_for_test_too(lr, fragment, one_cycle_run, mnist_dir,
                                                                       monkeypatch, capsys):
    work, run = one_cycle_run
    contents = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    contents["hyper_parameters"]["lr"] = lr
    torch.save(contents, work / "tampered.ckpt")
    monkeypatch.chdir(work)
    monkeypatch.setenv("MNIST_DATA_DIR", str(mnist_dir))
    code, error, _ = main_error(main, ["test", "--ckpt_path", "tampered.ckpt"], capsys)
    assert code == 2 and fragment in error, error


def test_a_one_cycle_run_keeps_its_length(one_cycle_run, mnist_dir, monkeypatch, capsys):
    """Its schedule's total steps are saved with it: a longer resumed run was a traceback from torch's schedule one
    step past them, after the first epoch; a finished one is told to start anew from its weights."""
    work, run = one_cycle_run
    monkeypatch.chdir(work)
    monkeypatch.setenv("MNIST_DATA_DIR", str(mnist_dir))
    code, error, _ = main_error(main, ["fit", "--ckpt_path", "last", *SHORT, "--trainer.max_epochs", "3"], capsys)
    assert code == 2 and "--trainer.max_epochs 3 (the run's is 2)" in error, error
    code, error, _ = main_error(main, ["fit", "--ckpt_path", "last", *SHORT], capsys)
    assert code == 2 and "has trained all 2 epochs of its one-cycle schedule" in error, error
    assert "(--weights runs/lightning/version_0/checkpoints/last.ckpt)" in error, error


def test_a_best_checkpoint_named_outside_the_run_is_never_read(tmp_path, mnist_dir, monkeypatch, capsys):
    """A copied or tampered checkpoint named a file in another folder as the run's best (with the best score), which
    fit then kept as its best and tested. Its optimizer groups are also a GPU run's capturable Adam's, which torch
    took over the resumed run's own: an AssertionError traceback in the first step on a CPU (hostile round 10); the
    run's own flags are put back."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MNIST_DATA_DIR", str(mnist_dir))
    main(["fit", *SHORT, "--trainer.max_epochs", "1"])
    [run] = (tmp_path / "runs" / "lightning").glob("version_*")
    outside = tmp_path / "elsewhere.ckpt"
    shutil.copy(run / "checkpoints" / "last.ckpt", outside)
    contents = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    [key] = [k for k in contents["callbacks"] if k.startswith("RunCheckpoint")]
    best = torch.tensor(0.0)  # a val/loss no epoch beats
    contents["callbacks"][key].update(best_model_path=str(outside), best_model_score=best,
                                      best_k_models={str(outside): best})
    for group in contents["optimizer_states"][0]["param_groups"]:
        group.update(capturable=True, foreach=False, fused=False)
    torch.save(contents, run / "checkpoints" / "last.ckpt")
    main(["fit", "--ckpt_path", "last", *SHORT, "--trainer.max_epochs", "2"])
    capsys.readouterr()
    results = json.loads((run / "results.json").read_text())
    assert results["epochs"] == 2 and "elsewhere" not in results["model_path"], results["model_path"]
    assert (run / results["model_path"]).parent == run / "checkpoints"

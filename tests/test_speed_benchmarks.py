"""The speed benchmarks (benchmarks/step_overhead.py, shared_machine.py, time_to_accuracy.py, gpu_speed.py,
kernel_efficiency.py, compare_frameworks.py's rounds) and the training commands' thread settings: that the
scripts run end to end on a few hundred real images and write their tables, and that the settings are what
they say. No timing is asserted."""

from __future__ import annotations

import importlib
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, main_error, main_output, module_env

BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))


def script(name: str, *args: str, env: dict | None = None, timeout: int = 600,
           cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / name), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


THREADS_PROBE = ("import os, json, sys; from mnist_common.threads import configure_threads; "
                 "arg = sys.argv[1]; configure_threads(None if arg == 'none' else int(arg)); import torch; "
                 "print(json.dumps({'env': {k: os.environ.get(k) for k in ('OMP_WAIT_POLICY', 'OMP_NUM_THREADS')}, "
                 "'threads': torch.get_num_threads(), 'again': configure_threads(5)}))")


@pytest.mark.parametrize("given, threads, expected_policy, expected_threads", [
    ({}, "none", None, "free cores"),  # nothing set: one thread per free core, libgomp's own waiting
    ({"OMP_NUM_THREADS": "1"}, "none", None, "1"),  # the user's count wins
    ({"OMP_WAIT_POLICY": "PASSIVE"}, "none", "PASSIVE", "free cores"),  # and their policy is kept
    ({}, "1", None, "1"),  # a count given by the program reaches torch's pool
])
def test_thread_settings_are_set_before_torch_and_the_users_win(given, threads, expected_policy, expected_threads):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME",
                                                            "OMP_NUM_THREADS")}
    proc = subprocess.run([sys.executable, "-c", THREADS_PROBE, threads], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(REPO), **given}, timeout=120)
    assert proc.returncode == 0, proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert seen["env"]["OMP_WAIT_POLICY"] == expected_policy
    count = int(seen["env"]["OMP_NUM_THREADS"])
    if expected_threads == "free cores":
        assert 1 <= count <= os.cpu_count()
    else:
        assert count == int(expected_threads)
    assert seen["threads"] == count  # torch's pool has that size
    assert seen["again"]["OMP_NUM_THREADS"] == str(count)  # once torch is loaded, nothing changes


BAD_ENVIRONMENTS = [  # what libgomp only warns about, running with its default (all the cores) instead; and a
    # Keras backend the project cannot run, which Keras refused with a traceback where a command first imported it
    ({"OMP_NUM_THREADS": "abc"}, "OMP_NUM_THREADS='abc': not a number of threads; give a whole number from 1",
     ("lightning_mnist", "fit")),
    ({"OMP_NUM_THREADS": "0"}, "OMP_NUM_THREADS='0': not a number of threads",
     ("lightning_mnist", "predict", "digit.png", "--weights", "none.ckpt")),
    ({"OMP_WAIT_POLICY": "sleepy"}, "OMP_WAIT_POLICY='sleepy': OpenMP knows ACTIVE and PASSIVE",
     ("keras_reference", "train")),
    ({"OMP_NUM_THREADS": "abc"}, "OMP_NUM_THREADS='abc': not a number of threads",
     ("keras_reference", "cv", "--data.batch_size", "0")),  # before scikit-learn's libgomp warns, before the flags
    ({"KERAS_BACKEND": "jax"}, "KERAS_BACKEND='jax': this project runs Keras on TensorFlow; set "
                               "KERAS_BACKEND=tensorflow or unset it",
     ("lightning_mnist", "convert", "model.keras", "model.ckpt")),
    ({"KERAS_BACKEND": "bogus"}, "KERAS_BACKEND='bogus': this project runs Keras on TensorFlow",
     ("keras_reference", "train")),
]


def test_an_environment_the_commands_cannot_use_is_refused_by_the_commands_of_both_packages(tmp_path, mnist_dir):
    """The real command lines, side by side, each with one bad value: exit 2, one line on stderr and nothing else
    (no warning of libgomp's before it), nothing written; and a count OpenMP reads (``2,1``: nested levels) is
    taken."""
    from mnist_common.environment import check_environment

    check_environment({"OMP_NUM_THREADS": " 2,1 ", "OMP_WAIT_POLICY": "Passive", "KERAS_BACKEND": "tensorflow"})
    running = []
    for given, fragment, command in BAD_ENVIRONMENTS:
        env = {**module_env(mnist_dir), **given}
        running.append((given, fragment, subprocess.Popen([sys.executable, "-m", *command], cwd=tmp_path, env=env,
                                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))
    for given, fragment, proc in running:
        _, stderr = proc.communicate(timeout=300)
        lines = stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: {fragment}"), (given, stderr)
    assert list(tmp_path.iterdir()) == []


def test_free_cores_leave_what_others_keep_busy_and_at_least_one():
    from mnist_common.threads import busy_cores, free_cores

    assert [free_cores(busy, 2) for busy in (0.0, 0.4, 0.6, 1.0, 1.9, 2.0)] == [2, 2, 1, 1, 1, 1]
    assert free_cores(0.2, 4) == 4 and free_cores(2.7, 4) == 1 and free_cores(None, 4) == 4
    busy = busy_cores(0.05)
    assert busy is None or 0 <= busy <= os.cpu_count() + 0.01  # Linux measures; elsewhere nothing to measure


def test_kernel_efficiency_counts_the_notebook_networks_training_work():
    """Forward and backward work, counted by torch's FLOP counter, equals the count from the layer shapes."""
    from kernel_efficiency import matmul_gflops, training_flops_per_image

    conv1, conv2 = 2 * 26 * 26 * 32 * 3 * 3 * 1, 2 * 11 * 11 * 64 * 3 * 3 * 32
    dense1, dense2 = 2 * 1600 * 128, 2 * 128 * 10
    forward = conv1 + conv2 + dense1 + dense2
    backward = conv1 + 2 * (conv2 + dense1 + dense2)  # the input's gradient is not computed
    assert training_flops_per_image("notebook", batch_size=4) == forward + backward == 15_396_864
    assert matmul_gflops(size=128, seconds=0.05) > 0


def test_step_overhead_times_each_contender_from_the_same_start(mnist_dir):
    from step_overhead import overhead

    report = overhead(steps=2, repeats=1, contenders=["plain", "lightning", "lightning_torchmetrics",
                                                      "lightning_automatic", "lightning_grouped", "plain_grouped"],
                      data_dir=str(mnist_dir))
    assert set(report["contenders"]) == {"plain", "lightning", "lightning_torchmetrics", "lightning_automatic",
                                         "lightning_grouped", "plain_grouped"}
    assert report["contenders"]["plain"]["ratio_to_plain"] == 1.0
    assert all(len(row["ms_per_step"]) == 1 and row["median_ms"] > 0 for row in report["contenders"].values())
    for name in ("plain", "lightning", "lightning_torchmetrics", "lightning_grouped", "plain_grouped"):
        row = report["contenders"][name]
        assert 0 < row["in_step_ms"] < row["median_ms"] and row["around_step_ms"] > 0, (name, row)
    assert "in_step_ms" not in report["contenders"]["lightning_automatic"]  # its step runs inside the optimizer's
    assert report["machine"]["cpu"] and report["threads"] >= 1


def test_step_overhead_measures_grouped_contenders_against_the_grouped_plain_loop(mnist_dir):
    """Without the plain loop, the grouped one is the floor (the table said +0.000 and 1.000 for every row)."""
    from step_overhead import overhead

    report = overhead(steps=8, repeats=1, contenders=["plain_grouped", "lightning_grouped"], data_dir=str(mnist_dir))
    assert report["floor"] == "plain_grouped" and report["contenders"]["plain_grouped"]["ratio_to_plain"] == 1.0
    grouped = report["contenders"]["lightning_grouped"]
    # the report rounds the ratio of the unrounded medians; recomputed from its rounded ones it may differ in the last
    # place (1.080 against 1.081 in a CI run)
    ratio = grouped["median_ms"] / report["contenders"]["plain_grouped"]["median_ms"]
    assert grouped["ratio_to_plain"] == pytest.approx(ratio, abs=0.0011)


def test_step_overhead_alternates_the_ways_of_stepping_inside_one_run(mnist_dir, monkeypatch, capsys):
    """``--alternate``: an update in each of four ways, the next every 8 steps of one run; half the updates go through
    Lightning's ``manual_backward``, half call ``loss.backward()`` themselves."""
    from lightning.pytorch import LightningModule
    from step_overhead import AlternatingSteps, overhead

    calls = []
    manual_backward = LightningModule.manual_backward
    monkeypatch.setattr(LightningModule, "manual_backward",
                        lambda self, loss, *args, **kwargs: calls.append(1) or manual_backward(self, loss))
    report = overhead(steps=64, repeats=1, contenders=["plain"], alternate=True, data_dir=str(mnist_dir))
    assert list(report["wrappers_us"]) == list(AlternatingSteps.WAYS.values())
    assert all(us > 0 for us in report["wrappers_us"].values())
    assert len(calls) == 64 // 2  # the plain loop calls none
    assert "the ways alternated every 8 steps, median microseconds: manual_backward, wrapped step" in \
        capsys.readouterr().out


def test_step_overhead_gives_every_contender_the_precision_and_writes_its_own_table(mnist_dir, tmp_path,
                                                                                    monkeypatch):
    """``--precision bf16-mixed`` reaches both loops (the Trainer's precision, the plain loop's autocast), the grouped
    contenders take whole executions of 8, and ``--marker`` names the table's place in the document."""
    import step_overhead

    trainers, plain_calls = [], []
    build_trainer, plain_steps = step_overhead.lightning_trainer, step_overhead.train_steps

    def recording_trainer(*args, **kwargs):
        trainers.append(build_trainer(*args, **kwargs))
        return trainers[-1]

    def recording_steps(*args, **kwargs):
        plain_calls.append(kwargs)
        return plain_steps(*args, **kwargs)

    monkeypatch.setattr(step_overhead, "lightning_trainer", recording_trainer)
    monkeypatch.setattr(step_overhead, "train_steps", recording_steps)
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    step_overhead.overhead(steps=3, repeats=1, batch_size=16, precision="bf16-mixed", data_dir=str(mnist_dir),
                           contenders=["plain_grouped", "lightning_grouped", "lightning_grouped_unwrapped"],
                           doc=doc, marker="step-overhead-bf16")
    assert trainers and {trainer.precision for trainer in trainers} == {"bf16-mixed"}
    assert plain_calls and all(call["bf16"] and call["steps_per_execution"] == 8 for call in plain_calls)
    assert [call["steps"] for call in plain_calls] == [8, 8]  # the untimed round and the timed one: 3 -> 8
    # each round: the grouped module's 8 steps counted by Lightning; the unwrapped one's 8 around its wrappers
    assert [trainer.global_step for trainer in trainers] == [8, 0, 8, 0]
    text = doc.read_text()
    assert "<!-- step-overhead-bf16:begin" in text and "--precision bf16-mixed" in text
    assert "| plain_grouped | " in text and "| lightning_grouped | " in text


def test_step_overhead_profiles_both_loops_in_the_precision_asked_for(mnist_dir, monkeypatch, capsys):
    """``--profile_run``: Lightning's per-hook profile and torch.profiler's operators of both loops, every Trainer
    in ``--precision``."""
    import step_overhead

    trainers = []
    trainer_class = step_overhead.Trainer

    def recording_trainer(*args, **kwargs):
        trainers.append(trainer_class(*args, **kwargs))
        return trainers[-1]

    monkeypatch.setattr(step_overhead, "Trainer", recording_trainer)
    step_overhead.overhead(steps=2, repeats=1, contenders=["plain", "lightning"], precision="bf16-mixed",
                           profile_run=True, data_dir=str(mnist_dir))
    printed = capsys.readouterr().out
    assert "run_training_batch" in printed  # SimpleProfiler's summary
    assert "--- torch.profiler, plain, 2 steps" in printed and "--- torch.profiler, lightning, 2 steps" in printed
    assert "aten::convolution_backward" in printed
    # lightning's untimed and timed rounds, the hook profile's Trainer, the torch.profiler run's
    assert len(trainers) == 4 and {trainer.precision for trainer in trainers} == {"bf16-mixed"}


def test_the_plain_loop_takes_an_executions_images_at_once_and_steps_as_before(mnist):
    """``steps_per_execution`` in the plain loop (the data path Lightning's data module gives it): the same steps
    on the same batches, so the same weights; ``steps`` still counts optimizer steps."""
    import torch

    from plain_torch_loop import build, train_steps

    x = torch.from_numpy(mnist.train_images[:200]).float().div(255).unsqueeze(1)
    y = torch.from_numpy(mnist.train_labels[:200]).long()
    weights = {}
    for steps in (1, 3):
        torch.manual_seed(5)
        network, optimizer = build("notebook", 1e-3)
        assert train_steps(network, optimizer, x, y, 32, steps_per_execution=steps) == 7  # 6 x 32 and 8
        weights[steps] = network.state_dict()
        torch.manual_seed(5)
        assert train_steps(*build("notebook", 1e-3), x, y, 32, steps=5, steps_per_execution=steps) == 5
    for name, value in weights[3].items():
        torch.testing.assert_close(value, weights[1][name], rtol=0, atol=1e-6, msg=name)


@pytest.mark.parametrize("script", ["compare_frameworks", "time_to_accuracy"])
def test_the_benchmarks_give_the_three_contenders_the_same_steps_per_execution(script, tmp_path, capsys):
    """Each contender's command line carries ``--steps_per_execution`` (the two commands' parsers accept it), and
    time_to_accuracy's table names it; the default (1) is left out of both, as before the setting."""
    from keras_reference.__main__ import main as keras_main
    from lightning_mnist.__main__ import main as lightning_main

    benchmark = importlib.import_module(script)
    args = {"architecture": "notebook", "batch_size": 32, "lr": 1e-4, "max_epochs": 1, "subset": None,
            "data_dir": None, "lightning_config": None, "accelerator": "cpu", "steps_per_execution": 8,
            "target": 0.99, "test_target": 0.99, "augment": True, "precision": "bf16-mixed", "seeds": None}
    every = benchmark.commands(args, tmp_path)
    assert every["torch"][every["torch"].index("--steps_per_execution") + 1] == "8"
    for name, main in (("lightning", lightning_main), ("keras", keras_main)):
        argv = every[name][every[name].index("fit" if name == "lightning" else "train"):]
        assert "steps_per_execution: 8" in main_output(main, [*argv, "--print_config"], capsys), name
    for name, argv in benchmark.commands({**args, "steps_per_execution": 1}, tmp_path).items():
        assert not any("steps_per_execution" in part for part in argv), name
    if script == "time_to_accuracy":  # its table's first line: the command that made it
        machine = {"date": "2026-12-05", "cpu": "a CPU", "cores": 2, "load_average": [0.5]}
        for steps, shown in ((8, True), (1, False)):
            recipe = {key: args[key] for key in ("target", "test_target", "batch_size", "lr", "max_epochs",
                                                 "augment", "precision", "subset", "data_dir", "seeds")}
            report = {"machine": machine, "recipe": {**recipe, "steps_per_execution": steps}, "runs": [],
                      "num_train": 54000, "load_average_after": [0.5]}
            first_line = benchmark.markdown(report).splitlines()[0]
            assert ("--steps_per_execution" in first_line) is shown
            assert ("--steps_per_execution 8" in first_line) is shown


def fake_run(seconds: float, acc: float = 0.9) -> dict:
    return {"train_seconds": seconds, "epochs": [{"seconds": seconds}], "test_acc": acc}


def test_compare_reports_each_contenders_median_round_and_every_rounds_ratio():
    """Rows are each contender's median round, a ratio is the median over rounds, and every round's is kept."""
    from compare_frameworks import summarise

    rounds = [{"lightning": fake_run(12.0), "torch": fake_run(10.0)},
              {"lightning": fake_run(11.0), "torch": fake_run(10.5)},
              {"lightning": fake_run(30.0, 0.8), "torch": fake_run(9.0)}]  # a round another process slowed
    medians, ratios, per_round = summarise(rounds)
    assert medians["lightning"]["train_seconds"] == 12.0 and medians["torch"]["train_seconds"] == 10.0
    assert per_round == {"train_seconds_lightning_over_plain_torch": [1.2, 1.048, 3.333]}
    assert ratios == {"train_seconds_lightning_over_plain_torch": 1.2}  # the slowed round moves it least
    medians, ratios, per_round = summarise(rounds[:2] + [{"lightning": fake_run(11.5), "torch": fake_run(9.5)},
                                                          {"lightning": fake_run(13.0), "torch": fake_run(11.0)}])
    assert medians["lightning"]["train_seconds"] == 11.5  # an even count: the lower of the middle two
    keras = summarise([{"lightning": fake_run(8.0, 0.95), "keras": fake_run(10.0, 0.96)}])[1]
    assert keras == {"first_epoch_seconds_lightning_over_keras": 0.8, "train_seconds_lightning_over_keras": 0.8,
                     "test_acc_difference_points": -1.0}


def test_compare_runs_the_contenders_in_every_order_so_none_always_runs_first(mnist_dir, tmp_path, monkeypatch):
    """Over any two rounds each pair of contenders ran in both orders (a round's ratios are taken within it), and
    each contender runs first in turn; the report and its table say the orders. The contenders' processes are
    stood in for here (their real runs: test_compare_frameworks.py, the time-to-accuracy test)."""
    import compare_frameworks

    for names in (["lightning", "torch"], ["lightning", "keras", "torch"]):
        orders = compare_frameworks.running_orders(names, 2 * len(names))
        assert sorted(order[0] for order in orders) == sorted(names * 2)
        for index in range(0, len(orders) - 1, 2):
            for a, b in itertools.combinations(names, 2):
                assert {orders[index].index(a) < orders[index].index(b),
                        orders[index + 1].index(a) < orders[index + 1].index(b)} == {True, False}
    ran = []

    def run(name, command, out, num_train, target):
        ran.append(name)
        seconds = {"lightning": 10.0, "keras": 20.0, "torch": 9.0}[name] + len(ran) / 100
        return {"framework": name, "train_seconds": seconds, "test_acc": 0.98, "peak_memory_mb": 100.0,
                "process_seconds": 1.0, "seconds_to_target_val_acc": None, "threads": None,
                "epochs": [{"epoch": 0, "seconds": seconds, "images_per_second": 100.0, "val_acc": 0.98}],
                "history": [{"seconds": seconds, "val_acc": 0.98}]}

    monkeypatch.setattr(compare_frameworks, "run", run)
    monkeypatch.setattr(compare_frameworks, "kernel_efficiency", lambda *_: {
        "training_flops_per_image": 1e6, "matmul_gflops_float32": 100.0, "matmul_gflops_bfloat16": 50.0, "threads": 1})
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n")
    compare_frameworks.compare(repeats=4, subset=500, data_dir=str(mnist_dir), output_dir=tmp_path / "runs", doc=doc)
    expected = compare_frameworks.running_orders(["lightning", "keras", "torch"], 4)
    assert ran == [name for order in expected for name in order]
    assert expected[:2] == [("lightning", "keras", "torch"), ("torch", "keras", "lightning")]
    [report] = (tmp_path / "runs").glob("compare_*/benchmark.json")
    report = json.loads(report.read_text())
    assert report["orders_per_round"] == [list(order) for order in expected]
    assert [run_["framework"] for run_ in report["runs"]] == ["lightning", "keras", "torch"]  # rows as asked
    assert report["train_seconds_per_round"]["torch"] == [9.03, 9.04, 9.08, 9.11]  # each round's own run
    assert ("the contenders ran in the orders lightning-keras-torch, torch-keras-lightning, keras-torch-lightning, "
            "lightning-torch-keras.") in doc.read_text()


def test_the_compare_table_names_the_threads_each_torch_contender_ran_on():
    """Each torch command sizes its pool at its start (fewer threads where other work held cores): the table says
    what each ran on; Keras (TensorFlow's own pools) is not listed."""
    from compare_frameworks import markdown

    def run(name: str, threads: int | None) -> dict:
        return {"framework": name, "epochs": [{"seconds": 10.0, "images_per_second": 5400.0}], "train_seconds": 10.0,
                "test_acc": 0.98, "peak_memory_mb": 1200.0, "gflops": 80.0, "percent_of_matmul_peak": 20.0,
                "threads": threads}

    report = {"machine": {"date": "2026-12-07", "cpu": "a CPU", "cores": 2, "load_average": [0.5]},
              "settings": {"architecture": "notebook", "batch_size": 128, "lr": 1e-3, "max_epochs": 1},
              "num_train": 54000, "load_average_after": [0.5], "ratios": {},
              "runs": [run("lightning", 2), run("keras", None), run("torch", 1)],
              "kernel_efficiency": {"training_flops_per_image": 15.4e6, "matmul_gflops_float32": 300.0,
                                    "matmul_gflops_bfloat16": 150.0, "threads": 2}}
    assert markdown(report).endswith("Threads of the torch contenders' kernels: lightning 2, torch 1.")


def test_time_to_accuracy_and_shared_machine_write_their_tables(mnist_dir, tmp_path, capsys):
    from time_to_accuracy import commands

    from lightning_mnist.__main__ import main

    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\nprose kept\n")
    data = ["--data_dir", str(mnist_dir), "--output_dir", str(tmp_path / "runs"), "--doc", str(doc)]
    proc = script("time_to_accuracy.py", "--subset", "500", "--max_epochs", "2", "--batch_size", "64",
                  "--frameworks", "[torch, keras]", "--target", "0.3", "--test_target", "0.5", *data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [report] = (tmp_path / "runs").glob("time_to_accuracy_*/time_to_accuracy.json")
    plain, keras_run = json.loads(report.read_text())["runs"]
    assert plain["seed"] is None and "--seed" not in plain["command"]  # each command's own seed
    assert plain["framework"] == "torch" and plain["test_acc"] > 0.3 and plain["tested_after"] == 1  # stopped
    assert keras_run["tested_after"] == 2  # Keras' command cannot stop at the target: all of its epochs
    given = os.environ.get("OMP_NUM_THREADS")  # the threads the plain loop's kernels ran on, from its results
    assert (plain["threads"] == int(given)) if given else (1 <= plain["threads"] <= (os.cpu_count() or 1))
    assert keras_run["threads"] is None  # TensorFlow sizes its own pools
    # each epoch's kept weights were tested afterwards: the plain loop's only epoch is the weights it tested itself
    # (in bfloat16 there, float32 here), and Keras' best epoch by val/loss, the one it tested, scores its test
    assert plain["test_acc_per_epoch"][0] == pytest.approx(plain["test_acc"], abs=0.01)
    assert len(keras_run["test_acc_per_epoch"]) == 2
    best = keras_run["best_epoch"]
    assert keras_run["test_acc_per_epoch"][best] == pytest.approx(keras_run["test_acc"], abs=1e-3)
    for row in (plain, keras_run):
        first = next((i for i, acc in enumerate(row["test_acc_per_epoch"]) if acc >= 0.5), None)
        assert row["seconds_to_test_target"] == (None if first is None else row["history"][first]["seconds"])
    # the Lightning command line it would run (early stopping at the threshold, bf16) is one fit accepts
    recipe = {"target": 0.99, "batch_size": 128, "lr": 5e-3, "max_epochs": 3, "augment": False,
              "precision": "bf16-mixed", "subset": None, "data_dir": str(mnist_dir)}
    python, dash_m, module, *argv = commands(recipe, tmp_path / "unused")["lightning"]
    assert (python, dash_m, module) == (sys.executable, "-m", "lightning_mnist")
    printed = main_output(main, [*argv, "--print_config"], capsys)  # its main, in this process
    assert "stopping_threshold: 0.99" in printed and "precision: bf16-mixed" in printed
    proc = script("shared_machine.py", "--subset", "500", "--frameworks", "[torch]", "--competitor_levels", "[0, 1]",
                  "--policies", "[project]", "--competitor_seconds", "60", *data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\nprose kept\n")
    assert "<!-- time-to-accuracy:begin" in text and "<!-- shared-machine:begin" in text
    assert "| torch | " in text and "| keras | " in text and "1 busy / alone" in text
    assert "seconds to test acc >= 0.5" in text
    # a recipe's spread over seeds, in its own table beside the first one
    proc = script("time_to_accuracy.py", "--subset", "500", "--max_epochs", "1", "--batch_size", "64",
                  "--frameworks", "[torch]", "--target", "0.3", "--test_target", "0.3", "--seeds", "[3, 4]",
                  "--marker", "time-to-accuracy-seeds", *data)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [seeded] = (tmp_path / "runs").glob("time_to_accuracy_*/seed_3")  # one folder per seed in its run's
    runs = json.loads((seeded.parent / "time_to_accuracy.json").read_text())["runs"]
    assert [(r["seed"], "--seed " + str(r["seed"]) in r["command"]) for r in runs] == [(3, True), (4, True)]
    assert runs[0]["test_acc_per_epoch"] != runs[1]["test_acc_per_epoch"]  # two seeds, two trainings
    text = doc.read_text()
    assert "<!-- time-to-accuracy:begin" in text and "<!-- time-to-accuracy-seeds:begin" in text
    reached = sum(r["seconds_to_test_target"] is not None for r in runs)
    assert "| torch | 3 | " in text and "--seeds '[3, 4]'" in text and f"({reached} of 2 seeds)" in text


def test_gpu_speed_runs_on_the_cpu_and_refuses_a_missing_gpu(mnist_dir, tmp_path, monkeypatch, capsys):
    import torch

    proc = script("gpu_speed.py", "--device", "cpu", "--subset", "500", "--max_epochs", "1", "--batch_size", "64",
                  "--target", "0.3", "--contenders", "[plain, lightning]", "--data_dir", str(mnist_dir),
                  "--output_dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_speed" / "gpu_speed-cpu.json").read_text())
    assert [row["contender"] for row in report["rows"]] == ["plain", "lightning"]
    assert all(row["epochs"] == 1 and row["test_acc"] > 0.3 for row in report["rows"])
    # a GPU that is not there, refused in one line before any row is run: the only one here, or one past the last
    count = torch.cuda.device_count()
    device, line = ("cuda", "error: --device cuda: no CUDA device is visible here; use --device cpu to check the "
                            "script") if not count else \
        (f"cuda:{count}", f"error: --device cuda:{count}: torch sees {count} CUDA device(s), "
                          f"cuda:0 to cuda:{count - 1}")
    monkeypatch.chdir(REPO)  # its main, in this process
    code, error, err = main_error(importlib.import_module("gpu_speed").main,
                                  ["--device", device, "--output_dir", str(tmp_path / "none")], capsys)
    assert code == 2 and err.strip().splitlines() == [line]
    assert not (tmp_path / "none").exists()
    if not count:  # the compare script's Lightning runs on a GPU, refused before the matmul rate's minute
        code, error, _ = main_error(importlib.import_module("compare_frameworks").main,
                                    ["--accelerator", "gpu", "--output_dir", str(tmp_path / "none")], capsys)
        assert error == "error: --accelerator gpu: no CUDA device is visible here; use --accelerator cpu"
        assert code == 2 and not (tmp_path / "none").exists()


@pytest.mark.parametrize("name, args, line", [
    ("step_overhead.py", ["--steps", "0"], "error: --steps must be at least 1, got 0"),
    # too short for each way of stepping to run twice: a median of nothing (a StatisticsError traceback after the run)
    ("step_overhead.py", ["--steps", "10", "--repeats", "1", "--alternate", "--contenders", "[plain]"],
     "error: --alternate needs 64 training steps, two executions of 8 for each of its 4 ways; --steps x --repeats "
     "(10) gives fewer"),
    ("step_overhead.py", ["--batch_size", "2048", "--alternate", "--contenders", "[plain]"],
     "error: --alternate needs 64 training steps, two executions of 8 for each of its 4 ways; an epoch at this "
     "--batch_size (26) gives fewer"),
    ("step_overhead.py", ["--marker", "Step Overhead"],
     "error: --marker 'Step Overhead': a name of lower-case letters, digits and dashes"),
    ("compare_frameworks.py", ["--repeats", "0"], "error: --repeats must be at least 1, got 0"),
    ("time_to_accuracy.py", ["--target", "1.5"], "error: --target must be an accuracy in (0, 1], got 1.5"),
    ("time_to_accuracy.py", ["--test_target", "0"], "error: --test_target must be an accuracy in (0, 1], got 0.0"),
    ("time_to_accuracy.py", ["--seeds", "[1, -3]"], "error: --seeds must be from 0 to 4294967295, got -3"),
    ("time_to_accuracy.py", ["--seeds", "[1, 1]"], "error: --seeds [1, 1]: give one or more different seeds"),
    ("time_to_accuracy.py", ["--seeds", "[]"], "error: --seeds []: give one or more different seeds"),
    ("time_to_accuracy.py", ["--marker", "a b"], "error: --marker 'a b': a name of lower-case letters, digits"),
    ("shared_machine.py", ["--competitor_levels", "[-1]"], "error: --competitor_levels must be counts of 0 or more, "
                                                             "got [-1]"),
    ("compare_frameworks.py", ["--target_acc", "2"], "error: --target_acc must be an accuracy in (0, 1], got 2.0"),
    ("plain_torch_loop.py", ["--threads", "0"], "error: --threads must be at least 1, got 0"),
    ("plain_torch_loop.py", ["--max_epochs", "0"], "error: --max_epochs must be at least 1, got 0"),
    ("kernel_efficiency.py", ["--seconds", "1e309"], "error: --seconds must be a finite number more than 0, got inf"),
    ("augmentation_cost.py", ["--device", "tpu"], "error: --device must be cpu or cuda (where torch sees a CUDA "
                                                  "device), got tpu"),
    ("serve_load.py", ["--url", "notaurl"], "error: --url must be a server's address, http://host:port, got notaurl"),
    ("kernel_efficiency.py", ["--size", "100000000"], "error: --size must be at most 32,768, got 100,000,000"),
    ("compare_frameworks.py", ["--doc", "notes.txt"], "error: --doc notes.txt: the table goes into a Markdown file; "
                                                      "give a .md file name"),
    # --weights: any file (read only after these checks), so a clone without ../shared/seed refuses the same way
    ("predict_renderings.py", ["--image", "nowhere.png", "--weights", str(REPO / "pyproject.toml")],
     "error: --image nowhere.png: no such file"),
    ("time_to_accuracy.py", ["--frameworks", "[]"], "error: --frameworks []: give at least one of lightning, keras, "
                                                    "torch"),
    ("shared_machine.py", ["--frameworks", "[torch, torch]"], "error: --frameworks names torch twice; give each once"),
    ("compare_frameworks.py", ["--lightning_config", "nowhere.yaml"], "error: --lightning_config nowhere.yaml: `fit` "
                                                                      "refuses it (Parser key \"config\": File does "
                                                                      "not exist"),
    # a rate or seed the commands (or numpy) refuse, a network no contender can build, a GPU that is not one
    ("step_overhead.py", ["--lr", "5"], "error: --lr must be a positive number up to 1 (Adam's step size), got 5.0"),
    ("step_overhead.py", ["--seed", "-1"], "error: --seed must be from 0 to 4294967295, got -1"),
    ("plain_torch_loop.py", ["--seed", "-1"], "error: --seed must be from 0 to 4294967295, got -1"),
    ("plain_torch_loop.py", ["--device", "tpu"], "error: --device tpu: give cuda, cuda:N (the GPU's index) or cpu"),
    ("compare_frameworks.py", ["--architecture", "nope"], "error: architecture 'nope': not a preset"),
    ("time_to_accuracy.py", ["--lr", "7"], "error: --lr must be a positive number up to 1 (Adam's step size), got 7.0"),
    ("predict_renderings.py", ["--count", "10001", "--weights", str(REPO / "pyproject.toml")],
     "error: --count must be from 1 to 10000 (the test digits) and --timing_runs at least 0, got 10001 and 3"),
    # the recipes' and the epoch gap's runs, and gpu_speed's rows, each refused before the first of them
    ("recipes.py", ["--recipes", "[notebook, nope]"], "error: --recipes: expected list of one of notebook, fast, best, "
                                                      "best-ensemble, resnet, got [notebook, nope]"),
    ("recipes.py", ["--seeds", "[0, 0]"], "error: --seeds [0, 0]: give one or more different seeds"),
    ("recipes.py", ["--subset", "5"], "error: --subset must be between 20 and 60000 images (or null for all), got 5"),
    ("recipes.py", ["--table", "Recipes"], "error: --table 'Recipes': a name of lower-case letters, digits and dashes"),
    ("recipes.py", ["--doc", "recipes.txt"], "error: --doc recipes.txt: the table goes into a Markdown file"),
    ("epoch_gap.py", ["--keras_flags", '["--model.lr", "-1"]'],
     "error: --keras_flags ['--model.lr', '-1']: `train` refuses it (--model.lr must be a positive number up to 1"),
    ("epoch_gap.py", ["--seeds", "[]"], "error: --seeds []: give one or more different seeds"),
    ("epoch_gap.py", ["--max_epochs", "0"], "error: --max_epochs must be at least 1, got 0"),
    ("gpu_speed.py", ["--device", "tpu"], "error: --device tpu: give cuda, cuda:N (the GPU's index) or cpu"),
    ("gpu_speed.py", ["--device", "cpu", "--subset", "5"], "error: --subset must be between 20 and 60000 images"),
    ("gpu_speed.py", ["--device", "cpu", "--contenders", "[]"], "error: --contenders []: give at least one of plain, "
                                                                "plain_compiled, lightning, lightning_compiled"),
    ("predict_renderings.py", ["--keep", str(BENCHMARKS), "--weights", str(REPO / "pyproject.toml"),
                               "--timing_runs", "0"], f"error: --keep {BENCHMARKS}: not empty; name a new or empty "
                                                      f"folder for the renderings"),
])
def test_bad_counts_are_one_line_before_any_work(name, args, line, tmp_path, monkeypatch, capsys):
    """Each script's ``main`` in this process (saving a start-up each); the scripts' command lines themselves run
    in the tests above and in test_a_script_refuses_from_its_own_command_line."""
    if name in ("step_overhead.py", "kernel_efficiency.py", "augmentation_cost.py"):
        more = []
    elif name == "serve_load.py":
        more = ["--output", str(tmp_path / "runs" / "load.json")]
    else:
        more = ["--output_dir", str(tmp_path / "runs")]
    monkeypatch.chdir(REPO)  # where script() runs them
    code, error, _ = main_error(importlib.import_module(name.removesuffix(".py")).main, [*args, *more], capsys)
    assert code == 2 and error.startswith(line), error  # (a path may follow)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name, args", [
    ("plain_torch_loop.py", []), ("gpu_speed.py", ["--device", "cpu"]), ("recipes.py", []), ("epoch_gap.py", []),
    ("recipe_search.py", ["--n_trials", "1"]), ("compare_frameworks.py", []), ("time_to_accuracy.py", []),
    ("predict_renderings.py", ["--weights", str(REPO / "pyproject.toml"), "--timing_runs", "0"]),
])
def test_an_output_folder_that_cannot_be_one_is_refused_before_any_run(name, args, tmp_path, monkeypatch, capsys):
    """A file where the runs' folder should be: one line naming it, before any training (the plain loop wrote its
    results after its epochs, into a folder it could not make, with a traceback)."""
    taken = tmp_path / "taken"
    taken.write_text("an afternoon's notes")
    monkeypatch.chdir(REPO)
    code, error, _ = main_error(importlib.import_module(name.removesuffix(".py")).main,
                                [*args, "--output_dir", str(taken / "runs")], capsys)
    assert code == 2 and str(taken) in error and ("not a folder" in error or "Not a directory" in error), error
    assert taken.read_text() == "an afternoon's notes"


def test_serve_load_says_why_serve_refused_to_start(tmp_path):
    """A model serve refuses (a .ckpt that is none): serve's own reason, said by the benchmark in one line, exit 2
    (it said only "serve exited with 2; see <log>", exit 1); no report; the log beside it keeps serve's output."""
    (tmp_path / "model.ckpt").write_bytes(b"weights of an afternoon")
    proc = script("serve_load.py", "--weights", "model.ckpt", "--output", "load.json", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        f"error: serve refuses to start: --weights {tmp_path / 'model.ckpt'} is not a PyTorch checkpoint (neither a "
        f"zip archive nor a pickle)"], proc.stderr[-2000:]
    assert not (tmp_path / "load.json").exists() and "error: --weights" in (tmp_path / "load.server.log").read_text()


def test_a_script_refuses_from_its_own_command_line(tmp_path):
    """The same refusal through ``python benchmarks/<script>.py``: one line on stderr, exit 2, nothing written."""
    proc = script("time_to_accuracy.py", "--target", "1.5", "--output_dir", str(tmp_path / "runs"))
    assert proc.returncode == 2 and proc.stderr.strip().splitlines() == [
        "error: --target must be an accuracy in (0, 1], got 1.5"], proc.stderr[-2000:]
    assert not (tmp_path / "runs").exists()


def test_a_report_never_replaces_a_file_it_was_not_told_to(tmp_path):
    """serve_load.py and inference_speed.py wrote their JSON over whatever --output named (a checkpoint, say), and
    measured an unreachable server for minutes, or started serve where a relative --weights meant nothing: each is
    refused before any work, and the file named is left as it was."""
    (tmp_path / "model.ckpt").write_bytes(b"weights of an afternoon")
    (tmp_path / "old.json").write_text("{}")
    cases = [
        ("serve_load.py", ["--url", "http://127.0.0.1:9", "--output", "model.ckpt"],
         "error: --output model.ckpt: the report is JSON; give a .json file name"),
        ("serve_load.py", ["--url", "http://127.0.0.1:9", "--output", "old.json"],
         "error: --output old.json: already exists; give --overwrite to replace it, or name another file"),
        ("serve_load.py", ["--url", "http://127.0.0.1:9", "--output", "new.json"],
         "error: --url http://127.0.0.1:9: no server answers at http://127.0.0.1:9/health"),
        ("serve_load.py", ["--weights", "missing.ckpt", "--output", "new.json"], "error: --weights missing.ckpt: no such file or folder"),
        ("inference_speed.py", ["--weights", "model.ckpt", "--output", "old.json", "--doc", "notes.md"],
         "error: --output old.json: already exists"),
        ("inference_speed.py", ["--weights", "model.ckpt", "--output", "new.json", "--doc", "model.ckpt"],
         "error: --doc model.ckpt: the table goes into a Markdown file; give a .md file name"),
        ("inference_speed.py", ["--weights", "model.ckpt", "--output", "new.json", "--threads", "1000"],
         "error: --seconds must be positive, --serve_seconds not negative, --threads between 1 and 256"),
    ]
    for name, args, line in cases:
        proc = script(name, *args, cwd=tmp_path)
        errors = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(errors) == 1 and errors[0].startswith(line), (name, args, proc.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.ckpt", "old.json"]
    assert (tmp_path / "model.ckpt").read_bytes() == b"weights of an afternoon"

"""The registry of model file formats: ``convert`` to ``.pt2``, ``.onnx`` and ``.tflite``, proven, and its refusals.

Conversions run through the real ``convert`` command in this process (a start-up would cost
more than most of them); the written files are then run in a fresh process that imports
neither the project nor Keras nor TensorFlow, only each file's runtime, as a user deploying them
would. One full 10,000-image proof per format (the notebook's own file); the others prove
themselves on fewer inputs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import textwrap
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import main_error
from lightning_mnist.__main__ import main as command_line
from lightning_mnist.checkpoints import save_checkpoint
from lightning_mnist.formats import FORMATS, format_for
from lightning_mnist.formats.base import Export, error_cause, export_proven
from lightning_mnist.formats.exported_program import EXPORT as PT2
from lightning_mnist.interop.proof import CHECK_TOLERANCE, ConversionCheckFailed
from lightning_mnist.models import KerasNetwork
from mnist_common.architecture import ACTIVATIONS, Architecture
from mnist_common.errors import UserError

EXPORTS = (".pt2", ".onnx", ".tflite")
NOTEBOOK_CORRECT = 9922  # the notebook's file: 99.22 % of the 10,000 test images


def parse_check(stdout: str, suffix: str) -> dict:
    """The numbers of the ``check on N ...: max |p_source - p_pt2| = ...`` line."""
    [line] = [line for line in stdout.splitlines() if line.startswith("check on ")]
    match = re.search(rf"check on (\d+) (.*): max \|p_source - p_{suffix[1:]}\| = ([0-9.e+-]+) .*argmax equal (\d+)/",
                      line)
    assert match, line
    found = {"images": int(match[1]), "inputs": match[2], "max_dp": float(match[3]), "argmax_equal": int(match[4])}
    if accuracy := re.search(r"accuracy source [0-9.]+% \((\d+)\), \S+ \(.*\) [0-9.]+% \((\d+)\)", line):
        found["correct_source"], found["correct_file"] = int(accuracy[1]), int(accuracy[2])
    return found


def convert(capsys, *args) -> str:
    """``convert ARGS`` in this process; its stdout (it must succeed)."""
    command_line(["convert", *map(str, args)])
    return capsys.readouterr().out


# A deployer's process: each file on its own runtime only (torch.export.load, ONNX Runtime, the LiteRT interpreter),
# MNIST's test images read from the raw idx files with numpy; no project code, no Keras, no TensorFlow.
RUN_ALONE = textwrap.dedent("""
    import json, sys
    import numpy as np

    pt2, onnx_file, tflite, raw, out = sys.argv[1:]
    x = np.fromfile(f"{raw}/t10k-images-idx3-ubyte", np.uint8, offset=16).reshape(-1, 28, 28, 1) / np.float32(255)
    labels = np.fromfile(f"{raw}/t10k-labels-idx1-ubyte", np.uint8, offset=8)

    import torch
    program = torch.export.load(pt2).module()
    with torch.inference_mode():
        p_pt2 = torch.cat([program(torch.from_numpy(x[i:i + 1000])) for i in range(0, len(x), 1000)]).numpy()

    import onnxruntime
    session = onnxruntime.InferenceSession(onnx_file, providers=["CPUExecutionProvider"])
    [given], [taken] = session.get_inputs(), session.get_outputs()
    p_onnx = session.run(None, {given.name: x})[0]
    one = session.run(None, {given.name: x[:1]})[0]  # the batch axis is dynamic

    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=tflite)
    signature = interpreter.get_signature_list()
    runner = interpreter.get_signature_runner()  # the file's one signature: input= -> probabilities
    p_tflite = np.concatenate([runner(input=x[i:i + 1000])["probabilities"] for i in range(0, len(x), 1000)])

    np.savez(out, pt2=p_pt2, onnx=p_onnx, tflite=p_tflite, labels=labels)
    print(json.dumps({"input": [given.name, given.shape], "output": [taken.name, taken.shape], "one": list(one.shape),
                      "signature": signature,
                      "project_loaded": sorted({m.split(".")[0] for m in sys.modules} &
                                               {"lightning_mnist", "mnist_common", "keras", "tensorflow"})}))
""")


def run_alone(files: dict[str, Path], raw: Path, folder: Path) -> tuple[dict, dict]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-c", RUN_ALONE, *(str(files[s]) for s in EXPORTS), str(raw),
                           str(folder / "probs.npz")], cwd=folder, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), dict(np.load(folder / "probs.npz"))


def test_notebook_file_exports_to_pt2_onnx_and_tflite_that_run_alone(seed_keras, mnist, mnist_dir, tmp_path,
                                                                     capsys):
    """The full proof (10,000 test images) for each format, then each file run by its own runtime in a process
    without the project: 99.22 % and the same probabilities."""
    checks = {}
    for suffix in EXPORTS:
        stdout = convert(capsys, seed_keras, tmp_path / f"notebook{suffix}", "--data_dir", mnist_dir)
        checks[suffix] = check = parse_check(stdout, suffix)
        assert check["images"] == 10_000 and check["inputs"] == "MNIST test images"
        assert check["max_dp"] <= CHECK_TOLERANCE and check["argmax_equal"] == 10_000
        assert check["correct_source"] == check["correct_file"] == NOTEBOOK_CORRECT
        assert f"wrote {tmp_path / f'notebook{suffix}'}" in stdout
        assert ("opset 18" in stdout) == (suffix == ".onnx")
    import onnx  # the file states its opset (ONNX's default domain)
    assert {o.domain: o.version for o in onnx.load(tmp_path / "notebook.onnx").opset_import}[""] == 18
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["notebook.onnx", "notebook.pt2", "notebook.tflite"]  # no temporary files

    files = {suffix: tmp_path / f"notebook{suffix}" for suffix in EXPORTS}
    alone, probs = run_alone(files, Path(mnist_dir) / "MNIST" / "raw", tmp_path)
    assert alone["project_loaded"] == []
    assert alone["input"] == ["input", ["batch", 28, 28, 1]] and alone["output"] == ["probabilities", ["batch", 10]]
    assert alone["one"] == [1, 10]
    assert alone["signature"] == {"serving_default": {"inputs": ["input"], "outputs": ["probabilities"]}}
    assert (probs["labels"] == mnist.test_labels).all()
    for suffix in EXPORTS:
        p = probs[suffix[1:]]
        assert int((p.argmax(1) == probs["labels"]).sum()) == NOTEBOOK_CORRECT, suffix
        assert np.allclose(p.sum(1), 1.0, atol=1e-5)  # probabilities, the softmax in the graph
    between = {suffix: float(np.abs(probs["pt2"] - probs[suffix[1:]]).max()) for suffix in EXPORTS[1:]}
    print("max dp notebook: " + ", ".join(f"{s} {checks[s]['max_dp']:.2e}" for s in EXPORTS) +
          f"; .pt2 against .onnx {between['.onnx']:.2e}, against .tflite {between['.tflite']:.2e}")
    assert max(between.values()) <= 2 * CHECK_TOLERANCE


@pytest.fixture(scope="module")
def resnet_checkpoint(tmp_path_factory) -> Path:
    """The residual preset with seeded random weights, as a checkpoint."""
    torch.manual_seed(0)
    architecture = Architecture.load("resnet")
    network = KerasNetwork(architecture)
    for name, buffer in network.named_buffers():  # BatchNorm statistics away from 0 and 1, so they count
        if name.endswith("running_mean"):
            buffer.uniform_(-0.5, 0.5)
        elif name.endswith("running_var"):
            buffer.uniform_(0.5, 2.0)
    return save_checkpoint(tmp_path_factory.mktemp("resnet") / "resnet.ckpt", architecture, network.state_dict())


@pytest.mark.parametrize("suffix", EXPORTS)
def test_residual_graph_exports(resnet_checkpoint, suffix, mnist_dir, tmp_path, capsys):
    stdout = convert(capsys, resnet_checkpoint, tmp_path / f"resnet{suffix}", "--check_images", "300",
                     "--data_dir", mnist_dir)
    check = parse_check(stdout, suffix)
    print(f"resnet {suffix}: max dp {check['max_dp']:.2e} on {check['images']} images")
    assert check["images"] == 300 and check["max_dp"] <= CHECK_TOLERANCE and check["argmax_equal"] == 300
    assert check["correct_source"] == check["correct_file"]
    run = FORMATS[suffix]  # the format's own runner: any batch size, the Keras model's layout
    from lightning_mnist.formats import exported_program, litert_model, onnx_model
    runner = {".pt2": exported_program, ".onnx": onnx_model, ".tflite": litert_model}[suffix].load(
        tmp_path / f"resnet{suffix}")
    for batch in (1, 7):
        assert runner(np.random.default_rng(batch).random((batch, 28, 28, 1), dtype=np.float32)).shape == (batch, 10)
    assert run.sources == (".ckpt", ".keras", ".h5", ".hdf5", ".json")


def test_a_non_mnist_model_and_a_k_fold_run_export(tmp_path, mnist_dir, capsys):
    """Seeded random inputs of the model's shape for a non-MNIST model; a k-fold run as one graph of its mean."""
    torch.manual_seed(1)
    small = Architecture.from_config({"name": "small", "input_shape": [12, 12, 3], "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": "gelu"},
        {"type": "GlobalAveragePooling2D"}, {"type": "Dense", "units": 5, "activation": "softmax"}]})
    save_checkpoint(tmp_path / "small.ckpt", small, KerasNetwork(small).state_dict())
    stdout = convert(capsys, tmp_path / "small.ckpt", tmp_path / "small.onnx", "--check_images", "200")
    check = parse_check(stdout, ".onnx")
    assert check["inputs"].startswith("seeded random 12x12x3 inputs") and check["max_dp"] <= CHECK_TOLERANCE
    assert "input 'input' float32 (batch, 12, 12, 3)" in stdout and "(batch, 5) probabilities" in stdout

    notebook = Architecture.load("notebook")
    folds = [save_checkpoint(tmp_path / f"fold_{k}.ckpt", notebook, KerasNetwork(notebook).state_dict())
             for k in range(2)]
    (tmp_path / "cv_results.json").write_text(json.dumps({"framework": "lightning", "folds": [
        {"fold": k, "model_path": path.name} for k, path in enumerate(folds)]}))
    for suffix in EXPORTS:  # one graph of the mean, each proven on its runtime against the ensemble
        stdout = convert(capsys, tmp_path / "cv_results.json", tmp_path / f"ensemble{suffix}", "--check_images", "200",
                         "--data_dir", mnist_dir)
        assert parse_check(stdout, suffix)["max_dp"] <= CHECK_TOLERANCE
    from lightning_mnist.formats import exported_program, litert_model, onnx_model
    x = np.random.default_rng(0).random((3, 28, 28, 1), dtype=np.float32)
    networks = [KerasNetwork(notebook) for _ in folds]
    for network, path in zip(networks, folds):
        network.load_state_dict({k[len("network."):]: v for k, v in torch.load(path)["state_dict"].items()})
    with torch.inference_mode():
        mean = torch.stack([torch.softmax(n.eval()(torch.from_numpy(x).permute(0, 3, 1, 2)), 1) for n in networks])
    for suffix, runtime in ((".pt2", exported_program), (".onnx", onnx_model), (".tflite", litert_model)):
        assert np.abs(runtime.load(tmp_path / f"ensemble{suffix}")(x) - mean.mean(0).numpy()).max() <= 1e-6, suffix
    # the run's folder, as predict and serve take it, names its cv_results.json
    convert(capsys, tmp_path, tmp_path / "from_folder.onnx", "--check_images", "20", "--data_dir", mnist_dir)
    assert np.abs(onnx_model.load(tmp_path / "from_folder.onnx")(x) - mean.mean(0).numpy()).max() <= 1e-6
    (tmp_path / "empty").mkdir()
    code, error, _ = main_error(command_line, ["convert", str(tmp_path / "empty"), str(tmp_path / "e.onnx")], capsys)
    assert code == 2 and "empty: a folder without a cv_results.json" in error, error
    assert not (tmp_path / "e.onnx").exists()


# Bad destinations: exit 2, one ``error:`` line naming the value and what is allowed, nothing written.
BAD_DESTINATIONS = [
    ("model.h5", "cannot convert .keras to .h5: the formats written are .ckpt from .keras, .h5, .hdf5; .keras from "
                 ".ckpt, .h5, .hdf5; .pt2 from .ckpt, .keras, .h5, .hdf5, a k-fold cv_results.json; .onnx from"),
    ("model", "cannot convert .keras to a file without extension"),
    ("missing/model.onnx", "missing does not exist"),
    ("model.keras", "cannot convert .keras to .keras"),
]


@pytest.mark.parametrize("dst, fragment", BAD_DESTINATIONS, ids=[case[0] for case in BAD_DESTINATIONS])
def test_bad_destinations_are_refused_in_one_line(seed_keras, tmp_path, capsys, dst, fragment):
    code, error, _ = main_error(command_line, ["convert", str(seed_keras), str(tmp_path / dst)], capsys)
    assert code == 2 and fragment in error, error
    assert list(tmp_path.iterdir()) == []


def test_sources_a_format_is_not_written_from_are_refused(tmp_path):
    with pytest.raises(Exception, match=r"cannot convert \.json to \.ckpt"):
        format_for(tmp_path / "cv_results.json", tmp_path / "out.ckpt")
    assert format_for("a.ckpt", "b.ONNX") is FORMATS[".onnx"]


def _failing_on(kind: str) -> Export:
    """``.pt2`` as it would be if its exporter could not take layers of ``kind``."""
    def save(module, inputs, path):
        if any(type(m).__name__ == kind for m in module.modules()):
            raise RuntimeError(f"no {kind} here")
        PT2.save(module, inputs, path)

    return Export(suffix=".pt2", runtime="test", save=save, load=PT2.load)


def test_a_layer_a_format_cannot_take_is_named(resnet_checkpoint, tmp_path, mnist_dir):
    with pytest.raises(Exception) as refused:
        export_proven(_failing_on("GlobalAveragePooling2D"), resnet_checkpoint, tmp_path / "out.pt2", 10, mnist_dir)
    message = str(refused.value)
    assert re.search(r"resnet\.ckpt: layer 27 \(pool, GlobalAveragePooling2D\) cannot be exported to \.pt2 "
                     r"\(RuntimeError: no GlobalAveragePooling2D here\)", message), message
    assert list(tmp_path.iterdir()) == []


def test_a_layer_keras_cannot_export_to_litert_is_named(resnet_checkpoint, tmp_path, mnist_dir, capsys):
    """The LiteRT path finds the layer among the bridged Keras model's layers, each exported alone by Keras (a
    merge of two inputs here: the first residual Add, after nine layers that export)."""
    from lightning_mnist.formats import litert_model

    def layers(model):  # a model's layers, those of nested models included
        for layer in model.layers:
            yield layer
            yield from layers(layer) if hasattr(layer, "layers") else ()

    def export(model, path):
        if any(type(layer).__name__ == "Add" for layer in layers(model)):
            raise ValueError("no Add here")
        litert_model.export_keras(model, path)

    failing = Export(suffix=".tflite", runtime="test", save=partial(litert_model.save, export=export),
                     load=litert_model.load, find_layer=partial(litert_model.unexportable_layer, export=export))
    with pytest.raises(Exception) as refused:
        export_proven(failing, resnet_checkpoint, tmp_path / "out.tflite", 10, mnist_dir)
    message = str(refused.value)
    assert re.search(r"resnet\.ckpt: layer 9 \(block1_add, Add\) cannot be exported to \.tflite "
                     r"\(ValueError: no Add here\)", message), message
    assert list(tmp_path.iterdir()) == []


def test_unit_normalization_of_blank_rows_exports_to_litert(tmp_path, mnist_dir, capsys, monkeypatch):
    """UnitNormalization over the rows of raw MNIST images, many of them all zero: Keras gives zeros there, and
    LiteRT's kernel for the L2 normalisation Keras writes gave NaN, so every such conversion was refused; the
    exported model computes Keras' values with plain operators (max |dp| on 500 test images within the limit).
    The export leaves nothing in the temporary folder (TensorFlow's autograph left two files a conversion, which it
    removes at the interpreter's exit, which convert's quick exit skips: hostile round 12)."""
    architecture = Architecture.from_config({"name": "rows", "input_shape": [28, 28], "layers": [
        {"type": "UnitNormalization", "axis": -1}, {"type": "Flatten"},
        {"type": "Dense", "units": 10, "activation": "softmax"}]})
    torch.manual_seed(0)
    ckpt = save_checkpoint(tmp_path / "rows.ckpt", architecture, KerasNetwork(architecture).state_dict())
    temporary = tmp_path / "temporary"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    check = parse_check("\n".join(FORMATS[".tflite"].write(ckpt, tmp_path / "rows.tflite", 500, mnist_dir)), ".tflite")
    assert check["max_dp"] <= CHECK_TOLERANCE, check
    assert list(temporary.iterdir()) == []
    # the runner in a process of its own (LiteRT prints its "Created TensorFlow Lite XNNPACK delegate" line once a
    # process, to the native stderr): nothing but the answer, as predict and convert print nothing else
    run = "import numpy as np\nfrom lightning_mnist.formats.litert_model import load\n" \
          f"print(load({str(tmp_path / 'rows.tflite')!r})(np.zeros((3, 28, 28), np.float32)).shape)"
    proc = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, timeout=300)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "(3, 10)\n", ""), proc.stderr[-2000:]


def test_recurrent_steps_litert_would_unroll_for_minutes_are_refused_at_once(tmp_path, capsys):
    """LiteRT's export unrolls recurrent layers, a graph of steps x layers cells: three small SimpleRNNs over the 784
    pixels (a 200-byte description) took 190 s to convert, twelve more than seven minutes (hostile round 13). Past
    1,600 steps in all (two layers over the pixels) the conversion is refused in one line, before Keras is asked."""
    import time

    architecture = Architecture.from_config({"name": "pixels", "input_shape": [784, 1], "layers": [
        {"type": "SimpleRNN", "units": 2, "return_sequences": True},
        {"type": "Bidirectional", "layer": {"type": "SimpleRNN", "units": 2}},
        {"type": "Dense", "units": 10, "activation": "softmax"}]})
    assert architecture.unrolled_steps == 3 * 784
    ckpt = save_checkpoint(tmp_path / "pixels.ckpt", architecture, KerasNetwork(architecture).state_dict())
    started = time.perf_counter()
    code, error, err = main_error(command_line, ["convert", str(ckpt), str(tmp_path / "pixels.tflite")], capsys)
    assert time.perf_counter() - started < 20 and code == 2 and err.strip() == error, err
    assert error.endswith("its recurrent layers run 2,352 steps in all, which LiteRT's export writes out one by one "
                          "(more than 1,600 take minutes: three layers over 784 pixels took 190 s); convert to .onnx "
                          "or .pt2"), error
    assert sorted(path.name for path in tmp_path.iterdir()) == ["pixels.ckpt"]


def test_an_operator_litert_lacks_is_named_in_one_line(tmp_path, mnist_dir, capfd):
    """LiteRT's built-in operators have no dilated transposed convolution: the layer and the operator are named in
    one line, and the converter's own pages of diagnostics (written by native code to the process' stderr) do not
    reach the user. The same model exports to .onnx."""
    from lightning_mnist.interop.keras_models import keras

    L = keras.layers
    model = keras.Sequential([keras.Input((28, 28, 1)), L.Conv2DTranspose(2, 3, dilation_rate=2, padding="same", name="spread"),
                              L.Flatten(), L.Dense(10, activation="softmax")])
    source = tmp_path / "dilated.keras"
    model.save(source)
    code, error, err = main_error(command_line, ["convert", str(source), str(tmp_path / "out.tflite"),
                                                 "--check_images", "10", "--data_dir", str(mnist_dir)], capfd)
    assert code == 2 and "layer 0 (spread, Conv2DTranspose) cannot be exported to .tflite" in error, error
    assert "have no Conv2DBackpropInput" in error and len(error) < 300, error
    assert "loc(" not in err and "failed while converting" not in err, err
    assert not (tmp_path / "out.tflite").exists()
    command_line(["convert", str(source), str(tmp_path / "out.onnx"), "--check_images", "10", "--data_dir",
                  str(mnist_dir)])
    assert (tmp_path / "out.onnx").is_file()


def test_a_file_that_disagrees_with_its_source_is_not_left(resnet_checkpoint, tmp_path, mnist_dir):
    def off_by_a_little(path):
        run = PT2.load(path)
        return lambda x: run(x) + 2e-5

    wrong = Export(suffix=".pt2", runtime="test", save=PT2.save, load=off_by_a_little)
    with pytest.raises(ConversionCheckFailed, match=r"not written: max \|p_source - p_pt2\| = 2e-05"):
        export_proven(wrong, resnet_checkpoint, tmp_path / "out.pt2", 20, mnist_dir)
    assert list(tmp_path.iterdir()) == []

    unreadable = Export(suffix=".pt2", runtime="test", save=PT2.save, load=lambda path: 1 / 0)
    with pytest.raises(ConversionCheckFailed, match=r"not written: test cannot run it \(ZeroDivisionError"):
        export_proven(unreadable, resnet_checkpoint, tmp_path / "out.pt2", 20, mnist_dir)
    assert list(tmp_path.iterdir()) == []


def test_an_overconfident_model_converts_within_its_own_float32_rounding(tmp_path, mnist_dir, capsys):
    """Logits in the hundreds: float32 alone moves this model's probabilities ~1e-5 from exact (measured against a
    float64 run), so two correct float32 runs differ by more than 1e-5. Each file is still written, under a limit
    that is a stated multiple of that rounding, and a file off by more than that limit is still refused."""
    from lightning_mnist.interop.proof import ROUNDING_FACTOR, check_inputs, float32_rounding

    overconfident = Architecture.from_config({"name": "overconfident", "input_shape": [28, 28, 1], "layers": [
        {"type": "Conv2D", "filters": 8, "kernel_size": 3, "activation": "relu"}, {"type": "Flatten"},
        {"type": "Dense", "units": 10, "activation": "softmax"}]})
    torch.manual_seed(0)
    network = KerasNetwork(overconfident)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.mul_(20 if parameter.dim() > 1 else 1)  # logits up to ~230 on MNIST's test images
    ckpt = save_checkpoint(tmp_path / "overconfident.ckpt", overconfident, network.state_dict())
    x, _, _ = check_inputs(overconfident, 1000, mnist_dir)
    rounding = float32_rounding([network], x)
    limit = ROUNDING_FACTOR * rounding
    assert limit > CHECK_TOLERANCE, rounding
    differences = []
    for suffix in (".onnx", ".tflite", ".keras"):
        stdout = convert(capsys, ckpt, tmp_path / f"overconfident{suffix}", "--check_images", "1000",
                         "--data_dir", mnist_dir)
        [line] = [line for line in stdout.splitlines() if line.startswith("check on ")]
        differences.append(float(re.search(r"\| = ([0-9.e+-]+) ", line)[1]))
        assert differences[-1] <= limit and (tmp_path / f"overconfident{suffix}").is_file(), line
        stated = f"(limit {limit:.1e}: {ROUNDING_FACTOR}x the source's own float32 rounding, {rounding:.1e})"
        assert stated in line if differences[-1] > CHECK_TOLERANCE else "(limit 1e-05)" in line, line
    # which runtime's rounding lands past 1e-5 depends on the CPU's kernels (all three on an AMD EPYC; not ONNX
    # Runtime's on one Intel Xeon): at least one does, so the usual limit would have refused a correct file
    assert max(differences) > CHECK_TOLERANCE, differences

    def off_by_more(path):
        run = PT2.load(path)
        return lambda x: run(x) + 1.5 * limit

    wrong = Export(suffix=".pt2", runtime="test", save=PT2.save, load=off_by_more)
    with pytest.raises(ConversionCheckFailed, match=rf"not written: max \|p_source - p_pt2\| = .* > {limit:.1e}: "):
        export_proven(wrong, ckpt, tmp_path / "wrong.pt2", 1000, mnist_dir)
    assert not (tmp_path / "wrong.pt2").exists()


@pytest.fixture(scope="module")
def bridge_graphs():
    """tests/test_bridge.py's models: its named zoo (residual, inception, depthwise, squeeze-excite, merges, other
    input shapes) but three plain Sequential CNNs of the notebook's layers (the notebook's own export is its own
    test), every sixth of its seeded random graphs of the whole layer table (test_bridge runs them all against
    Keras), and every activation in turn and mirrored padding (which the random graphs draw only by chance)."""
    from test_bridge import architecture_of, random_graph, zoo

    plain = ("deeper_16_32_64", "keras_io_convnet", "lenet5_tanh_avgpool")  # Conv2D, pooling, Dense, BatchNorm
    # the recurrent layers export in tests/test_layers_recurrent.py; rows_gru_any_length keeps an open length here
    # (pixels_gru_any_length's 784 steps, unrolled, took 10 s of ONNX export and 5 s of LiteRT's for no more tested)
    recurrent = ("rows_lstm", "pixels_gru_any_length")
    models = {**{name: model for name, model in zoo().items() if name not in (*plain, *recurrent)},
              **{f"random_{seed}": random_graph(seed) for seed in range(0, 24, 6)}}
    every_activation = Architecture.from_config({"name": "every_activation", "input_shape": [28, 28, 1], "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "strides": 2}, {"type": "Flatten", "name": "stem"},
        *({"type": "Dense", "units": 6, "activation": name, "name": name, "inputs": ["stem"]} for name in ACTIVATIONS),
        {"type": "Concatenate", "inputs": list(ACTIVATIONS)}, {"type": "Dense", "units": 10, "activation": "softmax"}]})
    mirrored_padding = Architecture.from_config({"name": "mirrored_padding", "input_shape": [28, 28, 1], "layers": [
        {"type": "ops.pad", "pad_width": [[0, 0], [2, 1], [0, 3], [0, 0]], "mode": "reflect"},
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "strides": 2, "activation": "relu"},
        {"type": "ops.pad", "pad_width": [[0, 0], [1, 2], [2, 0], [0, 3]], "mode": "symmetric"},
        {"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]})
    # zoo round 10: ReLU(max_value=6), a whole number as Keras keeps it (MobileNetV2's ReLU6), failed the ONNX export
    whole_numbers = Architecture.from_config({"name": "whole_numbers", "input_shape": [28, 28, 1], "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "strides": 2}, {"type": "ReLU", "max_value": 6},
        {"type": "Conv2D", "filters": 4, "kernel_size": 3}, {"type": "ReLU", "max_value": 6, "threshold": 1},
        {"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]})
    return {**{name: architecture_of(model) for name, model in models.items()}, "every_activation": every_activation,
            "mirrored_padding": mirrored_padding, "whole_numbers": whole_numbers,
            "every_function": every_function(FUNCTIONS, SPREADS),
            "functions_litert_lacks": every_function(LITERT_LACKS)}


FUNCTIONS = ("log", "log1p", "log2", "log10", "expm1", "exp2", "reciprocal", "rsqrt", "cbrt", "sign", "floor", "ceil",
             "trunc", "round", "sin", "cos")
# no built-in LiteRT operator computes these (TensorFlow's Tan, Sinh, ..., Erf)
LITERT_LACKS = ("tan", "sinh", "cosh", "arcsin", "arccos", "arctan", "arcsinh", "arccosh", "arctanh", "erf")
SPREADS = ("var", "std", "prod", "logsumexp")


def every_function(functions: tuple[str, ...], reductions: tuple[str, ...] = ()) -> Architecture:
    """Each of ``functions`` (``keras.ops``' math functions of one tensor) on a branch of its own, of one sigmoid
    layer's values in (0, 1) (inside every one's domain; 1.5 more for arccosh), and each of ``reductions`` over a
    map's rows and columns, all concatenated. Few layers: a failed LiteRT export tries each layer alone."""
    def branch(name):
        shift = [{"type": "ops.add", "x2": 1.5, "inputs": ["unit"]}] if name == "arccosh" else []
        return [*shift, {"type": f"ops.{name}", "name": name, **({"decimals": 1} if name == "round" else {}),
                         **({} if shift else {"inputs": ["unit"]})}]

    return Architecture.from_config({"name": "functions", "input_shape": [28, 28, 1], "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "strides": 2, "name": "map"}, {"type": "Flatten"},
        {"type": "Dense", "units": 16, "activation": "sigmoid", "name": "unit"},
        *(layer for name in functions for layer in branch(name)),
        *({"type": f"ops.{name}", "axis": [1, 2], "name": name, "inputs": ["map"]} for name in reductions),
        {"type": "Concatenate", "inputs": [*functions, *reductions]},
        {"type": "Dense", "units": 10, "activation": "softmax"}]})


@pytest.mark.parametrize("suffix", EXPORTS)
def test_every_graph_of_the_bridge_exports(bridge_graphs, suffix, tmp_path, mnist_dir):
    """Each written from a checkpoint and proven by its runtime (100 inputs each: the proof, not the accuracy,
    is the point here); measured max |dp|: .pt2 0, .onnx below 1e-6."""
    worst = 0.0
    for name, architecture in bridge_graphs.items():
        torch.manual_seed(0)
        ckpt = save_checkpoint(tmp_path / f"{name}.ckpt", architecture, KerasNetwork(architecture).state_dict())
        if suffix == ".tflite" and name == "functions_litert_lacks":  # refused in one line naming them
            with pytest.raises(UserError, match=r"\.tflite \(RuntimeError: LiteRT's built-in operators have no "
                                                r"Acos, Acosh, Asin, Asinh, Atan, Atanh, Cosh, Erf, Sinh, Tan\)$"):
                FORMATS[suffix].write(ckpt, tmp_path / f"{name}{suffix}", 100, mnist_dir)
            continue
        lines = FORMATS[suffix].write(ckpt, tmp_path / f"{name}{suffix}", 100, mnist_dir)
        worst = max(worst, parse_check("\n".join(lines), suffix)["max_dp"])
    print(f"{len(bridge_graphs)} graphs to {suffix}: worst max |dp| {worst:.2e}")
    assert worst <= CHECK_TOLERANCE


# --- predict --backend onnx ------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_files(tmp_path_factory, seed_keras, mnist_dir):
    """The notebook's file as .onnx, a 12x12x3 model's .onnx (not MNIST's shapes), and a truncated file."""
    folder = tmp_path_factory.mktemp("onnx")
    FORMATS[".onnx"].write(seed_keras, folder / "notebook.onnx", 100, mnist_dir)
    torch.manual_seed(2)
    small = Architecture.from_config({"name": "small", "input_shape": [12, 12, 3], "layers": [
        {"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]})
    save_checkpoint(folder / "small.ckpt", small, KerasNetwork(small).state_dict())
    FORMATS[".onnx"].write(folder / "small.ckpt", folder / "small.onnx", 20, mnist_dir)
    (folder / "truncated.onnx").write_bytes((folder / "notebook.onnx").read_bytes()[:5000])
    _hostile_onnx_graphs(folder)
    return folder


def _hostile_onnx_graphs(folder: Path) -> None:
    """Graphs of an MNIST model's declared shapes that misbehave when run: a Loop of 10**15 turns (ran without
    end), a ConstantOfShape of 400 GB (ONNX Runtime's traceback, and its error log line), a batch declared
    dynamic of which one row comes out whatever the images (one picture of two silently dropped); a Loop inside the
    file's own function (unseen by the check, hostile round 9), a Conv of two constants (13 M values, 5e12
    multiply-adds: hours), b(b - 1)(b - 2) values for a batch of b (none for the one and two images checked)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def save(name: str, nodes: list, constants: dict[str, np.ndarray], claims: dict[str, list] | None = None,
             functions: tuple = ()) -> None:
        weights = numpy_helper.from_array(np.zeros((784, 10), np.float32), "W")
        graph = helper.make_graph(
            [*nodes, helper.make_node("MatMul", ["x", "W"], ["logits"]),
             helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)], name,
            [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 784])],
            [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 10])],
            [weights, *(numpy_helper.from_array(value, key) for key, value in constants.items())],
            value_info=[helper.make_tensor_value_info(key, TensorProto.FLOAT, shape)
                        for key, shape in (claims or {}).items()])
        onnx.save(helper.make_model(graph, functions=list(functions), opset_imports=[
            helper.make_opsetid("", 18), *([helper.make_opsetid("local", 1)] if functions else [])]),
            folder / f"{name}.onnx")

    body = helper.make_graph(  # one turn of the loop: the images through unchanged
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), helper.make_node("Identity", ["carried"], ["out"])],
        "turn", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
                 helper.make_tensor_value_info("carried", TensorProto.FLOAT, None)],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
         helper.make_tensor_value_info("out", TensorProto.FLOAT, None)])
    save("loop", [helper.make_node("Loop", ["trips", "always", "input"], ["x"], body=body)],
         {"trips": np.array(10 ** 15, np.int64), "always": np.array(True)})
    save("allocation", [helper.make_node("ConstantOfShape", ["shape"], ["big"]),
                        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
                        helper.make_node("Add", ["input", "total"], ["x"])],
         {"shape": np.array([1_000_000, 100_000], np.int64)})
    save("expansion", [helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),  # per run: 1.6 GB
                       helper.make_node("Expand", ["mean", "shape"], ["big"]),
                       helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
                       helper.make_node("Add", ["input", "total"], ["x"])],
         {"shape": np.array([20_000, 20_000], np.int64)})
    save("claimed_small", [helper.make_node("ReduceMean", ["input"], ["mean"], keepdims=0),  # says (1,): shape
                           helper.make_node("Expand", ["mean", "shape"], ["big"]),  # inference trusted the file
                           helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
                           helper.make_node("Add", ["input", "total"], ["x"])],
         {"shape": np.array([20_000, 20_000], np.int64)}, claims={"big": [1]})
    save("data_sized", [helper.make_node("ReduceMax", ["input"], ["top"], keepdims=1),  # as large as a pixel says
                        helper.make_node("Mul", ["top", "million"], ["scaled"]),
                        helper.make_node("Cast", ["scaled"], ["size"], to=TensorProto.INT64),
                        helper.make_node("Reshape", ["size", "flat"], ["shape"]),
                        helper.make_node("Expand", ["top", "shape"], ["big"]),
                        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
                        helper.make_node("Add", ["input", "total"], ["x"])],
         {"million": np.array([[1e6]], np.float32), "flat": np.array([1], np.int64)})
    save("batch_squared", [helper.make_node("Transpose", ["input"], ["columns"], perm=[1, 0]),  # (batch, batch)
                           helper.make_node("MatMul", ["input", "columns"], ["pairs"]),
                           helper.make_node("ReduceSum", ["pairs", "axis"], ["total"], keepdims=1),
                           helper.make_node("Add", ["input", "total"], ["x"])],
         {"axis": np.array([1], np.int64)})
    save("one_row", [helper.make_node("ReduceMean", ["input", "axis"], ["x"], keepdims=1)],
         {"axis": np.array([0], np.int64)})
    spin = helper.make_function("local", "Spin", ["images"], ["same"], [
        helper.make_node("Constant", [], ["trips"], value=numpy_helper.from_array(np.array(10 ** 15, np.int64))),
        helper.make_node("Constant", [], ["always"], value=numpy_helper.from_array(np.array(True))),
        helper.make_node("Loop", ["trips", "always", "images"], ["same"], body=body)],
        opset_imports=[helper.make_opsetid("", 18)])
    save("function_loop", [helper.make_node("Spin", ["input"], ["x"], domain="local")], {}, functions=(spin,))
    def product_of_constants(name: str, operator: str, output: str, left: list, right: list, **settings) -> None:
        """``operator`` of two constants of these shapes (few values, much work), added to the images."""
        save(name, [helper.make_node("ConstantOfShape", ["left"], ["a"]),
                    helper.make_node("ConstantOfShape", ["right"], ["b"]),
                    helper.make_node(operator, ["a", "b"], [output], **settings),
                    helper.make_node("ReduceSum", [output], ["total"], keepdims=0),
                    helper.make_node("Add", ["input", "total"], ["x"])],
             {"left": np.array(left, np.int64), "right": np.array(right, np.int64)})

    product_of_constants("convolution", "Conv", "map", [1, 1, 3000, 3000], [1, 1, 1500, 1500])
    product_of_constants("einsum", "Einsum", "product", [2000, 3000], [3000, 2000], equation="ij,jk->ik")
    steps, features, hidden = 2500, 2000, 500  # every tensor within the bound, 1.25e10 multiply-adds an image
    save("recurrent", [helper.make_node("ReduceMean", ["input", "axis"], ["mean"], keepdims=1),
                       helper.make_node("Unsqueeze", ["mean", "first"], ["one"]),
                       helper.make_node("Expand", ["one", "sequence"], ["steps"]),  # (steps, batch, features)
                       helper.make_node("ConstantOfShape", ["w_shape"], ["w"]),
                       helper.make_node("ConstantOfShape", ["r_shape"], ["r"]),
                       helper.make_node("LSTM", ["steps", "w", "r"], ["", "last"], hidden_size=hidden),
                       helper.make_node("ReduceSum", ["last"], ["total"], keepdims=0),
                       helper.make_node("Add", ["input", "total"], ["x"])],
         {"axis": np.array([1], np.int64), "first": np.array([0], np.int64),
          "sequence": np.array([steps, 1, features], np.int64),
          "w_shape": np.array([1, 4 * hidden, features], np.int64),
          "r_shape": np.array([1, 4 * hidden, hidden], np.int64)})
    save("determinant", [helper.make_node("ConstantOfShape", ["square"], ["matrix"]),  # work no shape tells
                         helper.make_node("Det", ["matrix"], ["total"]),
                         helper.make_node("Add", ["input", "total"], ["x"])], {"square": np.array([3, 3], np.int64)})
    save("external", [helper.make_node("Add", ["input", "elsewhere"], ["x"])], {"elsewhere": np.zeros(784, np.float32)})
    model = onnx.load(folder / "external.onnx")  # its constant's bytes in a file beside it, as ONNX can keep them
    onnx.save(model, folder / "external.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
              location="beside.bin", size_threshold=0)
    # hostile round 11: a sparse tensor of a [10**9, 10] dense shape, one value (31 KB): ONNX Runtime makes it dense
    one_value = helper.make_sparse_tensor(numpy_helper.from_array(np.ones(1, np.float32), "S"),
                                          numpy_helper.from_array(np.zeros(1, np.int64), "S_indices"), [10 ** 9, 10])
    counted = [helper.make_node("Size", ["S"], ["count"]), helper.make_node("Cast", ["count"], ["many"], to=1),
               helper.make_node("Add", ["input", "many"], ["x"])]
    save("sparse", counted, {})
    model = onnx.load(folder / "sparse.onnx")
    model.graph.sparse_initializer.append(one_value)
    onnx.save(model, folder / "sparse.onnx")
    save("sparse_constant", [helper.make_node("Constant", [], ["S"], sparse_value=one_value), *counted], {})
    # hostile round 12: one string of 1 MB expanded 3,000 times (ONNX Runtime folded it to 9 GB making the session:
    # the counts above see 3,000 values), and images cast to strings and back (seconds and a GB a picture)
    text = helper.make_tensor("text", TensorProto.STRING, [1], [b"0" * 10**6 + b"1"])
    expanded = [helper.make_node("Expand", ["text", "times"], ["many"]), helper.make_node("Cast", ["many"], ["numbers"],
                                                                                         to=TensorProto.FLOAT),
                helper.make_node("ReduceSum", ["numbers"], ["total"], keepdims=0),
                helper.make_node("Mul", ["total", "zero"], ["nothing"]), helper.make_node("Add", ["input", "nothing"],
                                                                                        ["x"])]
    save("strings", expanded, {"times": np.array([3000], np.int64), "zero": np.zeros((), np.float32)})
    model = onnx.load(folder / "strings.onnx")
    model.graph.initializer.append(text)
    onnx.save(model, folder / "strings.onnx")
    save("cast_to_strings", [helper.make_node("Cast", ["input"], ["words"], to=TensorProto.STRING),
                             helper.make_node("Cast", ["words"], ["x"], to=TensorProto.FLOAT)], {})
    # hostile round 11: local functions calling each other ten times, six deep (10**6 operators from a few KB: a
    # minute and 3 GB inlining them before any check), and a function calling itself
    tenfold = [helper.make_function("local", "F0", ["a"], ["b"], [helper.make_node("Identity", ["a"], ["b"])],
                                    opset_imports=[helper.make_opsetid("", 18)])]
    for depth in range(1, 7):
        calls = [helper.make_node(f"F{depth - 1}", [f"t{i - 1}" if i else "a"], [f"t{i}" if i < 9 else "b"],
                                  domain="local") for i in range(10)]
        tenfold.append(helper.make_function("local", f"F{depth}", ["a"], ["b"], calls, opset_imports=[
            helper.make_opsetid("", 18), helper.make_opsetid("local", 1)]))
    save("function_tenfold", [helper.make_node("F6", ["input"], ["x"], domain="local")], {}, functions=tuple(tenfold))
    itself = helper.make_function("local", "Again", ["a"], ["b"], [helper.make_node("Again", ["a"], ["b"],
                                                                                   domain="local")],
                                  opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("local", 1)])
    save("function_itself", [helper.make_node("Again", ["input"], ["x"], domain="local")], {}, functions=(itself,))
    chain = [tenfold[0], *(helper.make_function("local", f"G{depth}", ["a"], ["b"], [helper.make_node(
        f"G{depth - 1}" if depth > 1 else "F0", ["a"], ["b"], domain="local")], opset_imports=[
        helper.make_opsetid("", 18), helper.make_opsetid("local", 1)]) for depth in range(1, 5000))]
    save("function_chain", [helper.make_node("G4999", ["input"], ["x"], domain="local")], {}, functions=tuple(chain))
    # hostile round 13: a Sum listing one tensor 2,000 times holds little and reads it 2,000 times (29 s a picture)
    save("variadic_sum", [helper.make_node("Tile", ["input", "hundred"], ["wide"]),
                          helper.make_node("Sum", ["wide"] * 2000, ["many"]),
                          helper.make_node("ReduceSum", ["many"], ["total"], keepdims=0),
                          helper.make_node("Mul", ["total", "zero"], ["nothing"]),
                          helper.make_node("Add", ["input", "nothing"], ["x"])],
         {"hundred": np.array([1, 100], np.int64), "zero": np.zeros((), np.float32)})
    save("batch_cubed", [helper.make_node("Shape", ["input"], ["b"], start=0, end=1),
                         helper.make_node("Sub", ["b", "one"], ["b1"]), helper.make_node("Sub", ["b", "two"], ["b2"]),
                         helper.make_node("Mul", ["b", "b1"], ["bb1"]), helper.make_node("Mul", ["bb1", "b2"], ["n"]),
                         helper.make_node("ConstantOfShape", ["n"], ["big"]),
                         helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
                         helper.make_node("Add", ["input", "total"], ["x"])],
         {"one": np.array([1], np.int64), "two": np.array([2], np.int64)})


def test_predict_runs_an_onnx_file_on_onnx_runtime(onnx_files, seed_keras, seed_png, mnist, capsys):
    from lightning_mnist.predictors import load_predictor

    command_line(["predict", str(seed_png), "--weights", str(onnx_files / "notebook.onnx"), "--backend", "onnx"])
    assert capsys.readouterr().out.startswith(f"{seed_png}: 4 (probability")
    pixels = mnist.test_images[:200].astype(np.float32) / 255.0
    on_onnx = load_predictor(onnx_files / "notebook.onnx")  # auto: ONNX Runtime for an .onnx file
    on_torch = load_predictor(seed_keras, "torch")
    assert on_onnx.backend == "onnx"
    assert np.abs(on_onnx.predict_proba(pixels) - on_torch.predict_proba(pixels)).max() <= CHECK_TOLERANCE
    # any other model on ONNX Runtime: exported in memory (nothing written beside it), as convert writes it
    command_line(["predict", str(seed_png), "--weights", str(seed_keras), "--backend", "onnx"])
    assert capsys.readouterr().out.startswith(f"{seed_png}: 4 (probability")
    exported = load_predictor(seed_keras, "onnx")
    assert exported.backend == "onnx" and exported.paths == [seed_keras]
    assert np.abs(exported.predict_proba(pixels) - on_torch.predict_proba(pixels)).max() <= CHECK_TOLERANCE


ONNX_REFUSALS = [
    ("small.onnx", "onnx", "an MNIST model takes float (batch, ...) inputs of 28x28x1 images or their 784 pixels in "
                           "reading order (784, 28x28, 784x1: any steps x features of 784) and gives (batch, 10), the "
                           "batch dynamic or 1; this one takes (batch, 12, 12, 3)"),
    ("truncated.onnx", "auto", "truncated.onnx is not a readable ONNX model"),
    ("notebook.onnx", "torch", "an .onnx file runs on the onnx backend (auto or onnx), not torch"),
    ("loop.onnx", "onnx", "loop.onnx: its graph holds control flow (Loop), which no MNIST classifier needs"),
    ("allocation.onnx", "onnx", "allocation.onnx: its operators' outputs hold 100,000,000,805 values for one image, "
                                "more than an MNIST model of this bridge may (20,000,000; the largest, ConstantOfShape "
                                "output big, 100,000,000,000); it is not run"),
    ("expansion.onnx", "onnx", "its operators' outputs hold 400,000,806 values for one image"),
    ("claimed_small.onnx", "onnx", "its operators' outputs hold 400,000,806 values for one image"),
    ("data_sized.onnx", "onnx", "data_sized.onnx: ONNX's shape inference cannot tell the shape of Expand output big "
                                "from the images' shape"),
    ("batch_squared.onnx", "onnx", "batch_squared.onnx: MatMul output pairs grows faster than the batch (1 values for "
                                   "one image, 4,096 for 64); it is not run"),
    ("one_row.onnx", "onnx", "one_row.onnx: gave an output of shape (1, 10) for 64 image(s)"),
    ("function_loop.onnx", "onnx", "function_loop.onnx: its graph holds control flow (Loop)"),
    ("convolution.onnx", "onnx", "convolution.onnx: its operators take 5,069,252,257,840 multiply-adds for 1 image(s), "
                                 "more than an MNIST model of this bridge may (10,000,000,000 an image; the largest, "
                                 "Conv output map, 5,069,252,250,000); it is not run"),
    ("einsum.onnx", "onnx", "(10,000,000,000 an image; the largest, Einsum output product, 12,000,000,000)"),
    ("batch_cubed.onnx", "onnx", "batch_cubed.onnx: ConstantOfShape output big grows faster than the batch (0 values "
                                 "for one image, 249,984 for 64); it is not run"),
    # hostile round 10: an LSTM's steps (a 112 KB file took 147 s for one picture), a RoiAlign's samples (629 bytes,
    # minutes), a tensor read from a file beside it
    ("recurrent.onnx", "onnx", "(10,000,000,000 an image; the largest, LSTM output last, 12,500,000,000)"),
    ("determinant.onnx", "onnx", "determinant.onnx: its graph holds Det, whose work cannot be told from its shapes "
                                 "before it runs (this runner takes ONNX's standard operators of convolutional and "
                                 "recurrent classifiers); it is not run"),
    ("external.onnx", "onnx", "external.onnx: its tensor W is stored in another file; this runner takes a "
                              "model whole in one file (save it with save_as_external_data=False)"),
    # hostile round 11: a 31 KB file whose sparse tensor ONNX Runtime made 80 GB (its values read from a file beside
    # it, too, where the dense tensors' are refused)
    ("sparse.onnx", "onnx", "sparse.onnx: its graph holds a sparse tensor (S), which ONNX Runtime makes dense when it "
                            "loads the file, whatever its size; this runner takes dense tensors only (as this bridge "
                            "writes them); it is not run"),
    ("sparse_constant.onnx", "onnx", "its graph holds a sparse tensor (Constant S sparse_value)"),
    # hostile round 12: a string's memory is its bytes, which no count of values sees (a 1 MB file took 9 GB)
    ("strings.onnx", "onnx", "strings.onnx: its graph holds a tensor of strings (text), which no MNIST classifier "
                             "computes on and whose memory its values do not tell; it is not run"),
    ("cast_to_strings.onnx", "onnx", "its graph holds a tensor of strings (words)"),
    ("variadic_sum.onnx", "onnx", "variadic_sum.onnx: its operators read 156,879,983 values for 1 image(s), more "
                                  "than an MNIST model of this bridge may (80,000,000 an image; the largest, Sum output "
                                  "many, 156,800,000); it is not run"),
    ("function_tenfold.onnx", "onnx", "function_tenfold.onnx: its local functions expand to 1,000,002 operators, more "
                                      "than an MNIST model of this bridge may hold (100,000); it is not run"),
    ("function_itself.onnx", "onnx", "function_itself.onnx: its local function Again calls itself; it is not run"),
    ("function_chain.onnx", "onnx", "function_chain.onnx: its local functions call each other thousands deep; it is "
                                    "not run"),
]


@pytest.mark.parametrize("weights, backend, fragment", ONNX_REFUSALS, ids=[f"{w}-{b}" for w, b, _ in ONNX_REFUSALS])
def test_predict_refuses_onnx_files_it_cannot_run_in_one_line(onnx_files, seed_keras, seed_png, capfd, weights,
                                                                backend, fragment):
    """capfd: ONNX Runtime logs from C++ straight to the process's stderr, which capsys does not see."""
    path = seed_keras if weights == "seed.keras" else onnx_files / weights
    code, error, err = main_error(command_line, ["predict", str(seed_png), "--weights", str(path), "--backend",
                                                 backend], capfd)
    assert code == 2 and fragment in error and err.strip() == error, err


def test_outputs_that_are_no_choice_among_the_classes_are_not_deployed(tmp_path, capsys, mnist_dir, seed_png):
    """A sigmoid output (independent per-class probabilities) or a single output is no choice among classes: deploy
    files, ONNX Runtime's backend and predict, which give one softmax over the classes, refuse it in one line (they
    gave softmax(sigmoid), and a constant 1). A .keras conversion keeps it, proven on the values themselves: a softmax
    over one value is 1 whatever the weights, which proved nothing."""
    from lightning_mnist.interop.keras_models import keras_model_from_torch
    from lightning_mnist.interop.parity import compare

    for units, activation, reason in (
            (10, "sigmoid", "output layer (dense) applies sigmoid: independent per-class probabilities"),
            # read as logits before (zoo round 8): its values in [0, 1] each
            (10, "sparse_sigmoid", "output layer (dense) applies sparse_sigmoid: independent per-class probabilities"),
            (10, "log_sigmoid", "output layer (dense) applies log_sigmoid: independent per-class log-probabilities"),
            (1, "linear", "gives 1 value, whose softmax is always 1")):
        architecture = Architecture.from_config({"name": f"sigmoid{units}", "input_shape": [28, 28, 1], "layers": [
            {"type": "Flatten"}, {"type": "Dense", "units": units, "activation": activation}]})
        network = KerasNetwork(architecture).eval()
        source = save_checkpoint(tmp_path / f"sigmoid{units}.ckpt", architecture, network.state_dict())
        for suffix in EXPORTS:
            code, error, _ = main_error(command_line, ["convert", str(source), str(tmp_path / f"out{suffix}"),
                                                       "--data_dir", str(mnist_dir)], capsys)
            assert code == 2 and f"{suffix} files give one softmax over the classes" in error and reason in error
        assert sorted(p.suffix for p in tmp_path.iterdir()) == [".ckpt"] * (1 if units == 10 else 2)
        if units == 10:
            code, error, _ = main_error(command_line, ["predict", "--weights", str(source), "--backend", "onnx",
                                                       str(seed_png)], capsys)
            assert code == 2 and "ONNX Runtime's backend" in error and reason in error, error
            continue
        model = keras_model_from_torch(architecture, network.state_dict())
        x = torch.rand(16, 1, 28, 28)
        assert compare(network, model, x, None, "random inputs").ok
        kernel, bias = model.layers[-1].get_weights()
        model.layers[-1].set_weights([kernel, bias + 0.1])  # the output moves; a softmax of it would not
        assert not compare(network, model, x, None, "random inputs").ok


def test_outputs_that_are_no_choice_among_the_classes_are_not_trained_or_scored(tmp_path, capsys):
    """``test`` scored a sigmoid output's softmax with a cross-entropy (2.26, near ln 10: neither Keras' binary
    cross-entropy nor a class loss) and ``fit`` would have trained it so: both refuse it in one line, before any
    work, as the Keras reference does."""
    from keras_reference.__main__ import main as keras_main

    architecture = Architecture.from_config({"name": "sigmoid10", "input_shape": [28, 28, 1], "layers": [
        {"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "sigmoid"}]})
    source = save_checkpoint(tmp_path / "sigmoid10.ckpt", architecture, KerasNetwork(architecture).state_dict())
    reason = ("(a cross-entropy and an accuracy over the classes) give one softmax over the classes; sigmoid10's "
              "output layer (dense) applies sigmoid: independent per-class probabilities")
    for program, argv in ((command_line, ["test", "--ckpt_path", str(source)]),
                          (command_line, ["fit", "--weights", str(source)]),
                          (keras_main, ["train", "--weights", str(tmp_path / "sigmoid10.keras")])):
        if program is keras_main:
            command_line(["convert", str(source), str(tmp_path / "sigmoid10.keras"), "--check_images", "8"])
            capsys.readouterr()
        code, error, _ = main_error(program, [*argv, "--output_dir", str(tmp_path / "runs")], capsys)
        assert code == 2 and reason in error, error
    assert not (tmp_path / "runs").exists()


def test_a_converter_error_is_said_by_its_operation_not_its_locations():
    """LiteRT's converter starts its message with the traced locations, longer than the line; the operation and
    what is wrong with it (what a user can act on) come first instead (found with a Rescaling([3.0]) model)."""
    locations = "loc(fused[callsite(fused[\"MatMul:\", \"functional_1_1/dense_13_1/MatMul@__inference\"] at " * 8
    raw = Exception(f"<unknown>:0: error: {locations}): 'tfl.fully_connected' op expect 'input' num_elements % 784 "
                    f"== 0, got input type 'tensor<1xf32>'\n<unknown>:0: note: see current operation")
    assert error_cause(raw) == ("Exception: 'tfl.fully_connected' op expect 'input' num_elements % 784 == 0, got "
                                "input type 'tensor<1xf32>'")
    assert error_cause(ValueError("plain\nsecond line")) == "ValueError: plain"

"""The framework-free architecture description: presets, shapes, Keras names, YAML, refusals that name the layer."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from mnist_common.architecture import Architecture, ArchitectureError, is_mnist_layout, keras_snake_case, presets
from mnist_common.architecture.keras_config import architecture_from_keras_config
from mnist_common.errors import UserError

NOTEBOOK_SHAPES = [(26, 26, 32), (26, 26, 32), (13, 13, 32), (11, 11, 64), (11, 11, 64), (5, 5, 64), (1600,), (128,),
                   (128,), (10,)]


def test_presets_have_their_published_parameter_counts():
    counts = {name: sum(Architecture.load(name).parameter_count()) for name in presets()}
    assert counts == {"notebook": 225_418, "keras_io": 34_826, "lenet5": 61_706, "resnet": 152_106,
                      "rows_lstm": 24_714}
    notebook = Architecture.load("notebook")
    assert notebook.parameter_count() == (225_226, 192)
    assert [notebook.shapes[node.name] for node in notebook.nodes] == NOTEBOOK_SHAPES and notebook.num_classes == 10
    assert notebook.takes_mnist and notebook.ends_in_softmax and Architecture.load() == notebook


def test_keras_names_number_layers_by_class_as_keras_does():
    assert [keras_snake_case(n) for n in ("Conv2D", "MaxPooling2D", "ReLU", "LeakyReLU", "GlobalAveragePooling2D",
                                          "BatchNormalization")] == \
        ["conv2d", "max_pooling2d", "re_lu", "leaky_re_lu", "global_average_pooling2d", "batch_normalization"]
    assert Architecture.load("notebook").keras_names == (
        "conv2d", "batch_normalization", "max_pooling2d", "conv2d_1", "batch_normalization_1", "max_pooling2d_1",
        "flatten", "dense", "dropout", "dense_1")


def test_a_description_round_trips_through_yaml_and_json(tmp_path):
    import yaml

    description = {"name": "tiny", "input_shape": [32, 32, 3], "layers": [
        {"type": "Conv2D", "filters": 8, "kernel_size": [4, 2], "strides": 2, "padding": "same",
         "activation": "gelu", "kernel_initializer": "he_normal"},
        {"type": "BatchNormalization", "momentum": 0.9, "center": False},
        {"type": "AveragePooling2D", "pool_size": 3, "strides": 2, "padding": "same"},
        {"type": "GlobalMaxPooling2D"},
        {"type": "Dense", "units": 5, "use_bias": False,
         "bias_initializer": {"class_name": "Constant", "config": {"value": 0.1}}},
        {"type": "Softmax"},
    ]}
    architecture = Architecture.from_config(description)
    assert [architecture.shapes[node.name] for node in architecture.nodes] == [(16, 16, 8), (16, 16, 8), (8, 8, 8),
                                                                            (8,), (5,), (5,)]
    assert architecture.num_classes == 5 and not architecture.takes_mnist
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(architecture.to_config()))
    (tmp_path / "tiny.json").write_text(json.dumps(architecture.to_config()))
    for path in (tmp_path / "tiny.yaml", tmp_path / "tiny.json"):
        assert Architecture.load(path) == architecture
    assert not architecture.functional and "functional" not in architecture.to_config()  # a chain: Sequential
    functional = Architecture.from_config({**description, "functional": True})  # as a Functional model's file has it
    assert functional.functional and functional != architecture and functional.to_config()["functional"] is True
    assert Architecture.from_config(functional.to_config()) == functional
    graph = Architecture.from_config({"input_shape": [8, 8, 1], "layers": [
        {"type": "Conv2D", "name": "stem", "filters": 4, "kernel_size": 3, "padding": "same"},
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same"},
        {"type": "Add", "inputs": ["stem", "conv2d"]}, {"type": "Flatten"}, {"type": "Dense", "units": 3}]})
    assert graph.functional and "functional" not in graph.to_config()  # any other graph is Functional anyway
    spelled_out = architecture.to_config()["layers"][0]
    assert spelled_out["kernel_size"] == [4, 2] and spelled_out["strides"] == [2, 2] and spelled_out["use_bias"]


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["layers"].insert(0, {"type": "ConvLSTM2D", "filters": 4}),
     "layer 0 (ConvLSTM2D): not a supported layer type"),
    (lambda c: c["layers"][0].update(dilation=2), "layer 0 (conv2d, Conv2D): unknown setting dilation"),
    (lambda c: c["layers"][0].update(kernel_size=30), "layer 0 (conv2d, Conv2D): kernel height 30 is larger than its input"),
    (lambda c: c["layers"][0].update(padding="full"), "padding must be one of valid, same"),
    (lambda c: c["layers"][0].update(activation="swishy"), "activation 'swishy' is not supported"),
    (lambda c: c["layers"][1].update(axis=1), "layer 1 (batch_normalization, BatchNormalization): normalises axis 1"),
    (lambda c: c["layers"][8].update(rate=1.0), "layer 8 (dropout, Dropout): rate must be a number in [0, 1)"),
    # a whole number beyond every float (JSON and YAML read it as an int): float() was an OverflowError traceback
    (lambda c: c["layers"][8].update(rate=10 ** 400), "rate must be a number in [0, 1), got a whole number of 401 "
                                                      "digits"),
    (lambda c: c["layers"].pop(6), "the output (dense_1) is 5x5x10; a classifier must end in one score"),
    (lambda c: c.update(layers=c["layers"][:3]), "the output (max_pooling2d) is 13x13x32"),
    (lambda c: c.update(input_shape=[28, 28, 1, 1]), "input_shape must be [height, width, channels]"),
    (lambda c: c.update(input_shape=[28, 28]), "layer 0 (conv2d, Conv2D): needs an (H, W, C) image input, got 28x28"),
    (lambda c: c.update(num_classes=7), "num_classes is 7 but the output gives 10"),
    (lambda c: c["layers"][0].pop("filters"), "layer 0 (conv2d, Conv2D): needs filters"),
    (lambda c: c.update(optimizer="adam"), "unknown key optimizer"),
    (lambda c: c.update(functional="yes"), "functional must be true or false, got 'yes'"),
    (lambda c: c.update(input_key=1), "input_key must be null (the tensor itself), 0 (a list of one) or the key of a "
                                      "dict of one, a string of 1 to 256 printable characters; got 1"),
    (lambda c: c.update(output_key=""), "output_key must be null (the tensor itself), 0 (a list of one) or the key "
                                        "of a dict of one, a string of 1 to 256 printable characters; got ''"),
    (lambda c: c.update(output_key=False), "output_key must be null"),
    # hostile round 11: a NUL and a terminal's escape in a key, printed raw in Keras' warnings
    (lambda c: c.update(input_key="pix\x00els\x1b[2J"), "input_key must be null (the tensor itself), 0 (a list of one) "
                                                        "or the key of a dict of one, a string of 1 to 256 printable "
                                                        "characters; got 'pix\\x00els\\x1b[2J'"),
    # a NUL in a name was taken, and failed only when a .keras file was written (h5py: "VLEN strings do not support
    # embedded NULLs"), a traceback
    (lambda c: c["layers"][0].update(name="conv\x00x"), "layer 0 (conv\x00x, Conv2D): its name 'conv\\x00x' holds a "
                                                         "control character"),
    # trained by fit, then convert to .keras and predict on Keras failed with Keras' traceback
    (lambda c: c["layers"][0].update(name="c/vars"), "layer 0 (c/vars, Conv2D): its name 'c/vars' holds '/', which "
                                                     "Keras refuses in a layer's name"),
    # Keras refuses these in another case (torch ran them): only a padding Keras lower-cases itself is taken so
    (lambda c: c.update(layers=[{"type": "RandomRotation", "factor": 0.1, "fill_mode": "NEAREST"}, *c["layers"]]),
     "fill_mode must be one of reflect, constant, nearest, got 'NEAREST'"),
    (lambda c: c["layers"][0].update(kernel_initializer={"class_name": "VarianceScaling", "config": {
        "mode": "FAN_IN"}}), "kernel_initializer mode must be one of fan_in, fan_out, fan_avg, got 'FAN_IN'"),
])
def test_bad_descriptions_name_the_layer_and_the_problem(edit, message):
    config = Architecture.load("notebook").to_config()
    edit(config)
    with pytest.raises(ArchitectureError) as info:
        Architecture.from_config(config)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_model_on_a_dict_or_list_of_one_keeps_its_keys_in_its_description():
    """``input_key`` and ``output_key`` (what ``keras.Model({"pixels": x}, [y])`` took and gave): read, written
    back, and a chain holding them is a Functional model (a Sequential takes neither)."""
    config = {**Architecture.load("notebook").to_config(), "input_key": "pixels", "output_key": 0}
    architecture = Architecture.from_config(config)
    assert (architecture.input_key, architecture.output_key, architecture.functional) == ("pixels", 0, True)
    assert Architecture.from_config(architecture.to_config()) == architecture
    assert "functional" not in architecture.to_config() and "input_key" not in Architecture.load("notebook").to_config()


def test_an_input_size_left_open_is_built_at_mnists_and_kept_open(tmp_path):
    """``input_shape: [null, null, 1]`` (Keras' ``keras.Input((None, None, 1))``) is built at MNIST's 28 x 28, the
    images every command feeds it, and stays open in the description written back and in the Keras input."""
    layers = [{"type": "Conv2D", "filters": 4, "kernel_size": 3}, {"type": "GlobalMaxPooling2D"},
              {"type": "Dense", "units": 10, "activation": "softmax"}]
    for given, built in (([None, None, 1], (28, 28, 1)), ([None, 28, 1], (28, 28, 1)), ([20, None, 3], (20, 28, 3))):
        architecture = Architecture.from_config({"input_shape": given, "layers": layers})
        assert architecture.input_shape == built and architecture.keras_input_shape == tuple(given)
        assert architecture.shapes["conv2d"] == (built[0] - 2, built[1] - 2, 4)
        assert architecture.to_config()["input_shape"] == given
        (tmp_path / "open.yaml").write_text(yaml.safe_dump(architecture.to_config()))
        assert Architecture.load(tmp_path / "open.yaml") == architecture
        fixed = Architecture.from_config({"input_shape": list(built), "layers": layers})
        assert fixed != architecture and fixed.keras_input_shape == built  # an open size is part of the network
        assert dataclasses.replace(architecture, name="renamed").keras_input_shape == tuple(given)
    for given, built in (([None, 28], (28, 28)), ([None, 1], (784, 1)), ([None, 16], (49, 16)),
                         ([None, 3], (28, 3))):  # a sequence's steps: as many as make 784 pixels where they can
        rows = Architecture.from_config({"input_shape": given, "layers": [
            {"type": "LSTM", "units": 8}, {"type": "Dense", "units": 10, "activation": "softmax"}]})
        assert rows.input_shape == built and rows.keras_input_shape == tuple(given)
        assert rows.takes_mnist is (built != (28, 3))
    assert re.search(r"input \(Input\) +NonexNonex1, built at 28x28x1\n", Architecture.from_config(
        {"input_shape": [None, None, 1], "layers": layers}).summary())
    for given in ([28, 28, None], [None, None], [None], [None, None, None], [0, None, 1], [True, None, 1]):
        with pytest.raises(ArchitectureError) as info:
            Architecture.from_config({"input_shape": given, "layers": layers})
        assert "input_shape must be [height, width, channels], [height, width] or [features]" in str(info.value)
        assert f"never the channels or features), got {given!r}" in str(info.value)
    for given in ((28, 28, None), (None, None), (None,)):  # a Keras file's: its channels or features unknown
        with pytest.raises(ArchitectureError, match=re.escape(f"model.keras: the model takes inputs of shape {given}; "
                                                              f"only (height, width, channels)")):
            architecture_from_keras_config(_keras_config(("Dense", {"units": 10}), input_shape=given), "model.keras")
    config = _keras_config(("Conv2D", {"filters": 4, "kernel_size": 3}), ("GlobalAveragePooling2D", {}),
                           ("Dense", {"units": 10}), input_shape=(None, None, 1))
    assert architecture_from_keras_config(config).keras_input_shape == (None, None, 1)


def test_a_description_file_that_gives_a_key_twice_or_expands_to_billions_is_refused(tmp_path):
    """PyYAML and json keep a key's last value without a word (a helper's ``{filters: 4, filters: 64}`` built 64
    filters); YAML's nested aliases expand a few hundred bytes to billions of values, which took a minute and 4 GB
    to fail with a MemoryError (the refusal's own repr of them). Both refused in one line, at once."""
    import time

    (tmp_path / "twice.yaml").write_text("input_shape: [28, 28, 1]\nlayers:\n  - {type: Conv2D, filters: 4, "
                                         "kernel_size: 3, filters: 64}\n  - {type: Flatten}\n  - {type: Dense, "
                                         "units: 10}\n")
    (tmp_path / "twice.json").write_text('{"input_shape": [784], "layers": [{"type": "Dense", "units": 10, '
                                         '"units": 20}]}')
    laughs = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))
    (tmp_path / "laughs.yaml").write_text("l0: &l0 [1]\n" + laughs + "input_shape: [28, 28, 1]\nlayers:\n  - "
                                          "{type: Dense, units: *l9}\n")
    for name, message in (("twice.yaml", "a YAML mapping gives layers[0].filters twice (lines 3 and 3); keep one"),
                          ("twice.json", "not valid JSON (an object gives 'units' twice; keep one"),
                          ("laughs.yaml", "expands to 1,749,445,666 values through its aliases, more than the limit "
                                          "of 100,000")):
        started = time.perf_counter()
        with pytest.raises(UserError) as info:
            Architecture.load(tmp_path / name)
        assert time.perf_counter() - started < 2 and message in str(info.value), str(info.value)
        assert str(info.value).startswith(f"architecture file {tmp_path / name}")


@pytest.mark.parametrize("setting, shown", [("filters: 010", "'010' (line 3) is 8"),
                                            ("filters: 1:6", "'1:6' (line 3) is 66"),
                                            ("filters: 1_6", "'1_6' (line 3) is 16"),
                                            ("use_bias: off", "'off' (line 3) is False"),
                                            ("use_bias: Yes", "'Yes' (line 3) is True")])
def test_numbers_and_truths_only_yaml_11_reads_so_are_refused(setting, shown, tmp_path):
    """PyYAML reads YAML 1.1, where ``010`` is 8 (octal), ``1:6`` is 66 (base 60) and ``off`` is false: a
    description built 8 filters without a word. YAML 1.2, JSON and a reader take them otherwise: refused, naming the
    value and its line; plain forms (and hexadecimal, and quoted text) are read as before."""
    layers = "layers:\n  - {type: Conv2D, kernel_size: 3, %s}\n  - {type: Flatten}\n  - {type: Dense, units: 10}\n"
    (tmp_path / "eleven.yaml").write_text("input_shape: [28, 28, 1]\n" + layers % setting)
    with pytest.raises(UserError) as info:
        Architecture.load(tmp_path / "eleven.yaml")
    assert str(info.value) == (f"architecture file {tmp_path / 'eleven.yaml'}: {shown} to YAML 1.1 (this loader's), "
                               f"not to YAML 1.2 or a reader; write the value plainly (a decimal number, true or "
                               f"false), or quote it as text"), str(info.value)
    (tmp_path / "plain.yaml").write_text("input_shape: [28, 28, 1]\n" + layers % "filters: 0x10, use_bias: false")
    assert Architecture.load(tmp_path / "plain.yaml").layers[0].filters == 16


def test_load_names_what_it_accepts(tmp_path):
    for value, message in (("resnet50", "not a preset (keras_io, lenet5, notebook, resnet, rows_lstm)"),
                           (tmp_path / "missing.yaml", "no such file")):
        with pytest.raises(ArchitectureError, match=message.replace("(", r"\(").replace(")", r"\)")):
            Architecture.load(value)
    (tmp_path / "broken.yaml").write_text("layers: [unclosed")
    with pytest.raises(ArchitectureError, match="not valid YAML"):
        Architecture.load(tmp_path / "broken.yaml")
    # 7 MB of layers took 42 s to parse before their count was refused: the file's size is refused first
    (tmp_path / "huge.yaml").write_text("layers:\n" + "- {type: ReLU}\n" * 200_000)
    with pytest.raises(ArchitectureError, match=r"huge.yaml: 3,000,008 bytes, more than a description of 2,000 "
                                                r"layers takes \(2,097,152\)"):
        Architecture.load(tmp_path / "huge.yaml")


def _keras_config(*layers, input_shape=(28, 28, 1)):
    """A Keras 3 Sequential config as ``config.json`` holds it (the Keras side is tested with real files)."""
    entries = [{"module": "keras.layers", "class_name": "InputLayer",
                "config": {"batch_shape": [None, *input_shape], "dtype": "float32", "name": "input_layer"}}]
    entries += [{"module": "keras.layers", "class_name": cls, "config": {"name": f"l{i}", **config},
                 "registered_name": None} for i, (cls, config) in enumerate(layers)]
    return {"module": "keras", "class_name": "Sequential", "config": {"name": "seq", "layers": entries}}


TAIL = (("Flatten", {}), ("Dense", {"units": 10, "activation": "softmax"}))


@pytest.mark.parametrize("layer, message", [
    (("Conv3D", {"filters": 4, "kernel_size": [3, 3, 3]}), "layer 0 (l0, Conv3D) is not a supported layer"),
    (("Conv2D", {"filters": 4, "kernel_size": [3, 3], "groups": 1, "data_format": "channels_first"}),
     "data_format other than channels_last is not supported"),
    (("Conv2D", {"filters": 4, "kernel_size": 3, "kernel_regularizer": {"class_name": "OrthogonalRegularizer"}}),
     "kernel_regularizer 'OrthogonalRegularizer' is not supported (supported: L1, L2, L1L2"),
    (("Conv2D", {"filters": 4, "kernel_size": 3, "activity_regularizer": {"class_name": "OrthogonalRegularizer"}}),
     "activity_regularizer 'OrthogonalRegularizer' is not supported (supported: L1, L2, L1L2"),
    (("Conv2D", {"filters": 4, "kernel_size": 3, "kernel_constraint": {"class_name": "RadialConstraint"}}),
     "kernel_constraint 'RadialConstraint' is not supported"),
    (("Conv2D", {"filters": 4, "kernel_size": 3, "activation": {"module": "builtins", "class_name": "function",
                                                                "config": "my_act", "registered_name": "my_act"}}),
     "activation"),
    (("BatchNormalization", {"axis": [1]}), "only the channel (last) axis"),
    (("Lambda", {"function": "..."}), "layer 0 (l0, Lambda) holds Python code"),
    (("ConvLSTM2D", {"filters": 4, "kernel_size": 3}), "layer 0 (l0, ConvLSTM2D) is not a supported layer"),
    (("Dense", {"units": 4, "trainable": "no"}), "trainable must be true or false, got 'no'"),
])
def test_keras_configs_outside_the_table_are_refused(layer, message):
    with pytest.raises(ArchitectureError) as info:
        architecture_from_keras_config(_keras_config(layer, *TAIL), "model.keras")
    assert str(info.value).startswith("model.keras: layer 0 (l0, ") and message in str(info.value)


def test_an_activation_is_read_in_each_form_keras_reads_and_only_those():
    """``keras.activations.get`` reads a built-in function as its name or serialised as a function object (two
    spellings); a mapping it cannot read is refused, not guessed at."""
    forms = ["gelu", {"module": "builtins", "class_name": "function", "config": "gelu", "registered_name": "function"},
             {"module": "keras.activations", "class_name": "function", "config": "gelu", "registered_name": None}]
    for form in forms:
        config = _keras_config(("Conv2D", {"filters": 4, "kernel_size": 3, "activation": form}), *TAIL)
        assert architecture_from_keras_config(config).layers[0].activation == "gelu", form
    for form in [{"class_name": "gelu"}, {"module": "keras.activations", "class_name": "gelu"},
                 {"class_name": "function", "config": "gelu"}]:
        config = _keras_config(("Conv2D", {"filters": 4, "kernel_size": 3, "activation": form}), *TAIL)
        with pytest.raises(ArchitectureError, match="activation .* is not supported"):
            architecture_from_keras_config(config)
    # zoo round 12: what people pass that Keras saves. A weight-free activation layer object is a convolution's or a
    # Dense layer's activation (tests/test_layers_core.py); others, said in words (their config was quoted whole)
    leaky = {"module": "keras.layers", "class_name": "LeakyReLU", "config": {"name": "leaky_re_lu",
                                                                             "negative_slope": 0.1}}
    config = _keras_config(("Conv2D", {"filters": 4, "kernel_size": 3, "activation": leaky}), *TAIL)
    assert architecture_from_keras_config(config).layers[0].activation.negative_slope == 0.1
    prelu = {"module": "keras.layers", "class_name": "PReLU", "config": {"name": "p_re_lu"}}
    dense = {"module": "keras.layers", "class_name": "Dense", "config": {"name": "dense_9", "units": 3}}
    objects = "as an activation this bridge takes a name or a layer object of no weights: Activation, ReLU, LeakyReLU, "
    for layer, form, message in (
            ("Conv2D", prelu, rf"activation is a PReLU layer object; {objects}ELU, Softmax$"),
            ("Dense", dense, rf"activation is a Dense layer object; {objects}ELU, Softmax$"),
            ("Conv2D", {**leaky, "config": {"negative_slope": "x"}}, r"activation \(LeakyReLU\): negative_slope"),
            ("Conv2D", {**leaky, "config": {"activity_regularizer": {"class_name": "L2", "config": {"l2": 0.1}}}},
             r"activation \(LeakyReLU\) sets activity_regularizer, which is not supported on an activation given as "
             r"a layer object \(set it on this layer\)$"),
            ("Dense", {"class_name": ["LeakyReLU"]}, r"activation \{'class_name': \['LeakyReLU'\]\} is not supported"),
            ("LSTM", leaky, r"activation is a LeakyReLU layer object, which this bridge takes as the activation of a "
                            r"convolution or a Dense layer only: give the activation by name "
                            r"\(activation=\"leaky_relu\", \.\.\.\) or call the LeakyReLU layer on this layer's "
                            r"output$"),
            ("Conv2D", "softmax_v2", r"activation 'softmax_v2' is TensorFlow's function \(tf.nn.softmax\), which "
                                     r"Keras saved by its own name and cannot load again; use activation='softmax'$")):
        settings = {"units": 4} if layer in ("LSTM", "Dense") else {"filters": 4, "kernel_size": 3}
        config = _keras_config((layer, {**settings, "activation": form}), *TAIL)
        with pytest.raises(ArchitectureError, match=message):
            architecture_from_keras_config(config)


def test_custom_and_nested_keras_objects_are_refused():
    custom = _keras_config(("Doubler", {}), *TAIL)
    custom["config"]["layers"][1].update(module="my_project.layers", registered_name="MyLayers>Doubler")
    nested = _keras_config(*TAIL)  # a model class of another package, under the name of Keras' own
    nested["config"]["layers"].insert(1, {"module": "my_project.models", "class_name": "Sequential",
                                          "registered_name": "MyProject>Sequential", "config": {"layers": []}})
    for config, message in ((custom, "not a supported layer"), (nested, "not Keras' own model class")):
        with pytest.raises(ArchitectureError, match=message):
            architecture_from_keras_config(config, "model.keras")


def test_the_core_imports_no_framework():
    code = ("import sys, mnist_common.architecture, mnist_common.keras_file, mnist_common.images.preparation, mnist_common.cli\n"
            "Architecture = mnist_common.architecture.Architecture\n"
            "Architecture.load('lenet5').summary()\n"
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'lightning') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["layers"][7].update(units=10**6), "the network has 1,611,019,210 parameters, more than this"),
    (lambda c: c["layers"][0].update(filters=10**5), "values per example, more than this bridge builds"),
    (lambda c: _first(c, "MaxPooling2D").update(pool_size=10**9, padding="same"),
     "(max_pooling2d, MaxPooling2D): the layers up to here hold 32,000,001,536,"),
    (lambda c: _first(c, "MaxPooling2D").update(type="AveragePooling2D", pool_size=2 * 10**4, padding="same"),
     "AveragePooling2D): the layers up to here hold 12,830,"),
    (lambda c: c["layers"][0].update(kernel_size=2, dilation_rate=10**6, padding="same"), "hold 4,000,000,0"),
    # TensorFlow pads a dilated convolution's input up to a multiple of its dilation: 8,000 pixels an axis here, not
    # the 4,028 "same" asks for (hostile round 13: 2 s an image on the Keras backend, 0.1 s on torch)
    (lambda c: c["layers"][0].update(filters=1, kernel_size=2, dilation_rate=4000, padding="same"),
     "(conv2d, Conv2D): the layers up to here hold 64,000,784 values"),
    (lambda c: c["layers"].insert(1, {"type": "Conv2DTranspose", "filters": 1, "kernel_size": 3, "padding": "same",
                                      "dilation_rate": 10**6}), "(conv2d_transpose, Conv2DTranspose): the layers up"),
    # one tensor added to itself 100,000 times: little held, minutes of additions a batch (hostile round 13)
    (lambda c: c["layers"].insert(1, {"type": "Add", "inputs": ["conv2d"] * 100_000}),
     "(add, Add): takes 100,000 inputs, more than a layer of this bridge takes (64: the branches of a model, the "
     "members of an ensemble)"),
    # the depthwise result before the pointwise product: 28 x 28 x 10**6 values of one channel (hostile round 13)
    (lambda c: c["layers"].insert(0, {"type": "SeparableConv2D", "filters": 1, "kernel_size": 1,
                                      "depth_multiplier": 10**6}), "(separable_conv2d, SeparableConv2D): the layers up"),
])
def test_networks_too_large_to_build_are_refused_before_anything_is_allocated(edit, message):
    """A 10^6-unit Dense (1.6 billion weights) or a 10^5-filter convolution: one line, at once, no memory spent.
    Windows far larger than their input, with "same" padding (hostile round 12): the padded input the torch side
    builds (a pooling pads with F.pad, a convolution where the padding is uneven; TensorFlow's dilated convolution
    pads too) is counted, as is a transposed convolution's full result before Keras' output is cut from it, and a
    separable convolution's depthwise result (hostile round 13: a multiplier of 10**6 on one channel, 1.6e11 bytes)."""
    import time

    config = Architecture.load("notebook").to_config()
    edit(config)
    started = time.perf_counter()
    with pytest.raises(ArchitectureError) as refusal:
        Architecture.from_config(config)
    assert time.perf_counter() - started < 1.0
    assert message in str(refusal.value) and "\n" not in str(refusal.value), str(refusal.value)


def _first(config: dict, kind: str) -> dict:
    return next(layer for layer in config["layers"] if layer["type"] == kind)


def test_windows_larger_than_their_input_build_where_they_cost_little():
    """What the count of padded inputs leaves alone: DeepLab's atrous pyramid on a 7x7 map (dilations 6 to 18, "same",
    most taps on padding), a 3x3 "same" convolution and pooling on a 1x1 map."""
    pyramid = Architecture.from_config({"input_shape": [28, 28, 1], "layers": [
        {"type": "Conv2D", "filters": 8, "kernel_size": 3, "strides": 4, "padding": "same", "name": "stem"},
        *({"type": "Conv2D", "filters": 8, "kernel_size": 3, "padding": "same", "dilation_rate": rate,
           "name": f"rate_{rate}", "inputs": ["stem"]} for rate in (6, 12, 18)),
        {"type": "Concatenate", "inputs": ["rate_6", "rate_12", "rate_18"]},
        {"type": "MaxPooling2D", "pool_size": 7}, {"type": "Conv2D", "filters": 4, "kernel_size": 3, "padding": "same"},
        {"type": "MaxPooling2D", "pool_size": 3, "strides": 1, "padding": "same"}, {"type": "Flatten"},
        {"type": "Dense", "units": 10, "activation": "softmax"}]})
    assert pyramid.shapes["rate_18"] == (7, 7, 8) and pyramid.output_shape == (10,)
    # the rates' padded maps among them: 19x19, 31x31, 43x43, which TensorFlow pads on to multiples of the rates
    assert pyramid.activation_values < 45_000


OTHER_SIGMOID = {"type": "Dense", "units": 10, "activation": "sigmoid", "name": "other", "inputs": ["input"]}


@pytest.mark.parametrize("after, refused", [([], True), ([{"type": "Dropout", "rate": 0.1}], True),
                                            ([{"type": "Activation", "activation": "linear"}], True),
                                            ([{"type": "ReLU"}, {"type": "Dropout", "rate": 0.2}], True),
                                            # zoo round 9: through merges of sigmoids and reshapes (taken as logits)
                                            *(([OTHER_SIGMOID, {"type": merge, "inputs": ["scores", "other"]}], True)
                                              for merge in ("Average", "Multiply")),
                                            ([{"type": "Reshape", "target_shape": [2, 5]}, {"type": "Flatten"}], True),
                                            ([{"type": "Reshape", "target_shape": [5, 2]},
                                              {"type": "MaxPooling1D", "pool_size": 1}, {"type": "Flatten"}], True),
                                            ([{"type": "Dense", "units": 10, "name": "other", "inputs": ["input"]},
                                              {"type": "Add", "inputs": ["scores", "other"]}], False),
                                            ([{"type": "Activation", "activation": "tanh"}], False)])
def test_sigmoid_outputs_are_found_through_layers_that_keep_their_values(after, refused):
    """A sigmoid's independent per-class probabilities stay what the model gives through a dropout, a linear
    activation or a relu, a reshape, a pooling, or a mean or product of sigmoids: predict and the deploy formats
    refuse them there too (a softmax of them was given)."""
    architecture = Architecture.from_config({"name": "squashed", "input_shape": [784], "layers": [
        {"type": "Dense", "units": 10, "activation": "sigmoid", "name": "scores"}, *after]})
    if not refused:
        architecture.require_one_distribution("predict")
        return
    with pytest.raises(ArchitectureError, match=r"\(scores\) applies sigmoid.*independent per-class probabilities"):
        architecture.require_one_distribution("predict")


HEAD = {"type": "Dense", "units": 10, "activation": "softmax", "name": "head"}
OTHER_HEAD = {"type": "Dense", "units": 10, "activation": "softmax", "name": "other", "inputs": ["input"]}


@pytest.mark.parametrize("after, changer", [
    ([{"type": "Rescaling", "scale": 2.0, "name": "doubled"}], "doubled"),
    ([{"type": "Activation", "activation": "tanh", "name": "squashed"}], "squashed"),
    ([{"type": "ReLU", "threshold": 0.05, "name": "cut"}], "cut"),
    ([{"type": "Dropout", "rate": 0.1}, {"type": "ReLU", "max_value": 0.5, "name": "capped"}], "capped"),
    ([OTHER_HEAD, {"type": "Add", "name": "sum", "inputs": ["head", "other"]}], "sum"),
    ([OTHER_HEAD, {"type": "Maximum", "name": "max", "inputs": ["head", "other"]}], "max"),
    ([{"type": "Dense", "units": 10, "name": "logits", "inputs": ["input"]},
      {"type": "Average", "name": "mean", "inputs": ["head", "logits"]}], "mean"),
    ([], None), ([{"type": "Dropout", "rate": 0.1}, {"type": "ReLU"}], None),
    ([OTHER_HEAD, {"type": "Average", "name": "mean", "inputs": ["head", "other"]}], None),
    ([{"type": "Dense", "units": 10, "name": "logits"}], None),  # learned weights after it: logits again
    ([{"type": "Dense", "units": 10, "name": "logits"}, {"type": "Rescaling", "scale": 2.0}], None),
])
def test_probabilities_changed_into_neither_probabilities_nor_logits_are_found(after, changer):
    """A softmax's probabilities rescaled, squashed, cut, summed or taken the maximum of are what Keras gives, and
    their softmax is not: predict and the deploy formats refuse them, naming the layer that changes them."""
    architecture = Architecture.from_config({"format_version": 2, "name": "changed", "input_shape": [784],
                                             "layers": [HEAD, *after]})
    if changer is None:
        architecture.require_one_distribution("predict")
        return
    with pytest.raises(ArchitectureError, match=rf"probabilities of head changed by {changer} \("):
        architecture.require_one_distribution("predict")


@pytest.mark.parametrize("pool, steps", [
    ([{"type": "Dot", "axes": 1, "inputs": ["weights", "logits"]}], 28),
    ([{"type": "Reshape", "target_shape": [28, 1], "inputs": ["weights"]},
      {"type": "Multiply", "name": "weighted", "inputs": ["reshape", "logits"]},
      {"type": "ops.sum", "axis": 1, "inputs": ["weighted"]}], 28),
    ([{"type": "Dot", "axes": 1, "inputs": ["weights", "logits"]}], 10),  # as many steps as classes (zoo round 9)
], ids=["dot", "multiply_sum", "dot_of_10_steps"])
def test_an_attention_pooling_of_logits_by_a_flat_softmax_gives_logits(pool, steps):
    """Weights from a softmax over 28 steps' flattened scores (the usual Keras 2 attention) pooling each step's
    logits give logits, as weights from a softmax over the steps' axis of a (28, 1) map do: a softmax of another
    size than the classes' is no distribution over them (refused as probabilities changed before: zoo round 8), and
    one that a Dot contracts with another branch's values is weights whatever its size."""
    architecture = Architecture.from_config({"format_version": 2, "name": "pooled", "input_shape": [steps, 28],
                                             "layers": [
        {"type": "Dense", "units": 10, "name": "logits"},
        {"type": "Dense", "units": 1, "name": "score", "inputs": ["input"]}, {"type": "Flatten", "name": "flat"},
        {"type": "Softmax", "name": "weights"}, *pool]})
    assert architecture.probabilities_changed is None and not architecture.outputs_probabilities
    architecture.require_one_distribution("predict")


def test_a_graph_of_more_layers_than_any_real_model_is_refused_at_once_and_a_large_one_builds_fast():
    """A crafted description (or checkpoint, or .keras config) of 100,000 layers is refused before any layer is
    read; 2,000, the bound, are checked in linear time (a quadratic sort took minutes on 20,000)."""
    import time

    def described(count: int) -> dict:
        return {"name": "many", "input_shape": [784], "layers": [
            {"type": "Dense", "units": 10}, *[{"type": "Dropout", "rate": 0.1}] * (count - 2),
            {"type": "Dense", "units": 10, "activation": "softmax"}]}

    started = time.perf_counter()
    with pytest.raises(ArchitectureError, match="the model has 100,000 layers, more than this bridge builds"):
        Architecture.from_config(described(100_000))
    with pytest.raises(ArchitectureError, match="the model lists 2,002 layers"):
        architecture_from_keras_config(_keras_config(*[("Dropout", {"rate": 0.1})] * 2001))  # and its input
    largest = Architecture.from_config(described(2_000))
    assert largest.outputs_probabilities and largest.probabilities_changed is None
    assert time.perf_counter() - started < 5.0


@pytest.mark.parametrize("layers", [
    [{"type": "Flatten"}],  # then the Dense: its kernel is (H x W x C, 10)
    [{"type": "Conv1D", "filters": 4, "kernel_size": 3}, {"type": "Flatten"}],
    [{"type": "LayerNormalization", "axis": [1, 2]}, {"type": "GlobalAveragePooling1D"}],
    [{"type": "Permute", "dims": [2, 1]}, {"type": "Dense", "units": 3}, {"type": "Flatten"}],
])
def test_a_layer_whose_weights_need_an_open_size_is_refused(layers):
    """Keras cannot build a Dense on a Flatten of an open size, a LayerNormalization over an open axis, ...: they
    were built at 28, trained by ``fit``, and failed with a traceback where Keras built them (the Keras reference,
    ``convert`` to .keras; a helper's). Refused when the description is read, naming the layer."""
    config = {"input_shape": [None, 28], "layers": [*layers, {"type": "Dense", "units": 10}]}
    with pytest.raises(ArchitectureError, match=r"its weights' shapes depend on the input's size, which the model "
                                                r"leaves open \(None, 28\): Keras cannot build it"):
        Architecture.from_config(config)
    config["input_shape"] = [28, 28]
    Architecture.from_config(config)  # at a fixed size it builds


def test_a_layer_an_open_size_built_at_28_cannot_take_says_so():
    """A network for inputs larger than 28 (five poolings) with its size left open: the refusal names the layer and
    says the open size was built at 28 (it said only "larger than its input")."""
    pools = [{"type": "MaxPooling2D", "pool_size": 2}] * 5
    with pytest.raises(ArchitectureError, match=r"layer 4 \(max_pooling2d_4, MaxPooling2D\): .* \(the input's size "
                                                r"left open, None, None, 1, is built at 28x28x1, the size every "
                                                r"command feeds it\)$"):
        Architecture.from_config({"input_shape": [None, None, 1], "layers": [
            *pools, {"type": "GlobalMaxPooling2D"}, {"type": "Dense", "units": 10}]})


def test_mnist_is_the_image_or_its_pixels_in_reading_order_as_any_sequence():
    """What the commands feed a network: the 28x28x1 image, or its 784 pixels reshaped (a vector, 28 rows of 28,
    784 single pixels, 196 steps of 4): the layouts fit, test, predict and serve take."""
    for shape in ((28, 28, 1), (784,), (28, 28), (784, 1), (196, 4), (1, 784)):
        assert is_mnist_layout(shape) and is_mnist_layout(list(shape)), shape
    for shape in ((28, 28, 3), (1, 28, 28), (14, 56, 1), (783,), (28, 27), (28, "width"), (None, 1), (), (2, 14, 28)):
        assert not is_mnist_layout(shape), shape
    layers = [{"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": "softmax"}]
    assert Architecture.from_config({"input_shape": [784, 1], "layers": layers}).takes_mnist
    with pytest.raises(ArchitectureError, match=r"fit needs a network that takes 28x28x1 images or their 784 pixels in "
                                                r"reading order \(784, 28x28, 784x1: any steps x features of 784\) "
                                                r"and gives 10 classes; .* takes 28x28x3 and gives 10"):
        Architecture.from_config({"input_shape": [28, 28, 3], "layers": layers}).require_mnist("fit")

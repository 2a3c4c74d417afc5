"""The first table's layers against Keras (convolutions, pooling, Dense, BatchNorm, activations, Flatten, Dropout),
and their samplers for the random graphs of ``tests/test_bridge.py``."""

from __future__ import annotations

import numpy as np
import pytest

from bridge_check import L, assert_matches_keras, classifier, sampler, sequential_case
from mnist_common.architecture import ACTIVATIONS, Architecture, ArchitectureError

LAYER_CASES = {
    "even_kernels_strides_2_3": [L.Conv2D(5, 4, strides=2, padding="same"),
                                 L.Conv2D(3, 2, strides=3, padding="same"), L.Flatten()],
    "max_pool_same_on_negatives": [L.Conv2D(4, 3, activation="tanh"), L.MaxPooling2D(3, strides=2, padding="same"),
                                   L.MaxPooling2D(2, strides=3, padding="same"), L.Flatten()],
    "average_pool_same": [L.Conv2D(4, 3), L.AveragePooling2D(3, strides=2, padding="same"),
                          L.AveragePooling2D(2, strides=3, padding="same"), L.Flatten()],
    "global_pools_keepdims": [L.Conv2D(6, (3, 2), strides=(2, 1)), L.GlobalMaxPooling2D(keepdims=True), L.Flatten()],
    # PyTorch's adaptive pooling: bins that overlap (26 rows in 7), that repeat cells (4 columns in 9)
    "adaptive_pools": [L.Conv2D(4, 3, activation="tanh"), L.AdaptiveMaxPooling2D((7, 5)), L.Conv2D(3, 2),
                       L.AdaptiveAveragePooling2D((2, 9)), L.AdaptiveMaxPooling2D((3, 2)),
                       L.AdaptiveAveragePooling2D(4), L.Flatten()],
    "batchnorm_variants": [L.Conv2D(4, 3, use_bias=False), L.BatchNormalization(center=False),
                           L.BatchNormalization(scale=False, epsilon=1e-5, momentum=0.9), L.Flatten(), L.Dense(16),
                           L.BatchNormalization(center=False, scale=False)],
    "dense_on_image": [L.Conv2D(4, 3), L.Dense(6, activation="relu"), L.MaxPooling2D(), L.Flatten()],
    "relu_layers": [L.Conv2D(4, 3), L.ReLU(max_value=0.5), L.Conv2D(4, 3), L.ReLU(negative_slope=0.1, threshold=0.2),
                    L.Conv2D(4, 3), L.ReLU(negative_slope=0.2, max_value=1.0), L.LeakyReLU(),
                    L.LeakyReLU(negative_slope=0.05), L.Flatten()],
    # PReLU's slopes learnt per value, per channel (shared over height and width) and per feature; ELU's alpha
    "prelu_and_elu_layers": [L.Conv2D(4, 3), L.PReLU(), L.Conv2D(3, 3), L.PReLU(shared_axes=[1, 2]),
                             L.ELU(alpha=0.7), L.Flatten(), L.Dense(12), L.PReLU(), L.ELU()],
    **{f"activation_{name}": [L.Conv2D(4, 3, activation=name), L.Flatten(), L.Dense(12, activation=name)]
       for name in ACTIVATIONS if name != "exponential"},
    "activation_exponential": [L.Conv2D(2, 3), L.GlobalAveragePooling2D(), L.Dense(4, activation="exponential")],
}


@pytest.mark.parametrize("case", list(LAYER_CASES))
def test_every_layer_kind_and_activation_matches_keras(case):
    """Random weights and inputs through Keras and the torch network: the same probabilities (and logits)."""
    assert_matches_keras(sequential_case((28, 28, 1), *LAYER_CASES[case]), source=case)


@pytest.mark.parametrize("input_shape", [(28, 28), (784,), (5, 7)])
def test_dense_activation_and_dropout_on_inputs_of_one_or_two_axes(input_shape):
    """Dense works on the last axis of an (H, W) input, as on a flat one (the MLP of a flat MNIST model)."""
    assert_matches_keras(sequential_case(input_shape, L.Dense(16, activation="relu"), L.Dropout(0.2),
                                         L.BatchNormalization(), L.Dense(8), L.LeakyReLU(), L.PReLU(shared_axes=1),
                                         L.Flatten()),
                         source=f"{input_shape}")


def test_prelu_slopes_come_back_in_the_keras_file_and_what_it_cannot_mirror_is_refused():
    """The slopes' layout survives .keras -> torch -> .keras bit for bit; an orthogonal activity regularizer or an axis
    the input does not have is refused in one line naming the layer."""
    from bridge_check import architecture_of, keras, network_of, randomised
    from lightning_mnist.interop.keras_models import keras_model_of

    model = randomised(keras.Sequential([keras.Input((6, 5, 2)), L.Conv2D(3, 3, name="conv"),
                                         L.PReLU(shared_axes=[1], name="slopes"), L.Flatten(), L.Dense(4)]))
    architecture, network = network_of(model)
    assert tuple(network.slopes.alpha.shape) == (1, 3, 3)  # Keras' (H, W, C) with H shared
    back = keras_model_of(architecture, network.state_dict())
    assert np.array_equal(back.get_layer("slopes").get_weights()[0], model.get_layer("slopes").get_weights()[0])
    assert back.get_layer("slopes").get_config()["shared_axes"] == [1]
    with pytest.raises(ArchitectureError, match="activity_regularizer 'OrthogonalRegularizer' is not supported"):
        architecture_of(keras.Sequential([keras.Input((28, 28)), L.Flatten(), L.PReLU(
            activity_regularizer=keras.regularizers.OrthogonalRegularizer(0.1)), L.Dense(10)]))
    with pytest.raises(ArchitectureError, match=r"shared_axes \[3\]: its input 784 has axes 1 to 1"):
        Architecture.load({"input_shape": [28, 28, 1], "layers": [{"type": "Flatten"},
                                                                   {"type": "PReLU", "shared_axes": [3]},
                                                                   {"type": "Dense", "units": 10}]})


def test_an_adaptive_pooling_network_converts_to_every_format_and_back(tmp_path, capsys, mnist_dir):
    """A CNN ported from PyTorch, ending in its adaptive pooling (bins that overlap: 11 columns in 4), proven on MNIST
    as a checkpoint, an ONNX, a ``.pt2`` and a LiteRT file (slices, means and maxima), and the same ``.keras`` file
    back from the checkpoint."""
    from bridge_check import converts_and_comes_back, keras, randomised

    model = randomised(keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(6, 3, strides=2, activation="relu"),
                                         L.AdaptiveMaxPooling2D((6, 4)), L.Conv2D(4, 2),
                                         L.AdaptiveAveragePooling2D(3), L.Flatten(),
                                         L.Dense(10, activation="softmax")]))
    model.save(tmp_path / "adaptive.keras")
    converts_and_comes_back(tmp_path / "adaptive.keras", tmp_path, capsys,
                            targets=("model.ckpt", "model.onnx", "model.pt2", "model.tflite"))


def test_activation_layer_objects_convert_to_every_format_and_back(tmp_path, capsys, mnist_dir):
    """``Conv2D(32, 3, activation=LeakyReLU(0.1))`` (a Kaggle and GAN idiom): Keras saves the layer object's config
    as the activation and loads it in safe mode; it was refused (zoo round 12's SUP-1). The weight-free activation
    layers are taken there, computed by their own torch modules, a Softmax object ending the model in probabilities
    as ``activation="softmax"`` does; proven as a checkpoint, an ONNX, a ``.pt2`` and a LiteRT file, and the
    checkpoint comes back as the same ``.keras`` file, config and all. A description gives one as an entry."""
    from bridge_check import architecture_of, converts_and_comes_back, keras, model_config_text, randomised
    from lightning_mnist.checkpoints import load_networks

    inputs = keras.Input((28, 28, 1))
    x = L.Conv2D(4, 3, activation=L.LeakyReLU(0.1))(inputs)
    x = L.SeparableConv2D(4, 3, activation=L.ELU(0.5))(x)
    x = L.Conv2D(4, 3, activation=L.Activation("tanh"))(L.Dense(3, activation=L.Softmax())(x))  # channels' softmax
    x = L.DepthwiseConv2D(3, activation=L.ReLU(negative_slope=0.2))(L.Conv2DTranspose(4, 3, activation=L.ELU())(x))
    x = L.Dense(16, activation=L.ReLU(max_value=6.0, negative_slope=0.05, threshold=0.1))(L.Flatten()(x))
    model = randomised(keras.Model(inputs, L.Dense(10, activation=L.Softmax())(x)))
    assert_matches_keras(model)
    architecture = architecture_of(model)
    assert architecture.outputs_probabilities and architecture.ends_in_softmax
    model.save(tmp_path / "objects.keras")
    converts_and_comes_back(tmp_path / "objects.keras", tmp_path, capsys,
                            targets=("model.ckpt", "model.onnx", "model.pt2", "model.tflite"))
    assert model_config_text(tmp_path / "again.keras") == model_config_text(tmp_path / "objects.keras")
    (network,) = load_networks(tmp_path / "model.ckpt")
    assert not [name for name, _ in network.named_parameters() if "activation" in name]  # weight-free
    described = Architecture.load({"input_shape": [28, 28, 1], "layers": [
        {"type": "Conv2D", "filters": 4, "kernel_size": 3, "activation": {"type": "LeakyReLU", "negative_slope": 0.1}},
        {"type": "Flatten"}, {"type": "Dense", "units": 10, "activation": {"type": "Softmax"}}]})
    assert described.layers[0].activation.negative_slope == 0.1 and described.outputs_probabilities
    rows = keras.Input((28, 28))  # the convolutions over steps
    x = L.Conv1D(4, 3, activation=L.LeakyReLU(0.1))(rows)
    x = L.DepthwiseConv1D(3, activation=L.ELU(0.3))(L.Conv1DTranspose(4, 3, activation=L.ReLU(max_value=0.5))(x))
    x = L.SeparableConv1D(4, 3, activation=L.Activation("sigmoid"))(x)
    assert_matches_keras(randomised(keras.Model(rows, L.Dense(10, activation=L.Softmax())(L.Flatten()(x)))))
    assert Architecture.from_config(described.to_config()) == described
    # Keras calls a held layer under its own name, which TensorFlow's traced graphs refuse as they refuse a layer's
    # (Keras' own predict fails): said before Keras traces it, as for any layer (a wrapper's layer was not checked)
    rows = keras.Input((28, 28))
    for inputs, layer in ((inputs, L.Conv2D(4, 3, activation=L.LeakyReLU(name="leaky relu"))),
                          (rows, L.TimeDistributed(L.Dense(3, name="leaky relu"))),
                          (rows, L.TimeDistributed(L.Dense(3, activation=L.LeakyReLU(name="leaky relu"))))):
        unsafe = keras.Model(inputs, L.Dense(10)(L.Flatten()(layer(inputs))))
        assert architecture_of(unsafe).graph_unsafe_name == "leaky relu"


def test_an_adaptive_pooling_keras_cannot_run_is_refused_before_keras_runs_it(tmp_path, capsys):
    """Keras builds and saves an adaptive max pooling to a width of 1, then kills the process running it (a
    floating-point exception): ``convert`` refuses the file in one line first."""
    from bridge_check import keras
    from conftest import main_error
    from lightning_mnist.__main__ import main as command_line

    keras.Sequential([keras.Input((28, 28, 1)), L.Conv2D(2, 3), L.AdaptiveMaxPooling2D((4, 1)), L.Flatten(),
                      L.Dense(10)]).save(tmp_path / "wide.keras")
    code, error, _ = main_error(command_line, ["convert", str(tmp_path / "wide.keras"), str(tmp_path / "x.ckpt")],
                                capsys)
    assert code == 2 and error.startswith(f"error: {tmp_path / 'wide.keras'}: layer 1 (") and error.endswith(
        "output_size [4, 1]: Keras' adaptive pooling cannot run where a side it pools from or to is 1 (here the "
        "width, 26 to 1): its window is then wider than the side (a traced model refuses it; a max pooling kills "
        "the process); a global or a plain pooling layer computes it"), error
    assert not (tmp_path / "x.ckpt").exists()


# --- random layers for random graphs -----------------------------------------------------------
ACTIVATION_NAMES = [name for name in ACTIVATIONS if name not in ("exponential", "softmax")]


def _image(shape) -> bool:
    return len(shape) == 3


@sampler("Conv2D")
def _conv(rng, shape):
    if not _image(shape):
        return None
    kernel = int(rng.integers(1, min(shape[0], shape[1], 4) + 1))
    return L.Conv2D(int(rng.integers(2, 7)), kernel, strides=int(rng.integers(1, 3)),
                    padding=str(rng.choice(["same", "valid"])), activation=str(rng.choice(ACTIVATION_NAMES)),
                    use_bias=bool(rng.random() < 0.8))


def _pool(kind):
    def make(rng, shape):
        if not _image(shape) or min(shape[:2]) < 2:
            return None
        size = int(rng.integers(2, min(3, *shape[:2]) + 1))
        return getattr(L, kind)(size, strides=int(rng.integers(1, 3)), padding=str(rng.choice(["same", "valid"])))
    return make


sampler("MaxPooling2D")(_pool("MaxPooling2D"))
sampler("AveragePooling2D")(_pool("AveragePooling2D"))
sampler("GlobalAveragePooling2D")(lambda rng, shape: L.GlobalAveragePooling2D(keepdims=bool(rng.random() < 0.5))
                                  if _image(shape) else None)
sampler("GlobalMaxPooling2D")(lambda rng, shape: L.GlobalMaxPooling2D(keepdims=bool(rng.random() < 0.5))
                              if _image(shape) else None)


def _adaptive_pool(kind):
    def make(rng, shape):  # no side of 1 in or out, which Keras cannot run (refused)
        if not _image(shape) or min(shape[:2]) < 2:
            return None
        return getattr(L, kind)((int(rng.integers(2, shape[0] + 3)), int(rng.integers(2, shape[1] + 3))))
    return make


sampler("AdaptiveAveragePooling2D")(_adaptive_pool("AdaptiveAveragePooling2D"))
sampler("AdaptiveMaxPooling2D")(_adaptive_pool("AdaptiveMaxPooling2D"))
sampler("BatchNormalization")(lambda rng, shape: L.BatchNormalization(
    epsilon=float(rng.choice([1e-3, 1e-5])), center=bool(rng.random() < 0.8), scale=bool(rng.random() < 0.8)))
sampler("Flatten")(lambda rng, shape: L.Flatten() if len(shape) > 1 else None)
sampler("Dense")(lambda rng, shape: L.Dense(int(rng.integers(2, 9)), activation=str(rng.choice(ACTIVATION_NAMES))))
sampler("Dropout")(lambda rng, shape: L.Dropout(float(rng.uniform(0.0, 0.5)), noise_shape=(
    (None, *(1,) * len(shape)) if rng.random() < 0.3 else None)))  # whole samples: stochastic depth
sampler("Activation")(lambda rng, shape: L.Activation(str(rng.choice(ACTIVATION_NAMES))))
sampler("ReLU")(lambda rng, shape: L.ReLU(max_value=float(rng.choice([1.0, 6.0])) if rng.random() < 0.5 else None,
                                          negative_slope=float(rng.choice([0.0, 0.1])),
                                          threshold=float(rng.choice([0.0, 0.2]))))
sampler("LeakyReLU")(lambda rng, shape: L.LeakyReLU(negative_slope=float(rng.uniform(0.01, 0.4))))
sampler("ELU")(lambda rng, shape: L.ELU(alpha=float(rng.uniform(0.1, 2.0))))
sampler("PReLU")(lambda rng, shape: L.PReLU(shared_axes=[int(a) for a in range(1, len(shape)) if rng.random() < 0.5]
                                           or None))
sampler("Softmax")(lambda rng, shape: L.Softmax(axis=int(rng.choice([-1, *range(-len(shape), len(shape) + 1)]) or -1))
                   if rng.random() < 0.3 else None)


def test_a_softmax_over_any_axis_converts_and_gives_the_classes_where_they_lie_along_it():
    """Keras counts the batch axis: ``Softmax(axis=1)`` of (batch, 10) features is the last axis, as -1 is, and
    gives the model's probabilities; so does one over the axis along which ten scores lie ((10, 1), then flattened:
    zoo round 6 found its probabilities read as logits, and softmaxed again by predict, .onnx, test and fit). Over
    another axis (an image's rows or columns, a sequence's steps: attention pooling, one score a step weighed by its
    softmax over the steps) it is no distribution over the classes; a model whose outputs are such a softmax's
    values rearranged (pairs of a (2, 5) map, flattened) gives neither probabilities nor logits, refused where a
    softmax of them is taken, while the values its weights pool are logits again."""
    from bridge_check import architecture_of, keras

    flat = keras.Sequential([keras.Input((12,)), L.Dense(10), L.Softmax(axis=1)])
    assert architecture_of(flat).ends_in_softmax
    assert_matches_keras(flat)
    maps = keras.Sequential([keras.Input((6, 5, 2)), L.Conv2D(3, 3), L.Softmax(axis=3), L.Flatten(), L.Dense(4)])
    assert_matches_keras(maps)
    for axis in (1, 2, -2, -3):  # an image's rows or columns, in torch's (N, C, H, W) layout
        image = keras.Sequential([keras.Input((6, 5, 2)), L.Conv2D(3, 3), L.Softmax(axis=axis), L.Flatten(),
                                  L.Dense(4)])
        assert_matches_keras(image, source=str(axis))
    rows = keras.Input((28, 28))
    x = L.Dense(16, activation="tanh")(rows)
    pooled = keras.ops.sum(x * L.Softmax(axis=1)(L.Dense(1)(x)), axis=1)  # attention pooling over the rows
    pooling = classifier(rows, pooled, name="pooling")
    assert_matches_keras(pooling)
    per_step = keras.ops.sum(L.Dense(10)(x) * L.Softmax(axis=1)(L.Dense(1)(x)), axis=1)  # pooled logits, no Dense
    assert architecture_of(keras.Model(rows, per_step)).probabilities_changed is None
    for layers_ in ([L.Reshape((10, 1)), L.Softmax(axis=1), L.Flatten()],  # ten scores along axis 1
                    [L.Reshape((1, 10, 1)), L.Softmax(axis=-2), L.Dropout(0.5), L.Reshape((10,))]):
        classes = keras.Sequential([keras.Input((10, 3)), L.Dense(1), L.Flatten(), *layers_])
        architecture = architecture_of(classes)
        assert architecture.outputs_probabilities and not architecture.ends_in_softmax
        [softmax] = [node.name for node in architecture.nodes if node.layer.type == "Softmax"]
        assert not architecture.distributions[softmax]  # along its last axis (of size 1): none yet
        assert_matches_keras(classes)  # the torch side computes their logarithm, whose softmax gives them back
    spread = keras.Sequential([keras.Input((1, 5)), L.Conv1DTranspose(5, 2, strides=2, activation="softmax"),
                               L.Flatten()])  # a softmax of one step's input over two steps' outputs: sums to 2
    assert not architecture_of(spread).outputs_probabilities
    pairs = keras.Sequential([keras.Input((10, 3)), L.Dense(1), L.Reshape((2, 5)), L.Softmax(axis=1), L.Flatten()])
    architecture = architecture_of(pairs)
    assert not architecture.outputs_probabilities
    with pytest.raises(ArchitectureError, match=r"outputs are the probabilities of softmax\S* changed by flatten\S* "
                                                r"\(Flatten\) into neither probabilities nor logits"):
        architecture.require_one_distribution("predict and training")
    with pytest.raises(ArchitectureError, match=r"axis=3 does not exist on its 6x5 input \(axes 1 to 2, or -1 to -2;"):
        architecture_of(keras.Sequential([keras.Input((6, 5)), L.Softmax(axis=3), L.Flatten(), L.Dense(4)]))
    with pytest.raises(ArchitectureError, match=r"axis=\[1, 2\]: one axis is supported"):
        architecture_of(keras.Sequential([keras.Input((6, 5, 2)), L.Softmax(axis=[1, 2]), L.Flatten(), L.Dense(4)]))


def test_samplers_make_layers_keras_builds():
    """Each sampler gives a layer Keras can call on the shapes it accepts (or declines with None)."""
    from bridge_check import SAMPLERS, keras

    rng = np.random.default_rng(0)
    for kind, make in SAMPLERS.items():
        for shape in ((9, 8, 3), (6, 5), (7,)):
            layer = make(rng, shape)
            if layer is not None:  # a Keras layer, or a Keras operation with its numbers (test_layers_operations.Call)
                assert getattr(layer, "kind", type(layer).__name__) == kind
                layer(keras.Input(shape))

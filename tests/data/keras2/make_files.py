"""Write the legacy Keras 2 model files tests/test_legacy_h5.py reads: real files of tf.keras 2, which this project's
environment (Keras 3) cannot write. Run once, by hand, where tf_keras is installed beside TensorFlow (2.21 made these):

    pip install --no-deps --target /tmp/tfk tf_keras==2.21.0
    PYTHONPATH=/tmp/tfk:. python tests/data/keras2/make_files.py /path/to/MNIST/parent [NAME ...]

(NAME ...: write only those models' files, e.g. ``keras2_tf_shapes``; all of them by default.)

Small networks, trained three epochs on 6,000 MNIST images so their weights score well above chance, saved the way
Keras 2 code did: ``model.save("model.h5")`` of a compiled model (its optimizer state included), each beside what
tf.keras 2 itself predicts for the first 100 MNIST test images (``<name>_predictions.npy``).
"""

import sys
from pathlib import Path

import numpy as np
import tensorflow as tf
import tf_keras as keras

from mnist_common.mnist import load_mnist

HERE = Path(__file__).parent
L = keras.layers


def main(data_dir: str, names: list[str]) -> None:
    mnist = load_mnist(data_dir, download=False)
    x, y = mnist.train_images[:6000, ..., None].astype("float32") / 255.0, mnist.train_labels[:6000]
    keras.utils.set_random_seed(0)

    sequential = keras.Sequential([
        L.Conv2D(8, (3, 3), activation="relu", input_shape=(28, 28, 1)), L.MaxPooling2D((2, 2)),
        L.Conv2D(8, (3, 3)), L.BatchNormalization(), L.Activation("relu"), L.MaxPooling2D((2, 2)),
        L.Flatten(), L.Dropout(0.25), L.Dense(10, activation="softmax")], name="keras2_cnn")
    inputs = keras.Input((28, 28, 1))
    a = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    b = L.SeparableConv2D(8, 3, padding="same")(a)
    x_ = L.Activation("relu")(L.BatchNormalization()(L.Add()([a, b])))
    x_ = L.DepthwiseConv2D(3, strides=2)(x_)
    functional = keras.Model(inputs, L.Dense(10, activation="softmax")(L.GlobalAveragePooling2D()(x_)),
                             name="keras2_residual")
    # the settings Keras 2 saved that Keras 3 refuses: transposed convolutions' groups, the random layers' rng_type,
    # spatial dropouts' trainable, recurrent layers' time_major (untrained: what matters is the same computation)
    mixed = keras.Sequential([
        L.RandomFlip("horizontal", input_shape=(28, 28, 1)), L.Conv2D(4, 3, strides=2), L.Conv2DTranspose(2, 3),
        L.SpatialDropout2D(0.1), L.Reshape((15, 30)), L.LSTM(8, return_sequences=True), L.GRU(4),
        L.Dense(10, activation="softmax")], name="keras2_mixed")
    # TensorFlow functions on Keras tensors, which Keras 2 saved as TFOpLambda layers
    inputs = keras.Input((28, 28, 1))
    a = L.Conv2D(8, 3, padding="same")(inputs)
    b = L.Conv2D(8, 3, padding="same")(tf.nn.relu(a))
    h = tf.nn.relu((a + b) * 0.5 - 0.1)
    h = tf.math.sigmoid(2.0 * h / 4.0) + a
    tf_ops = keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(L.MaxPooling2D(4)(h))),
                         name="keras2_tf_ops")
    # TensorFlow functions that move, merge and reduce tensors, on a flat (28, 28) input
    inputs = keras.Input((28, 28))
    image = tf.reshape(tf.expand_dims(tf.cast(inputs, "float32"), -1), [-1, 28, 28, 1])
    a = L.Conv2D(6, 3, padding="same")(image)
    b = L.Conv2D(6, 3, padding="same", activation="relu")(image)
    h = tf.nn.leaky_relu(tf.concat([a, b], axis=-1), alpha=0.1)
    h = tf.clip_by_value(tf.maximum(h, tf.concat([b, a], axis=3)), 0.0, 6.0)
    h = tf.transpose(L.MaxPooling2D(2)(h), perm=[0, 2, 1, 3])
    pooled = tf.concat([tf.reduce_mean(h, axis=[1, 2]), tf.squeeze(tf.reduce_max(h, axis=[1, 2], keepdims=True),
                                                                    axis=[1, 2]),
                        tf.minimum(tf.reduce_mean(h, axis=[1, 2]), tf.maximum(tf.reduce_max(h, axis=[1, 2]), 0.0)),
                        L.Flatten()(L.MaxPooling2D(7)(h))],  # where the transposition shows
                       axis=1)
    tf_shapes = keras.Model(inputs, L.Dense(10, activation="softmax")(pooled), name="keras2_tf_shapes")
    # the TensorFlow functions of transfer-learning recipes (to LeNet's 32 x 32, resized, three channels), an exact
    # gelu, and log-probabilities out
    inputs = keras.Input((28, 28, 1))
    padded = tf.pad(inputs, [[0, 0], [2, 2], [2, 2], [0, 0]])
    rgb = tf.image.grayscale_to_rgb(tf.image.resize(padded, [24, 24]))  # bilinear, shrinking
    a = tf.nn.gelu(L.Conv2D(6, 3, padding="same")(rgb), approximate=False)
    b = L.Conv2D(2, 3, padding="same")(tf.image.resize(inputs, (12, 12), method="nearest"))
    b = tf.image.resize(tf.tile(b, [1, 1, 1, 3]), [24, 24], method="nearest")
    tf_images = keras.Model(inputs, tf.nn.log_softmax(L.Dense(10)(L.Flatten()(L.MaxPooling2D(2)(a + b)))),
                            name="keras2_tf_images")
    # models nested in models (the transfer-learning pattern): Keras 2 numbered their calls from 1
    features = keras.Sequential([L.Conv2D(8, 3, activation="relu", input_shape=(28, 28, 1)), L.MaxPooling2D()],
                                name="features")
    block_input = keras.Input((13, 13, 8))
    h = L.Conv2D(8, 3, padding="same")(block_input)
    block = keras.Model(block_input, tf.nn.relu(h) + h * 0.1, name="tf_block")  # TensorFlow functions inside
    inputs = keras.Input((28, 28, 1))
    nested = keras.Model(inputs, L.Dense(10, activation="softmax")(L.Flatten()(block(features(inputs)))),
                         name="keras2_nested")
    block_input = keras.Input((13, 13, 8))  # a functional block inside a Sequential model
    functional_block = keras.Model(block_input, L.MaxPooling2D()(tf.nn.relu(L.Conv2D(8, 3)(block_input))),
                                   name="functional_block")
    nested_in_sequential = keras.Sequential([L.InputLayer((28, 28, 1)), L.Conv2D(8, 3, strides=2), functional_block,
                                             L.Flatten(), L.Dense(10, activation="softmax")],
                                            name="keras2_nested_sequential")
    # a fully convolutional network, for images of any size (keras.Input((None, None, 1))), pooled by a TensorFlow
    # function
    inputs = keras.Input((None, None, 1))
    h = L.Conv2D(16, 3, padding="same")(L.MaxPooling2D()(L.Conv2D(8, 3, activation="relu")(inputs)))
    fcn = keras.Model(inputs, L.Dense(10, activation="softmax")(tf.reduce_mean(tf.nn.relu(h), axis=[1, 2])),
                      name="keras2_fcn")
    # Keras 2's hierarchical RNN example (examples/mnist_hierarchical_rnn.py): an LSTM over each row's pixels
    # (TimeDistributed), then one over the rows' summaries
    hrnn = keras.Sequential([L.TimeDistributed(L.LSTM(16), input_shape=(28, 28, 1)), L.LSTM(16),
                             L.Dense(10, activation="softmax")], name="keras2_hrnn")
    test_images = mnist.test_images[:100, ..., None].astype("float32") / 255.0
    for model in (sequential, functional, mixed, tf_ops, tf_shapes, tf_images, nested, nested_in_sequential, fcn,
                  hrnn):
        if names and model.name not in names:
            continue
        loss = keras.losses.SparseCategoricalCrossentropy(from_logits=model is tf_images)  # log-probabilities
        model.compile("adam", loss, metrics=["accuracy"])
        if model is not mixed:
            model.fit(x[..., 0] if model is tf_shapes else x, y, epochs=3, batch_size=64, verbose=0)
        model.save(HERE / f"{model.name}.h5")
        predicted = model.predict(test_images[..., 0] if model is tf_shapes else test_images, verbose=0)
        np.save(HERE / f"{model.name}_predictions.npy", predicted)  # tf.keras 2's own

    if names:
        return
    # refused before Keras reads them: Python code (a Lambda), and a TensorFlow function on a Keras tensor that the
    # bridge does not rewrite (tf.math.square)
    keras.Sequential([L.Lambda(lambda t: t * 2.0, input_shape=(6, 6, 1)), L.Flatten(), L.Dense(10)],
                     name="keras2_lambda").save(HERE / "keras2_lambda.h5")
    inputs = keras.Input((6, 6, 1))
    a = L.Conv2D(2, 3)(inputs)
    keras.Model(inputs, L.Dense(10)(L.Flatten()(tf.math.square(a))), name="keras2_tfop").save(HERE / "keras2_tfop.h5")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])

"""The reference's models: any architecture the bridge builds (``keras_bridge.build``), compiled as the notebook
compiled its own, or as a recipe config asks (``configs/fast.yaml``, ``configs/best.yaml``), so every training run
and every CV fold starts from the same thing."""

from __future__ import annotations

from keras_bridge.backend import import_keras
from keras_bridge.build import build_model, own_layers
from keras_reference.config import LEARNING_RATE, ModelSettings
from keras_reference.schedules import OneCycleSchedule, OneCycleAdamW
from mnist_common.architecture import Architecture, architecture_from_keras_config

keras = import_keras()

ADAM_EPSILON = 1e-7  # Keras' default, which Lightning's Adam and AdamW take too
PLAIN_LOSS = "cross_entropy"  # the metric that is plain cross-entropy when the training loss is label-smoothed


def make_optimizer(model: "keras.Model", settings: ModelSettings, total_steps: int | None = None) \
        -> "keras.optimizers.Optimizer":
    """The optimizer Lightning's ``configure_optimizers`` makes for the same settings.

    Adam (constant rate, no decay: the notebook); AdamW when ``weight_decay`` is set, decaying
    only the kernels (Lightning decays parameters of 2 axes and more: conv and dense kernels,
    not biases or BatchNormalization's scale and shift); for ``onecycle``, AdamW (decay 0 is
    Adam) with the one-cycle learning rate and beta_1 over ``total_steps`` batches.

    Keras does not save which variables are excluded from decay: a ``model.keras`` loaded compiled
    and trained further decays all of them (this project never trains a loaded Keras model).
    """
    if settings.lr_schedule == "onecycle":
        if total_steps is None:
            raise ValueError("a one-cycle schedule needs the run's total_steps")
        optimizer = OneCycleAdamW(OneCycleSchedule.for_run(settings.lr, total_steps),
                                  weight_decay=settings.weight_decay, epsilon=ADAM_EPSILON)
    elif settings.weight_decay:
        optimizer = keras.optimizers.AdamW(learning_rate=settings.lr, weight_decay=settings.weight_decay,
                                           epsilon=ADAM_EPSILON)
    else:
        return keras.optimizers.Adam(learning_rate=settings.lr, epsilon=ADAM_EPSILON)
    optimizer.exclude_from_weight_decay(var_list=[v for v in model.trainable_variables if len(v.shape) <= 1])
    return optimizer


def compile_model(model: "keras.Model", lr: float = LEARNING_RATE, from_logits: bool | None = None,
                  settings: ModelSettings | None = None, total_steps: int | None = None,
                  steps_per_execution: int = 1) -> "keras.Model":
    """Compile as the notebook did (Adam(lr), categorical cross-entropy on one-hot labels, accuracy), or as
    ``settings`` ask (their lr wins over ``lr``): see :func:`make_optimizer`.

    A model whose outputs are no probabilities (``Architecture.outputs_probabilities``: a softmax's, also one
    followed by a Dropout, or per-pixel softmaxes averaged) gives logits; its loss is computed from them. With label
    smoothing, a plain cross-entropy metric (``cross_entropy``, ``val_cross_entropy``) is compiled too:
    Lightning smooths only the training loss, and validates and chooses its checkpoint on plain cross-entropy.
    Layers in mixed_float16 get Keras' loss scaling (a ``LossScaleOptimizer``), as a model built under that global
    policy does. ``steps_per_execution``: Keras' own (``--data.steps_per_execution``, as Lightning's data module
    groups batches): this many batches per call of its compiled training function.
    """
    settings = settings or ModelSettings(lr=lr)
    if from_logits is None:
        config = keras.saving.serialize_keras_object(model)
        from_logits = not architecture_from_keras_config(config, model.name).outputs_probabilities
    metrics = ["accuracy"]
    if settings.label_smoothing:
        metrics.append(keras.metrics.CategoricalCrossentropy(name=PLAIN_LOSS, from_logits=from_logits))
    optimizer = make_optimizer(model, settings, total_steps)
    if any(layer.dtype_policy.name == "mixed_float16" for layer in own_layers(model)):  # as Keras' compile wraps a
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)  # model built under that policy: float16 needs it
    model.compile(optimizer=optimizer,
                  loss=keras.losses.CategoricalCrossentropy(from_logits=from_logits,
                                                            label_smoothing=settings.label_smoothing),
                  metrics=metrics, steps_per_execution=steps_per_execution)
    return model


def new_model(architecture: Architecture | str | dict | None = None, lr: float = LEARNING_RATE,
              settings: ModelSettings | None = None, total_steps: int | None = None,
              steps_per_execution: int = 1) -> "keras.Model":
    """A freshly initialised, compiled model: what every training run and every CV fold starts from."""
    return compile_model(build_model(architecture), lr, settings=settings, total_steps=total_steps,
                         steps_per_execution=steps_per_execution)

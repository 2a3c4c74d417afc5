"""An exponential moving average of the weights in Keras, done as Lightning's ``EMAWeightAveraging`` does it.

A recipe config can ask Lightning for an EMA of the weights (``trainer.callbacks``:
``lightning_mnist.training.callbacks.EMAWeightAveraging`` with a ``decay``). Lightning's callback keeps
a torch ``AveragedModel`` of the whole module, buffers included (``use_buffers=True``), and:

- after every optimizer step: the first time, copies the weights; after that,
  ``average = decay * average + (1 - decay) * weights``, for every parameter **and** the BatchNorm
  moving mean and variance;
- validates with the averaged weights (swapped in for the validation, swapped back after), so the
  validation loss, early stopping and the checkpoint choice all see the average, and the checkpoints
  hold the averaged weights, which is what ``fit`` finally tests.

Keras' own optimizer EMA (``use_ema``, ``ema_momentum``, with ``SwapEMAWeights``) averages only the
trainable variables, not BatchNorm's moving statistics, so it would validate and test another
network; :class:`WeightAveraging` averages ``model.weights`` (trainable and not; not the random
state of Dropout's seed generator, which is no weight in either framework) instead. It sits
after ``EarlyStopping`` in the callbacks: the average is swapped in when validation begins and swapped
back only at the end of the epoch, after ``EarlyStopping`` has kept the best epoch's weights (the
averaged ones, as Lightning's best checkpoint), which it restores at the end of training.
"""

from __future__ import annotations

from keras_bridge.backend import import_keras

keras = import_keras()

class WeightAveraging(keras.callbacks.Callback):
    """Lightning's ``EMAWeightAveraging(decay=...)`` for a Keras ``fit``: every variable averaged after every step.

    Args:
        decay: the weight of the old average at each update (Lightning's default 0.999).
    """

    def __init__(self, decay: float = 0.999) -> None:
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be within [0, 1], got {decay}")
        self.decay = float(decay)
        self.average: list | None = None  # one variable per model weight, in model.weights order
        self.swapped = False

    def on_train_begin(self, logs=None):
        self.average, self.swapped = None, False

    def on_train_batch_end(self, batch, logs=None):
        variables = self.model.weights
        if self.average is None:  # torch's AveragedModel: the first update copies
            self.average = [keras.Variable(v.numpy(), trainable=False, name=f"ema_{i}", dtype=v.dtype)
                            for i, v in enumerate(variables)]
            return
        for average, variable in zip(self.average, variables):
            average.assign(self.decay * average.value + (1.0 - self.decay) * variable.value)

    def _swap(self) -> None:
        for average, variable in zip(self.average, self.model.weights):
            held = variable.numpy()  # a copy: .value may be the variable itself
            variable.assign(average.value)
            average.assign(held)
        self.swapped = not self.swapped

    def on_test_begin(self, logs=None):
        """Validation inside ``fit`` scores the averaged weights, as Lightning's validation does."""
        if self.average is not None and not self.swapped:
            self._swap()

    def on_epoch_end(self, epoch, logs=None):
        """Back to the training weights, once the callbacks before this one have seen the averaged ones."""
        if self.swapped:
            self._swap()

"""A torch network built from an architecture description: Keras' layers under Keras' names, run in graph order.

``KerasNetwork(Architecture.load("notebook"))`` is the notebook's CNN; any description of
supported layers, a chain or a graph, builds the same way (see ``mnist_common.architecture``).
Each layer is a submodule named as the Keras layer is (``network.conv2d_1.weight`` is the
Keras model's ``get_layer("conv2d_1").kernel``, transposed), and ``forward`` runs them in
Keras' layer order, each on the outputs of the layers it names: a plain loop a reader can
follow, which ``torch.compile`` and ``torch.export`` trace into one graph.

The network returns logits: a final softmax (a ``Dense(..., activation="softmax")`` or a
``Softmax`` layer, also one followed only by linear Activations) is left out, because
cross-entropy on logits is the stable form; the classifier applies the softmax where users see
probabilities. A model whose outputs are probabilities with no such softmax to leave out (a
softmax then a Dropout, which drops probabilities in training; per-pixel softmaxes averaged by a
pooling) gives their log (:func:`probabilities_as_logits`), whose softmax is those probabilities again.

Inputs are the model's own layout, in torch's terms: (N, C, H, W) for an (H, W, C) model,
(N, H, W) or (N, features) otherwise. MNIST images, (N, 1, 28, 28), are accepted by every
MNIST model whatever its layout (they are reshaped, as a Keras user reshapes them), so the
data, the classifier and the predictors feed every model the same batches.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from mnist_common.architecture import Architecture, Softmax
from mnist_common.architecture.layers import Layer, Operation
from mnist_common.errors import UserError
from lightning_mnist.models.constraints import constrained
from lightning_mnist.models.layers import build, converter_of
from lightning_mnist.models.layers.layout import to_torch_layout, torch_shape


# Keras clips probabilities to [1e-7, 1 - 1e-7] in its cross-entropy; the same floor keeps their log finite.
PROBABILITY_FLOOR = 1e-7


def probabilities_as_logits(probabilities: torch.Tensor) -> torch.Tensor:
    """Logits whose softmax is ``probabilities`` (rows summing to 1): their log, floored as Keras floors them.

    Cross-entropy on these is the negative log-likelihood of the probabilities, as Keras computes it
    for a model that outputs probabilities."""
    return probabilities.clamp_min(PROBABILITY_FLOOR).log()


def _without_softmax(layer: Layer) -> Layer | None:
    """The output layer with its softmax left out (None: the layer is only a softmax, or ``ops.softmax``)."""
    if isinstance(layer, (Softmax, Operation)):
        return None
    return dataclasses.replace(layer, activation="linear")


def softmax_to_output(architecture: Architecture) -> set[str]:
    """The layers that compute on logits in torch where Keras' compute on probabilities: the softmax left out of the
    logits (:attr:`Architecture.softmax_node`) and the linear Activations between it and the output."""
    softmax = architecture.softmax_node
    if softmax is None:
        return set()
    by_name, node, names = {n.name: n for n in architecture.nodes}, architecture.output, set()
    while node.name != softmax.name:
        names.add(node.name)
        node = by_name[node.inputs[0]]
    return names | {softmax.name}


class KerasNetwork(nn.Module):
    """The layers of ``architecture`` as torch modules; ``forward`` gives logits (see the module docstring)."""

    def __init__(self, architecture: Architecture) -> None:
        super().__init__()
        self.architecture = architecture
        # set before the layers, so that a layer named like one of these is refused as any attribute's name is
        self.input_shape = torch_shape(architecture.input_shape)
        self.log_of_outputs = architecture.probabilities_without_logits  # no logits to take: their log instead
        # (call, its module: the layer's, shared by its calls, its inputs, the values no later call needs once it
        # ran): the forward's plan.
        last_use = {name: index for index, node in enumerate(architecture.nodes) for name in node.inputs}
        self.plan = tuple((node.name, architecture.module_of(node), node.inputs,
                           tuple(sorted({i for i in node.inputs if last_use[i] == index})))
                          for index, node in enumerate(architecture.nodes))
        # (module, weight mapping, Keras shape, rule) for every weight a Keras constraint holds; as Keras' optimizers
        # and losses, only of weights that train (a frozen layer's are neither constrained nor penalised)
        self.weight_constraints = tuple((node.name, converter_of(node.layer).weights[weight], shape, rule)
                                        for node, _, weights in architecture.weight_shapes()
                                        for weight, shape in weights if node.layer.trains(weight)
                                        and (rule := node.layer.constraint_of(weight)) is not None)
        # (module, its weight's mapping, l1, l2) for every weight a Keras regularizer penalises (Keras' ``losses``)
        self.weight_penalties = tuple((node.name, converter_of(node.layer).weights[weight],
                                       rule["config"].get("l1", 0.0), rule["config"].get("l2", 0.0))
                                      for node, _, weights in architecture.weight_shapes() for weight, _ in weights
                                      if node.layer.trains(weight)
                                      and (rule := node.layer.regularizer_of(weight)) is not None)
        softmax = architecture.softmax_node
        # layer -> (l1, l2, whether its Keras outputs are the softmax of what its module gives: the softmax left out
        # of the logits, and the linear Activations after it) for every layer whose outputs a Keras activity
        # regularizer penalises
        on_logits = softmax_to_output(architecture)
        self.activity_penalties = {node.name: (rule["config"].get("l1", 0.0), rule["config"].get("l2", 0.0),
                                               node.name in on_logits)
                                   for node in architecture.nodes if (rule := node.layer.activity_rule()) is not None}
        where = architecture.source or architecture.name  # the file a refused name can be changed in
        taken = set(dir(self))  # once: the layers' own names are unique (the architecture checked them)
        for node in (node for node in architecture.nodes if architecture.module_of(node) == node.name):  # a module
            # per layer (and per call of a layer without weights)
            layer = _without_softmax(node.layer) if softmax is not None and node.name == softmax.name else node.layer
            if node.name in taken:
                raise UserError(f"{where}: layer name {node.name!r} is also an attribute of the torch network "
                                f"(torch.nn.Module's or its own); rename the layer")
            if "." in node.name:
                raise UserError(f"{where}: layer name {node.name!r} holds a '.', which torch uses "
                                f"between module names; rename the layer")
            module = nn.Identity() if layer is None else build(layer, *architecture.input_shapes_of(node))
            self.add_module(node.name, module)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x, penalise=False)[0]

    @property
    def penalises_activity(self) -> bool:
        """Whether a Keras activity regularizer adds to the loss (:meth:`logits_and_activity_penalty`)."""
        return bool(self.activity_penalties)

    def logits_and_activity_penalty(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The logits and what Keras' activity regularizers add to the loss for this batch (None: the network has
        none): for each such layer, ``l1 * sum(|y|) + l2 * sum(y ** 2)`` of its outputs ``y`` (the probabilities
        where its softmax is left out of the logits) divided by the batch size, as Keras adds it at every call, in
        training and evaluation alike. The forward of training and scoring; ``forward`` computes no penalty."""
        return self.run(x, penalise=bool(self.activity_penalties))

    def run(self, x: torch.Tensor, penalise: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The layers in Keras' order, each on the outputs it is called on: the logits, and with ``penalise`` the
        activity penalty (:meth:`logits_and_activity_penalty`)."""
        if x.dim() != len(self.input_shape) + 1:  # MNIST images for a (28, 28), (784,) or (784, 1) model
            x = x.reshape(len(x), *self.input_shape)
        if x.shape[1:] != self.input_shape:  # its paddings, crops and bins are computed for the size it is built at
            raise ValueError(f"the network takes inputs of shape (batch, {', '.join(map(str, self.input_shape))}) "
                             f"(torch's layout), got {tuple(x.shape)}; a Keras input size left open is built at "
                             f"MNIST's (28 rows or columns, or as many steps as hold its 784 pixels)")
        if self.architecture.input_dtype == "uint8":  # bytes: the nearest whole one within 0-255 (what a picture's
            x = x.clamp(0, 255).round()  # pixels are; the commands feed Keras whole bytes too: model_pixels)
        values = {self.architecture.input_name: x}
        penalty = None
        for name, module, inputs, done in self.plan:
            values[name] = getattr(self, module)(*(values[i] for i in inputs))
            if penalise and name in self.activity_penalties:
                term = self.activity_penalty(values[name], *self.activity_penalties[name])
                penalty = term if penalty is None else penalty + term
            for finished in done:
                del values[finished]
        outputs = values[self.architecture.output.name]
        return (probabilities_as_logits(outputs) if self.log_of_outputs else outputs), penalty

    @staticmethod
    def activity_penalty(y: torch.Tensor, l1: float, l2: float, softmax_left_out: bool) -> torch.Tensor:
        """Keras' L1L2 activity penalty of one layer's outputs (sums that a layout does not change), per example."""
        if softmax_left_out:  # Keras penalises the layer's probabilities (its softmax over the last axis)
            y = torch.softmax(y, dim=-1)
        return (l1 * y.abs().sum() + l2 * y.square().sum()) / len(y)

    @torch.no_grad()
    def apply_constraints(self) -> None:
        """Keras' weight constraints, as its optimizers apply them after every step: each weight replaced by its
        constrained value, computed in Keras' layout (the constraint's axes are Keras')."""
        for module, mapping, shape, rule in self.weight_constraints:
            weight = mapping.tensor_of(getattr(self, module))
            weight.copy_(mapping.torch_view(constrained(mapping.keras_view(weight, shape), rule), shape))

    def regularization_loss(self) -> torch.Tensor | None:
        """What Keras adds to the loss for its weight regularizers, in training and evaluation alike: the sum over
        regularised weights of ``l1 * sum(|w|) + l2 * sum(w ** 2)`` (sums that a weight's torch layout does not
        change). None for a network without any (nothing to add, no time spent)."""
        total = None
        for module, mapping, l1, l2 in self.weight_penalties:
            weight = mapping.tensor_of(getattr(self, module))
            for factor, term in ((l1, torch.abs), (l2, torch.square)):
                if factor:
                    penalty = factor * term(weight).sum()
                    total = penalty if total is None else total + penalty
        return total

    @property
    def outputs_probabilities(self) -> bool:
        """Whether the Keras model's outputs are ``softmax(self(x))`` (else they are ``self(x)`` itself)."""
        return self.architecture.outputs_probabilities

    def keras_outputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the Keras model of the same architecture outputs for ``x``."""
        logits = self(x)
        return torch.softmax(logits, dim=1) if self.outputs_probabilities else logits


class Probabilities(nn.Module):
    """Networks of one input and class count as what a deployed file computes: their mean probabilities.

    The network returns logits (see the module docstring), but a file run by a runtime that
    knows nothing of this project must give what the Keras model gives: probabilities, the
    softmax in the graph. One network gives its softmax; a k-fold run's networks the mean of theirs,
    as the ensemble predicts. Inputs are the Keras model's own layout (``architecture.input_shape``,
    (N, H, W, C) for images), so the file takes what the ``.keras`` file takes and gives what it gives.
    """

    def __init__(self, networks: list[KerasNetwork]) -> None:
        super().__init__()
        if not networks:
            raise ValueError("Probabilities needs at least one network")
        self.networks = nn.ModuleList(networks)
        self.architecture = networks[0].architecture
        self.input_shape = tuple(self.architecture.input_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = to_torch_layout(x)
        probabilities = [torch.softmax(network(x), dim=1) for network in self.networks]
        return probabilities[0] if len(probabilities) == 1 else torch.stack(probabilities).mean(0)


def keras_parameter_count(model: nn.Module) -> tuple[int, int]:
    """(trainable, non-trainable) counted as Keras does: the state dict's buffers (BatchNorm moving statistics,
    Normalization's adapted mean, variance and count) are non-trainable weights.

    For the notebook's network: (225226, 192), 225,418 in all.
    """
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    parameters = {name for name, _ in model.named_parameters()}
    stored = sum(v.numel() for name, v in model.state_dict().items() if name not in parameters)
    return trainable, frozen + stored

"""``.onnx``: an ONNX model (opset 18), run by ONNX Runtime in the proof, as it runs in a product.

Written by torch's own exporter (``torch.onnx.export(dynamo=True)``, which builds the graph
with onnxscript) from the same ``torch.export`` trace as ``.pt2``; the weights are inside the
file (no external data), the batch axis is dynamic, the input is ``input`` in the Keras model's
layout and the output ``probabilities``. :func:`mnist_runner` reads one back for ``predict --backend
onnx``, this project's or one from elsewhere of an MNIST model's shapes. Opset 18 is torch's exporter's own default: every
layer of the table exports to it (exact gelu becomes its erf formula), and ONNX Runtime 1.14
and later run it.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch
from torch import nn

from mnist_common.architecture import MNIST_CLASSES, MNIST_LAYOUTS, MNIST_PIXELS, is_mnist_layout
from mnist_common.architecture.description import MAX_ACTIVATIONS
from mnist_common.errors import UserError, escaped, one_line
from mnist_common.files import temporary_folder
from lightning_mnist.checkpoints import load_networks
from lightning_mnist.formats.base import (DEPLOY_SOURCES, INPUT_NAME, OUTPUT_NAME, Export, Format, Runner,
                                          export_proven)
from lightning_mnist.models.network import Probabilities

SUFFIX = ".onnx"
OPSET = 18
PIXELS_KEY = "mnist_pixel_scale"  # metadata: what [0, 1] pixels are multiplied by for the model (absent: 1)


def save(module: nn.Module, inputs: tuple[torch.Tensor, ...], path: Path) -> None:
    """Export ``module`` on ``inputs`` to ONNX with the batch axis dynamic, weights inside the file."""
    names = [INPUT_NAME] if len(inputs) == 1 else [f"{INPUT_NAME}_{i}" for i in range(len(inputs))]
    axes = tuple({0: "batch"} for _ in inputs)  # a named axis: the file's inputs and output say "batch"
    variadic = any(p.kind is p.VAR_POSITIONAL for p in inspect.signature(module.forward).parameters.values())
    quiet = logging.getLogger("torch.onnx")  # the exporter logs each step of a successful export
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        torch.onnx.export(module, inputs, path, input_names=names, output_names=[OUTPUT_NAME], opset_version=OPSET,
                          dynamo=True, external_data=False, verbose=False,
                          dynamic_shapes=(axes,) if variadic else axes)  # as forward takes them: Add(*inputs)
    finally:
        quiet.setLevel(level)
    architecture = getattr(module, "architecture", None)
    if architecture is not None and architecture.pixel_scale != 1.0:  # a model that takes 0-255 pixels says so
        import onnx

        model = onnx.load(path)
        onnx.helper.set_model_props(model, {PIXELS_KEY: f"{architecture.pixel_scale:g}"})
        onnx.save(model, path)


def session(model: Path | bytes, threads: int | None = None):
    """An ONNX Runtime session of a file (or a model's bytes) on the CPU (the runtime checks the model as it reads
    it; no code runs). ``threads``: its intra-op thread pool (None: ONNX Runtime's default, one per core)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.log_severity_level = 4  # fatal only: its errors reach the caller as exceptions, said in one line
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return onnxruntime.InferenceSession(model if isinstance(model, bytes) else str(model), sess_options=options,
                                        providers=["CPUExecutionProvider"])


def exported_bytes(source: Path) -> bytes:
    """``source``'s model (a ``.ckpt``, ``.keras`` or k-fold run) exported to ONNX in memory, as :data:`FORMAT`
    writes it (a temporary folder holds the file only while the exporter writes it; nothing is left)."""
    networks = load_networks(source)
    for network in networks:
        network.architecture.require_one_distribution(f"{source}: ONNX Runtime's backend and {SUFFIX} files")
    module = Probabilities(networks).eval()
    example = torch.zeros(2, *module.input_shape)
    with temporary_folder() as folder:
        save(module, (example,), Path(folder) / f"model{SUFFIX}")
        return (Path(folder) / f"model{SUFFIX}").read_bytes()


def load(path: Path) -> Runner:
    """Run a saved model as its users will: ONNX Runtime on its single input."""
    runtime = session(path)
    [given] = runtime.get_inputs()

    def run(x: np.ndarray) -> np.ndarray:
        return runtime.run(None, {given.name: np.ascontiguousarray(x, dtype=np.float32)})[0]

    return run


EXPORT = Export(suffix=SUFFIX, runtime="ONNX Runtime", save=save, load=load, details=f", opset {OPSET}")


PROBABILITY_SUM_TOLERANCE = 1e-4


def _shape_text(shape: list) -> str:
    return "(" + ", ".join(str(d) if isinstance(d, int) else "batch" for d in shape) + ")"


def mnist_runner(path: str | Path, threads: int | None = None, model: bytes | None = None) -> Runner:
    """Digit probabilities from an ``.onnx`` file, this project's or one from elsewhere: (N, 28, 28) pixels in.

    A file is accepted when ONNX Runtime reads it (no code runs: a model is a graph of standard
    operators) and its single float input and output have an MNIST model's shapes: (batch, 28, 28, 1)
    or the pixels in reading order (:func:`~mnist_common.architecture.is_mnist_layout`: (batch, 784),
    (batch, 28, 28), (batch, 784, 1)) in, (batch, 10) out, the batch axis dynamic or 1. Anything else is
    a one-line UserError. Outputs whose rows are non-negative and sum to 1 are taken as probabilities
    (this project's files give them); other outputs are logits, and get their softmax. ``model``: the
    model's bytes (an export in memory), ``path`` then only names it.
    """
    step = _check_graph(model if model is not None else Path(path), path)  # before ONNX Runtime folds constants
    try:
        runtime = session(model if model is not None else Path(path), threads)
    except Exception as err:  # ONNX Runtime's errors for files the checks read but it cannot run
        raise UserError(f"{path} is not a readable ONNX model ({one_line(err)})") from None
    given, taken = runtime.get_inputs(), runtime.get_outputs()
    shapes = "takes " + ", ".join(f"{_shape_text(i.shape)} {i.type}" for i in given) + \
             " and gives " + ", ".join(_shape_text(o.shape) for o in taken)
    if len(given) != 1 or len(taken) != 1:
        raise UserError(f"{path}: an MNIST model has one input and one output; this one {shapes}")
    [given], [taken] = given, taken
    features, batch = list(given.shape[1:]), given.shape[0] if given.shape else None
    if (given.type != "tensor(float)" or not is_mnist_layout(features) or list(taken.shape[1:]) != [MNIST_CLASSES]
            or len(taken.shape) != 2 or (isinstance(batch, int) and batch != 1)):
        raise UserError(f"{path}: an MNIST model takes float (batch, ...) inputs of {MNIST_LAYOUTS} and gives (batch, "
                        f"{MNIST_CLASSES}), the batch dynamic or 1; this one {shapes}")
    step = 1 if batch == 1 else step  # a file fixed at one image a run gets them one by one
    scale = pixel_scale(runtime, path)

    def rows(chunk: np.ndarray) -> np.ndarray:
        try:
            out = runtime.run(None, {given.name: chunk})[0]
        except Exception as err:  # a graph that fails on its input (one that allocates past the memory, say)
            raise UserError(f"{path}: ONNX Runtime failed to run it on {len(chunk)} image(s) "
                            f"({one_line(err)})") from None
        if np.shape(out) != (len(chunk), MNIST_CLASSES):  # a file that declares a batch it does not give
            raise UserError(f"{path}: gave an output of shape {np.shape(out)} for {len(chunk)} image(s); an MNIST "
                            f"model gives one row of {MNIST_CLASSES} per image")
        return out

    def run(pixels: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(pixels, dtype=np.float32).reshape(len(pixels), *features) * np.float32(scale)
        padded = np.concatenate([x, np.zeros((-len(x) % step, *x.shape[1:]), np.float32)])  # blank images after
        outputs = np.concatenate([rows(padded[i:i + step]) for i in range(0, len(x), step)])[:len(x)]
        outputs = outputs.astype(np.float32)
        if (outputs >= 0).all() and np.allclose(outputs.sum(1), 1.0, atol=PROBABILITY_SUM_TOLERANCE):
            return outputs
        shifted = np.exp(outputs - outputs.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    run(np.zeros((1, MNIST_PIXELS), np.float32))  # once on blank images: refused here, not later
    return run


# Operators whose subgraphs run as often as the data says (a Loop's trip count is any number): no MNIST classifier
# needs them, and a file holding one could run without end
CONTROL_FLOW = frozenset({"Loop", "Scan", "If"})
# ONNX's standard operators whose work is in proportion to their inputs' and outputs' sizes (elementwise, shape
# and layout, gathers and scatters, normalisations, reductions, resizing, sorting a tensor's values): with the
# sizes bounded, so is their work. The operators of :data:`MULTIPLY_ADDS` and :data:`RECURRENT` are costed from their
# shapes. Any other (a RoiAlign's samples, a determinant, a DFT, non-maximum suppression, another domain's) is
# refused: its work cannot be told before it runs (a 629-byte RoiAlign ran for minutes, hostile round 10)
SIZED_WORK = frozenset("""
    Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh BatchNormalization BitShift BitwiseAnd BitwiseNot
    BitwiseOr BitwiseXor Cast CastLike Ceil Celu Clip Compress Concat Constant ConstantOfShape Cos Cosh CumSum
    DepthToSpace DequantizeLinear Div Dropout DynamicQuantizeLinear Elu Equal Erf Exp Expand EyeLike Flatten Floor
    Gather GatherElements GatherND Gelu GlobalAveragePool GridSample GlobalLpPool GlobalMaxPool Greater GreaterOrEqual
    GroupNormalization HardSigmoid HardSwish Hardmax Identity InstanceNormalization IsInf IsNaN LayerNormalization
    LeakyRelu Less LessOrEqual Log LogSoftmax LpNormalization Max Mean MeanVarianceNormalization Min Mish Mod Mul Neg
    Not OneHot Or PRelu Pad Pow QuantizeLinear Range Reciprocal ReduceL1 ReduceL2 ReduceLogSum ReduceLogSumExp
    ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape Resize Round ScatterElements
    ScatterND Selu Shape Shrink Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt
    Squeeze Sub Sum Tan Tanh ThresholdedRelu Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor""".split())
STANDARD_DOMAINS = ("", "ai.onnx")
# The multiply-adds an image may cost, constants folded when the session is made included: a description's largest
# layers (a 3x3 convolution of 512 channels on a 28x28 map: 1.8e9) several times over; the notebook's CNN takes 1e7
MAX_MULTIPLY_ADDS = 10**10
# The values the other operators read an image, each input as often as it is listed: a tensor is read by a layer or
# two (a residual's), so a few times what the outputs hold; a Sum listing one tensor 20,000 times (a 92 KB file)
# held little and ran for minutes (hostile round 13)
MAX_VALUES_READ = 4 * MAX_ACTIVATIONS
MAX_BATCH_VALUES = 2**26  # values a run may hold in all: a batch of images is as large as stays within this
MAX_RUN_BATCH = 64
# Operators a graph may hold once its local functions are inlined: this bridge writes some 400 for a GRU over 784
# steps, a few dozen a layer at most (MAX_LAYERS of 2,000); a function calling another ten times, ten deep, is 10**10
# from a 33 KB file, and inlining 10**5 took 10 s and 0.9 GB
MAX_INLINED_NODES = 100_000


def _check_graph(model: Path | bytes, path: str | Path) -> int:
    """Refuse, before ONNX Runtime reads it, a graph that holds :data:`CONTROL_FLOW` or whose tensors need memory,
    or whose operators need work, out of proportion to an MNIST model, in one line naming them; else the number of
    images the file is to be run on at a time (always that many: a last batch is filled up with blank images).

    ONNX Runtime allocates what a graph's operators ask for, and folds constants when it makes the session: a 31 KB
    file that Expands a number to N x N took N^2 memory (4.3 GB at N = 30,000) before anything was compared. So every
    operator's output is sized first, by ONNX's own shape inference on the images' shape (the file's own functions
    inlined: a function's Loop or Expand is the graph's): a tensor whose shape it cannot tell is refused (its memory
    cannot be known before running), and so are tensors of more than
    :data:`~mnist_common.architecture.description.MAX_ACTIVATIONS` values an image in all (what a description of
    this bridge may hold), convolutions and products of more than :data:`MAX_MULTIPLY_ADDS` multiply-adds an image
    (a Conv of two constants holds few values and takes hours), and tensors that grow faster than the batch from one
    image to the batch it runs on (a batch's rows multiplied by each other's, or a size b(b - 1)(b - 2) that is 0 for
    one and two images): the file only ever runs on that batch, of at most :data:`MAX_BATCH_VALUES` values.
    """
    import onnx
    import onnx.inliner

    try:
        proto = onnx.load_model_from_string(model) if isinstance(model, bytes) else onnx.load(
            str(model), load_external_data=False)
    except Exception as err:  # protobuf's errors for damaged, truncated or foreign files
        raise UserError(f"{path} is not a readable ONNX model ({one_line(err)})") from None
    if proto.functions:
        inlined = _inlined_nodes(proto, path)
        if inlined > MAX_INLINED_NODES:
            raise UserError(f"{path}: its local functions expand to {inlined:,} operators, more than an MNIST model "
                            f"of this bridge may hold ({MAX_INLINED_NODES:,}); it is not run")
        try:
            proto = onnx.inliner.inline_local_functions(proto)
        except Exception as err:
            raise UserError(f"{path} is not a readable ONNX model ({one_line(err)})") from None
    found: set[str] = set()

    def visit(graph) -> None:
        for node in graph.node:
            found.add(node.op_type)
            for attribute in node.attribute:
                for subgraph in (attribute.g, *attribute.graphs) if attribute.HasField("g") else attribute.graphs:
                    visit(subgraph)

    visit(proto.graph)
    if found & CONTROL_FLOW:
        raise UserError(f"{path}: its graph holds control flow ({', '.join(sorted(found & CONTROL_FLOW))}), which "
                        f"no MNIST classifier needs and which could run without end; it is not run")
    unbounded = sorted({f"{node.domain}.{node.op_type}" if node.domain not in STANDARD_DOMAINS else node.op_type
                        for node in proto.graph.node if node.domain not in STANDARD_DOMAINS
                        or node.op_type not in SIZED_WORK | MULTIPLY_ADDS | RECURRENT.keys()})
    if unbounded:
        raise UserError(f"{path}: its graph holds {', '.join(escaped(op)[:100] for op in unbounded[:5])}, whose work "
                        f"cannot be told from its shapes before it runs (this runner takes ONNX's standard operators "
                        f"of convolutional and recurrent classifiers); it is not run")
    sparse = next(_sparse_tensors(proto.graph), None)
    if sparse is not None:  # ONNX Runtime makes it dense when it loads the file: [1e9, 10] from a few bytes
        raise UserError(f"{path}: its graph holds a sparse tensor ({escaped(sparse)[:100]}), which ONNX Runtime makes "
                        f"dense when it loads the file, whatever its size; this runner takes dense tensors only (as "
                        f"this bridge writes them); it is not run")
    external = [tensor.name for tensor in _tensors(proto.graph) if tensor.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        raise UserError(f"{path}: its tensor {escaped(external[0])[:100]} is stored in another file; this runner "
                        f"takes a model whole in one file (save it with save_as_external_data=False)")
    one, work, reads = _operator_sizes(proto, 1, path)
    _check_sizes(one, one, 1, path)
    total = sum(one.values())
    if total > MAX_ACTIVATIONS:
        (operator, name), values = max(one.items(), key=lambda item: item[1])
        raise UserError(f"{path}: its operators' outputs hold {total:,} values for one image, more than an MNIST "
                        f"model of this bridge may ({MAX_ACTIVATIONS:,}; the largest, {operator} output "
                        f"{escaped(name)[:100]}, {values:,}); it is not run")
    _check_total(work, MAX_MULTIPLY_ADDS, 1, path)
    _check_total(reads, MAX_VALUES_READ, 1, path, "read {} values")
    batch = max(1, min(MAX_RUN_BATCH, MAX_BATCH_VALUES // max(total, 1)))
    if batch > 1:
        sizes, work, reads = _operator_sizes(proto, batch, path)
        _check_sizes(sizes, one, batch, path)
        _check_total(work, MAX_MULTIPLY_ADDS, batch, path)
        _check_total(reads, MAX_VALUES_READ, batch, path, "read {} values")
    return batch


def _check_sizes(sizes: dict[tuple[str, str], int | None], one: dict[tuple[str, str], int | None], batch: int,
                 path: str | Path) -> None:
    """Refuse an operator output whose shape is unknown, or that holds more than ``batch`` times its values for one
    image (``one``) for a batch of ``batch``."""
    for (operator, name), values in sizes.items():
        if values is None or one.get((operator, name)) is None:
            raise UserError(f"{path}: ONNX's shape inference cannot tell the shape of {operator} output "
                            f"{escaped(name)[:100]} from the images' shape, so its memory is unknown before it "
                            f"runs; it is not run")
        if values > batch * one[operator, name]:
            raise UserError(f"{path}: {operator} output {escaped(name)[:100]} grows faster than the batch "
                            f"({one[operator, name]:,} values for one image, {values:,} for {batch}); it is not run")


Counts = dict[tuple[str, str], int]  # (operator, output name) -> a number of its


def _check_total(counts: Counts, limit: int, batch: int, path: str | Path, what: str = "take {} multiply-adds") -> None:
    """Refuse operators whose ``counts`` (their multiply-adds; ``what`` says what they count) pass ``limit`` an image
    in all, for ``batch``."""
    total = sum(counts.values())
    if total > batch * limit:
        (operator, name), most = max(counts.items(), key=lambda item: item[1])
        raise UserError(f"{path}: its operators {what.format(f'{total:,}')} for {batch} image(s), more than an MNIST "
                        f"model of this bridge may ({limit:,} an image; the largest, {operator} output "
                        f"{escaped(name)[:100]}, {most:,}); it is not run")


def _operator_sizes(proto, batch: int, path: str | Path) -> tuple[dict[tuple[str, str], int | None], Counts, Counts]:
    """(operator, output name) -> its values for a batch of ``batch`` images (None: a shape inference cannot tell),
    by ONNX's shape inference with data propagation (shapes computed from shapes, as a Reshape's are); the
    multiply-adds of each convolution, product and pooling (:func:`_multiply_adds`); and the values each other
    operator reads (its inputs', each as often as it is listed)."""
    import onnx

    sized = onnx.ModelProto()
    sized.CopyFrom(proto)
    del sized.graph.value_info[:]  # the file's own claims of its tensors' shapes: inferred here, not taken
    constants = {tensor.name for tensor in sized.graph.initializer}
    for given in sized.graph.input:
        dims = given.type.tensor_type.shape.dim
        if given.name not in constants and dims and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch  # the batch axis, dynamic (or unnamed) in the file
    try:
        inferred = onnx.shape_inference.infer_shapes(sized, data_prop=True)
    except Exception as err:  # a graph inconsistent with its own operators' rules
        raise UserError(f"{path} is not a consistent ONNX model ({one_line(err)})") from None
    types = {value.name: value.type.tensor_type for value in (*inferred.graph.input, *inferred.graph.value_info,
                                                                 *inferred.graph.output)}
    strings = [*(tensor.name or "a constant" for tensor in _tensors(inferred.graph)
                 if tensor.data_type == onnx.TensorProto.STRING),
               *(name for name, tensor in types.items() if tensor.elem_type == onnx.TensorProto.STRING)]
    if strings:  # a value of a string is its bytes, which none of the counts here sees: 1 MB expanded took 9 GB
        raise UserError(f"{path}: its graph holds a tensor of strings ({escaped(strings[0])[:100]}), which no MNIST "
                        f"classifier computes on and whose memory its values do not tell; it is not run")
    dims: dict[str, tuple[int, ...] | None] = {tensor.name: tuple(tensor.dims) for tensor in inferred.graph.initializer}
    for name, tensor in types.items():
        given = tensor.shape.dim if tensor.HasField("shape") else None
        known = given is not None and all(dim.HasField("dim_value") and dim.dim_value >= 0 for dim in given)
        dims.setdefault(name, tuple(dim.dim_value for dim in given) if known else None)
    sizes: dict[tuple[str, str], int | None] = {}
    work: dict[tuple[str, str], int] = {}
    reads: dict[tuple[str, str], int] = {}
    for node in inferred.graph.node:
        for name in filter(None, node.output):  # an optional output left out is named ""
            shape = dims.get(name)
            sizes[node.op_type, name] = None if shape is None else math.prod(shape)
        if node.op_type in MULTIPLY_ADDS and node.output and node.output[0]:
            work[node.op_type, node.output[0]] = _multiply_adds(node, dims, path)
        if node.op_type in RECURRENT:  # (its outputs are optional: named by the first it gives)
            named, (steps, gates) = next(filter(None, node.output), node.name), _recurrent_work(node, dims, path)
            sizes[node.op_type, f"{named} (the gates of its steps)"] = gates
            work[node.op_type, named] = steps
        elif node.op_type not in MULTIPLY_ADDS:
            named = next(filter(None, node.output), node.name)
            reads[node.op_type, named] = sum(math.prod(dims[name]) for name in node.input
                                             if name and dims.get(name) is not None)
    return sizes, work, reads


def _tensors(graph) -> Iterator:
    """Every tensor a graph holds: its initializers and its nodes' tensor attributes (a Constant's value)."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors


def _inlined_nodes(proto, path: str | Path) -> int:
    """The operators of the main graph once its local functions are inlined, counted over the call tree without
    inlining it (each function's count once); a function that calls itself, directly or not, is refused."""
    bodies = {(function.domain, function.name): function for function in proto.functions}
    counted: dict[tuple[str, str], int] = {}

    def count(nodes, calling: tuple) -> int:
        total = 0
        for node in nodes:
            key = (node.domain, node.op_type)
            if key not in bodies:
                total += 1
                continue
            if key in calling:
                raise UserError(f"{path}: its local function {escaped(node.op_type)[:100]} calls itself; it is not "
                                f"run")
            if key not in counted:
                counted[key] = count(bodies[key].node, (*calling, key))
            total += counted[key]  # a Python integer: 10**100 from a crafted tree is counted, not built
        return total

    try:
        return count(proto.graph.node, ())
    except RecursionError:  # thousands of functions each calling the next: no MNIST classifier's
        raise UserError(f"{path}: its local functions call each other thousands deep; it is not run") from None


def _sparse_tensors(graph) -> Iterator[str]:
    """The names of a graph's sparse tensors: its sparse initializers and its nodes' sparse attributes (a
    Constant's ``sparse_value``), each declaring a dense shape of any size in a few bytes."""
    for tensor in graph.sparse_initializer:
        yield tensor.values.name or tensor.indices.name or "a sparse initializer"
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("sparse_tensor") or attribute.sparse_tensors:
                where = node.name or (node.output[0] if node.output else "")
                yield f"{node.op_type} {where} {attribute.name}".replace("  ", " ")


# Recurrent operators, by the gates of each step: their work is every step's products with their weights
RECURRENT = {"LSTM": 4, "GRU": 3, "RNN": 1}


def _recurrent_work(node, dims: dict[str, tuple[int, ...] | None], path: str | Path) -> tuple[int, int]:
    """(multiply-adds, gate values held) of a recurrent operator, from its input (steps x batch x features, either
    way round) and its weights ``W`` (directions, gates x hidden, features) and ``R`` (..., hidden): each step's
    products of the input and of the last hidden state with them; ONNX Runtime holds every step's gates."""
    shapes = [dims.get(name) if name else None for name in node.input[:3]]
    if len(shapes) < 3 or any(shape is None or len(shape) != 3 for shape in shapes):
        _unknown_work(node, path)
    (steps, batch, features), (directions, gate_rows, _), (_, _, hidden) = shapes
    return steps * batch * directions * gate_rows * (features + hidden), steps * batch * directions * gate_rows


# Operators whose work is more than their outputs' sizes: multiply-adds (or comparisons) per output value, from
# their inputs' shapes
MULTIPLY_ADDS = frozenset({"Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "MatMul", "MatMulInteger",
                           "QLinearMatMul", "Gemm", "Einsum", "MaxPool", "AveragePool", "LpPool", "LRN"})


def _multiply_adds(node, dims: dict[str, tuple[int, ...] | None], path: str | Path) -> int:
    """The multiply-adds of one :data:`MULTIPLY_ADDS` operator, from its inputs' and output's shapes: each output
    value's reduction (a convolution's kernel over its group's channels, a product's inner size, a pooling's
    window); a transposed convolution's each input value's; an Einsum's every combination of its indices."""
    from onnx import helper

    shapes = [dims.get(name) if name else None for name in node.input]
    output = dims.get(node.output[0])
    weight = 3 if node.op_type == "QLinearConv" else 2 if node.op_type == "QLinearMatMul" else 1
    first, second = (shapes[0] if shapes else None), (shapes[weight] if len(shapes) > weight else None)
    attributes = {attribute.name: helper.get_attribute_value(attribute) for attribute in node.attribute}
    if node.op_type == "Einsum":
        equation = attributes.get("equation", b"")
        terms = (equation.decode() if isinstance(equation, bytes) else str(equation)).split("->")[0]
        terms = terms.replace(" ", "").split(",")
        sizes = {letter: size for term, shape in zip(terms, shapes) if shape is not None and "." not in term
                 for letter, size in zip(term, shape)}
        known = len(terms) == len(shapes) and all(shape is not None and "." not in term and len(term) == len(shape)
                                                  for term, shape in zip(terms, shapes))
        return math.prod(sizes.values()) if known else _unknown_work(node, path)
    if node.op_type == "LRN":  # a sum over ``size`` channels for each output value
        size = attributes.get("size")
        return math.prod(output) * size if output is not None and isinstance(size, int) else _unknown_work(node, path)
    if node.op_type in ("MaxPool", "AveragePool", "LpPool"):
        window = attributes.get("kernel_shape")
        return math.prod(output) * math.prod(window) if output is not None and window else _unknown_work(node, path)
    if first is None or second is None or output is None or not first or not second:
        return _unknown_work(node, path)
    if node.op_type == "ConvTranspose":
        return math.prod(first) * math.prod(second[1:])
    if node.op_type in ("Conv", "ConvInteger", "QLinearConv"):
        return math.prod(output) * math.prod(second[1:])
    if node.op_type == "Gemm":
        return math.prod(output) * (first[0] if attributes.get("transA") else first[-1])
    return math.prod(output) * first[-1]  # a MatMul's inner size: A's last axis


def _unknown_work(node, path: str | Path) -> NoReturn:
    raise UserError(f"{path}: ONNX's shape inference cannot tell the shapes of {node.op_type} "
                    f"{escaped(node.output[0])[:100]}'s inputs, so its work is unknown before it runs; it is not run")


def pixel_scale(runtime, path: str | Path) -> float:
    """What a file's model takes [0, 1] pixels multiplied by: its :data:`PIXELS_KEY` metadata (this project writes
    255 for a model that rescales 0-255 pixels itself), else 1."""
    value = runtime.get_modelmeta().custom_metadata_map.get(PIXELS_KEY, "1")
    try:
        scale = float(value)
    except ValueError:
        scale = float("nan")
    if scale not in (1.0, 255.0):
        raise UserError(f"{path}: metadata {PIXELS_KEY}={value!r}; this project reads 1 or 255")
    return scale


FORMAT = Format(suffix=SUFFIX, what="an ONNX model", sources=DEPLOY_SOURCES,
                write=partial(export_proven, EXPORT), backend="onnx", read=mnist_runner)

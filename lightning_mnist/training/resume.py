"""The training state of a checkpoint that ``fit --ckpt_path`` resumes, checked before Lightning restores it.

A weights-only load reads whatever plain values a file holds, and Lightning restores the optimizer,
the schedule, the loops' counters and the callbacks' states from them as they are: a tampered or
damaged file was a traceback deep in the restore (a list where a dict belongs, an optimizer group of
another size), or worse, a run that resumed without complaint from moments of the wrong shape, NaN
moments, no optimizer state or no loop counters, which is not the run it claims to continue. What a
run of this project saves is checked here, by its shape, and anything else refused in one line.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from mnist_common.documents import beyond_float_range
from mnist_common.errors import UserError
from mnist_common.mnist import TRAIN_IMAGES
from mnist_common.results import HISTORY_KEYS
from lightning_mnist.checkpoints import Checkpoint
from lightning_mnist.data.datamodule import MNISTDataModule
from lightning_mnist.models.optim import IMPLEMENTATION_FLAGS
from lightning_mnist.training.callbacks import RandomState

# the loops' counters are ints (and is_last_batch a bool); the data loader's resumable sampling a list of them
LOOP_LEAVES = (int, list)
SCHEDULE_COUNTERS = ("last_epoch", "_step_count")  # a torch schedule's steps taken (keys of its state_dict)
PARAMETER_GROUP = "params"  # a torch optimizer group's parameter ids, its other entries settings (lr, betas, ...)
FIXED_SETTINGS = ("eps", "weight_decay", "keras_eps")  # numbers no schedule changes (flags neither)
# flags that choose how torch computes the same update (a run on another device may differ in them), not what
LEARNING_RATES = ("lr", "initial_lr", "max_lr", "min_lr")  # an optimizer's, and what a schedule adds to its groups
ANNEALING = ("cos", "linear")  # the curves of torch's one-cycle schedule
SQUARED_MOMENTS = ("exp_avg_sq", "max_exp_avg_sq", "square_avg")  # Adam's, AMSGrad's and RMSprop's running squares
DATA_STATE = MNISTDataModule.__qualname__  # where Lightning keeps the data module's state in a checkpoint


def check_training_state(checkpoint: Checkpoint, groups: list[list[torch.nn.Parameter]], schedules: int,
                         optimizer: torch.optim.Optimizer | None = None, peak_lr: float | None = None,
                         training_images: int | None = None) -> None:
    """UserError naming the first part of ``checkpoint``'s training state that no run of this project saves;
    ``groups``: the parameters the resumed run's optimizer steps, group by group, in its order; ``schedules``: how
    many learning-rate schedules it steps (0 or 1); ``optimizer``: the one the resumed run builds (torch takes the
    saved groups' settings over its own: they must be settings it could have saved), ``peak_lr``: the highest
    learning rate its schedule reaches, where the run's settings fix it; ``training_images``: how many images an
    epoch of the run trains on (else the training set's)."""
    contents = checkpoint.contents
    where = f"--ckpt_path {checkpoint.path}"
    for counter in ("epoch", "global_step"):
        value = contents.get(counter)
        if not _count(value):
            raise UserError(f"{where}: its {counter} is {value!r}, not a count (a whole number, 0 or more)")
    callbacks = contents.get("callbacks")
    if not isinstance(callbacks, dict) or not all(isinstance(state, dict) for state in callbacks.values()):
        raise UserError(f"{where}: its callbacks' states are not a mapping of each callback's settings")
    for key, state in callbacks.items():
        check = CALLBACK_STATES.get(str(key).partition("{")[0])
        if check is not None and not _holds(check, state):
            raise UserError(f"{where}: the state of its callback {str(key).partition('{')[0]} is not one it saves")
    loops = contents.get("loops")
    if not isinstance(loops, dict) or not isinstance(loops.get("fit_loop"), dict):
        raise UserError(f"{where}: it holds no state of Lightning's training loop (its epoch and batch counters), so "
                        f"the run cannot go on where it stopped")
    _check_loop_counters(loops, where)
    _check_epochs_against_history(contents, callbacks, where)
    optimizers = contents.get("optimizer_states")
    if not isinstance(optimizers, list) or len(optimizers) != 1:
        found = (f"{len(optimizers)} optimizers' states" if isinstance(optimizers, list) else
                 f"a {type(optimizers).__name__} as its optimizers' states")
        raise UserError(f"{where}: it holds {found}; a run of this model saves its one optimizer's")
    _check_optimizer_state(optimizers[0], groups, where)
    if optimizer is not None:
        _check_group_settings(optimizers[0]["param_groups"], optimizer, peak_lr, where)
        _check_moments(optimizers[0]["state"], optimizer, where)
    saved = contents.get("lr_schedulers")
    if not isinstance(saved, list) or len(saved) != schedules or not all(
            isinstance(s, dict) and _plain_settings(s) and all(_count(s.get(k, 0)) for k in SCHEDULE_COUNTERS)
            and _schedule_runs_on(s) for s in saved):
        raise UserError(f"{where}: its learning-rate schedules' state is not what this run saves ({schedules} "
                        f"schedule{'s' if schedules != 1 else ''}, of numbers and settings, with steps left)")
    _check_data_order(contents.get(DATA_STATE), where, training_images or TRAIN_IMAGES)


def _schedule_runs_on(state: dict) -> bool:
    """A one-cycle schedule's state that torch can step on: steps left (its total not below the steps taken, which
    was a traceback at the next step), a curve torch has."""
    total = state.get("total_steps")
    if total is not None and not (_count(total) and total >= state.get("last_epoch", 0)):
        return False
    return state.get("_anneal_func_type", "cos") in ANNEALING  # (a key of the saved state, not an attribute read)


def _check_group_settings(saved: list[dict], optimizer: torch.optim.Optimizer, peak_lr: float | None,
                          where: str) -> None:
    """The saved groups' settings against those of the optimizer the resumed run builds: torch takes the saved ones
    over its own, without the checks its constructor makes, so a crafted group's negative learning rate trained by
    gradient ascent, ``betas`` (0.9, 1.0) to NaN, ``amsgrad`` or ``differentiable`` were tracebacks in the first step.
    Its flags and fixed settings (``eps``, ``weight_decay``, the second beta) must be the run's, what a schedule
    changes (the learning rate, the first beta) in torch's ranges, the learning rate no higher than ``peak_lr``."""
    what = f"{where}: its optimizer state"
    for index, (group, own) in enumerate(zip(saved, optimizer.param_groups)):
        missing = sorted(set(own) - set(group))
        if missing:
            raise UserError(f"{what}: parameter group {index} has no {', '.join(missing)}, which "
                            f"{type(optimizer).__name__} reads")
        for key, value in own.items():
            if key == PARAMETER_GROUP or key in IMPLEMENTATION_FLAGS:
                continue
            given = group[key]
            fixed = (isinstance(value, bool) or value is None or key in FIXED_SETTINGS) and key not in getattr(
                optimizer, "DERIVED_SETTINGS", ())  # (KerasAdam's eps: Keras' epsilon rescaled each step)
            if fixed and not _same(given, value):
                raise UserError(f"{what}: parameter group {index} has {key} {_shown(given)}; this run's "
                                f"{type(optimizer).__name__} has {_shown(value)}, which a schedule never changes")
        counter = getattr(optimizer, "STEP_COUNT", None)  # KerasAdam's, which its epsilon is computed from
        if counter in group and not _count(group[counter]):
            raise UserError(f"{what}: parameter group {index} has {counter} {_shown(group[counter])}, not a count of "
                            f"steps")
        betas = group.get("betas")
        if betas is not None and not (isinstance(betas, (list, tuple)) and len(betas) == 2 and all(
                _finite_number(b) and 0 <= b < 1 for b in betas) and _same(betas[1], own["betas"][1])):
            raise UserError(f"{what}: parameter group {index} has betas {betas!r}; each is in [0, 1), the second "
                            f"this run's {own['betas'][1]!r}")
        for key in LEARNING_RATES:
            rate = group.get(key, 0.0)
            rate = rate.item() if isinstance(rate, torch.Tensor) else rate
            if not _finite_number(rate) or rate < 0 or peak_lr is not None and rate > peak_lr * (1 + 1e-6):
                ceiling = f", at most this run's {peak_lr!r}" if peak_lr is not None else ""
                raise UserError(f"{what}: parameter group {index} has {key} {rate!r}; a learning rate is 0 or "
                                f"more{ceiling}")


def _check_moments(per_parameter: dict, optimizer: torch.optim.Optimizer, where: str) -> None:
    """Each stepped parameter's state holds what Adam reads (its step and moments): a state without them was a
    KeyError traceback in the first step."""
    if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return
    needed = {"step", "exp_avg", "exp_avg_sq"} | ({"max_exp_avg_sq"} if optimizer.defaults.get("amsgrad") else set())
    for index, values in per_parameter.items():
        missing = sorted(needed - set(values))
        if missing:
            raise UserError(f"{where}: its optimizer state for parameter {index} has no {', '.join(missing)}, which "
                            f"Adam reads")


def _same(given: Any, own: Any) -> bool:
    if isinstance(given, torch.Tensor) and given.numel() == 1:
        given = given.item()
    return type(given) is type(own) and given == own if isinstance(own, bool) or own is None else (
        _finite_number(given) and not isinstance(given, bool) and math.isclose(given, own, rel_tol=1e-9))


def _check_data_order(state: Any, where: str, images: int) -> None:
    """The data module's state: empty, or the training order of an epoch stopped inside (a seed torch takes, the
    images and batches taken: at least one, fewer than the epoch's ``images``). A crafted one was a traceback when
    the epoch began (one of 59,000 of a hold-out's 54,000: Lightning's, once the run had begun), or an epoch of no
    images and then one."""
    if state is None or state == {}:
        return
    order = state.get("train_order") if isinstance(state, dict) else None
    if not isinstance(state, dict) or set(state) - {"train_order"} or order not in (None, {}) and not (
            isinstance(order, dict) and set(order) == {"seed", "used", "batches"} and _seed(order["seed"])
            and _count(order["used"]) and _count(order["batches"])
            and 0 < order["batches"] <= order["used"] < images):
        raise UserError(f"{where}: its data module's state {_shown(state)[:200]} is not the training order a run "
                        f"saves (the epoch's seed, and the images and batches of it taken, of its {images:,})")


def _seed(value: Any) -> bool:
    """A seed torch's generator takes: an integer from -2**63 to 2**64 - 1."""
    return isinstance(value, int) and not isinstance(value, bool) and -(1 << 63) <= value < (1 << 64)


def _check_epochs_against_history(contents: dict, callbacks: dict, where: str) -> None:
    """Lightning's epoch counters within the run's own history of epochs (the epochs it trained, and the one it
    was in): a million epochs counted against a history of one was Lightning's traceback once the trainer was
    built."""
    history = next((state.get("history") for key, state in callbacks.items()
                    if str(key).partition("{")[0] == "EpochHistory"), None)
    if not isinstance(history, list):
        return
    progress = contents["loops"]["fit_loop"].get("epoch_progress") or {}
    counts = [value for part in progress.values() if isinstance(part, dict) for value in part.values()]
    if contents["epoch"] > len(history) or any(isinstance(c, int) and c > len(history) + 1 for c in counts):
        raise UserError(f"{where}: its epoch counters ({contents['epoch']}, {max(counts, default=0)}) are past the "
                        f"{len(history)} epoch(s) its history records; a run saves them together")


def _generators_take(state: dict) -> bool:
    """Whether torch's, Python's and numpy's generators take these states (tried on generators of their own)."""
    import random

    import numpy as np

    try:
        RandomState.restore(state, torch.Generator().set_state, random.Random().setstate,
                            np.random.RandomState().set_state)
    except (KeyError, TypeError, ValueError, AttributeError, RuntimeError):
        return False
    return True


def _score(value: Any) -> bool:
    """A monitored value as Lightning keeps it: None, a real number, or a tensor of one real number (inf before
    any; a complex one passed, and was a traceback where the first epoch's was compared with it)."""
    if isinstance(value, torch.Tensor):
        return (value.layout == torch.strided and value.numel() == 1 and value.is_floating_point()
                and not bool(torch.isnan(value).any()))
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)
                             and not beyond_float_range(value) and not math.isnan(value))



# what each callback of this project's runs keeps, by the name its state is saved under
CALLBACK_STATES = {
    "RandomState": lambda s: not s or _generators_take(s),  # empty: saved outside fitting
    "EpochHistory": lambda s: isinstance(s.get("history"), list) and all(
        _history_row(row, index) for index, row in enumerate(s["history"]))
    and all(_finite_number(s.get(k, 0.0)) for k in ("seconds", "wall_seconds", "epoch_seconds")),
    "EarlyStopping": lambda s: all(_count(s.get(k, 0)) for k in ("wait_count", "stopped_epoch", "patience"))
    and _score(s.get("best_score")),
    "RunCheckpoint": lambda s: all(_score(s.get(k)) for k in ("best_model_score", "current_score", "kth_value"))
    and isinstance(s.get("best_k_models", {}), dict) and all(_score(v) for v in s.get("best_k_models", {}).values()),
}


def _history_row(row: Any, index: int) -> bool:
    """An epoch's row of the run's history as EpochHistory writes it: its number (the row's place), its seconds, its
    epoch means (numbers, NaN where training diverged); what the run's figures and results read from it (a row
    without its epoch was a traceback once the whole run had trained)."""
    return (isinstance(row, dict) and row.get("epoch") == index and _count(row["epoch"])
            and set(row) <= {"epoch", "seconds", *HISTORY_KEYS} and _finite_number(row.get("seconds", 0.0))
            and all(isinstance(row[key], (int, float)) and not isinstance(row[key], bool)
                    and not beyond_float_range(row[key]) for key in HISTORY_KEYS if key in row))


def _holds(check, state: dict) -> bool:
    try:
        return bool(check(state))
    except (TypeError, ValueError, AttributeError):
        return False


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_loop_counters(state: dict, where: str, path: str = "loops") -> None:
    for key, value in state.items():
        name = f"{path}.{key}"
        if isinstance(value, dict):
            _check_loop_counters(value, where, name)
        elif isinstance(value, bool) or value is None:
            continue
        elif not isinstance(value, LOOP_LEAVES) or (isinstance(value, int) and value < 0):
            raise UserError(f"{where}: {name} is {value!r}, not a counter of Lightning's loops")


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and (isinstance(value, bool) or not beyond_float_range(value)
                                                and math.isfinite(value))


def _plain_settings(settings: dict) -> bool:
    """Numbers (finite), flags, None, text and sequences of them: the settings an optimizer or a schedule keeps."""
    def plain(value: Any) -> bool:
        if isinstance(value, (list, tuple)):
            return all(plain(item) for item in value)
        if isinstance(value, dict):  # a schedule's phases
            return _plain_settings(value)
        if isinstance(value, torch.Tensor):  # a capturable optimizer's lr, a schedule's base values
            return (value.layout == torch.strided and value.numel() == 1 and not value.is_quantized
                    and bool(torch.isfinite(value).all()))  # (an empty lr: a traceback at .item())
        return value is None or isinstance(value, str) or _finite_number(value)
    return all(isinstance(key, str) and plain(value) for key, value in settings.items())


def _own_memory(tensor: torch.Tensor, storages: set[int]) -> bool:
    """Whether ``tensor``'s values each have a place of their own, in memory no tensor seen before (``storages``)
    holds, within its storage: laid out densely (row-major, or channels-last) from its offset. A crafted checkpoint's
    moments expanded over one float (stride 0) passed every other check, and the fused Adam step wrote 1,152 bytes
    into a 4-byte allocation: the resuming process died of SIGSEGV (hostile round 7); moments sharing one tensor
    trained to NaN without a word."""
    dense = tensor.is_contiguous() or (tensor.dim() == 4 and tensor.is_contiguous(memory_format=torch.channels_last))
    storage = tensor.untyped_storage()
    if not dense or storage.nbytes() < (tensor.storage_offset() + tensor.numel()) * tensor.element_size():
        return False
    if storage.data_ptr() in storages:
        return False
    storages.add(storage.data_ptr())
    return True


def _count_value(value: Any) -> bool:
    """A step count: a whole number, 0 or more (a tensor of one, as torch keeps it, or a number)."""
    number = float(value) if not isinstance(value, torch.Tensor) or value.numel() == 1 else -1.0
    return number >= 0 and number.is_integer()


def _shown(value: Any) -> str:
    return repr(value.item() if isinstance(value, torch.Tensor) and value.numel() == 1 else value)


def _check_optimizer_state(state: Any, groups: list[list[torch.nn.Parameter]], where: str) -> None:
    """A torch optimizer's ``state_dict`` for ``groups``: groups of their sizes naming each parameter once, in
    order (as torch numbers them), settings of finite numbers, and per-parameter tensors of the parameter's shape
    (or scalars: a step count), dense and finite."""
    what = f"{where}: its optimizer state"
    saved = state.get("param_groups") if isinstance(state, dict) else None
    per_parameter = state.get("state") if isinstance(state, dict) else None
    if not isinstance(saved, list) or not isinstance(per_parameter, dict) or not all(
            isinstance(g, dict) and isinstance(g.get(PARAMETER_GROUP), list) for g in saved):
        raise UserError(f"{what} is not a torch optimizer's (a state and parameter groups, each naming its "
                        f"parameters)")
    sizes, expected = [len(g[PARAMETER_GROUP]) for g in saved], [len(g) for g in groups]
    parameters = [p for group in groups for p in group]
    if sizes != expected or [i for g in saved for i in g[PARAMETER_GROUP]] != list(range(len(parameters))):
        raise UserError(f"{what} has parameter groups of {sizes} parameters; this run's optimizer steps groups of "
                        f"{expected}")
    for group in saved:
        settings = {k: v for k, v in group.items() if k != PARAMETER_GROUP}
        if not _plain_settings(settings) or not _finite_number(settings.get("lr", 0.0)) and not isinstance(
                settings.get("lr"), torch.Tensor):
            raise UserError(f"{what}: a parameter group's settings are not finite numbers and flags ({settings})")
    storages: set[int] = set()  # where each tensor's values lie: no two of them share memory
    for index, values in per_parameter.items():
        if not (_count(index) and index < len(parameters)) or not isinstance(values, dict):
            raise UserError(f"{what} holds values for {index!r}, which is none of the network's parameters")
        shape = tuple(parameters[index].shape)
        for name, value in values.items():
            if not isinstance(value, torch.Tensor):
                if value is not None and not _finite_number(value):  # (SGD without momentum keeps a None buffer)
                    raise UserError(f"{what}: {name} of parameter {index} is {value!r}, not a finite number")
            elif value.is_quantized or not value.is_floating_point() or name == "step" and value.dtype not in (
                    torch.float32, torch.float64):  # an int8 count wrapped to -128 at the next step: a traceback
                raise UserError(f"{what}: {name} of parameter {index} is a tensor of {str(value.dtype)[6:]}; an "
                                f"optimizer keeps floating-point values, a step count in float32 (torch would cast "
                                f"it, or fail)")
            elif value.layout != torch.strided or value.device.type != "cpu" or value.dim() and value.shape != shape:
                raise UserError(f"{what}: {name} of parameter {index} is a {str(value.layout).removeprefix('torch.')} "
                                f"tensor of shape {tuple(value.shape)} on the {value.device.type} device; the "
                                f"parameter's shape is {shape}")
            elif not bool(torch.isfinite(value).all()):
                raise UserError(f"{what}: {name} of parameter {index} holds NaN or infinite values")
            elif not _own_memory(value, storages):
                raise UserError(f"{what}: {name} of parameter {index} is no tensor of its own (its values overlap in "
                                f"memory, or share another's), which a checkpoint torch saved never holds; an "
                                f"optimizer step would write past it")
            if name == "step" and not _count_value(value):
                raise UserError(f"{what}: step of parameter {index} is {_shown(value)}, not a count of steps")
            if name in SQUARED_MOMENTS and bool((value < 0).any()):  # its square root: NaN from the first step
                raise UserError(f"{what}: {name} of parameter {index} holds negative values; a mean of squares "
                                f"is 0 or more")

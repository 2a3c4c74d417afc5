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

from mnist_common.errors import UserError
from lightning_mnist.checkpoints import Checkpoint
from lightning_mnist.training.callbacks import RandomState

# the loops' counters are ints (and is_last_batch a bool); the data loader's resumable sampling a list of them
LOOP_LEAVES = (int, list)
SCHEDULE_COUNTERS = ("last_epoch", "_step_count")  # a torch schedule's steps taken (keys of its state_dict)
PARAMETER_GROUP = "params"  # a torch optimizer group's parameter ids, its other entries settings (lr, betas, ...)


def check_training_state(checkpoint: Checkpoint, groups: list[list[torch.nn.Parameter]], schedules: int) -> None:
    """UserError naming the first part of ``checkpoint``'s training state that no run of this project saves;
    ``groups``: the parameters the resumed run's optimizer steps, group by group, in its order; ``schedules``: how
    many learning-rate schedules it steps (0 or 1)."""
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
    optimizers = contents.get("optimizer_states")
    if not isinstance(optimizers, list) or len(optimizers) != 1:
        found = (f"{len(optimizers)} optimizers' states" if isinstance(optimizers, list) else
                 f"a {type(optimizers).__name__} as its optimizers' states")
        raise UserError(f"{where}: it holds {found}; a run of this model saves its one optimizer's")
    _check_optimizer_state(optimizers[0], groups, where)
    saved = contents.get("lr_schedulers")
    if not isinstance(saved, list) or len(saved) != schedules or not all(
            isinstance(s, dict) and _plain_settings(s) and all(_count(s.get(k, 0)) for k in SCHEDULE_COUNTERS)
            for s in saved):
        raise UserError(f"{where}: its learning-rate schedules' state is not what this run saves ({schedules} "
                        f"schedule{'s' if schedules != 1 else ''}, of numbers and settings)")


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
    """A monitored value as Lightning keeps it: None, a number, or a tensor of one number (inf before any)."""
    if isinstance(value, torch.Tensor):
        return value.layout == torch.strided and value.numel() == 1 and not bool(torch.isnan(value).any())
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value))


# what each callback of this project's runs keeps, by the name its state is saved under
CALLBACK_STATES = {
    "RandomState": lambda s: not s or _generators_take(s),  # empty: saved outside fitting
    "EpochHistory": lambda s: isinstance(s.get("history"), list) and all(isinstance(r, dict) for r in s["history"])
    and all(_finite_number(s.get(k, 0.0)) for k in ("seconds", "wall_seconds", "epoch_seconds")),
    "EarlyStopping": lambda s: all(_count(s.get(k, 0)) for k in ("wait_count", "stopped_epoch", "patience"))
    and _score(s.get("best_score")),
    "RunCheckpoint": lambda s: all(_score(s.get(k)) for k in ("best_model_score", "current_score", "kth_value"))
    and isinstance(s.get("best_k_models", {}), dict) and all(_score(v) for v in s.get("best_k_models", {}).values()),
}


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
    return isinstance(value, (int, float)) and (isinstance(value, bool) or math.isfinite(value))


def _plain_settings(settings: dict) -> bool:
    """Numbers (finite), flags, None, text and sequences of them: the settings an optimizer or a schedule keeps."""
    def plain(value: Any) -> bool:
        if isinstance(value, (list, tuple)):
            return all(plain(item) for item in value)
        if isinstance(value, dict):  # a schedule's phases
            return _plain_settings(value)
        if isinstance(value, torch.Tensor):  # a capturable optimizer's lr, a schedule's base values
            return value.layout == torch.strided and value.numel() <= 1 and bool(torch.isfinite(value).all())
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

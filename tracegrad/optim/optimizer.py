"""Optimizer base: parameter groups, per-parameter state, zero_grad and state dicts."""
from __future__ import annotations

import collections
import copy
from typing import Callable, Iterable

from ..autograd.grad_mode import enable_grad, no_grad
from ..creation import full_like, zeros
from ..compiler.hyper import hyperparameter, hyperparameter_flag
from ..compiler.frames import unfollowed
from ..nn.utils import zero_grad_
from ..tensor import TRACE, Tensor


class _Required:
    """The default of a hyperparameter that every parameter group must give (e.g. a custom optimizer's lr)."""

    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


# Counts every change of any optimizer's per-parameter state (entries added, replaced or removed): a compiled
# step re-checks the state it read only when the count moved (in a training loop: after the first step).
STATE_CHANGES = [0]


class _Counted:
    """Mixin of a dict whose changes are counted in STATE_CHANGES (its reads are plain dict reads)."""

    _tracegrad_changes = STATE_CHANGES

    @unfollowed
    def __setitem__(self, key, value) -> None:
        STATE_CHANGES[0] += 1
        super().__setitem__(key, value)

    @unfollowed
    def __delitem__(self, key) -> None:
        STATE_CHANGES[0] += 1
        super().__delitem__(key)

    def _counted(name: str):
        plain = getattr(dict, name)

        @unfollowed
        def method(self, *args, **kwargs):
            STATE_CHANGES[0] += 1
            return plain(self, *args, **kwargs)
        method.__name__ = name
        method.__doc__ = f"dict.{name}, counted in STATE_CHANGES."
        return method

    pop, popitem, clear, update, setdefault = map(_counted, ("pop", "popitem", "clear", "update", "setdefault"))
    del _counted


class ParamState(_Counted, dict):
    """The optimizer state of one parameter (a dict)."""


class StateTable(_Counted, collections.defaultdict):
    """Optimizer.state: parameter -> its ParamState, made on first use (a defaultdict)."""

    def __init__(self, default_factory=ParamState, *args) -> None:  # the signature defaultdict's copies call
        super().__init__(default_factory, *args)


def check_nonnegative(**values: float) -> None:
    """Raise PyTorch's ValueError ("Invalid learning rate: -1") for the first negative or NaN keyword value."""
    for name, value in values.items():
        if not 0.0 <= value:
            label = {"lr": "learning rate", "eps": "epsilon value"}.get(name, f"{name} value")
            raise ValueError(f"Invalid {label}: {value}")


def step_value(step: Tensor):
    """The step count as a Python number eagerly; as a float64 tensor while tracing (no guard on its
    value; float64 so that bias corrections round as eager's Python floats do)."""
    return step.double() if TRACE.tracer is not None else step.item()


class Optimizer:
    """Base class: holds param_groups (dicts of params and hyperparameters) and state per parameter.

    Subclasses implement _update_group(group), which runs under no_grad with in-place tensor ops.
    """

    def __init__(self, params: Iterable[Tensor] | Iterable[dict], defaults: dict) -> None:
        self.defaults = defaults
        self.state: dict = StateTable()  # parameter -> its state, created on its first step
        self.param_groups: list[dict] = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            f"but got {type(params).__name__}")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own hyperparameters (the defaults fill in the rest)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for param in group["params"]:
            if not isinstance(param, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is "
                                f"{type(param).__name__}")
            if not param.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for key, value in self.defaults.items():
            if value is required and key not in group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {key}")
            group.setdefault(key, value)
        existing = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in existing for p in group["params"]):
            raise ValueError("some parameters appear in more than one parameter group")
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset the gradients of every parameter (to None by default)."""
        zero_grad_((p for group in self.param_groups for p in group["params"]), set_to_none)

    def step(self, closure: Callable[[], Tensor] | None = None):
        """Update the parameters from their gradients; closure (if given) recomputes and returns the loss."""
        self._step_called = True  # lets a learning-rate scheduler warn when it is stepped first
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                self._update_group(group)
        return loss

    def _update_group(self, group: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} must implement _update_group(group)")

    def gradients(self, group: dict, weight_decay: bool = True):
        """(param, grad) per parameter with a .grad: negated if maximize, plus weight_decay * param (L2) if asked."""
        maximize = self.flag(group, "maximize")
        decay = self.hyper(group, "weight_decay") if weight_decay and self.flag(group, "weight_decay") else None
        for p in group["params"]:
            if p.grad is None:
                continue
            grad = -p.grad if maximize else p.grad
            yield p, grad if decay is None else grad.add(p, alpha=decay)

    def lazy_state(self, p: Tensor, **buffers: float) -> dict:
        """p's state; made on first use: a float32 0-d 'step' and a tensor like p per keyword, filled with its value."""
        state = self.state[p]
        if not state:
            state["step"] = zeros(())  # a float scalar tensor, like PyTorch
            for name, fill in buffers.items():
                state[name] = full_like(p, fill)
        return state

    @staticmethod
    def hyper(group, key, name: str | None = None, index: int | None = None):
        """A hyperparameter's value, group[key] or group[key][index] (a graph input while a step is
        traced, so changing it never retraces)."""
        return hyperparameter(group, key, name, index)

    @staticmethod
    def flag(group: dict, key: str) -> bool:
        """A hyperparameter's truth value, for code that branches on it."""
        return hyperparameter_flag(group, key)

    # ---- state dicts --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]}, like PyTorch.

        Parameters are numbered in group order; the state tensors are the live ones, not copies.
        """
        index_of, groups, start = {}, [], 0
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = list(range(start, start + len(group["params"])))
            index_of.update((id(p), i) for i, p in zip(packed["params"], group["params"]))
            start += len(group["params"])
            groups.append(packed)
        state = {index_of[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index_of}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore the hyperparameters and state saved by state_dict(); the state tensors are copied.

        Floating-point state is cast to its parameter's dtype ('step' counters keep theirs).
        """
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(saved["params"]) != len(group["params"]) for saved, group in zip(saved_groups, self.param_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                             "optimizer's group")
        param_of = {index: p for saved, group in zip(saved_groups, self.param_groups)
                    for index, p in zip(saved["params"], group["params"])}
        self.state = StateTable()
        for index, saved_state in state_dict["state"].items():
            param = param_of.get(index)
            self.state[param if param is not None else index] = ParamState(
                (key, _copy_state_value(value, param, cast=key != "step")) for key, value in saved_state.items())
        for saved, group in zip(saved_groups, self.param_groups):
            # The group dicts are updated, not replaced: a compiled step reads hyperparameters from them.
            params = group["params"]
            group.clear()
            group.update(copy.deepcopy({k: v for k, v in saved.items() if k != "params"}), params=params)

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines) + "\n)"


def _copy_state_value(value, param: Tensor | None, cast: bool):
    """A copy of one saved state entry; floating tensors are cast to param's dtype when cast is set."""
    if not isinstance(value, Tensor):
        return copy.deepcopy(value)
    value = value.detach().clone()
    if cast and param is not None and value.is_floating_point():
        value = value.to(param.dtype)
    return value

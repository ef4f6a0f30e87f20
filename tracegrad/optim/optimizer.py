"""Optimizer base: parameter groups, per-parameter state, zero_grad and state dicts."""
from __future__ import annotations

import copy

from ..compiler.hyper import hyperparameter, hyperparameter_flag
from ..nn.utils import zero_grad_
from ..tensor import TRACE, Tensor


class _Required:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _Required()


def step_value(step: Tensor):
    """The step count as a Python number eagerly; as a tensor while tracing (no guard on its value)."""
    return step if TRACE.tracer is not None else step.item()


class Optimizer:
    """Base class: holds param_groups (dicts of params and hyperparameters) and state per parameter."""

    def __init__(self, params, defaults: dict) -> None:
        self.defaults = defaults
        self.state: dict = {}
        self.param_groups: list = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors or dicts, "
                            "but got a Tensor")
        groups = list(params)
        if not groups:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own hyperparameters (defaults fill the rest)."""
        group = dict(param_group)
        params = group["params"]
        group["params"] = [params] if isinstance(params, Tensor) else list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if not p.is_leaf:
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

    def step(self, closure=None):
        """Update the parameters from their gradients (subclasses implement _update_group)."""
        from ..autograd.grad_mode import enable_grad, no_grad
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():
            for group in self.param_groups:
                self._update_group(group)
        return loss

    def _update_group(self, group: dict) -> None:
        raise NotImplementedError

    @staticmethod
    def hyper(group, key, name: str | None = None):
        """A hyperparameter's value (a graph input while a step is traced)."""
        return hyperparameter(group, key, name)

    @staticmethod
    def flag(group: dict, key: str) -> bool:
        """A hyperparameter's truth value, for code that branches on it."""
        return hyperparameter_flag(group, key)

    # ---- state dicts --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]} like PyTorch."""
        index, groups, start = {}, [], 0
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = list(range(start, start + len(group["params"])))
            for i, p in zip(packed["params"], group["params"]):
                index[id(p)] = i
            start += len(group["params"])
            groups.append(packed)
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and state saved by state_dict (copies the tensors)."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        for saved, group in zip(groups, self.param_groups):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                                 "optimizer's group")
        params = [p for g in self.param_groups for p in g["params"]]
        self.state = {}
        for i, s in state_dict["state"].items():
            p = params[int(i)]
            self.state[p] = {k: (v.detach().clone().to(p.dtype) if isinstance(v, Tensor) and v.is_floating_point()
                                 and k != "step" else v.detach().clone() if isinstance(v, Tensor) else copy.deepcopy(v))
                             for k, v in s.items()}
        for saved, group in zip(groups, self.param_groups):
            for k, v in saved.items():
                if k != "params":
                    group[k] = v

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines.extend(f"    {k}: {v}" for k, v in sorted(group.items()) if k != "params")
        return "\n".join(lines) + "\n)"

"""What a step function reaches: modules and optimizers in its arguments, closure and globals.

Used to name graph inputs ('model.0.weight', 'opt.state.3.exp_avg') and to put every module's
training flag into the guard key (train() / eval() select different variants).
"""
from __future__ import annotations

import inspect
import operator

from ..tensor import Tensor

_CELL_CONTENTS = operator.attrgetter("cell_contents")


def _is_module(obj) -> bool:
    return hasattr(obj, "named_parameters") and hasattr(obj, "training") and hasattr(obj, "modules")


def _is_optimizer(obj) -> bool:
    return hasattr(obj, "param_groups") and hasattr(obj, "state")


def reachable_objects(fn, args: list) -> dict:
    """{name: object} for the step's arguments, closure cells and the globals its code names."""
    found: dict = {}
    target = inspect.unwrap(fn)
    owner = getattr(target, "__self__", None)
    if owner is not None:
        found["self"] = owner
        target = target.__func__
    code = getattr(target, "__code__", None)
    if code is not None:
        for name, cell in zip(code.co_freevars, target.__closure__ or ()):
            try:
                found[name] = cell.cell_contents
            except ValueError:  # an empty cell
                pass
        globals_ = getattr(target, "__globals__", {})
        for name in code.co_names:
            if name in globals_:
                found.setdefault(name, globals_[name])
    names = _parameter_names(inspect.unwrap(fn)) if args else []
    for i, arg in enumerate(args):
        found[names[i] if i < len(names) else f"arg{i}"] = arg
    return found


def _parameter_names(fn) -> list:
    """Names of fn's positional parameters (argN where they can't be known)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def captured_identity(fn) -> tuple:
    """Which tensors, modules and optimizers fn reaches through its closure and globals, by identity."""
    return tuple((name, id(obj)) for name, obj in reachable_objects(fn, []).items()
                 if isinstance(obj, Tensor) or _is_module(obj) or _is_optimizer(obj))


class CaptureWatch:
    """``captured_identity(fn)`` made cheap for repeated calls: recomputed only when a closure cell or
    a global that fn names is rebound (compared by identity, which is what a call can check quickly)."""

    def __init__(self, fn) -> None:
        self.fn = fn
        target = inspect.unwrap(fn)
        target = getattr(target, "__func__", target)
        code = getattr(target, "__code__", None)
        self.cells = tuple(target.__closure__ or ()) if code is not None else ()
        self.globals = getattr(target, "__globals__", {}) if code is not None else {}
        self.names = tuple(n for n in code.co_names if n in self.globals) if code is not None else ()
        self.seen, self.identity = None, None

    def __call__(self) -> tuple:
        """The current captured identity of fn."""
        try:
            current = list(map(_CELL_CONTENTS, self.cells))
        except ValueError:  # an empty cell: no shortcut
            return captured_identity(self.fn)
        current += map(self.globals.get, self.names)
        # the objects themselves are kept and compared (an id could be reused by a new object)
        if self.seen is None or not all(map(operator.is_, current, self.seen)):
            self.seen, self.identity = current, captured_identity(self.fn)
        return self.identity


def modules_and_optimizers(fn, args: list) -> tuple[list, list]:
    """The modules (with submodules) and optimizers the step reaches, each once."""
    modules, optimizers, seen = [], [], set()
    for obj in reachable_objects(fn, args).values():
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if _is_module(obj):
            modules.extend(m for m in obj.modules() if id(m) not in seen or m is obj)
            seen.update(id(m) for m in obj.modules())
        elif _is_optimizer(obj):
            optimizers.append(obj)
    return modules, optimizers


def named_tensors(fn, args: list) -> list[tuple[str, Tensor]]:
    """(readable name, tensor) of each parameter, buffer, optimizer state and tensor argument the step reaches."""
    found: dict = {}
    reached = sorted(reachable_objects(fn, args).items(), key=lambda item: _is_optimizer(item[1]))  # modules name parameters
    for label, obj in reached:
        if isinstance(obj, Tensor):
            found.setdefault(id(obj), (label, obj))
        elif _is_module(obj):
            for pname, p in obj.named_parameters():
                found.setdefault(id(p), (f"{label}.{pname}", p))
            for bname, b in getattr(obj, "named_buffers", lambda: ())():
                found.setdefault(id(b), (f"{label}.{bname}", b))
        elif _is_optimizer(obj):
            index = {id(p): i for i, p in enumerate(p for g in obj.param_groups for p in g["params"])}
            for p, state in obj.state.items():
                found.setdefault(id(p), (f"{label}.param.{index.get(id(p), '?')}", p))
                for key, value in state.items():
                    if isinstance(value, Tensor):
                        found.setdefault(id(value), (f"{label}.state.{index.get(id(p), '?')}.{key}", value))
    return list(found.values())


def tensor_names(fn, args: list) -> dict:
    """{id(tensor): readable name} for parameters, buffers, optimizer state and tensor arguments."""
    return {id(t): name for name, t in named_tensors(fn, args)}


def persistent_roots(fn, args: list) -> list:
    """Objects that outlive a call of the step: its arguments, what its closure and globals name, and the
    modules (with their parameter, buffer and submodule tables) and optimizers (with their groups and
    state) among them."""
    roots = list(reachable_objects(fn, args).values()) + list(args)
    modules, optimizers = modules_and_optimizers(fn, args)
    for module in modules:
        roots += [module, module._parameters, module._buffers, module._modules]
    for opt in optimizers:
        roots += [opt, opt.param_groups, *opt.param_groups, opt.state, *opt.state.values()]
    return roots

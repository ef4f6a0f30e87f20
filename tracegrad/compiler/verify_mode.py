"""Verify mode: every replay is checked against the eager step run from the same state.

``tracegrad.compile(fn, verify=True)`` (or ``TRACEGRAD_VERIFY=1``) replays the compiled variant, keeps
what it produced, puts every tensor the step reaches back as it was, runs the step eagerly, and
compares the two: parameters, buffers, optimizer state, each ``.grad`` (``None`` included) and the
return value. A difference raises ``CompileMismatch`` naming the first tensor that differs, the
variant and what it assumed. The eager results are the ones kept, so a long run is checked one step
at a time from the same state. It costs more than the eager step alone: a switch for when in doubt.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..tensor import Tensor
from .capture import named_tensors

# How far compiled float results may be from eager ones: fused multiply-adds, reassociated sums and the
# vectorized exp/log/tanh of the Numba backend change the last bits.
_TOLERANCE = {2: (1e-2, 1e-3), 4: (1e-4, 1e-5), 8: (1e-7, 1e-9)}


class CompileMismatch(AssertionError):
    """A replay of a compiled step gave other values than the same step run eagerly (verify mode)."""


@dataclass
class _Saved:
    """One tensor's values and its .grad (the object and its values) at one moment."""

    tensor: Tensor
    data: np.ndarray
    grad: Tensor | None
    grad_data: np.ndarray | None


def _snapshot(tensors: list) -> list:
    return [_Saved(t, t._data.copy(), t._grad, None if t._grad is None else t._grad._data.copy()) for t in tensors]


def _restore(saved: list) -> None:
    for s in saved:
        np.copyto(s.tensor._data, s.data)
        s.tensor._grad = s.grad
        if s.grad is not None:
            np.copyto(s.grad._data, s.grad_data)


def verified_run(step, variant, leaves: list, args: tuple, kwargs: dict, label: str):
    """Replay ``variant`` and run ``step`` eagerly from the same state; the eager result, or CompileMismatch."""
    named = named_tensors(step, list(leaves))
    tensors = [t for _, t in named]
    before = _snapshot(tensors)
    compiled_result = variant.run(leaves)
    compiled = _snapshot(tensors)
    _restore(before)
    eager_result = step(*args, **kwargs)
    eager = _snapshot(tensors)
    names = [name for name, _ in named]
    difference = _first_difference(names, compiled, eager) or _value_difference("the return value", compiled_result,
                                                                                eager_result)
    if difference:
        raise CompileMismatch(f"tracegrad.compile(verify=True): {label} differs from the eager step: {difference}. "
                              f"The variant assumed: {variant.describe_guards()}. Unless the step uses values tracegrad "
                              f"can't see (Python's random module, the clock), this is a bug of tracegrad's: "
                              f"run this step with backend='eager' until it is fixed")
    return eager_result


def _first_difference(names: list, compiled: list, eager: list) -> str:
    for name, c, e in zip(names, compiled, eager):
        difference = _array_difference(name, c.data, e.data)
        if difference:
            return difference
        if (c.grad is None) != (e.grad is None):
            return (f"{name}.grad is {'None' if c.grad is None else 'a tensor'} after the replay, "
                    f"{'None' if e.grad is None else 'a tensor'} after the eager step")
        if c.grad is not None:
            difference = _array_difference(f"{name}.grad", c.grad_data, e.grad_data)
            if difference:
                return difference
    return ""


def _value_difference(name: str, compiled, eager) -> str:
    """How a returned structure differs (tensors by value, other values by equality)."""
    if isinstance(eager, Tensor) and isinstance(compiled, Tensor):
        return _array_difference(name, compiled._data, eager._data)
    if isinstance(eager, (tuple, list)) and type(compiled) is type(eager) and len(compiled) == len(eager):
        return next((d for i, (c, e) in enumerate(zip(compiled, eager)) if (d := _value_difference(f"{name}[{i}]", c, e))), "")
    if isinstance(eager, dict) and isinstance(compiled, dict) and compiled.keys() == eager.keys():
        return next((d for k in eager if (d := _value_difference(f"{name}[{k!r}]", compiled[k], eager[k]))), "")
    if type(compiled) is not type(eager) or compiled != eager:
        return f"{name} is {compiled!r} after the replay, {eager!r} after the eager step"
    return ""


def _array_difference(name: str, compiled: np.ndarray, eager: np.ndarray) -> str:
    if compiled.shape != eager.shape or compiled.dtype != eager.dtype:
        return f"{name} is {compiled.dtype}{list(compiled.shape)} after the replay, {eager.dtype}{list(eager.shape)} eagerly"
    if eager.dtype.kind == "f":
        rtol, atol = _TOLERANCE.get(eager.dtype.itemsize, _TOLERANCE[4])
        close = np.isclose(compiled, eager, rtol=rtol, atol=atol, equal_nan=True)
    else:
        close = compiled == eager
    if np.all(close):
        return ""
    where = tuple(int(i) for i in np.unravel_index(int(np.argmin(close)), close.shape)) if close.ndim else ()
    return (f"{name}{list(where) if where else ''} is {compiled[where].item()!r} after the replay, "
            f"{eager[where].item()!r} after the eager step")

"""Hyperparameters that a compiled step reads at every call instead of baking them in."""
from __future__ import annotations

from .. import dtypes
from ..tensor import TRACE


def hyperparameter(container, key, name: str | None = None, index: int | None = None):
    """container[key] (a Python number), or container[key][index] (one of a tuple such as betas); while
    a step is traced, a graph input read at every call.

    Optimizers read lr, betas, eps and weight decay through this, so changing them (by hand, by
    replacing the tuple, or with a scheduler) never retraces a compiled step.
    """
    if TRACE.tracer is None:
        return container[key] if index is None else container[key][index]
    # float64, like the Python float it stands for: math on it rounds as eager math on the float does, and
    # an op casts it to its other operand's dtype, as it casts a Python number
    return TRACE.tracer.hyper(container, key, dtypes.float64, name or str(key), index)


def hyperparameter_flag(container, key) -> bool:
    """bool(container[key]) for code that branches on a hyperparameter (momentum != 0, nesterov...).

    A traced step remembers the outcome and is not reused when it changes, so switching momentum on
    later selects (or traces) another variant instead of silently keeping the old structure.
    """
    value = bool(container[key])
    if TRACE.tracer is not None:
        TRACE.tracer.flag_guards.append((container, key, value))
    return value

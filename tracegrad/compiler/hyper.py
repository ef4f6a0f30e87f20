"""Hyperparameters that a compiled step reads at every call instead of baking them in."""
from __future__ import annotations

from .. import dtypes
from ..tensor import TRACE


def hyperparameter(container, key):
    """container[key] (a Python number); while a step is traced, a graph input read at every call.

    Optimizers read lr, betas, eps and weight decay through this, so changing them (by hand or with a
    scheduler) never retraces a compiled step.
    """
    if TRACE.tracer is None:
        return container[key]
    return TRACE.tracer.hyper(container, key, dtypes.get_default_dtype())

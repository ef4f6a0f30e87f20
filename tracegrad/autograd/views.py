"""In-place writes through views: keeping the histories of the base and of its views right.

A view records the movement steps that derive it from its base (``_view_steps``). Writing into a
view rebinds the *base's* history to a ``CopySlices`` node (the base with the view's region replaced),
and any view used after its base's history changed re-derives its own history by replaying its steps.
"""
from __future__ import annotations

import numpy as np

from .engine import Node


def replay(base, steps: tuple):
    """Apply a view's movement steps to a tensor (the base, or a cotangent of the base's shape)."""
    from ..tensor import apply
    out = base
    for prim, attrs in steps:
        out = apply(prim, out, **attrs)
    return out


def refresh(view) -> None:
    """Re-derive a view's history from its base's current history."""
    fresh = replay(view._base, view._view_steps)
    view.grad_fn, view._output_nr, view._requires_grad = fresh.grad_fn, 0, fresh._requires_grad
    view._base_history = view._base.grad_fn


class CopySlices(Node):
    """base_new = base_old with the region of a view replaced by a new value (PyTorch's CopySlices)."""

    def __init__(self, base_old, value, steps: tuple) -> None:
        super().__init__((base_old, value))
        self.steps = steps
        # A constant mask: 1 outside the view's region (where base_old still shows through), 0 inside.
        mask = np.ones(base_old._data.shape, dtype=base_old._data.dtype)
        region = mask
        for prim, attrs in steps:
            region = prim.impl(region, **attrs)
        region[...] = 0
        self.outside = mask

    def backward(self, grads: list) -> tuple:
        from ..tensor import Tensor
        g = grads[0]
        need_base, need_value = self.needs_input_grad
        g_base = g * Tensor._make(self.outside) if need_base else None
        g_value = replay(g, self.steps) if need_value else None
        return g_base, g_value


def write_through_view(view, new_value) -> None:
    """Store new_value (a tensor computed from the view's old value) into a view, updating histories."""
    from ..tensor import _store
    base = view._base
    base_old = base._snapshot(copy=False)  # the write node keeps no values of the old base
    _store(view, new_value._data)
    base.grad_fn, base._output_nr, base._requires_grad = CopySlices(base_old, new_value, view._view_steps), 0, True
    refresh(view)

"""The primitive-level layer: one function per primitive of the table, ``lax.exp(x)`` = apply(exp, x).

VJP rules are written with these alone (as JAX's are with ``lax``), so the primitive table needs
nothing of the public ops above it. No type promotion and no argument normalization: the tensor
operands of a primitive have the dtypes it takes (one dtype for binary elementwise primitives), and
attributes are given as the primitive stores them (``lax.sum(g, axes=(0,), keepdim=False)``). A Python
number operand of a two-operand primitive becomes a constant of the other operand's dtype.

Functions are bound at first use, so a primitive declared later (an extension) has one too.
"""
from __future__ import annotations

import numpy as np

from .. import dtypes
from ..tensor import Tensor, apply
from .base import REGISTRY, records_nothing


def bind(prim):
    """The function applying ``prim`` to tensors (and numbers, for two-operand primitives)."""
    def op(*operands, **attrs):
        if len(operands) == 2:
            a, b = operands
            if not isinstance(b, Tensor):
                operands = (a, scalar(b, a))
            elif not isinstance(a, Tensor):
                operands = (scalar(a, b), b)
        return apply(prim, *operands, **attrs)
    op.__name__ = prim.name
    op.__doc__ = f"The primitive {prim.name!r}, applied as declared (no promotion, no normalization)."
    return op


def __getattr__(name: str):
    prim = REGISTRY.get(name)
    if prim is None:
        raise AttributeError(f"no primitive named {name!r} (tracegrad.primitives.REGISTRY lists them)")
    op = globals()[name] = bind(prim)
    return op


def scalar(value, like: Tensor) -> Tensor:
    """A 0-d constant of like's dtype (a number in a VJP)."""
    return Tensor._make(np.array(value, dtype=like._data.dtype))


def zeros(shape: tuple, dtype: dtypes.dtype) -> Tensor:
    """A constant of zeros."""
    return Tensor._make(np.zeros(shape, dtype=dtype.np))


def to(x: Tensor, dtype: dtypes.dtype) -> Tensor:
    """x cast to dtype (x itself when it has it)."""
    return x if x.dtype is dtype else apply(REGISTRY["cast"], x, dtype=dtype, src=x.dtype)


def sum_to_shape(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Reduce a broadcast cotangent back to an input's shape (the VJP of broadcasting)."""
    g_shape = g._data.shape
    if g_shape == shape:
        return g
    lead = len(g_shape) - len(shape)
    ones = tuple(lead + i for i, s in enumerate(shape) if s == 1 and g_shape[lead + i] != 1)
    total_sum, reshape = REGISTRY["sum"], REGISTRY["reshape"]
    if records_nothing() and (lead or ones):  # the sum (and reshape) below, on the array
        total = total_sum.impl(g._data, axes=tuple(range(lead)) + ones, keepdim=bool(ones))
        return Tensor._make(total if total.shape == shape else reshape.impl(total, shape=shape))
    if not ones:  # only leading axes were added: one sum gives the shape directly
        return apply(total_sum, g, axes=tuple(range(lead)), keepdim=False)
    g = apply(total_sum, g, axes=tuple(range(lead)) + ones, keepdim=True)
    return apply(reshape, g, shape=shape) if g._data.shape != shape else g

"""Reductions over a tuple of axes (``axes``) with ``keepdim``; the front end normalizes the axes."""
from __future__ import annotations

import numpy as np

from .. import dtypes
from . import lax
from .base import Primitive, quiet, reduced_shape, same_dtype


def _sum_dtype(in_dtypes, **attrs):
    return dtypes.int64 if in_dtypes[0].category != dtypes.FLOAT else in_dtypes[0]


def _index_dtype(in_dtypes, **attrs):
    return dtypes.int64


def _reduction(name: str, impl, *, dtype_rule=same_dtype, saves=(), saves_output=False,
               reads_values: bool = True) -> Primitive:
    return Primitive(name, "reduce", impl, shape_rule=reduced_shape, dtype_rule=dtype_rule,
                     saves=saves, saves_output=saves_output, reads_values=reads_values)


@quiet
def _sum_impl(x, axes, keepdim):
    if x.dtype.kind in "bu" or x.dtype.itemsize < 8 and x.dtype.kind == "i":
        x = x.astype(np.int64)
    out = np.add.reduce(x, axis=axes, keepdims=keepdim)
    return out.astype(np.int64) if out.dtype.kind in "biu" and out.dtype != np.int64 else out


reduce_sum = _reduction("sum", _sum_impl, dtype_rule=_sum_dtype)


def _count_impl(x, axes, keepdim):
    count = np.prod([x.shape[a] for a in axes], dtype=np.int64)
    return np.full(reduced_shape([x.shape], axes, keepdim), count, dtype=np.int64)


# How many elements a reduction over these axes combines (int64): a traced mean's divisor comes from the
# input's shape, so the graph holds no size as a number and one kernel serves every batch size.
reduce_count = _reduction("count", _count_impl, dtype_rule=_index_dtype, reads_values=False)
reduce_max = _reduction("amax", lambda x, axes, keepdim: np.maximum.reduce(x, axis=axes, keepdims=keepdim),
                        saves=(0,), saves_output=True)
reduce_min = _reduction("amin", lambda x, axes, keepdim: np.minimum.reduce(x, axis=axes, keepdims=keepdim),
                        saves=(0,), saves_output=True)
reduce_prod = _reduction("prod", lambda x, axes, keepdim: np.prod(x, axis=axes, keepdims=keepdim),
                         dtype_rule=_sum_dtype, saves=(0,))
argmax = _reduction("argmax", lambda x, axes, keepdim: np.argmax(x, axis=axes[0], keepdims=keepdim),
                    dtype_rule=_index_dtype)
argmin = _reduction("argmin", lambda x, axes, keepdim: np.argmin(x, axis=axes[0], keepdims=keepdim),
                    dtype_rule=_index_dtype)
reduce_any = _reduction("any", lambda x, axes, keepdim: np.any(x, axis=axes, keepdims=keepdim),
                        dtype_rule=lambda d, **a: dtypes.bool_)
reduce_all = _reduction("all", lambda x, axes, keepdim: np.all(x, axis=axes, keepdims=keepdim),
                        dtype_rule=lambda d, **a: dtypes.bool_)


def keepdim_shape(node) -> tuple:
    """The reduced shape with the reduced axes kept as size 1."""
    axes = node.attrs["axes"]
    return tuple(1 if i in axes else s for i, s in enumerate(node.in_shapes[0]))


def _expand_back(node, g):
    """Broadcast a reduction's cotangent back over the reduced axes."""
    kept = keepdim_shape(node)
    if g._data.shape != kept:
        g = lax.reshape(g, shape=kept)
    return lax.expand(g, shape=node.in_shapes[0]) if kept != node.in_shapes[0] else g


@reduce_sum.defvjp
def _sum_vjp(node, g):
    return (_expand_back(node, g),)


def _extremum_vjp(node, g):
    """All positions equal to the extremum share its cotangent evenly."""
    x, axes = node.saved(0), node.attrs["axes"]
    hit = lax.to(lax.eq(x, lax.reshape(node.saved_output(), shape=keepdim_shape(node))), g.dtype)
    count = lax.sum(hit, axes=axes, keepdim=True)
    return (lax.div(lax.mul(_expand_back(node, g), hit), count),)


reduce_max.defvjp(_extremum_vjp)
reduce_min.defvjp(_extremum_vjp)


@reduce_prod.defvjp
def _prod_vjp(node, g):
    """d prod / d x_i is the product of the other elements, computed without dividing by zero."""
    x, axes = node.saved(0), node.attrs["axes"]
    zero = lax.scalar(0, x)
    is_zero = lax.eq(x, 0)
    nonzero = lax.where(is_zero, lax.scalar(1, x), x)
    prod_nonzero = lax.prod(nonzero, axes=axes, keepdim=True)
    zeros = lax.sum(is_zero, axes=axes, keepdim=True)
    others = lax.where(is_zero, lax.where(lax.eq(zeros, 1), prod_nonzero, zero),
                       lax.where(lax.eq(zeros, 0), lax.div(prod_nonzero, nonzero), zero))
    return (lax.mul(_expand_back(node, g), others),)

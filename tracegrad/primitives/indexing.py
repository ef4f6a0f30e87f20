"""Indexing primitives: x[key] reads and writes, gather and scatter-add.

A key is a static template (``index_key.IndexKey``, hashable, part of the attributes) whose index
tensor items refer to extra tensor inputs.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import dtypes
from . import lax
from .base import Primitive, same_dtype
from .index_key import FULL, IndexKey, index_key, slice_item


def narrow_key(dim: int, start: int, stop: int) -> IndexKey:
    """The key of x[:, ..., start:stop] with the slice along ``dim`` (a view)."""
    return index_key((FULL,) * dim + (slice_item(start, stop, None),))


# ---- index bounds ---------------------------------------------------------------------------------
#
# What each primitive accepts as an index into a dimension of size n, and what it raises otherwise, as
# PyTorch does: x[idx] (index, index_put) counts negative indices from the end (-n..n-1, IndexError
# beyond), gather and scatter_add take 0..n-1 (RuntimeError). The Numba kernels check with the same rule
# and raise the same error (out_of_bounds), so a compiled step fails exactly as the eager step does.
BOUNDS = {"index": (True, IndexError), "index_put": (True, IndexError),
          "gather": (False, RuntimeError), "scatter_add": (False, RuntimeError)}


def lowest_index(prim: str, size: int) -> int:
    """The lowest index ``prim`` accepts into a dimension of ``size`` (the highest is size - 1)."""
    return -size if BOUNDS[prim][0] else 0


def out_of_bounds(prim: str, index: int, dim: int, size: int) -> Exception:
    """The error ``prim`` raises for ``index`` outside dimension ``dim`` of ``size`` (PyTorch's words)."""
    return BOUNDS[prim][1](f"index {index} is out of bounds for dimension {dim} with size {size}")


def _bounds_error(prim: str, idx: np.ndarray, dim: int, size: int) -> Exception | None:
    """out_of_bounds for the first value of idx (in row-major order) that ``prim`` rejects; None if none."""
    lowest = lowest_index(prim, size)
    if not idx.size or (idx.min() >= lowest and idx.max() < size):
        return None
    return out_of_bounds(prim, int(idx[(idx < lowest) | (idx >= size)][0]), dim, size)


def _key_bounds_error(prim: str, key: IndexKey, index_arrays: tuple, shape: tuple) -> Exception | None:
    """The error for the first integer or integer index tensor of ``key`` out of its dimension's range."""
    dim = 0
    for index, width in zip(key.integer_indices(index_arrays), key.dims(index_arrays, len(shape))):
        if index is not None and dim < len(shape):
            error = _bounds_error(prim, index, dim, shape[dim])
            if error is not None:
                return error
        dim += width
    return None


def _index_impl(x, *index_arrays, key):
    try:
        return x[key.numpy_index(index_arrays) if index_arrays else key.numpy_view_index()]
    except IndexError as error:  # NumPy's words for a bad index say "axis"; PyTorch's are kept
        raise _key_bounds_error("index", key, index_arrays, x.shape) or error from None


def _index_shape(in_shapes, key):
    if key.has_mask:
        raise NotImplementedError("the result shape of boolean-mask indexing depends on the mask's values")
    return np.empty(in_shapes[0], dtype=np.bool_)[key.numpy_index([np.zeros(s, np.int64) for s in in_shapes[1:]])].shape


# Both keep their index tensors (inputs after the data) for the backward.
index = Primitive("index", "movement", _index_impl, shape_rule=_index_shape, dtype_rule=same_dtype,
                  saves=slice(1, None))


def _index_put_impl(x, values, *index_arrays, key, accumulate):
    out = x.copy()
    put(out, values, index_arrays, key, accumulate)
    return out


def put(out: np.ndarray, values, index_arrays: tuple, key: IndexKey, accumulate: bool) -> None:
    """out[key] = values (or += values, every repeated integer index counted) in place."""
    try:
        if not accumulate:
            out[key.numpy_index(index_arrays)] = values
        elif any(a.dtype.kind in "iu" for a in index_arrays):
            # Integer indices may repeat: add.at accumulates every occurrence (boolean masks can't repeat,
            # so they are turned into integer positions for it).
            arrays = [np.nonzero(a) if a.dtype == np.bool_ else a for a in index_arrays]
            np.add.at(out, _flatten_masks(key.numpy_index(arrays)), values)
        else:
            out[key.numpy_index(index_arrays)] += values
    except IndexError as error:
        raise _key_bounds_error("index_put", key, index_arrays, out.shape) or error from None


def _flatten_masks(key: tuple) -> tuple:
    flat = []
    for item in key:
        flat.extend(item) if isinstance(item, tuple) else flat.append(item)
    return tuple(flat)


index_put = Primitive("index_put", "index", _index_put_impl,
                      shape_rule=lambda in_shapes, **a: in_shapes[0], dtype_rule=same_dtype,
                      saves=slice(2, None))


@index.defvjp
def _index_vjp(node, g):
    key = node.attrs["key"]
    idx = node.saved_tensors()
    zeros = lax.zeros(node.in_shapes[0], g.dtype)
    return (index_put_apply(zeros, g, idx, key, accumulate=True),) + (None,) * len(idx)


@index_put.defvjp
def _index_put_vjp(node, g):
    key = node.attrs["key"]
    idx = node.saved_tensors()
    need_x, need_v = node.needs_input_grad[:2]
    gx = None
    if need_x:  # an accumulating put adds to x (its gradient passes through); a plain put overwrites it
        gx = g if node.attrs["accumulate"] else index_put_apply(g, lax.zeros((), g.dtype), idx, key, accumulate=False)
    gv = lax.sum_to_shape(index_apply(g, idx, key), node.in_shapes[1]) if need_v else None
    return (gx, gv) + (None,) * len(idx)


def index_apply(x, idx: tuple, key: IndexKey):
    """x[key] where the key's tensor positions refer to ``idx``."""
    return lax.index(x, *idx, key=key)


def index_put_apply(x, values, idx: tuple, key: IndexKey, accumulate: bool):
    """A copy of x with x[key] set to (or, with accumulate, increased by) values."""
    return lax.index_put(x, values, *idx, key=key, accumulate=accumulate)


# ---- gather / scatter_add along one dimension ---------------------------------------------------

@functools.lru_cache(maxsize=256)
def _open_grid(shape: tuple) -> tuple:
    """np.indices(shape, sparse=True), cached: a step gathers with the same shapes every time."""
    return tuple(np.indices(shape, sparse=True))


def _along_axis_grid(index: np.ndarray, dim: int) -> tuple:
    """Full NumPy index that picks index[i, j, ...] along ``dim`` and i, j, ... elsewhere."""
    grid = list(_open_grid(index.shape))
    grid[dim] = index
    return tuple(grid)


def _check_along_axis(prim: str, x: np.ndarray, idx: np.ndarray, dim: int) -> None:
    """Raise like PyTorch when idx holds a position outside x's dimension ``dim`` (NumPy would wrap -1)."""
    error = _bounds_error(prim, idx, dim, x.shape[dim] if x.ndim else 1)  # a scalar: one element
    if error is not None:
        raise error


def _gather_impl(x, idx, dim):
    _check_along_axis("gather", x, idx, dim)
    if x.ndim == 0:  # a scalar has one element along its only "dimension"
        return x.copy()
    return x[_along_axis_grid(idx, dim)]


def _scatter_add_impl(x, idx, src, dim):
    _check_along_axis("scatter_add", x, idx, dim)
    if x.ndim == 0:
        return x + src
    out = x.copy()
    np.add.at(out, _along_axis_grid(idx, dim), src)
    return out


gather = Primitive("gather", "index", _gather_impl, shape_rule=lambda in_shapes, **a: in_shapes[1],
                   dtype_rule=same_dtype, saves=(1,))
scatter_add = Primitive("scatter_add", "index", _scatter_add_impl,
                        shape_rule=lambda in_shapes, **a: in_shapes[0], dtype_rule=same_dtype, saves=(1,))


@gather.defvjp
def _gather_vjp(node, g):
    idx, dim = node.saved(1), node.attrs["dim"]
    return lax.scatter_add(lax.zeros(node.in_shapes[0], g.dtype), idx, g, dim=dim), None


@scatter_add.defvjp
def _scatter_add_vjp(node, g):
    idx, dim = node.saved(1), node.attrs["dim"]
    need_x, _, need_src = node.needs_input_grad
    return (g if need_x else None), None, (lax.gather(g, idx, dim=dim) if need_src else None)


# ---- sorting ----------------------------------------------------------------------------------------


def _argsort_impl(x, dim, descending):
    """Stable: equal elements keep their order (descending too); NaN sorts as the largest value, as in PyTorch."""
    if not descending:
        return np.argsort(x, axis=dim, kind="stable").astype(np.int64, copy=False)
    # Ascending order of the reversed row, read backwards: descending, with ties in their original order.
    reversed_order = np.argsort(np.flip(x, dim), axis=dim, kind="stable")
    return (x.shape[dim] - 1 - np.flip(reversed_order, dim)).astype(np.int64, copy=False)


# The positions that sort x along ``dim`` (no gradient: sort's values are a gather, whose VJP exists).
argsort = Primitive("argsort", "index", _argsort_impl, shape_rule=lambda in_shapes, **a: in_shapes[0],
                    dtype_rule=lambda in_dtypes, **a: dtypes.int64)

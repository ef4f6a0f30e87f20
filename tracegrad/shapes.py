"""Shapes and indexing: views (reshape, permute, narrow...), concatenation and x[key] reads and writes.

Part of the op surface of ``ops.py``, which re-exports every name here (``tracegrad.ops.reshape``).
"""
from __future__ import annotations

import builtins
import math
import operator
from typing import Sequence

import numpy as np

from . import dtypes
from .autograd.engine import name_node
from .ops import _axes, _cast, where
from .primitives import elementwise as E
from .primitives import indexing as I
from .primitives import movement as M
from .primitives.index_key import (FULL, NEW_AXIS, REST, IndexKey, Slice, index_key, index_tensor_item, integer_item,
                                   mask_item, slice_item)
from .tensor import TRACE, Tensor, _data_dependent_shape, _infer_shape, _shape_arg, _wrap_dim, apply

__all__ = ['reshape', 'view', 'view_as', 'reshape_as', 'permute', 'transpose', 'swapaxes', 't', 'movedim', 'unsqueeze', 'squeeze', 'expand', 'expand_as', 'broadcast_to', 'flatten', 'unflatten', 'narrow', 'split', 'chunk', 'unbind', 'cat', 'concat', 'stack', 'flip', 'roll', 'repeat', 'clone', 'contiguous', 'tril', 'triu', 'parse_key', 'getitem', 'setitem', 'index_put', 'index_select', 'gather', 'scatter_add', 'masked_select']


# ---- shapes -------------------------------------------------------------------------------------

def reshape(input: Tensor, *shape) -> Tensor:
    """The same elements in a new shape (a view when possible); one dim may be -1."""
    shape = _infer_shape(_shape_arg(shape), input._data.size)
    if shape == input._data.shape:
        return input if not input._requires_grad else apply(M.reshape, input, shape=shape)
    return apply(M.reshape, input, shape=shape)


def view(input: Tensor, *shape) -> Tensor:
    """Like reshape, but raises when the result can't share memory with the input."""
    if len(shape) == 1 and isinstance(shape[0], dtypes.dtype):
        raise NotImplementedError("view(dtype) is not supported; use .to(dtype)")
    shape = _infer_shape(_shape_arg(shape), input._data.size)
    try:
        input._data.reshape(shape, copy=False)
    except ValueError:
        raise RuntimeError("view size is not compatible with input tensor's size and stride (at least one "
                           "dimension spans across two contiguous subspaces). Use .reshape(...) instead.") from None
    return apply(M.reshape, input, shape=shape)


def view_as(input: Tensor, other: Tensor) -> Tensor:
    """view(other.shape)."""
    return view(input, other.shape)


def reshape_as(input: Tensor, other: Tensor) -> Tensor:
    """reshape(other.shape)."""
    return reshape(input, other.shape)


def permute(input: Tensor, *dims) -> Tensor:
    """Reorder the dimensions (a view)."""
    dims = _shape_arg(dims)
    if len(dims) != input.ndim:
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does not match the "
                           f"length of the desired ordering of dimensions i.e. input.dim() = {input.ndim} is not "
                           f"equal to len(dims) = {len(dims)}")
    dims = tuple(_wrap_dim(d, input.ndim) for d in dims)
    if len(set(dims)) != len(dims):
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return apply(M.permute, input, dims=dims)


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two dimensions (a view)."""
    ndim = input._data.ndim
    if ndim < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return input
    order = list(range(ndim))
    d0, d1 = _wrap_dim(dim0, ndim), _wrap_dim(dim1, ndim)
    order[d0], order[d1] = order[d1], order[d0]
    return name_node(apply(M.permute, input, dims=tuple(order)), "TransposeBackward0")


swapaxes = transpose


def t(input: Tensor) -> Tensor:
    """Transpose a matrix (0-D and 1-D tensors are returned as they are)."""
    ndim = input._data.ndim
    if ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {ndim}D")
    return name_node(apply(M.permute, input, dims=(1, 0)), "TBackward0") if ndim == 2 else input


def movedim(input: Tensor, source: int, destination: int) -> Tensor:
    """Move one dimension to a new position."""
    order = list(range(input.ndim))
    src = _wrap_dim(source, input.ndim)
    order.remove(src)
    order.insert(_wrap_dim(destination, input.ndim), src)
    return permute(input, order)


def unsqueeze(input: Tensor, dim: int) -> Tensor:
    """Insert a size-1 dimension at dim."""
    dim = _wrap_dim(dim, input.ndim + 1)
    shape = input._data.shape
    return name_node(apply(M.reshape, input, shape=shape[:dim] + (1,) + shape[dim:]), "UnsqueezeBackward0")


def squeeze(input: Tensor, dim=None) -> Tensor:
    """Remove size-1 dimensions (all of them, or those in dim)."""
    shape = input._data.shape
    axes = range(len(shape)) if dim is None else _axes(dim, len(shape))
    new = tuple(s for i, s in enumerate(shape) if not (i in axes and s == 1))
    if new == shape:
        return input
    return name_node(apply(M.reshape, input, shape=new),
                     "SqueezeBackward0" if dim is None else "SqueezeBackward1" if isinstance(dim, int) else "SqueezeBackward2")


def expand(input: Tensor, *sizes) -> Tensor:
    """Broadcast size-1 dimensions to sizes (-1 keeps a size); a view."""
    sizes = _shape_arg(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to "
                           f"the number of dimensions in the tensor ({input.ndim})")
    lead = len(sizes) - input.ndim
    shape = tuple(input._data.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
    if shape == input._data.shape:
        return input
    M.expand.shape_rule([input._data.shape], shape=shape)
    return apply(M.expand, input, shape=shape)


def expand_as(input: Tensor, other: Tensor) -> Tensor:
    """expand(other.shape)."""
    return expand(input, other.shape)


def broadcast_to(input: Tensor, shape) -> Tensor:
    """expand(shape)."""
    return expand(input, tuple(shape))


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims start_dim..end_dim into one."""
    if input.ndim == 0:
        return input.reshape(1)
    start, end = _wrap_dim(start_dim, input.ndim), _wrap_dim(end_dim, input.ndim)
    if start > end:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = input._data.shape
    return reshape(input, shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:])


def unflatten(input: Tensor, dim: int, sizes) -> Tensor:
    """Split one dim into sizes."""
    dim = _wrap_dim(dim, input.ndim)
    shape = input._data.shape
    sizes = _infer_shape(tuple(sizes), shape[dim])
    return reshape(input, shape[:dim] + sizes + shape[dim + 1:])


def narrow(input: Tensor, dim: int, start: int, length: int) -> Tensor:
    """The slice [start, start + length) of dim (a view)."""
    dim = _wrap_dim(dim, input.ndim)
    return apply(I.index, input, key=I.narrow_key(dim, start, start + length))


def split(tensor: Tensor, split_size_or_sections, dim: int = 0) -> tuple:
    """Views of consecutive pieces of dim: equal pieces of a size, or a list of sizes."""
    dim = _wrap_dim(dim, tensor.ndim)
    size = tensor._data.shape[dim]
    if isinstance(split_size_or_sections, (int, np.integer)):
        step = int(split_size_or_sections)
        sections = [builtins.min(step, size - i) for i in range(0, size, step)] or [0]
    else:
        sections = list(split_size_or_sections)
        if builtins.sum(sections) != size:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {size} (input tensor's "
                               f"size at dimension {dim}), but got split_sizes={sections}")
    out, start = [], 0
    for n in sections:
        out.append(narrow(tensor, dim, start, n))
        start += n
    return tuple(out)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple:
    """Split into (at most) chunks pieces of equal size."""
    size = input._data.shape[_wrap_dim(dim, input.ndim)]
    return split(input, builtins.max(1, -(-size // chunks)), dim)


def unbind(input: Tensor, dim: int = 0) -> tuple:
    """The slices along dim, with dim removed."""
    return tuple(s.squeeze(dim) for s in split(input, 1, dim))


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate tensors along an existing dim."""
    tensors = [t for t in tensors]
    if not tensors:
        raise ValueError("cat(): expected a non-empty list of Tensors")
    d = dtypes.result_type(*[t for t in tensors if t.ndim]) if builtins.any(t.ndim for t in tensors) else tensors[0].dtype
    tensors = [_cast(t, d) for t in tensors if not (t.ndim == 1 and t._data.shape[0] == 0)] or tensors[:1]
    if builtins.any(t.ndim == 0 for t in tensors):
        raise RuntimeError("zero-dimensional tensor cannot be concatenated")
    dim = _wrap_dim(dim, tensors[0].ndim)
    M.cat.shape_rule([t._data.shape for t in tensors], dim=dim)
    return apply(M.cat, *tensors, dim=dim)


concat = cat


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors of equal shape along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    first = tensors[0].shape
    for t_ in tensors:
        if t_.shape != first:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(first)} at entry 0 "
                               f"and {list(t_.shape)} at entry {tensors.index(t_)}")
    dim = _wrap_dim(dim, len(first) + 1)
    return name_node(cat([unsqueeze(t_, dim) for t_ in tensors], dim), "StackBackward0")


def flip(input: Tensor, *dims) -> Tensor:
    """Reverse the order of elements along dims (flip(0, 1) or flip((0, 1)))."""
    axes = set(_axes(dims[0] if len(dims) == 1 else dims, input.ndim))
    key = IndexKey(tuple(Slice(step=-1) if i in axes else FULL for i in range(input.ndim)))
    return apply(I.index, input, key=key)


def roll(input: Tensor, shifts, dims=None) -> Tensor:
    """Shift elements along dims by shifts, wrapping around (the flattened tensor when dims is None)."""
    if dims is None:
        return name_node(roll(input.flatten(), shifts, 0).reshape(input.shape), "RollBackward0")
    shifts = (shifts,) if isinstance(shifts, int) else tuple(shifts)
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    if len(shifts) != len(dims):
        raise RuntimeError(f"shifts and dimensions must align. shifts: {len(shifts)}, dims:{len(dims)}")
    out = input
    for shift, dim in zip(shifts, dims):
        dim = _wrap_dim(dim, input.ndim)
        size = input.shape[dim] if input.ndim else 1
        shift = shift % size if size else 0
        if shift:
            out = cat([narrow(out, dim, size - shift, shift), narrow(out, dim, 0, size - shift)], dim)
    return name_node(out if out is not input else clone(input), "RollBackward0")


def repeat(input: Tensor, *sizes) -> Tensor:
    """Tile the tensor sizes[i] times along each dim."""
    sizes = _shape_arg(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor")
    x = input.reshape((1,) * (len(sizes) - input.ndim) + input._data.shape)
    interleaved = tuple(v for s in x._data.shape for v in (1, s))
    expanded = x.reshape(interleaved).expand(tuple(v for r, s in zip(sizes, x._data.shape) for v in (r, s)))
    return expanded.reshape(tuple(r * s for r, s in zip(sizes, x._data.shape)))


def clone(input: Tensor, *, memory_format=None) -> Tensor:
    """A copy with its own memory (gradients flow back to the input)."""
    return apply(E.copy, input)


def contiguous(input: Tensor, memory_format=None) -> Tensor:
    """The tensor itself if contiguous, else a contiguous copy."""
    return input if input._data.flags.c_contiguous else clone(input)


def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    """Lower triangle of the last two dims; other elements zero."""
    n, m = input._data.shape[-2:]
    keep = Tensor._make(np.tril(np.ones((n, m), dtype=bool), diagonal))
    return where(keep, input, 0)


def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    """Upper triangle of the last two dims; other elements zero."""
    n, m = input._data.shape[-2:]
    keep = Tensor._make(np.triu(np.ones((n, m), dtype=bool), diagonal))
    return where(keep, input, 0)


# ---- indexing -----------------------------------------------------------------------------------

def _index_tensor(item) -> Tensor:
    t = item if isinstance(item, Tensor) else Tensor._make(np.asarray(item))
    kind = t._data.dtype.kind
    if kind == "b":
        return t
    if kind in "iu":
        return t if t._data.dtype == np.int64 else _cast(t, dtypes.int64)
    if t._data.size == 0:
        return Tensor._make(t._data.astype(np.int64))
    raise IndexError("tensors used as indices must be long, int, byte or bool tensors")


def parse_key(key) -> tuple[IndexKey, tuple]:
    """Split an index expression into a static key template and its index tensors."""
    if not isinstance(key, tuple):
        key = (key,)
    template, tensors = [], []
    for item in key:
        if item is None:
            template.append(NEW_AXIS)
        elif item is Ellipsis:
            template.append(REST)
        elif isinstance(item, (bool, np.bool_)):
            tensors.append(Tensor._make(np.array(bool(item))))
            template.append(mask_item(len(tensors) - 1))
        elif isinstance(item, (int, np.integer)):
            template.append(integer_item(int(item)))
        elif isinstance(item, slice):
            bounds = [None if v is None else operator.index(v) for v in (item.start, item.stop, item.step)]
            if bounds[2] is not None and bounds[2] <= 0:
                raise ValueError("step must be greater than zero")
            template.append(slice_item(*bounds) if bounds != [None, None, None] else FULL)
        elif isinstance(item, (Tensor, list, np.ndarray, range)):
            tensors.append(_index_tensor(list(item) if isinstance(item, range) else item))
            # a boolean mask, whose result size depends on its values, or integer indices
            template.append((mask_item if tensors[-1]._data.dtype == np.bool_ else index_tensor_item)(len(tensors) - 1))
        else:
            raise IndexError(f"only integers, slices (`:`), ellipsis (`...`), None and long or byte Variables "
                             f"are valid indices (got {type(item).__name__})")
    return index_key(tuple(template)), tuple(tensors)


def getitem(input: Tensor, key) -> Tensor:
    """input[key]: slicing gives views; integer and boolean tensors gather copies."""
    if input.ndim == 0 and key is not None and key is not Ellipsis and not isinstance(key, (tuple, Tensor)):
        raise IndexError("invalid index of a 0-dim tensor. Use `tensor.item()` in Python or `tensor.item<T>()` "
                         "in C++ to convert a 0-dim tensor to a number")
    template, tensors = parse_key(key)
    return apply(I.index, input, *tensors, key=template)


def setitem(input: Tensor, key, value) -> None:
    """input[key] = value, in place (value broadcasts; gradients flow to both)."""
    template, tensors = parse_key(key)
    value = _cast(value, input.dtype) if not isinstance(value, Tensor) else value
    if value.dtype is not input.dtype:
        value = _cast(value, input.dtype)
    input._inplace(I.index_put, value, *tensors, key=template, accumulate=False,
                   direct=lambda dst, v, *idx: I.put(dst, v, idx, template, accumulate=False))


def index_put(input: Tensor, indices: tuple, values: Tensor, accumulate: bool = False) -> Tensor:
    """A copy of input with input[indices] set to (or, with accumulate, increased by) values."""
    template, tensors = parse_key(tuple(indices))
    return apply(I.index_put, input, _cast(values, input.dtype), *tensors, key=template, accumulate=accumulate)


def _outside(index: Tensor, size: int) -> bool:
    """Whether some index lies outside [0, size).

    While a step is traced the test is recorded and its outcome becomes a guard: a replay with an index
    out of range runs eagerly and raises, where the compiled gather would wrap a negative index.
    Eagerly NumPy tests the array.
    """
    if TRACE.tracer is None:
        data = index._data
        return bool(data.size) and (data.min() < 0 or data.max() >= size)
    return bool(((index < 0) | (index >= size)).any())


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """The entries of index along dim."""
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    dim = _wrap_dim(dim, input.ndim)
    if _outside(index, input._data.shape[dim] if input.ndim else 1):
        raise IndexError("index out of range in self")
    template, tensors = parse_key((slice(None),) * dim + (index.reshape(-1),))
    return apply(I.index, input, *tensors, key=template)


def gather(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """out[i][j] = input[index[i][j]][j] (for dim=0), and so on."""
    ndim = input._data.ndim
    dim = _wrap_dim(dim, ndim)
    if index._data.dtype != np.int64:
        raise RuntimeError(f"gather(): Expected dtype int64 for index, got {index.dtype}")
    if index._data.ndim != ndim:
        raise RuntimeError("Index tensor must have the same number of dimensions as input tensor")
    for d in range(ndim):  # index values are checked by the primitive (replays of compiled steps too)
        if d != dim and index._data.shape[d] > input._data.shape[d]:
            raise RuntimeError(f"Size does not match at dimension {d} expected index {list(index.shape)} to be "
                               f"smaller than self {list(input.shape)} apart from dimension {dim}")
    return apply(I.gather, input, index, dim=dim)


def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """A copy of input with src added at the positions index names along dim."""
    dim = _wrap_dim(dim, input._data.ndim)
    if src._data.shape != index._data.shape:
        raise RuntimeError(f"scatter_add(): src must have the shape of index, got {list(src.shape)} and "
                           f"{list(index.shape)}; slice src first")
    return apply(I.scatter_add, input, index, _cast(src, input.dtype), dim=dim)


def masked_select(input: Tensor, mask: Tensor) -> Tensor:
    """The elements where mask (broadcast) is True, as a 1-D tensor."""
    _data_dependent_shape("masked_select")
    shape = np.broadcast_shapes(input._data.shape, mask._data.shape)
    return getitem(expand(input, shape), expand(mask, shape))



"""Movement primitives (views where NumPy allows), concatenation and matrix multiplication."""
from __future__ import annotations

import math

import numpy as np

from ..tensor import Tensor
from . import lax
from .base import Primitive, broadcast_shapes, records_nothing, same_dtype
from .indexing import narrow_key


def _reshape_shape(in_shapes, shape):
    if math.prod(in_shapes[0]) != math.prod(shape):
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {math.prod(in_shapes[0])}")
    return tuple(shape)


def _permute_shape(in_shapes, dims):
    return tuple(in_shapes[0][d] for d in dims)


def _expand_shape(in_shapes, shape):
    src = in_shapes[0]
    lead = len(shape) - len(src)
    for i, s in enumerate(src):
        if s != 1 and s != shape[lead + i]:
            raise RuntimeError(f"The expanded size of the tensor ({shape[lead + i]}) must match the existing "
                               f"size ({s}) at non-singleton dimension {lead + i}.  Target sizes: "
                               f"{list(shape)}.  Tensor sizes: {list(src)}")
    return tuple(shape)


# The ndarray methods, not np.reshape/np.transpose: the same views, without the NumPy wrappers' overhead.
reshape = Primitive("reshape", "movement", lambda x, shape: x.reshape(shape),
                    shape_rule=_reshape_shape, dtype_rule=same_dtype)
permute = Primitive("permute", "movement", lambda x, dims: x.transpose(dims),
                    shape_rule=_permute_shape, dtype_rule=same_dtype)
# In a loop, expand is a broadcast read of its operand: the code generators fuse it like elementwise ops.
expand = Primitive("expand", "movement", lambda x, shape: np.broadcast_to(x, shape),
                   shape_rule=_expand_shape, dtype_rule=same_dtype)

reshape.node_name = "ViewBackward0"  # reshapes are views, as in PyTorch's graphs

reshape.defvjp(lambda node, g: (lax.reshape(g, shape=node.in_shapes[0]),))


def _inverse_permutation(dims: tuple) -> tuple:
    return tuple(sorted(range(len(dims)), key=dims.__getitem__))


def swap_last_two(x):
    """x with its last two dims swapped (a view)."""
    n = x._data.ndim
    return lax.permute(x, dims=tuple(range(n - 2)) + (n - 1, n - 2))


permute.defvjp(lambda node, g: (lax.permute(g, dims=_inverse_permutation(node.attrs["dims"])),))
expand.defvjp(lambda node, g: (lax.sum_to_shape(g, node.in_shapes[0]),))


def _cat_shape(in_shapes, dim):
    first = in_shapes[0]
    for s in in_shapes[1:]:
        if len(s) != len(first) or any(a != b for i, (a, b) in enumerate(zip(s, first)) if i != dim):
            raise RuntimeError(f"Sizes of tensors must match except in dimension {dim}. "
                               f"Got shapes {list(first)} and {list(s)}")
    return first[:dim] + (sum(s[dim] for s in in_shapes),) + first[dim + 1:]


def _cat_impl(*arrays, dim):
    return np.concatenate(arrays, axis=dim)


cat = Primitive("cat", "concat", _cat_impl, shape_rule=_cat_shape,
                dtype_rule=same_dtype)


@cat.defvjp
def _cat_vjp(node, g):
    dim = node.attrs["dim"]
    out, start = [], 0
    for shape, need in zip(node.in_shapes, node.needs_input_grad):
        stop = start + shape[dim]
        out.append(lax.index(g, key=narrow_key(dim, start, stop)) if need else None)
        start = stop
    return tuple(out)


def _matmul_shape(in_shapes):
    a, b = in_shapes
    if a[-1] != b[-2]:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({a[-2]}x{a[-1]} and {b[-2]}x{b[-1]})")
    return broadcast_shapes(a[:-2], b[:-2]) + (a[-2], b[-1])


matmul = Primitive("matmul", "linalg", np.matmul, shape_rule=_matmul_shape, dtype_rule=same_dtype,
                   saves=(0, 1))


@matmul.defvjp
def _matmul_vjp(node, g):
    a, b = node.saved(0), node.saved(1)
    need_a, need_b = node.needs_input_grad
    if records_nothing() and a._data.ndim == 2 and b._data.ndim == 2:  # the ops below on the arrays
        ga = Tensor._make(matmul.impl(g._data, permute.impl(b._data, dims=(1, 0)))) if need_a else None
        gb = Tensor._make(matmul.impl(permute.impl(a._data, dims=(1, 0)), g._data)) if need_b else None
        return ga, gb  # two matrices: sum_to_shape has nothing to sum
    ga = lax.sum_to_shape(lax.matmul(g, swap_last_two(b)), node.in_shapes[0]) if need_a else None
    if need_b and len(node.in_shapes[1]) == 2:  # one matrix b: the batch of a and g folds into their rows
        gb = lax.matmul(swap_last_two(_rows(a)), _rows(g))  # one product, not one per matrix then a sum
    else:
        gb = lax.sum_to_shape(lax.matmul(swap_last_two(a), g), node.in_shapes[1]) if need_b else None
    return ga, gb


def _rows(x):
    """x as one matrix: its leading dims folded into the rows ([B, T, F] -> [B*T, F])."""
    shape = x._data.shape
    return x if len(shape) == 2 else lax.reshape(x, shape=(math.prod(shape[:-1]), shape[-1]))

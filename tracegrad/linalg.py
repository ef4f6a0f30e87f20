"""tracegrad.linalg: vector and matrix norms, composed from tensor ops (differentiable, compilable)."""
from __future__ import annotations

import math

from .ops import amax, amin, vector_norm
from .tensor import Tensor, _wrap_dim

__all__ = ["matrix_norm", "norm", "vector_norm"]

# ord -> (reduce over the rows or the columns of the absolute sums, the axis summed: 0 = dim[0])
_MATRIX_ORDS = {1: (amax, 0), -1: (amin, 0), math.inf: (amax, 1), -math.inf: (amin, 1)}


def matrix_norm(A: Tensor, ord="fro", dim=(-2, -1), keepdim: bool = False, *, dtype=None) -> Tensor:
    """The ord-norm of the matrices in dims dim of A: 'fro', 1, -1, inf or -inf ('nuc', 2 and -2 raise)."""
    if A.ndim < 2:
        raise RuntimeError("linalg.matrix_norm: The input tensor A must have at least 2 dimensions.")
    dims = tuple(_wrap_dim(d, A.ndim) for d in dim)
    if len(dims) != 2 or dims[0] == dims[1]:
        raise RuntimeError(f"linalg.matrix_norm: dim must be a 2-tuple of different dimensions. Got {tuple(dim)}")
    if ord == "fro":
        return vector_norm(A, 2, dims, keepdim, dtype=dtype)
    if ord in ("nuc", 2, -2):
        raise NotImplementedError(f"linalg.matrix_norm: ord={ord!r} needs singular values (an SVD), which tracegrad "
                                  f"does not compute; use ord='fro', 1, -1, inf or -inf")
    if isinstance(ord, str) or ord not in _MATRIX_ORDS:
        raise RuntimeError(f"linalg.matrix_norm: Order {ord} not supported.")
    pick, summed = _MATRIX_ORDS[ord]
    sums = vector_norm(A, 1, dims[summed], keepdim=True, dtype=dtype)
    out = pick(sums, dims[1 - summed], keepdim=True)
    return out if keepdim else out.squeeze(dims)


def norm(A: Tensor, ord=None, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """A vector norm (dim an int or None with ord None or a 1-D A) or a matrix norm (dim a pair, or a 2-D A)."""
    if isinstance(dim, int) or dim is not None and len(dim) == 1:
        return vector_norm(A, 2 if ord is None else ord, dim, keepdim, dtype=dtype)
    if dim is not None:
        return matrix_norm(A, "fro" if ord is None else ord, dim, keepdim, dtype=dtype)
    if ord is None:
        return vector_norm(A, 2, None, keepdim, dtype=dtype)
    if A.ndim == 1 and not isinstance(ord, str):
        return vector_norm(A, ord, None, keepdim, dtype=dtype)
    if A.ndim == 2:
        return matrix_norm(A, ord, (-2, -1), keepdim, dtype=dtype)
    raise RuntimeError(f"linalg.norm: If dim is not specified but ord is, the input must be 1D or 2D. Got {A.ndim}D.")

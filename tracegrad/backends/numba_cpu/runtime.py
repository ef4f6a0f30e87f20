"""Helpers the generated kernels call (imported there as ``rt``)."""
from __future__ import annotations

import ctypes
import glob
import os

import llvmlite.binding as llvm
import numpy as np
from numba import njit, types
from numba.extending import overload


class GuardFailed(Exception):
    """Raised inside a kernel when guard number ``args[0]`` does not hold, before any write-back."""


class IndexOutOfBounds(Exception):
    """Raised inside a kernel, before any write-back, when index check number ``args[0]`` finds the
    value ``args[1]`` out of range (the kernel's ``INDEX_ERRORS`` says which primitive and dimension)."""


@njit(inline="always")
def maximum(a, b):
    """np.maximum on scalars: NaN wins and a tie gives b (np.maximum(-0.0, 0.0) is 0.0), as in NumPy."""
    return a if a > b or a != a else b


@njit(inline="always")
def minimum(a, b):
    """np.minimum on scalars: NaN wins and a tie gives b (np.minimum(0.0, -0.0) is -0.0), as in NumPy."""
    return a if a < b or a != a else b


def blas_operand(x):
    """Inside Numba code: matrix x as it is when Numba types it row- or column-major, else a row-major copy."""
    raise TypeError("blas_operand is only callable inside a Numba kernel")


@overload(blas_operand)
def _blas_operand(x):
    # chosen by x's Numba type: a row- or column-major array passes through without a runtime check
    if x.layout in "CF":
        return lambda x: x
    return lambda x: np.ascontiguousarray(x)


# ---- matrix products on NumPy's own BLAS ------------------------------------------------------------
#
# np.dot inside Numba calls SciPy's OpenBLAS, a second BLAS library beside NumPy's: eager steps
# (NumPy) and compiled steps (Numba) in one process then keep two thread pools whose idle threads
# spin against each other on the same cores (measured: 5-20x slower matmuls when they alternate).
# Kernels call NumPy's bundled OpenBLAS through its CBLAS entry points instead, so both modes share
# one pool. Where NumPy's BLAS can't be found (another NumPy build), np.dot is the fallback.

_ROW_MAJOR, _NO_TRANSPOSE, _TRANSPOSE = 101, 111, 112


def _numpy_blas() -> str | None:
    """The path of NumPy's bundled OpenBLAS when it exports the 64-bit CBLAS gemm entry points."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in glob.glob(os.path.join(libs, "*openblas*")):
        try:
            if hasattr(ctypes.CDLL(path), "scipy_cblas_sgemm64_"):
                return path
        except OSError:
            continue
    return None


_BLAS = _numpy_blas()

if _BLAS is not None:
    llvm.load_library_permanently(_BLAS)  # lets the compiled (and cached) kernels resolve the symbols

    def _gemm_type(scalar):
        index = types.int64
        return types.void(types.intc, types.intc, types.intc, index, index, index, scalar, types.voidptr, index,
                          types.voidptr, index, scalar, types.voidptr, index)
    _sgemm = types.ExternalFunction("scipy_cblas_sgemm64_", _gemm_type(types.float32))
    _dgemm = types.ExternalFunction("scipy_cblas_dgemm64_", _gemm_type(types.float64))

    @njit(inline="always")
    def _operand(x):
        """(transpose flag, leading dimension) of a row-major or column-major matrix; (0, 0) otherwise."""
        size = x.itemsize
        if x.strides[1] == size and x.strides[0] >= x.shape[1] * size:
            return _NO_TRANSPOSE, max(x.strides[0] // size, 1)
        if x.strides[0] == size and x.strides[1] >= x.shape[0] * size:
            return _TRANSPOSE, max(x.strides[1] // size, 1)
        return 0, 0

    @njit
    def matmul_into(x, y, out):
        """out = x @ y: float32/float64 matrices, out row-major. x and y are used as they are when Numba
        types them row- or column-major (an array or its .T), else copied (blas_operand). One BLAS path:
        every kernel links this code in, and its size counts in each kernel's compile time. Compiled
        once per combination of layouts and cached on disk (signed: cache.py), so kernels pay nothing for the choice."""
        a, b = blas_operand(x), blas_operand(y)
        m, k = a.shape
        n = b.shape[1]
        if m == 0 or n == 0:
            return out
        if k == 0:
            out[...] = 0
            return out
        ta, lda = _operand(a)
        tb, ldb = _operand(b)
        if ta == 0 or tb == 0:
            raise ValueError("matmul_into: an operand is neither row-major nor column-major; copy it first")
        if a.itemsize == 4:
            _sgemm(_ROW_MAJOR, ta, tb, m, n, k, np.float32(1), a.ctypes.data, lda, b.ctypes.data, ldb,
                   np.float32(0), out.ctypes.data, max(n, 1))
        else:
            _dgemm(_ROW_MAJOR, ta, tb, m, n, k, np.float64(1), a.ctypes.data, lda, b.ctypes.data, ldb,
                   np.float64(0), out.ctypes.data, max(n, 1))
        return out
else:
    @njit
    def matmul_into(x, y, out):
        """out = x @ y (np.dot: SciPy's BLAS)."""
        np.dot(blas_operand(x), blas_operand(y), out)
        return out


@njit
def dot(a, b):
    """a @ b for float32/float64 matrices (strided ones are copied first): a new array."""
    return matmul_into(a, b, np.empty((a.shape[0], b.shape[1]), a.dtype))

"""Helpers the generated kernels call (imported there as ``rt``)."""
from __future__ import annotations

import numpy as np
from numba import njit


class GuardFailed(Exception):
    """Raised inside a kernel when guard number ``args[0]`` does not hold, before any write-back."""


@njit(inline="always")
def maximum(a, b):
    """np.maximum on scalars: NaN wins, as in NumPy."""
    return a if a >= b or a != a else b


@njit(inline="always")
def minimum(a, b):
    """np.minimum on scalars: NaN wins, as in NumPy."""
    return a if a <= b or a != a else b


@njit(cache=True)
def dot(a, b):
    """np.dot of two matrices, compiled once per layout pair and kept in Numba's cache across processes
    (called directly, each kernel would compile NumPy's dot again: about a second per layout pair)."""
    return np.dot(a, b)

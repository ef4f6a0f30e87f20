"""Helpers the generated kernels call (imported there as ``rt``)."""
from __future__ import annotations

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

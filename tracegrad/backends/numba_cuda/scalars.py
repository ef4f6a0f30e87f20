"""How CUDA kernels spell elementwise primitives: the Numba CPU backend's templates (``numba_cpu/scalars.py``)
with the entries device code spells differently replaced.

CPU templates call ``fm.`` (vectorizable CPU math) and ``np.<ufunc>``; device code calls ``math.`` (libdevice).
Every math call is wrapped in the result's scalar type: under the simulator ``math.exp`` returns a Python
float, which would carry float64 through a float32 chain. ``rt.`` names ``numba_cuda/runtime.py`` here, whose
device functions ``maximum``/``minimum`` keep the CPU templates' NaN semantics (the reductions are unchanged).
A primitive declared outside the library gives ``lowerings={"cuda": ...}``; one computed by a NumPy ufunc that
the ``math`` module also has (``sinh``) is spelled as that.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir.graph import Graph
from ..numba_cpu.scalars import NUMBA

ELEMENTWISE = {
    "exp": "{T}(math.exp({0}))",
    "log": "{T}(math.log({0}))",
    "tanh": "{T}(math.tanh({0}))",
    "sigmoid": "{T}(1) / ({T}(1) + {T}(math.exp(-{0})))",
    "round": "{T}(rt.round_half_even({0}))",
    "abs": "abs({0})",
    "sign": "({T}(1) if {0} > {T}(0) else {T}(-1) if {0} < {T}(0) else {0})",  # NaN and 0 pass, as np.sign
    "trunc": "{T}(math.floor({0}) if {0} >= {T}(0) else math.ceil({0}))",  # the simulator's math.trunc rejects float32
    "isnan": "{0} != {0}",
    "isinf": "abs({0}) == math.inf",
    "pow": "{0} ** {1}",
    "remainder": "{0} % {1}",  # Numba's float % has Python's (and np.remainder's) sign rule
    "floor_divide": "{0} // {1}",
}


def _math_ufunc(ufunc: np.ufunc) -> str | None:
    """A one-operand ufunc the ``math`` module has (log1p, sqrt, floor...), as that; else None (no CUDA spelling)."""
    name = ufunc.__name__
    return f"{{T}}(math.{name}({{0}}))" if ufunc.nin == 1 and hasattr(math, name) else None


CUDA = NUMBA.overriding("cuda", ELEMENTWISE, {}, _math_ufunc)


def spelled_elsewhere(graph: Graph) -> str:
    """The CUDA templates of the graph's primitives spelled outside the two backend folders, for a cache key."""
    return CUDA.spelled_elsewhere(graph, frozenset(CUDA.elementwise_table) | frozenset(CUDA.reductions))

"""How CUDA kernels spell elementwise primitives: the Numba CPU backend's templates (``numba_cpu/scalars.py``)
with the entries device code spells differently replaced.

CPU templates call ``fm.`` (vectorizable CPU math) and ``np.<ufunc>``; device code calls ``math.`` (libdevice).
Every math call is wrapped in the result's scalar type: under the simulator ``math.exp`` returns a Python
float, which would carry float64 through a float32 chain. Under the simulator ``math`` also raises where the
device returns inf or NaN (``math.log(0)``, ``math.exp(1000)``): the spellings keep the device's (NumPy's)
results, so simulator cases avoid those inputs.

Kernels call no device functions: numba-cuda compiles a called ``@cuda.jit(device=True)`` function (and a
``register_jitable`` one) for the current device's compute capability, so a kernel calling one can't be
compiled without a GPU (``compile_ptx``, tests/test_cuda_device_compile.py). Helpers are inline expressions.

Besides ``{T}``, a CUDA template may use ``{I}``: the magnitude from which every value of the result's dtype
is an integer (``integral_from``). Rounding returns a value whose magnitude is not below it as it is, which
also passes NaN and inf, and computes the others in floating point: no cast to an integer type, which
overflows. ``math.copysign`` keeps the sign of a zero result (np.ceil(-0.5) is -0.0).

A primitive declared outside the library gives ``lowerings={"cuda": ...}``; one computed by a NumPy ufunc that
the ``math`` module also has (``sinh``) is spelled as that.
"""
from __future__ import annotations

import math

import numpy as np

from ...ir.graph import Graph
from ..numba_cpu.scalars import NUMBA
from ..numba_cpu.source import literal


def _nan_wins(better: str, a: str, b: str) -> str:
    """np.maximum (``better`` '>') or np.minimum ('<') of a and b inline: NaN wins, and a tie gives b, as in
    NumPy (np.maximum(-0.0, 0.0) is 0.0)."""
    return f"({a} if {a} {better} {b} or {a} != {a} else {b})"


def _rounded(rounding: str) -> str:
    """A rounding of ``{0}`` spelled as ``rounding`` where the magnitude is below ``{I}``, with x's sign."""
    return f"({{0}} if not abs({{0}}) < {{I}} else {{T}}(math.copysign({rounding}, {{0}})))"


ELEMENTWISE = {
    "exp": "{T}(math.exp({0}))",
    "log": "{T}(math.log({0}))",
    "tanh": "{T}(math.tanh({0}))",
    "sigmoid": "{T}(1) / ({T}(1) + {T}(math.exp(-{0})))",
    "abs": "abs({0})",
    # NaN passes; both zeros give 0.0, as np.sign
    "sign": "({T}(1) if {0} > {T}(0) else {T}(-1) if {0} < {T}(0) else {T}(0) if {0} == {T}(0) else {0})",
    "floor": _rounded("math.floor({0})"),
    "ceil": _rounded("math.ceil({0})"),
    "trunc": _rounded("math.floor(abs({0}))"),
    # half to even: below I, abs(x) + I rounds to an integer in the current (nearest-even) mode, exactly
    "round": _rounded("(abs({0}) + {I}) - {I}"),
    "isnan": "{0} != {0}",
    "isinf": "abs({0}) == math.inf",
    "maximum": _nan_wins(">", "{0}", "{1}"),
    "minimum": _nan_wins("<", "{0}", "{1}"),
    "pow": "{0} ** {1}",  # libdevice pow: C99's special cases, as np.power
    # Numba's float % and // follow Python (np.remainder's and np.floor_divide's sign rule); kernels compile
    # with NumPy's error model: a zero divisor gives NaN or +-inf, not an exception
    "remainder": "{0} % {1}",
    "floor_divide": "{0} // {1}",
}

REDUCTIONS = {
    "amax": (NUMBA.reductions["amax"][0], _nan_wins(">", "{acc}", "{0}")),
    "amin": (NUMBA.reductions["amin"][0], _nan_wins("<", "{acc}", "{0}")),
}


def integral_from(dtype: np.dtype) -> str:
    """The literal a template's ``{I}`` stands for: 2**23 for float32, 2**52 for float64, 0 for integers."""
    dtype = np.dtype(dtype)
    return literal(2 ** np.finfo(dtype).nmant if dtype.kind == "f" else 0, dtype)


def _math_ufunc(ufunc: np.ufunc) -> str | None:
    """A one-operand ufunc the ``math`` module has (log1p, sqrt...), as that; else None (no CUDA spelling)."""
    name = ufunc.__name__
    return f"{{T}}(math.{name}({{0}}))" if ufunc.nin == 1 and hasattr(math, name) else None


CUDA = NUMBA.overriding("cuda", ELEMENTWISE, REDUCTIONS, _math_ufunc)


def spelled_elsewhere(graph: Graph) -> str:
    """The CUDA templates of the graph's primitives spelled outside the two backend folders, for a cache key."""
    return CUDA.spelled_elsewhere(graph, frozenset(CUDA.elementwise_table) | frozenset(CUDA.reductions))

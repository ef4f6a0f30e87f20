"""How this backend's loops spell elementwise primitives and reductions: the loop-body templates.

An elementwise template is a Python expression over the operands' scalars ``{0}``, ``{1}``... where
``{T}`` names the result's scalar type (``{T}(0)`` is a typed zero: a plain literal would promote
float32 to float64), or a callable ``attrs -> template`` when the attributes change it. ``fm``
(fastmath.py) and ``rt`` (runtime.py) are the kernel module's names for this backend's helpers.

A primitive missing here is spelled by its declaration (``Primitive(..., lowerings={"numba": ...})``)
or, when its implementation is a NumPy ufunc, as that ufunc (Numba compiles ``np.sinh`` and the
like): a primitive's template lives in one place, never two.

A reduction is ``(identity, combine)``: the accumulator's start value given the NumPy dtype, and the
template folding ``{0}`` into ``{acc}``.
"""
from __future__ import annotations

import numpy as np

from ...ir.graph import Graph
from ...primitives import REGISTRY
from ...primitives.base import Primitive

BACKEND = "numba"


def _cast(attrs: dict) -> str:
    return "{0} != 0" if attrs["dtype"].np == np.bool_ else "{T}({0})"


ELEMENTWISE = {
    "neg": "-{0}",
    "exp": "fm.exp({0})",
    "log": "fm.log({0})",
    "tanh": "fm.tanh({0})",
    "sigmoid": "{T}(1) / ({T}(1) + fm.exp(-{0}))",
    "relu": "{0} if not {0} <= {T}(0) else {T}(0)",  # NaN passes, as through np.maximum(x, 0)
    "erf": "{T}(math.erf({0}))",
    "round": "np.round({0})",
    "logical_not": "not {0}",
    "cast": _cast,
    "copy": "{0}",
    "expand": "{0}",
    "add": "{0} + {1}",
    "sub": "{0} - {1}",
    "mul": "{0} * {1}",
    "div": "{0} / {1}",
    "maximum": "rt.maximum({0}, {1})",
    "minimum": "rt.minimum({0}, {1})",
    "eq": "{0} == {1}",
    "ne": "{0} != {1}",
    "lt": "{0} < {1}",
    "le": "{0} <= {1}",
    "gt": "{0} > {1}",
    "ge": "{0} >= {1}",
    "bitwise_and": "{0} & {1}",
    "bitwise_or": "{0} | {1}",
    "bitwise_xor": "{0} ^ {1}",
    "where": "{1} if {0} else {2}",
}


def _lowest(dtype: np.dtype):
    return -np.inf if dtype.kind == "f" else np.iinfo(dtype).min if dtype.kind in "iu" else False


def _highest(dtype: np.dtype):
    return np.inf if dtype.kind == "f" else np.iinfo(dtype).max if dtype.kind in "iu" else True


REDUCTIONS = {
    "sum": (lambda dtype: 0, "{acc} + {0}"),
    "prod": (lambda dtype: 1, "{acc} * {0}"),
    "amax": (_lowest, "rt.maximum({acc}, {0})"),
    "amin": (_highest, "rt.minimum({acc}, {0})"),
    "any": (lambda dtype: False, "{acc} or {0}"),
    "all": (lambda dtype: True, "{acc} and {0}"),
}


def _spelling(prim: Primitive):
    """The template (or attrs -> template) of an elementwise primitive, wherever it lives; else None."""
    spelled = ELEMENTWISE.get(prim.name, prim.lowerings.get(BACKEND))
    if spelled is None and prim.kind == "elementwise":
        ufunc = prim.ufunc or (prim.impl if isinstance(prim.impl, np.ufunc) else None)
        if ufunc is not None:
            spelled = f"np.{ufunc.__name__}({', '.join(f'{{{k}}}' for k in range(ufunc.nin))})"
    return spelled


def elementwise(prim: Primitive, attrs: dict) -> str | None:
    """The loop-body template of an elementwise primitive with these attributes; None if it has none."""
    spelled = _spelling(prim)
    return spelled(attrs) if callable(spelled) else spelled


def reduction(prim: Primitive) -> tuple | None:
    """(identity, combine) of a reduction a loop can accumulate; None if it has none."""
    return REDUCTIONS.get(prim.name, prim.lowerings.get(BACKEND) if prim.kind == "reduce" else None)


def in_loop(prim: Primitive) -> bool:
    """Whether a loop nest computes the primitive element by element or accumulates it."""
    return _spelling(prim) is not None or reduction(prim) is not None


def spelled_elsewhere(graph: Graph) -> str:
    """The templates of the graph's primitives spelled outside this folder (in their declaration, or as
    their ufunc), for a kernel's cache key: this folder's own are in its hash (``cache.code_digest``)."""
    names = sorted({n.prim for n in graph.nodes} - ELEMENTWISE.keys() - REDUCTIONS.keys())
    return "".join(f"\n{name}: {_spelling(REGISTRY[name])} {reduction(REGISTRY[name])}" for name in names)

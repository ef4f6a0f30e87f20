"""How this backend's loops spell elementwise primitives and reductions: the loop-body templates.

An elementwise template is a Python expression over the operands' scalars ``{0}``, ``{1}``... where
``{T}`` names the result's scalar type (``{T}(0)`` is a typed zero: a plain literal would promote
float32 to float64), or a callable ``attrs -> template`` when the attributes change it. ``fm``
(fastmath.py) and ``rt`` (runtime.py) are the kernel module's names for this backend's helpers.

A primitive missing here is spelled by its declaration (``Primitive(..., lowerings={"numba": ...})``)
or, when its implementation is a NumPy ufunc, as that ufunc (Numba compiles ``np.sinh`` and the
like): a primitive's template lives in one place, never two. ``Spelling`` holds these lookups; the CUDA
backend (``numba_cuda/scalars.py``) derives its own from ``NUMBA``, overriding the entries device code spells
differently, and reads ``lowerings={"cuda": ...}`` from a declaration.

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


class Spelling:
    """One backend's templates: its own tables, then a primitive's declared ``lowerings[backend]``, then its ufunc.

    The Numba CPU backend's is ``NUMBA`` (this module's functions below); another backend (CUDA) derives its
    own with ``overriding``, so each primitive is spelled once per backend and the planning code, which asks
    only whether a loop can compute a node, reads the one table.
    """

    def __init__(self, backend: str, elementwise: dict, reductions: dict, ufunc) -> None:
        self.backend, self.elementwise_table, self.reductions = backend, elementwise, reductions
        self.ufunc = ufunc  # np.ufunc -> template, for an elementwise primitive computed by a NumPy ufunc

    def overriding(self, backend: str, elementwise: dict, reductions: dict, ufunc) -> "Spelling":
        """This spelling with the entries given replaced, for ``backend`` (its declared lowerings, its ufuncs)."""
        return Spelling(backend, {**self.elementwise_table, **elementwise}, {**self.reductions, **reductions}, ufunc)

    def template(self, prim: Primitive):
        """The template (or attrs -> template) of an elementwise primitive, wherever it lives; else None."""
        spelled = self.elementwise_table.get(prim.name, prim.lowerings.get(self.backend))
        if spelled is None and prim.kind == "elementwise":
            ufunc = prim.ufunc or (prim.impl if isinstance(prim.impl, np.ufunc) else None)
            if ufunc is not None:
                spelled = self.ufunc(ufunc)
        return spelled

    def elementwise(self, prim: Primitive, attrs: dict) -> str | None:
        """The loop-body template of an elementwise primitive with these attributes; None if it has none."""
        spelled = self.template(prim)
        return spelled(attrs) if callable(spelled) else spelled

    def reduction(self, prim: Primitive) -> tuple | None:
        """(identity, combine) of a reduction a loop can accumulate; None if it has none."""
        return self.reductions.get(prim.name, prim.lowerings.get(self.backend) if prim.kind == "reduce" else None)

    def in_loop(self, prim: Primitive) -> bool:
        """Whether a loop nest computes the primitive element by element or accumulates it."""
        return self.template(prim) is not None or self.reduction(prim) is not None

    def spelled_elsewhere(self, graph: Graph, own: frozenset = frozenset()) -> str:
        """The templates of the graph's primitives spelled outside the backend's folder (in their declaration, or
        as their ufunc), for a kernel's cache key; ``own``: the names its folder spells (in its code's hash)."""
        names = sorted({n.prim for n in graph.nodes} - own)
        return "".join(f"\n{name}: {self.template(REGISTRY[name])} {self.reduction(REGISTRY[name])}"
                       for name in names)


def _numpy_ufunc(ufunc: np.ufunc) -> str:
    """Numba compiles NumPy's ufuncs on scalars: ``np.sinh({0})``."""
    return f"np.{ufunc.__name__}({', '.join(f'{{{k}}}' for k in range(ufunc.nin))})"


NUMBA = Spelling(BACKEND, ELEMENTWISE, REDUCTIONS, _numpy_ufunc)


def elementwise(prim: Primitive, attrs: dict) -> str | None:
    """The Numba loop-body template of an elementwise primitive with these attributes; None if it has none."""
    return NUMBA.elementwise(prim, attrs)


def reduction(prim: Primitive) -> tuple | None:
    """(identity, combine) of a reduction a Numba loop can accumulate; None if it has none."""
    return NUMBA.reduction(prim)


def in_loop(prim: Primitive) -> bool:
    """Whether a loop nest computes the primitive element by element or accumulates it."""
    return NUMBA.in_loop(prim)


def spelled_elsewhere(graph: Graph) -> str:
    """The templates of the graph's primitives spelled outside this folder (in their declaration, or as
    their ufunc), for a kernel's cache key: this folder's own are in its hash (``cache.code_digest``)."""
    return NUMBA.spelled_elsewhere(graph, frozenset(ELEMENTWISE) | frozenset(REDUCTIONS))

"""Backends: what runs an optimized graph. ``prepare`` turns a graph into a callable on NumPy arrays."""
from __future__ import annotations

import functools
from typing import Callable

from ..ir import Graph, run

BACKENDS = ("interpreter", "numba", "numba-parallel")


class Unsupported(Exception):
    """A backend can't lower some node of the graph (the reason says which)."""


def prepare(backend: str, graph: Graph) -> Callable[[list], list]:
    """A callable running ``graph`` on input arrays with ``backend`` (raises Unsupported if it can't).

    A Numba kernel that is not on disk yet runs its first call on the interpreter and compiles on
    the second: steps retraced every call (a guard on a changing value) never wait for Numba."""
    if backend == "interpreter":
        return functools.partial(run, graph)
    if backend in ("numba", "numba-parallel"):
        from .numba_cpu import compile_graph
        return compile_graph(graph, parallel=backend == "numba-parallel", interpret_first=True)
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")

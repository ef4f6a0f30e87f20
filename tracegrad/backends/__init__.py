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

    A Numba kernel compiles (or loads from disk) at its first call: every replay runs the same machine
    code, so a run's results are bit for bit the same whether the kernel cache was cold or warm."""
    if backend == "interpreter":
        return functools.partial(run, graph)
    if backend in ("numba", "numba-parallel"):
        from .numba_cpu import compile_graph
        return compile_graph(graph, parallel=backend == "numba-parallel")
    raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")

"""The interpreter backend: each node runs its primitive's NumPy implementation (``ir.run``), the reference
every other backend is tested against. It generates no code."""
from __future__ import annotations

import functools

from ...ir import Graph, run


class Interpreted(functools.partial):
    """A graph bound to ``ir.run``: a partial, so a replay's call costs what calling ``run`` does."""

    source = None
    fresh_outputs = False  # an output may be an input, or another output, as it is


class Interpreter:
    """The ``interpreter`` backend."""

    name = "interpreter"
    fallback = None

    def unavailable(self) -> None:
        """None: NumPy runs everywhere."""
        return None

    def compile(self, graph: Graph) -> Interpreted:
        """``graph`` run node by node; never Unsupported."""
        return Interpreted(run, graph)

    def kernel_report(self, graph: Graph) -> None:
        """None: the interpreter generates no code."""
        return None


PROVIDES = {"interpreter": Interpreter()}

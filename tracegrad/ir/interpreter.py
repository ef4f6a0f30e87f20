"""The reference backend: run a graph with the primitives' NumPy implementations."""
from __future__ import annotations

import numpy as np

from ..primitives import REGISTRY
from .graph import Graph


class GuardFailure(Exception):
    """A value the traced step branched on differs now; nothing was written back."""

    def __init__(self, source: str, expected, got) -> None:
        super().__init__(f"guard at {source or '?'}: traced with {expected!r}, now {got!r}")
        self.source = source


def run(graph: Graph, inputs: list) -> list:
    """Execute ``graph`` on NumPy arrays (one per graph input); check guards, then apply write-backs.

    Returns the outputs; raises GuardFailure, with no input modified, when a guard does not hold.
    """
    if len(inputs) != len(graph.inputs):
        raise ValueError(f"graph {graph.name} takes {len(graph.inputs)} inputs, got {len(inputs)}")
    env = {v.id: a for v, a in zip(graph.inputs, inputs)}
    guards: dict[int, list] = {}
    for value, expected, source in graph.guards:
        guards.setdefault(value.id, []).append((expected, source))
    for v in graph.inputs:
        _check(guards.get(v.id, ()), env[v.id])
    # Each guard is checked as soon as its value exists: a check that guards an op (an index in range, a
    # nonzero divisor) fails before that op runs on the values it excluded.
    for n in graph.nodes:
        env[n.out.id] = np.asarray(REGISTRY[n.prim].impl(*[env[o.id] for o in n.operands], **n.attrs))
        _check(guards.get(n.out.id, ()), env[n.out.id])
    for dst, src in graph.writebacks:
        np.copyto(env[dst.id], env[src.id])
    return [env[v.id] for v in graph.outputs]


def _check(guards, value: np.ndarray) -> None:
    """Raise GuardFailure unless value is what each of its guards expects."""
    for expected, source in guards:
        got = value.item()
        if got != expected:
            raise GuardFailure(source, expected, got)

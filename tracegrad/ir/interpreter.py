"""The reference backend: run a graph with the primitives' NumPy implementations."""
from __future__ import annotations

import numpy as np

from ..primitives import REGISTRY
from .graph import Graph, Node


class GuardFailure(Exception):
    """A value the traced step branched on differs now; nothing was written back."""

    def __init__(self, source: str, expected, got) -> None:
        super().__init__(f"guard at {source or '?'}: traced with {expected!r}, now {got!r}")
        self.source = source


def run(graph: Graph, inputs: list) -> list:
    """Execute ``graph`` on NumPy arrays (one per graph input); check guards, then apply write-backs.

    Returns the outputs; raises GuardFailure, with no input modified, when a guard does not hold. A
    guard is checked as soon as its value is known, before any node it doesn't need runs: when it fails
    the trace doesn't apply, so an error some other node would raise on these inputs isn't the user's.
    """
    if len(inputs) != len(graph.inputs):
        raise ValueError(f"graph {graph.name} takes {len(graph.inputs)} inputs, got {len(inputs)}")
    env = {v.id: a for v, a in zip(graph.inputs, inputs)}
    for step in _guards_first(graph):
        if isinstance(step, Node):
            env[step.out.id] = np.asarray(REGISTRY[step.prim].impl(*[env[o.id] for o in step.operands], **step.attrs))
            continue
        value, expected, source = step
        got = env[value.id].item()
        if got != expected:
            raise GuardFailure(source, expected, got)
    for dst, src in graph.writebacks:
        np.copyto(env[dst.id], env[src.id])
    return [env[v.id] for v in graph.outputs]


def _guards_first(graph: Graph) -> list:
    """The nodes in an order that computes each guard's value as early as it can (guards in the order
    they were traced), each guard (value, expected, source) right after the nodes its value needs."""
    producer = {n.out.id: n for n in graph.nodes}
    done: set = set()
    steps: list = []
    for guard in graph.guards:
        needed, pending = set(), [guard[0].id]
        while pending:
            n = producer.get(pending.pop())
            if n is not None and id(n) not in done and id(n) not in needed:
                needed.add(id(n))
                pending += [o.id for o in n.operands]
        steps += [n for n in graph.nodes if id(n) in needed]
        steps.append(guard)
        done |= needed
    return steps + [n for n in graph.nodes if id(n) not in done]

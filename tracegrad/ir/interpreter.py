"""The reference backend: run a graph with the primitives' NumPy implementations."""
from __future__ import annotations

import numpy as np

from ..primitives import REGISTRY
from .graph import Graph


def run(graph: Graph, inputs: list) -> list:
    """Execute ``graph`` on NumPy arrays (one per graph input); apply write-backs; return the outputs."""
    if len(inputs) != len(graph.inputs):
        raise ValueError(f"graph {graph.name} takes {len(graph.inputs)} inputs, got {len(inputs)}")
    env = {v.id: a for v, a in zip(graph.inputs, inputs)}
    for n in graph.nodes:
        env[n.out.id] = np.asarray(REGISTRY[n.prim].impl(*[env[o.id] for o in n.operands], **n.attrs))
    for dst, src in graph.writebacks:
        np.copyto(env[dst.id], env[src.id])
    return [env[v.id] for v in graph.outputs]

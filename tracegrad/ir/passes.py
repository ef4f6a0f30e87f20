"""Graph-to-graph passes: constant folding, algebraic simplification, CSE and dead-code elimination.

Each pass rewrites the graph in place and returns how many nodes it removed or replaced.
"""
from __future__ import annotations

import numpy as np

from ..primitives import REGISTRY
from .graph import Graph, Node, Value

FOLD_LIMIT = 4096  # fold constants up to this many elements; larger results stay computed at run time


def substitute(graph: Graph, mapping: dict) -> None:
    """Replace uses of values (by id) everywhere: operands, outputs, guards and write-back sources."""
    if not mapping:
        return

    def sub(v: Value) -> Value:
        while v.id in mapping:
            v = mapping[v.id]
        return v
    for n in graph.nodes:
        n.operands = [sub(o) for o in n.operands]
    graph.outputs = [sub(v) for v in graph.outputs]
    graph.guards = [(sub(v), expected, source) for v, expected, source in graph.guards]
    graph.writebacks = [(dst, sub(src)) for dst, src in graph.writebacks]


def fold_constants(graph: Graph) -> int:
    """Evaluate nodes whose operands are all constants (small results only) into new constants."""
    mapping, kept = {}, []
    for n in graph.nodes:
        operands = [mapping.get(o.id, o) for o in n.operands]
        if all(o.const is not None for o in operands) and np.prod(n.out.type.shape) <= FOLD_LIMIT:
            value = np.asarray(REGISTRY[n.prim].impl(*[o.const for o in operands], **n.attrs))
            mapping[n.out.id] = graph.add_input(n.out.type, "constant", const=value.astype(n.out.type.dtype.np))
        else:
            kept.append(n)
    graph.nodes = kept
    substitute(graph, mapping)
    return len(mapping)


def _is_constant(v: Value, scalar: float) -> bool:
    return v.const is not None and bool(np.all(v.const == scalar))


def _identity_operand(n: Node) -> Value | None:
    """The operand a node passes through unchanged (x*1, x+0, x/1, reshape to its own shape...), if any."""
    ops, same_type = n.operands, lambda v: v.type == n.out.type
    if n.prim in ("reshape", "expand", "cast", "copy") and same_type(ops[0]):
        return ops[0]
    if n.prim == "permute" and tuple(n.attrs["dims"]) == tuple(range(len(n.attrs["dims"]))):
        return ops[0]
    if n.prim == "index_put" and n.attrs["key"].selects_all and not n.attrs["accumulate"] and same_type(ops[1]):
        return ops[1]  # x[...] = v overwrites everything: the result is v (copy_, in-place composites)
    if n.prim == "pow" and _is_constant(ops[1], 1) and same_type(ops[0]):
        return ops[0]
    if n.prim == "where" and ops[0].const is not None and ops[0].const.size and \
            (ops[0].const == ops[0].const.flat[0]).all():
        chosen = ops[1] if ops[0].const.flat[0] else ops[2]
        return chosen if same_type(chosen) else None
    if n.prim in ("mul", "add", "sub", "div") and len(ops) == 2:
        unit = 1 if n.prim in ("mul", "div") else 0
        if _is_constant(ops[1], unit) and same_type(ops[0]):
            return ops[0]
        if n.prim in ("mul", "add") and _is_constant(ops[0], unit) and same_type(ops[1]):
            return ops[1]
    return None


def simplify(graph: Graph) -> int:
    """Drop nodes that are identities on one operand; x ** 2 becomes x * x (pow is a libm call in a loop)."""
    mapping = {}
    for n in graph.nodes:
        n.operands = [mapping.get(o.id, o) for o in n.operands]
        same = _identity_operand(n)
        if same is not None:
            mapping[n.out.id] = same
        elif n.prim == "pow" and _is_constant(n.operands[1], 2) and n.operands[0].type == n.out.type:
            n.prim, n.operands = "mul", [n.operands[0], n.operands[0]]
    graph.nodes = [n for n in graph.nodes if n.out.id not in mapping]
    substitute(graph, mapping)
    return len(mapping)


def cse(graph: Graph) -> int:
    """Reuse the result of an identical earlier node (same primitive, operands and attributes)."""
    seen, mapping, kept = {}, {}, []
    for n in graph.nodes:
        n.operands = [mapping.get(o.id, o) for o in n.operands]
        key = (n.prim, tuple(o.id for o in n.operands), repr(sorted(n.attrs.items())))
        if key in seen:
            mapping[n.out.id] = seen[key]
        else:
            seen[key] = n.out
            kept.append(n)
    graph.nodes = kept
    substitute(graph, mapping)
    return len(mapping)


def dce(graph: Graph) -> int:
    """Remove nodes whose results reach no output, guard or write-back."""
    live = graph.results()
    kept = []
    for n in reversed(graph.nodes):
        if n.out.id in live:
            kept.append(n)
            live.update(o.id for o in n.operands)
    removed = len(graph.nodes) - len(kept)
    graph.nodes = kept[::-1]
    return removed


def optimize(graph: Graph) -> dict:
    """Run every pass; returns {pass name: nodes removed or replaced}."""
    report = {"fold": fold_constants(graph), "simplify": simplify(graph), "cse": cse(graph)}
    report["dce"] = dce(graph)
    return report

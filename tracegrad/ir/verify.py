"""Graph verifier: SSA form, known primitives, and types that agree with the primitives' rules."""
from __future__ import annotations

import math

from ..primitives import REGISTRY
from .graph import Graph, Type


class IRError(ValueError):
    """A graph breaks an IR invariant."""


def verify(graph: Graph) -> None:
    """Raise IRError naming the first node that breaks SSA or disagrees with its primitive's rules."""
    defined: set[int] = set()
    for v in graph.inputs:
        if v.id in defined:
            raise IRError(f"input %{v.id} is defined twice")
        defined.add(v.id)
    for n in graph.nodes:
        where = f"node %{n.out.id} = {n.prim}" + (f" ({n.source})" if n.source else "")
        prim = REGISTRY.get(n.prim)
        if prim is None:
            raise IRError(f"{where}: unknown primitive {n.prim!r}")
        for o in n.operands:
            if o.id not in defined:
                raise IRError(f"{where}: operand %{o.id} is used before it is defined")
        if n.out.id in defined:
            raise IRError(f"{where}: %{n.out.id} is defined twice")
        shapes = [o.type.shape for o in n.operands]
        try:
            expected = Type(prim.dtype_rule([o.type.dtype for o in n.operands], **n.attrs),
                            tuple(prim.shape_rule(shapes, **n.attrs)))
        except Exception as e:  # a rule rejecting its operands is a verification failure
            raise IRError(f"{where}: operands {[str(o.type) for o in n.operands]} rejected: {e}") from None
        if expected != n.out.type:
            raise IRError(f"{where}: result type {n.out.type} disagrees with the primitive's rules ({expected})")
        defined.add(n.out.id)
    for v in graph.outputs:
        if v.id not in defined:
            raise IRError(f"output %{v.id} is not defined")
    for value, _, source in graph.guards:
        if value.id not in defined or math.prod(value.type.shape) != 1:
            raise IRError(f"guard on %{value.id} ({source}) needs a defined one-element value")
    inputs = {v.id for v in graph.inputs}
    for dst, src in graph.writebacks:
        if dst.id not in inputs:
            raise IRError(f"write-back target %{dst.id} is not a graph input")
        if src.id not in defined:
            raise IRError(f"write-back source %{src.id} is not defined")
        if dst.type != src.type:
            raise IRError(f"write-back %{dst.id} <- %{src.id}: types differ ({dst.type} vs {src.type})")

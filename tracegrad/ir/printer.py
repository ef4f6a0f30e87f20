"""The other forms of a graph: Graphviz DOT and JSON (as a dict; the text form lives on Graph itself)."""
from __future__ import annotations

from .graph import Graph, _attr_text


def to_dot(graph: Graph) -> str:
    """DOT text: inputs as boxes by role, nodes as ellipses (adjoint nodes shaded), write-backs dashed."""
    lines = [f'digraph "{graph.name}" {{', "  rankdir=TB;", '  node [fontname="monospace", fontsize=10];']
    for v in graph.inputs:
        label = f"%{v.id} {v.role}\\n{v.name + ' ' if v.name else ''}{v.type}"
        lines.append(f'  v{v.id} [shape=box, label="{label}"];')
    for n in graph.nodes:
        attrs = " ".join(f"{k}={_attr_text(a)}" for k, a in sorted(n.attrs.items())).replace('"', "'")
        style = ', style=filled, fillcolor="#dde8ff"' if n.adjoint else ""
        label = f"%{n.out.id} = {n.prim}{' ' + attrs if attrs else ''}\\n{n.out.type}"
        lines.append(f'  v{n.out.id} [label="{label}"{style}];')
        for o in n.operands:
            lines.append(f"  v{o.id} -> v{n.out.id};")
    for v in graph.outputs:
        lines.append(f'  out{v.id} [shape=doublecircle, label="out"];  v{v.id} -> out{v.id};')
    for dst, src in graph.writebacks:
        lines.append(f'  v{src.id} -> v{dst.id} [style=dashed, label="writeback"];')
    lines.append("}")
    return "\n".join(lines)


def to_dict(graph: Graph) -> dict:
    """The JSON form: inputs, nodes, outputs, guards and write-backs (attributes in their text form)."""
    return {
        "name": graph.name,
        "hash": graph.hash(),
        "inputs": [{"id": v.id, "type": str(v.type), "role": v.role, "name": v.name} for v in graph.inputs],
        "nodes": [{"id": n.out.id, "prim": n.prim, "operands": [o.id for o in n.operands],
                   "attrs": {k: _attr_text(a) for k, a in n.attrs.items()}, "type": str(n.out.type),
                   "source": n.source, "adjoint": n.adjoint} for n in graph.nodes],
        "outputs": [v.id for v in graph.outputs],
        "guards": [{"value": v.id, "expected": e, "source": s} for v, e, s in graph.guards],
        "writebacks": [{"input": d.id, "value": s.id} for d, s in graph.writebacks],
    }

"""``explain``: trace a step once and report its graphs, ops, pass results and fallbacks."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

from ..ir.passes import fusion_groups, optimize
from .capture import tensor_names
from .compile import _flatten, default_backend
from .tracer import Tracer


@dataclass
class ExplainReport:
    """What tracing a step found."""

    graphs: list = field(default_factory=list)      # the optimized graphs
    ops: collections.Counter = field(default_factory=collections.Counter)
    passes: dict = field(default_factory=dict)      # pass name -> nodes removed
    pruned: int = 0                                 # forward nodes the autodiff pass skipped
    fallbacks: list = field(default_factory=list)   # reasons, with the user's source line
    kernels: list = field(default_factory=list)     # (graph name, generated source) with a code-generating backend
    fusion: list = field(default_factory=list)      # per graph: groups of nodes that can run as one loop

    def __str__(self) -> str:
        lines = [f"graphs: {len(self.graphs)}"]
        for g in self.graphs:
            adjoint = sum(n.adjoint for n in g.nodes)
            lines.append(f"  {g.name}: {len(g.inputs)} inputs, {len(g.nodes)} nodes ({adjoint} adjoint), "
                         f"{len(g.guards)} guards, {len(g.writebacks)} write-backs, hash {g.hash()[:12]}")
        lines.append("ops: " + ", ".join(f"{k} x{v}" for k, v in self.ops.most_common()))
        lines.append("passes: " + ", ".join(f"{k} -{v}" for k, v in self.passes.items()))
        lines.append(f"pruned forward nodes (no gradient path): {self.pruned}")
        for groups in self.fusion:
            for g in groups:
                lines.append(f"fusion group: {' -> '.join(n.prim for n in g)} (%{g[0].out.id}..%{g[-1].out.id})")
        if not self.kernels:
            lines.append("kernels: none (the interpreter backend generates no code)")
        for name, source in self.kernels:
            lines.append(f"kernel {name}: {source.count(chr(10))} lines, {source.count('    for i0 in')} loop nests "
                         f"(tracegrad dump --stage kernel shows it)")
        lines.append("fallbacks: " + ("none" if not self.fallbacks else "; ".join(self.fallbacks)))
        return "\n".join(lines)


def explain(fn, *args, **kwargs) -> ExplainReport:
    """Trace fn(*args, **kwargs) once (the step really runs, eagerly) and report what the compiler sees.

    With the numba backends as the default (``TRACEGRAD_BACKEND``), the report includes the generated
    kernel source (generated only: Numba does not compile it here)."""
    target = getattr(fn, "fn", fn)  # a CompiledFunction explains the function it wraps
    leaves: list = []
    _flatten((args, kwargs), leaves)
    tracer = Tracer(getattr(target, "__name__", "step"), leaves, names=tensor_names(target, leaves))
    with tracer:
        result = target(*args, **kwargs)
    report = ExplainReport()
    if tracer.failure is not None:
        report.fallbacks.append(tracer.failure)
        return report
    trace = tracer.finish(result)
    report.pruned = trace.pruned
    report.passes = optimize(trace.graph)
    report.graphs.append(trace.graph)
    report.fusion.append(fusion_groups(trace.graph))
    report.ops.update(n.prim for n in trace.graph.nodes)
    backend = default_backend()
    if backend in ("numba", "numba-parallel"):
        from ..backends import Unsupported
        from ..backends.numba_cpu.codegen import generate
        try:
            report.kernels.append((trace.graph.name, generate(trace.graph, parallel=backend == "numba-parallel")))
        except Unsupported as reason:
            report.fallbacks.append(f"{backend} can't compile {trace.graph.name}: {reason} (the interpreter runs it)")
    return report

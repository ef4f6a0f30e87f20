"""``explain``: trace a step once and report its graphs, ops, pass results and fallbacks."""
from __future__ import annotations

import collections
from dataclasses import dataclass, field

from .. import backends
from ..backends.numba_cpu.schedule import fusion_groups
from ..ir.passes import optimize
from .arguments import flatten
from .compile import default_backend, tracer_for


@dataclass
class ExplainReport:
    """What tracing a step found."""

    graphs: list = field(default_factory=list)      # the optimized graphs
    ops: collections.Counter = field(default_factory=collections.Counter)
    passes: dict = field(default_factory=dict)      # pass name -> nodes removed
    pruned: int = 0                                 # forward nodes the autodiff pass skipped
    fallbacks: list = field(default_factory=list)   # reasons, with the user's source line
    kernels: list = field(default_factory=list)     # (graph name, backends.KernelReport) with a code-generating backend
    fusion: list = field(default_factory=list)      # per graph: groups of nodes that can run as one loop
    guarded: list = field(default_factory=list)     # Python values a replay checks ('cfg.scale is 0.5 (train.py:12)')

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
        for name, kernel in self.kernels:
            lines.append(f"kernel {name}: {kernel.source.count(chr(10))} lines, {kernel.loop_nests} loop nests "
                         f"(tracegrad dump --stage kernel shows it)")
        shown = "; ".join(self.guarded[:8]) + (f" and {len(self.guarded) - 8} more" if len(self.guarded) > 8 else "")
        lines.append(f"guarded Python values: {len(self.guarded)}" + (f" ({shown})" if self.guarded else ""))
        lines.append("fallbacks: " + ("none" if not self.fallbacks else "; ".join(self.fallbacks)))
        return "\n".join(lines)


def explain(fn, *args, **kwargs) -> ExplainReport:
    """Trace fn(*args, **kwargs) once (the step really runs, eagerly) and report what the compiler sees.

    With a code-generating backend as the default (``TRACEGRAD_BACKEND``: numba, numba-parallel), the report
    includes its ``kernel_report``: the kernel source, generated only (nothing is compiled here)."""
    target = getattr(fn, "fn", fn)  # a CompiledFunction explains the function it wraps
    leaves: list = []
    flatten((args, kwargs), leaves)
    tracer = tracer_for(target, leaves, fullgraph=False)
    with tracer:
        result = target(*args, **kwargs)
    report = ExplainReport()
    report.fallbacks += getattr(fn, "_why_not_compiled", [])  # what a CompiledFunction's calls have shown
    trace = tracer.finish(result) if tracer.failure is None else None
    if tracer.failure is not None:
        report.fallbacks.append(tracer.failure)
        return report
    report.guarded = [read.assumption() for read in trace.reads]
    changed = tracer.recorder.changed()
    if changed:
        report.fallbacks.append("the step changes Python values it reads, so it is traced again at every call "
                                "and then runs eagerly: " + "; ".join(read.message() for read in changed[:3]))
    report.pruned = trace.pruned
    report.passes = optimize(trace.graph)
    report.graphs.append(trace.graph)
    report.fusion.append(fusion_groups(trace.graph))
    report.ops.update(n.prim for n in trace.graph.nodes)
    backend = default_backend()
    if backend in backends.names():
        try:
            kernel = backends.get(backend).kernel_report(trace.graph)
        except backends.Unsupported as reason:
            report.fallbacks.append(f"{backend} can't compile {trace.graph.name}: {reason} "
                                    f"(the {backends.get(backend).fallback} backend runs it)")
            kernel = None
        if kernel is not None:
            report.kernels.append((trace.graph.name, kernel))
    return report

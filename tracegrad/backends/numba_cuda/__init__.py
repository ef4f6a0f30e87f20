"""The CUDA backend: a graph becomes numba.cuda kernels (``program.py``) run on tensors kept on the GPU
between steps (``memory.py``)."""
from __future__ import annotations

from .. import KernelReport, Unsupported
from ...ir import Graph
from . import memory
from .program import Program, build, report

_HOST_ROLES = ("hyper", "number", "constant")  # inputs passed as host arrays: scalars by value, baked constants


class Step:
    """A graph's CUDA program run on tensors: their device copies in, resident tensors out.

    Called by a replay with one entry per graph input: the tensor itself for a tensor input (its device copy
    is made current first, ``memory.on_device``), a host array for the others. Returns device arrays; the
    replay makes its results with ``memory.resident`` (``resident`` is True), so they stay on the GPU until
    host code reads them.
    """

    resident = True
    fresh_outputs = True  # each output is a new device array

    def __init__(self, graph: Graph, program: Program) -> None:
        self.program, self.source = program, program.source
        positions = {v.id: k for k, v in enumerate(graph.inputs)}
        written = {positions[dst.id] for dst, _ in graph.writebacks}
        # per tensor input: (position, shape, dtype, name for messages, whether the step writes it)
        self.tensors = [(k, v.type.shape, v.type.dtype.np, v.name or str(v), k in written)
                        for k, v in enumerate(graph.inputs) if v.role not in _HOST_ROLES]
        self.written_through = 0  # tensors kept on the host after a step (something else reads their buffer)

    @property
    def launches(self) -> int:
        """Kernel launches made so far."""
        return self.program.launches

    def __call__(self, inputs: list) -> list:
        arrays = list(inputs)
        for k, shape, dtype, name, _ in self.tensors:
            arrays[k] = memory.on_device(inputs[k], shape, dtype, name)
        outputs = self.program(arrays)
        for k, _, _, _, written in self.tensors:
            self.written_through += memory.settle(inputs[k], written)
        return outputs


class NumbaCUDA:
    """The ``cuda`` backend."""

    name = "cuda"
    fallback = "numba"

    def unavailable(self) -> str | None:
        """Why numba.cuda can't run kernels here (no GPU or no driver); None when it can."""
        from numba import cuda
        if cuda.is_available():
            return None
        return "numba.cuda finds no usable NVIDIA GPU and driver on this machine"

    def compile(self, graph: Graph) -> Step:
        """The graph's kernels, on tensors kept on the GPU (Unsupported when an op has no CUDA lowering)."""
        return Step(graph, build(graph))

    def kernel_report(self, graph: Graph) -> KernelReport:
        """The generated module ``compile`` would load, without compiling its kernels."""
        return report(graph)


PROVIDES = {"cuda": NumbaCUDA()}

__all__ = ["NumbaCUDA", "PROVIDES", "Step", "Unsupported"]

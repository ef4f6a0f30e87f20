"""The CUDA code generator's entry points: ``build(graph)`` gives a runnable ``Program``, ``report(graph)`` its code.

A program is one generated module (``codegen.py``) of ``@cuda.jit`` kernels and a host driver, loaded through
the Numba CPU backend's signed disk cache (``numba_cpu/cache.py``) under a key that names CUDA and whether the
simulator runs it. Numba's own ``cuda.jit(cache=True)`` is not used: it would unpickle machine code that no
signature covers (and the simulator compiles nothing).
"""
from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from .. import KernelReport
from ...ir import Graph, GuardFailure
from ..numba_cpu import cache
from . import codegen
from .scalars import spelled_elsewhere


class Program:
    """A graph lowered to CUDA kernels: call it with one array per graph input; returns new device arrays.

    Inputs of role hyper or number are host 0-d arrays (their values go to kernels by value); constants are
    ignored (their values were uploaded when the program was built); every other input is a C-contiguous
    device array, into which the write-backs are stored after every guard and index check has passed.
    """

    fresh_outputs = True  # each output is a new device array, aliasing no input and no other output

    def __init__(self, graph: Graph, module, from_disk: bool) -> None:
        from numba import cuda
        self.graph, self.source, self.from_disk = graph, module.SOURCE, from_disk
        self.launches = 0  # kernel launches made by this program so far
        self._entry = module.ENTRY
        self.constants = {v.id: cuda.to_device(v.const) for v in graph.inputs if v.id in module.CONSTANTS}

    def __call__(self, inputs: list) -> list:
        from .runtime import GuardFailed
        if len(inputs) != len(self.graph.inputs):
            raise ValueError(f"graph {self.graph.name} takes {len(self.graph.inputs)} inputs, got {len(inputs)}: "
                             f"pass one array per graph.inputs entry, in order")
        try:
            return self._entry(self, inputs)
        except GuardFailed as failed:
            value, expected, source = self.graph.guards[failed.args[0]]
            got = (not expected) if isinstance(expected, bool) else "a different value"
            raise GuardFailure(source, expected, got) from None


@functools.cache
def _code_digest() -> str:
    """Hash of this folder's code (the generator, its lowerings and spellings, the runtime kernels call)."""
    return hashlib.sha256(b"".join(f.read_bytes() for f in sorted(Path(__file__).parent.glob("*.py")))).hexdigest()


def _key(graph: Graph) -> str:
    from numba import config
    backend = "cuda-simulator" if config.ENABLE_CUDASIM else "cuda"
    return cache.kernel_key(graph.hash() + spelled_elsewhere(graph), backend, f"cuda code {_code_digest()}")


def build(graph: Graph) -> Program:
    """``graph`` lowered to CUDA kernels (raises backends.Unsupported when a node has no CUDA lowering)."""
    module, found = cache.load(_key(graph), lambda: codegen.generate(graph), machine_code_of_entry=False)
    return Program(graph, module, found)


def report(graph: Graph) -> KernelReport:
    """The module ``build`` would generate, with its loop-unit kernels and all its kernels counted; compiles nothing."""
    return codegen.report(graph)

"""The Numba CPU backend: a graph becomes one generated ``@njit`` function, cached in memory and on disk."""
from __future__ import annotations

import logging
import time

import numpy as np

from ...ir import Graph, GuardFailure
from . import cache
from .codegen import JIT_OPTIONS, Unsupported, generate

LOG = logging.getLogger("tracegrad")
_LOADED: dict[str, "Kernel"] = {}  # kernel key -> kernel, for every graph compiled in this process


class Kernel:
    """A compiled graph: call it with one array per graph input; returns the outputs."""

    fresh_outputs = True  # each output is a new array, aliasing no input and no other output

    def __init__(self, graph: Graph, module, from_disk: bool) -> None:
        self.function, self.from_disk = module.ENTRY, from_disk
        with open(module.__file__) as f:
            self.source = f.read().partition("\n")[2]  # without the checksum line
        positions = {v.id: i for i, v in enumerate(graph.inputs)}
        arg_ids = module.ARG_IDS
        self.arg_positions = [positions[i] for i in arg_ids]
        self.name, self.called = graph.name, False
        self.guards = graph.guards
        written = {dst.id for dst, _ in graph.writebacks}
        self.written = [k for k, i in enumerate(arg_ids) if i in written]

    def __call__(self, arrays: list) -> list:
        args = [np.ascontiguousarray(arrays[i]) for i in self.arg_positions]
        start = time.perf_counter()
        try:
            outputs = self.function(*args)
        except Exception as error:
            from .runtime import GuardFailed
            if isinstance(error, GuardFailed):
                value, expected, source = self.guards[error.args[0]]
                got = (not expected) if isinstance(expected, bool) else "a different value"
                raise GuardFailure(source, expected, got) from None
            raise
        if not self.called:
            self.called = True
            LOG.info("%s: first kernel call (Numba %s) took %.1f ms", self.name,
                     "loading its cache" if self.from_disk else "compiling", 1e3 * (time.perf_counter() - start))
        for k in self.written:  # a strided caller buffer got a row-major copy: store the result back
            original = arrays[self.arg_positions[k]]
            if args[k] is not original:
                np.copyto(original, args[k])
        return list(outputs)


def compile_graph(graph: Graph, parallel: bool = False) -> Kernel:
    """Generate, cache and load the kernel of ``graph`` (Unsupported when an op has no lowering)."""
    backend = "numba-parallel" if parallel else "numba"
    key = cache.kernel_key(graph.hash(), backend, JIT_OPTIONS)
    kernel = _LOADED.get(key)
    if kernel is not None:
        return kernel

    def make_source() -> str:
        start = time.perf_counter()
        source = generate(graph, parallel)  # raises Unsupported before anything is written
        LOG.info("%s: generated %d lines of %s code in %.1f ms", graph.name, source.count("\n"), backend,
                 1e3 * (time.perf_counter() - start))
        return source
    module, found = cache.load(key, make_source)
    kernel = Kernel(graph, module, found)
    _LOADED[key] = kernel
    return kernel


__all__ = ["Kernel", "Unsupported", "compile_graph"]

"""The Numba CPU backend: a graph becomes one generated ``@njit`` function, cached in memory and on disk."""
from __future__ import annotations

import logging
import pickle
import time

import numpy as np

from ...ir import Graph, GuardFailure, run
from . import cache
from .codegen import JIT_OPTIONS, Unsupported, generate, numba_threads
from .runtime import GuardFailed

LOG = logging.getLogger("tracegrad")
_LOADED: dict[str, "Kernel"] = {}  # kernel key -> kernel, for every graph compiled in this process


class Kernel:
    """A compiled graph: call it with one array per graph input; returns the outputs."""

    fresh_outputs = True  # each output is a new array, aliasing no input and no other output

    def __init__(self, graph: Graph, key: str, module, from_disk: bool, interpret_first: bool) -> None:
        self.function, self.key, self.from_disk, self.graph = module.ENTRY, key, from_disk, graph
        # A kernel nobody compiled yet runs its first call on the interpreter: a variant that is never
        # replayed a second time (a guard on a value that changes every step) costs no Numba compile.
        self.interpret_first = interpret_first and not from_disk
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
        if self.interpret_first:
            self.interpret_first = False
            return [np.array(a, copy=True) for a in run(self.graph, arrays)]
        args = [np.ascontiguousarray(arrays[i]) for i in self.arg_positions]
        start = time.perf_counter()
        try:
            outputs = self.function(*args)
        except GuardFailed as failed:
            value, expected, source = self.guards[failed.args[0]]
            got = (not expected) if isinstance(expected, bool) else "a different value"
            raise GuardFailure(source, expected, got) from None
        except (pickle.UnpicklingError, EOFError, OSError, ValueError) as error:
            if self.called or not self.from_disk:
                raise
            # Numba's own cache files of this kernel are damaged: drop them and compile afresh.
            LOG.warning("%s: Numba's cache of this kernel is unreadable (%s); recompiling", self.name, error)
            cache.forget_machine_code(self.key)
            self.function = cache.reload(self.key).ENTRY
            outputs = self.function(*args)
        if not self.called:
            self.called = True
            LOG.info("%s: first kernel call (Numba %s) took %.1f ms", self.name,
                     "loading its cache" if self.from_disk else "compiling", 1e3 * (time.perf_counter() - start))
        for k in self.written:  # a strided caller buffer got a row-major copy: store the result back
            original = arrays[self.arg_positions[k]]
            if args[k] is not original:
                np.copyto(original, args[k])
        return list(outputs)


def compile_graph(graph: Graph, parallel: bool = False, interpret_first: bool = False) -> Kernel:
    """Generate, cache and load the kernel of ``graph`` (Unsupported when an op has no lowering).

    With ``interpret_first``, the first call runs on the interpreter unless the kernel came from disk.
    """
    backend = "numba-parallel" if parallel else "numba"
    key = cache.kernel_key(graph.hash(), backend, f"{JIT_OPTIONS} threads={numba_threads()}")
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
    kernel = Kernel(graph, key, module, found, interpret_first)
    _LOADED[key] = kernel
    return kernel


__all__ = ["Kernel", "Unsupported", "compile_graph"]

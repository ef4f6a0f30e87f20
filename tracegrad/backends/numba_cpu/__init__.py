"""The Numba CPU backend: a graph becomes one generated ``@njit`` function, cached in memory and on disk."""
from __future__ import annotations

import collections
import contextlib
import functools
import hashlib
import logging
import operator
import sys
import threading
import time
import weakref

import numpy as np

from .. import KernelReport, Unsupported
from ...ir import Graph, GuardFailure
from ...primitives.indexing import out_of_bounds
from . import cache, generic
from .codegen import JIT_OPTIONS, generate, report
from .runtime import GuardFailed, IndexOutOfBounds
from .scalars import spelled_elsewhere
from .source import numba_threads

LOG = logging.getLogger("tracegrad")
# what Kernel's check reads for an object held by one list and nothing else (measured, not assumed:
# the count a call adds differs between Python versions)
_UNHELD = list(map(sys.getrefcount, [object()]))[0]
# kernel key -> kernel, while some compiled step holds it: steps with the same graph share one kernel
_LOADED: "weakref.WeakValueDictionary[str, Kernel]" = weakref.WeakValueDictionary()


class Kernel:
    """A compiled graph: call it with one array per graph input; returns the outputs.

    The kernel writes its outputs into buffers passed by this wrapper: making arrays inside Numba
    and boxing them on return costs ~0.6 us each. Buffers are reused, and only, when nothing else
    holds them any more (their reference count says so), so that every output is still a new array
    as far as anyone can tell. Up to two sets are kept: the outputs of the last call are usually
    still held (as ``.grad``) while the next one runs, those of the call before are free again.
    """

    fresh_outputs = True  # each output is a new array, aliasing no input and no other output

    def __init__(self, graph: Graph, key: str, loaded: "_Loaded") -> None:
        module = loaded.module
        self.function, self.key, self.from_disk, self.graph = module.ENTRY, key, loaded.from_disk, graph
        self.loaded = loaded  # kernels of graphs that share a generic module share this
        self._compiling = threading.Lock()
        self.source = module.SOURCE
        positions = {v.id: i for i, v in enumerate(graph.inputs)}
        chosen = [positions[i] for i in module.ARG_IDS]
        # the caller's arrays as they are: Numba compiles a variant for a strided one, no copies here
        self.pick = operator.itemgetter(*chosen) if len(chosen) > 1 else lambda arrays: tuple(arrays[i] for i in chosen)
        self.name, self.guards, self.ready = graph.name, graph.guards, False
        self.llvm_opt, self.index_errors = module.LLVM_OPT, module.INDEX_ERRORS
        self.output_types = [(v.type.shape, v.type.dtype.np) for v in graph.outputs]
        self.buffers: collections.deque = collections.deque()  # output sets of earlier calls, oldest first
        self.unheld = [_UNHELD] * len(graph.outputs)

    def __call__(self, arrays: list):
        if not self.ready:
            return self._first_call(arrays)
        return self._run(arrays)

    def _run(self, arrays: list) -> list:
        outputs = self._output_buffers()
        try:
            self.function(*self.pick(arrays), *outputs)
        except GuardFailed as failed:
            value, expected, source = self.guards[failed.args[0]]
            got = (not expected) if isinstance(expected, bool) else "a different value"
            raise GuardFailure(source, expected, got) from None
        except IndexOutOfBounds as bad:  # the error the primitive raises eagerly
            check, index = bad.args
            prim, dim, size = self.index_errors[check]
            raise out_of_bounds(prim, index, dim, size) from None
        finally:
            self.buffers.append(outputs)
            if len(self.buffers) > 2:
                self.buffers.popleft()
        return list(outputs)  # a list of the caller's own: holding it holds the arrays

    def _output_buffers(self) -> list:
        """A set of output buffers nothing else holds: an earlier call's, else new ones.

        A set taken from the deque belongs to this call alone (popleft is atomic), so two threads
        never write into the same buffers."""
        for _ in range(len(self.buffers)):
            try:
                outputs = self.buffers.popleft()
            except IndexError:  # another thread took it
                break
            if list(map(sys.getrefcount, outputs)) == self.unheld:
                return outputs
            self.buffers.append(outputs)  # still held: maybe free again by the next call
        return [np.empty(shape, dtype) for shape, dtype in self.output_types]

    def _first_call(self, arrays: list):
        with self._compiling:  # another thread calling meanwhile waits for this compile, then runs
            if self.ready:
                return self._run(arrays)
            start, compiled_before = time.perf_counter(), len(self.function.overloads)
            _load_numba_target()
            with _llvm_optimization(self.llvm_opt):
                try:
                    outputs = self._run(arrays)
                finally:
                    self.ready = True  # compiled (an error raised by the step itself leaves it compiled too)
        if LOG.isEnabledFor(logging.INFO):
            took = time.perf_counter() - start
            if len(self.function.overloads) == compiled_before:  # a generic kernel another graph compiled
                LOG.info("%s: first kernel call took %.1f ms (its generic kernel was ready)", self.name, 1e3 * took)
            else:
                LOG.info("%s: first kernel call (Numba %s) took %.1f ms%s", self.name,
                         "loading its cache" if self.from_disk else "compiling", 1e3 * took,
                         _compile_phases(self.function, took))
        return outputs


class _Loaded:
    """A kernel module as loaded, held by the kernel of every graph it serves: freed with the last one."""

    def __init__(self, module, from_disk: bool) -> None:
        self.module, self.from_disk = module, from_disk
        weakref.finalize(self, _release, module)


class _Family:
    """Graphs equal but for their numbers (generic.family): the first one seen, and their generic kernel."""

    def __init__(self) -> None:
        self.first = None  # a weak reference to the first graph
        self.generic: generic.Generic | None = None


_FAMILIES: dict[str, _Family] = {}


def _release(module) -> None:
    """Let a dropped kernel's module and dispatcher be freed.

    Two references would keep them forever: Numba's CPU target keeps every compiled function callable
    from other Numba code (kernels never are), and a compiled function holds its module's globals, which
    hold the dispatcher, which holds the compiled function in C where Python's garbage collector can't see
    the cycle. The machine code itself stays in Numba's LLVM engine, which frees nothing."""
    for compiled in list(module.ENTRY.overloads.values()):
        with contextlib.suppress(KeyError):
            module.ENTRY.targetctx.remove_user_function(compiled.entry_point)
    cache.release(module)
    module.__dict__.clear()


def _compile_phases(dispatcher, took: float) -> str:
    """Where the ``took`` seconds of compiling the dispatcher's newest overload went ('' when it was
    loaded from disk): Numba's type inference, lowering (Numba's own, then LLVM's optimization and
    machine code), its other passes, and the rest (loading Numba's target, typing the arguments, caching)."""
    overloads = list(dispatcher.overloads.values())
    metadata = (overloads[-1].metadata if overloads else None) or {}  # None for an overload loaded from disk
    pipelines = metadata.get("pipeline_times", {})
    seconds = {name.partition("_")[2]: t.init + t.run + t.finalize
               for passes in pipelines.values() for name, t in passes.items()}
    if not seconds:
        return ""
    typing = seconds.pop("nopython_type_inference", 0.0)
    lowering = seconds.pop("native_lowering", 0.0) + seconds.pop("native_parfor_lowering", 0.0)  # numba-parallel's
    other = sum(seconds.values())
    return (f": typing {1e3 * typing:.0f} ms, lowering and LLVM {1e3 * lowering:.0f} ms, other passes "
            f"{1e3 * other:.0f} ms, outside Numba's compiler {1e3 * (took - typing - lowering - other):.0f} ms")


@functools.cache
def _load_numba_target() -> None:
    """Set up Numba's CPU target before the first kernel compiles or loads, without importing SciPy.

    Loading the target's registries imports Numba's array math, which probes for SciPy's BLAS by
    importing scipy.linalg: ~0.25 s, a quarter of a warm start. Kernels call NumPy's own BLAS
    (runtime.py) and need no SciPy, so the probe is made to fail; Numba still imports SciPy later
    if other code compiles a function that needs it (np.dot on arrays, np.linalg).
    """
    from numba.core.registry import cpu_target
    probe = "scipy.linalg.cython_blas"
    if "scipy.linalg" in sys.modules:  # already paid for: nothing to save
        cpu_target.target_context.refresh()
        return
    sys.modules[probe] = None  # `import` of a None entry raises ImportError without importing anything
    try:
        cpu_target.target_context.refresh()
    finally:
        del sys.modules[probe]


@contextlib.contextmanager
def _llvm_optimization(level: int):
    """Compile with LLVM's optimization passes at ``level`` at most (Numba reads NUMBA_OPT per compile).

    Numba's compiler lock is held throughout, so no other thread compiles at this level meanwhile.
    """
    from numba.core import config
    from numba.core.compiler_lock import global_compiler_lock
    with global_compiler_lock:
        saved = config.OPT
        config.OPT = type(saved)(min(level, int(saved)))
        try:
            yield
        finally:
            config.OPT = saved


_LOADING = threading.Lock()  # one thread at a time generates, writes and imports kernel files


def compile_graph(graph: Graph, parallel: bool = False) -> Kernel:
    """Generate, cache and load the kernel of ``graph`` (Unsupported when an op has no lowering)."""
    backend = "numba-parallel" if parallel else "numba"
    options = f"{JIT_OPTIONS} threads={numba_threads()}"
    key = cache.kernel_key(graph.hash() + spelled_elsewhere(graph), backend, options)
    with _LOADING:
        kernel = _LOADED.get(key)
        if kernel is None:
            kernel = _LOADED[key] = Kernel(graph, key, _load(graph, key, backend, options, parallel))
    return kernel


def _load(graph: Graph, key: str, backend: str, options: str, parallel: bool) -> _Loaded:
    """The module of graph's kernel: its family's generic one when it fits, else its own, from the disk
    cache or generated and written there first. A graph that comes back with other sizes makes the
    family's generic kernel (generic.py)."""
    family = _FAMILIES.setdefault(generic.family(graph), _Family())
    first = family.first() if family.first is not None else None  # held here: the collector may run meanwhile
    source = None
    if family.generic is not None:
        source = _generate(graph, parallel)
        if family.generic.fits(source, graph):
            return _generic_module(family.generic, graph, backend, options)
    elif first is not None:
        source = _generate(graph, parallel)
        found = generic.Generic.of(_generate(first, parallel), first, source, graph)
        if found is not None:
            family.generic = found
            return _generic_module(found, graph, backend, options)
    else:
        family.first = weakref.ref(graph)
    module, found = cache.load(key, lambda: source or _generate(graph, parallel))
    return _Loaded(module, found)


def _generic_module(found: generic.Generic, graph: Graph, backend: str, options: str) -> _Loaded:
    """The loaded module of a family's generic kernel (loaded again if every kernel using it was dropped)."""
    loaded = found.compiled() if found.compiled is not None else None
    if loaded is None:
        key = cache.kernel_key(hashlib.sha256(found.source.encode()).hexdigest(), backend, options)
        loaded = _Loaded(*cache.load(key, lambda: found.source))
        found.compiled = weakref.ref(loaded)
    LOG.info("%s: runs the kernel generic in %s", graph.name, ", ".join(found.readers))
    return loaded


def _generate(graph: Graph, parallel: bool) -> str:
    """The kernel source of ``graph`` (raises Unsupported before anything is written)."""
    start = time.perf_counter()
    source = generate(graph, parallel)
    LOG.info("%s: generated %d lines of %s code in %.1f ms", graph.name, source.count("\n"),
             "numba-parallel" if parallel else "numba", 1e3 * (time.perf_counter() - start))
    return source


class NumbaCPU:
    """The ``numba`` and ``numba-parallel`` backends (``parallel``: large loops run as prange)."""

    fallback = "interpreter"

    def __init__(self, name: str, parallel: bool) -> None:
        self.name, self.parallel = name, parallel

    def unavailable(self) -> None:
        """None: Numba's CPU target runs wherever Numba installs."""
        return None

    def compile(self, graph: Graph) -> Kernel:
        """The kernel of ``graph``, compiled at its first call (Unsupported when an op has no lowering)."""
        return compile_graph(graph, self.parallel)

    def kernel_report(self, graph: Graph) -> KernelReport:
        """The kernel source ``compile`` would load, generated only (Numba compiles nothing)."""
        return report(graph, self.parallel)


PROVIDES = {"numba": NumbaCPU("numba", parallel=False), "numba-parallel": NumbaCPU("numba-parallel", parallel=True)}

__all__ = ["Kernel", "NumbaCPU", "PROVIDES", "Unsupported", "compile_graph"]

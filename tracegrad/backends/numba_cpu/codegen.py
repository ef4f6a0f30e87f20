"""Lower an optimized graph to the Python source of one Numba ``@njit`` function.

First the graph is planned (``plan.py``: analysis only, never changed afterwards), then the ``Emitter``
writes the plan's units (``schedule.py``) in order. A loop unit becomes one loop nest over its shape
(``loops.LoopNest``): each node is one statement on scalars (its template in ``scalars.py``), operands
of other units are array reads with broadcasting folded into the index, values needed elsewhere are
stored at the end of the body, and reductions accumulate in the same nest (in a scalar when they reduce
the innermost axes). Other nodes have a lowering in ``lowerings``: BLAS (``rt.dot``) for matmul, views
for movement, loops for gather, scatter, index tensors and argmax. Write-backs store into the caller's
buffers; where nothing reads the old value later, the loop computing the new value writes it in place.
Guards raise ``rt.GuardFailed`` and index checks ``rt.IndexOutOfBounds`` before any write-back happens
(and a guard before any node its value doesn't need: ``schedule.py``).
"""
from __future__ import annotations

import math

import numpy as np

from .. import KernelReport, Unsupported
from ...ir.graph import Graph, Node, Value
from .loops import LoopNest, LoopPlan
from .lowerings import LOWERINGS
from .plan import Plan, plan
from .source import index_text, literal, scalar_type

# A kernel whose loops are all smaller than this is compiled with LLVM at -O1: measured on W1 and W4,
# 15% less compile time for 2-3% more run time; bigger loops (W2's Adam update) ran 20% slower at -O1.
FULL_OPTIMIZATION_MIN_ELEMENTS = 1 << 15
JIT_OPTIONS = 'error_model="numpy", fastmath={"reassoc", "contract"}'


class Emitter:
    """Writes the kernel of a Plan: owns the lines and everything that changes while they are written."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.lines: list[str] = []
        # value id -> 'C' (row-major), 'F' (transposed 2-D), 'A' (strided) or 'I' (a caller's array or its
        # transpose: row-major or transposed nearly always, but Numba compiles a variant for any strides)
        self.layout: dict[int, str] = {v.id: "I" for v in plan.arguments}
        # values held as scalar variables: 0-d results of loops, and constants of equal elements, inlined as
        # typed literals c<id>
        self.scalars: set[int] = set(plan.literals)
        self.filled = 0  # arrays made from scalar variables so far (their names are numbered)
        self.nest_sizes: list = []  # sizes of the loops open at each depth of the loop nest being written
        self.largest_emitted_loop = 0  # elements of the largest loop nest written
        self.copies = 0  # row-major copies of strided views so far (copy_of: their names are numbered)
        self.parallel_loops = 0  # loops emitted as prange: without any, parallel=True would only cost compile time
        self.loop_nests = 0  # loops opened at the function's top level
        self.hoisted: dict = {}  # value id -> the scalar variable holding a 0-d array's element
        # value id -> the variable that already holds it (a buffer updated in place, a loop's scalar):
        # no `v5 = t5` renaming statements, each of which Numba would type, lower and count references for
        self.held_in: dict[int, str] = {}
        self.checked_indices: set = set()  # (index tensor id, lowest, size) bound checks emitted so far
        self.index_errors: list = []  # per rt.IndexOutOfBounds number: (primitive, dimension, size)
        # names of the outputs computed straight into the caller's buffer: allocated by no one here
        self.direct = {self.name(v) for v in plan.graph.outputs if v.id in plan.direct_outputs}

    # ---- emission helpers ----------------------------------------------------------------------------

    def emit(self, depth: int, text: str) -> None:
        """One line of the kernel, indented ``depth`` levels."""
        self.lines.append("    " * depth + text)

    def loop(self, depth: int, variable: str, bounds, parallel: bool = False) -> None:
        """``for variable in range(bounds):`` (prange when ``parallel``); at depth 1 it starts a loop nest."""
        self.emit(depth, f"for {variable} in {'prange' if parallel else 'range'}({bounds}):")
        self.loop_nests += depth == 1
        # the elements of the nest this loop belongs to, for the LLVM level (loops of lowerings count too)
        self.nest_sizes = self.nest_sizes[:depth - 1] + [bounds if isinstance(bounds, int) else 1]
        self.largest_emitted_loop = max(self.largest_emitted_loop, math.prod(self.nest_sizes))
        self.parallel_loops += parallel

    def hold(self, vid: int, variable: str) -> None:
        """From now on, value ``vid`` is read from ``variable`` (no renaming statement)."""
        self.held_in[vid] = variable

    def index_check(self, idx: Value, lowest: int, size: int, error: tuple) -> int | None:
        """The number of a new rt.IndexOutOfBounds check of index tensor idx against lowest..size-1 (``error``:
        (primitive, dimension, size), for Kernel's message); None when the same check was emitted before (index
        tensors are never overwritten)."""
        if (idx.id, lowest, size) in self.checked_indices:
            return None
        self.checked_indices.add((idx.id, lowest, size))
        self.index_errors.append(error)
        return len(self.index_errors) - 1

    def name(self, v: Value) -> str:
        """The variable holding v."""
        held = self.held_in.get(v.id)
        return held if held is not None else f"c{v.id}" if v.id in self.plan.literals else f"v{v.id}"

    def allocate(self, name: str, shape: tuple | str, dtype: np.dtype, fill: str | None = None) -> None:
        """``name = `` a new row-major array (an output's is the caller's), filled with ``fill`` when given.

        Always np.empty, filled by a store: Numba compiles each allocation function once per process
        for each (dimension count, dtype), and np.full or np.zeros beside np.empty would double that.
        """
        if name not in self.direct:
            self.emit(1, f"{name} = np.empty({shape}, {scalar_type(dtype)})")
        if fill is not None:
            self.emit(1, f"{name}[...] = {fill}")

    def array(self, v: Value) -> str:
        """An expression for v as an array (a scalar variable is first stored into a new array)."""
        if v.id not in self.scalars:
            return self.name(v)
        self.filled += 1
        self.allocate(f"f{v.id}_{self.filled}", v.type.shape, v.type.dtype.np, fill=self.name(v))
        return f"f{v.id}_{self.filled}"

    def item(self, v: Value) -> str:
        """An expression for the value of a one-element v: its scalar variable, or its array's item."""
        return self.name(v) if v.id in self.scalars else f"{self.name(v)}.item()"

    def element(self, v: Value, index: list) -> str:
        """v's element at ``index`` (a constant of equal elements is its scalar)."""
        source = self.plan.aliases.get(v.id)
        if source is not None:  # a reshape that adds or drops size-1 dims: the same element of its source
            kept = iter(part for part, size in zip(index, v.type.shape) if size != 1)
            return self.element(source, ["0" if size == 1 else next(kept) for size in source.type.shape])
        return self.name(v) if v.id in self.scalars else f"{self.name(v)}[{index_text(index)}]"

    def fresh(self, v: Value) -> str:
        """An expression for a new row-major array holding v's values."""
        if v.id in self.scalars or self.layout.get(v.id, "C") not in "CI":
            return self.row_major(v)
        return f"{self.name(v)}.copy()"

    def row_major(self, v: Value) -> str:
        """An expression for v as a row-major array (a copy only when v is a strided view)."""
        if self.layout.get(v.id, "C") == "C":
            return self.array(v)
        return self.copy_of(v) if v.type.shape else f"np.ascontiguousarray({self.name(v)})"

    def copy_of(self, v: Value) -> str:
        """A new row-major array holding v's values, copied in a loop nest: Numba's np.ascontiguousarray and
        np.concatenate walk a strided array element by element through a generic iterator, ~5x slower
        (measured on a transposed [64, 16, 64] float32 view: 390 us against ~70)."""
        self.copies += 1
        name = f"r{v.id}_{self.copies}"
        self.allocate(name, v.type.shape, v.type.dtype.np)
        self.copy_into(name, v, [])
        return name

    def copy_into(self, name: str, v: Value, offset: list) -> None:
        """name[offset + index] = v[index] for every index of v, in a loop nest over v's shape (offset: the
        text added to each dim's index, "" for none)."""
        shape = v.type.shape
        index, depth = [], 1
        for k, size in enumerate(shape):
            if size != 1:
                self.loop(depth, f"i{k}", size)
                depth += 1
            index.append("0" if size == 1 else f"i{k}")
        target = [part + (offset[k] if k < len(offset) else "") for k, part in enumerate(index)]
        self.emit(depth, f"{name}[{index_text(target)}] = {self.element(v, index)}")

    # ---- the function --------------------------------------------------------------------------------

    def kernel(self) -> str:
        """The kernel module's source (emit it once per Emitter)."""
        plan = self.plan
        graph = plan.graph
        entry = graph.name
        # one buffer per output, from the caller (making and returning arrays in Numba costs more)
        seen: set = set()
        outputs = []
        for k, v in enumerate(graph.outputs):
            direct = self.name(v) in self.direct and v.id not in seen
            outputs.append((v, self.name(v) if direct else f"o{k}", direct))
            seen.add(v.id)
        parameters = [self.name(v) for v in plan.arguments] + [name for _, name, _ in outputs]
        decorator = len(self.lines)
        self.emit(0, "")  # the decorator, once the loops are known
        self.emit(0, f"def {entry}({', '.join(parameters)}):")
        for v in graph.inputs:
            if v.id in plan.literals:
                self.emit(1, f"{self.name(v)} = {literal(v.const.flat[0], v.type.dtype.np)}")
        guards = {}
        for k, (value, expected, _) in enumerate(graph.guards):
            guards.setdefault(value.id, []).append((k, expected))
        for v in graph.inputs:  # guards on inputs (rare) are checked first
            self._guards(guards.pop(v.id, []), v)
        for unit, loop in zip(plan.units, plan.loops):
            if loop is not None:
                self._loop(loop)
            else:
                self._single(unit[0])
            for n in unit:
                self._guards(guards.pop(n.out.id, []), n.out)
        for v, name, direct in outputs:  # before the write-backs: an output may be an input's old value
            if not direct:
                self._store_whole(name, v)
        for dst, src in graph.writebacks:
            if plan.in_place.get(src.id) is not dst:
                self._store_whole(self.name(dst), src)
        self.lines[decorator] = f"@njit({JIT_OPTIONS}{', parallel=True' if self.parallel_loops else ''})"
        self.emit(0, "")
        self.emit(0, "")
        self.emit(0, f"ENTRY = {entry}")
        self.emit(0, f"ARG_IDS = {tuple(v.id for v in plan.arguments)}  # the graph inputs {entry} takes, in order")
        self.emit(0, f"INDEX_ERRORS = {tuple(self.index_errors)}  # rt.IndexOutOfBounds(k, index): "
                     f"k -> (primitive, dimension, size)")
        largest = max(plan.largest_loop, self.largest_emitted_loop)
        opt = 1 if largest < FULL_OPTIMIZATION_MIN_ELEMENTS else 3
        self.emit(0, f"LLVM_OPT = {opt}  # loops of {largest} elements at most")
        header = [f"# tracegrad kernel: graph {graph.name}, {len(graph.nodes)} nodes in {len(plan.units)} units",
                  "import math", "", "import numpy as np", "from numba import njit, prange", "",
                  "from tracegrad.backends.numba_cpu import fastmath as fm, runtime as rt", "", ""]
        return "\n".join(header + self.lines) + "\n"

    def _store_whole(self, target: str, v: Value) -> None:
        """target (an array of v's shape) = v's values."""
        value = self.name(v) if v.type.shape else self.item(v)
        self.emit(1, f"{target}[{'...' if v.type.shape else '()'}] = {value}")

    def _guards(self, checks: list, v: Value) -> None:
        for k, expected in checks:
            self.emit(1, f"if {self.item(v)} != {literal(expected, v.type.dtype.np)}:")
            self.emit(2, f"raise rt.GuardFailed({k})")

    # ---- units ---------------------------------------------------------------------------------------

    def _loop(self, loop: LoopPlan) -> None:
        """A loop unit's nest, inline in the entry function.

        Inline, not a function per loop: Numba's fixed cost per compiled function (~0.2 s here)
        outweighs what smaller functions save in typing and LLVM time.
        """
        nest = LoopNest(loop, self)
        self.emit(1, f"# {', '.join(f'%{n.out.id} {n.prim}' for n in loop.unit)}")
        nest.allocate()
        nest.emit_loops(nest.body())
        nest.fold_partial_rows()
        self.scalars |= loop.registers

    def _single(self, n: Node) -> None:
        """A unit of one node that is no loop: its lowering."""
        lower = single_lowering(self, n, LOWERINGS, "Numba")
        if lower is not None:
            self.layout[n.out.id] = lower(self.plan, self, n) or "C"


def single_lowering(code, n: Node, lowerings: dict, backend: str):
    """The lowering of a unit of one node that is no loop, its comment line emitted; None for a reshape whose
    readers index its source (it emits nothing). Raises Unsupported when ``lowerings`` has none."""
    lower = lowerings.get(n.prim)
    if lower is None:
        raise Unsupported(f"no {backend} lowering for primitive {n.prim!r}")
    if n.out.id in code.plan.aliases:
        code.emit(1, f"# %{n.out.id} {n.prim}: read as %{code.plan.aliases[n.out.id].id}")
        return None
    code.emit(1, f"# %{n.out.id} {n.prim}")
    return lower


def generate(graph: Graph, parallel: bool = False) -> str:
    """The source of a module whose ``ENTRY`` runs ``graph`` on the inputs ``ARG_IDS`` names.

    Raises Unsupported when some node has no lowering."""
    return Emitter(plan(graph, parallel)).kernel()


def report(graph: Graph, parallel: bool = False) -> KernelReport:
    """``generate``'s source with the emitter's counts: its loop nests, in one function."""
    emitter = Emitter(plan(graph, parallel))
    return KernelReport(emitter.kernel(), emitter.loop_nests, kernels=1)

"""Lower an optimized graph to the Python source of one Numba ``@njit`` function.

The graph's units (``schedule.py``) are emitted in order. A loop unit becomes one loop nest
over its shape: each node is one statement on scalars (its template in ``scalars.py``),
operands of other units are array reads with broadcasting folded into the index, values needed
elsewhere are stored at the end of the body, and reductions accumulate in the same nest (in a
scalar when they reduce the innermost axes): ``loops.LoopNest``. Other nodes have a lowering in
``lowerings``: BLAS (``rt.dot``) for matmul, views for movement, loops for gather, scatter, index
tensors and argmax. Write-backs store into the caller's buffers; where nothing reads the old value later, the loop computing the new value writes it in
place. Guards raise ``rt.GuardFailed`` and index checks ``rt.IndexOutOfBounds`` before any write-back
happens (and a guard before any node its value doesn't need: ``schedule.py``).
"""
from __future__ import annotations

import math

import numpy as np

from .. import Unsupported
from ...ir.graph import Graph, Node, Value
from ...primitives import REGISTRY
from .loops import LoopNest
from .lowerings import LOWERINGS, checks_indices
from .scalars import elementwise, in_loop
from .schedule import schedule
from .source import index_text, literal, scalar_type

# A kernel whose loops are all smaller than this is compiled with LLVM at -O1: measured on W1 and W4,
# 15% less compile time for 2-3% more run time; bigger loops (W2's Adam update) ran 20% slower at -O1.
FULL_OPTIMIZATION_MIN_ELEMENTS = 1 << 15
JIT_OPTIONS = 'error_model="numpy", fastmath={"reassoc", "contract"}'


class _Generator:
    def __init__(self, graph: Graph, parallel: bool) -> None:
        self.graph, self.parallel = graph, parallel
        self.lines: list[str] = []
        # value id -> 'C' (row-major), 'F' (transposed 2-D), 'A' (strided) or 'I' (a caller's array or its
        # transpose: row-major or transposed nearly always, but Numba compiles a variant for any strides)
        self.layout: dict[int, str] = {}
        self.scalars: set[int] = set()     # values held as scalar variables: 0-d results of loops, and
        self.constants: set[int] = set()   # constants of equal elements, inlined as typed literals c<id>
        self.filled = 0  # arrays made from scalar variables so far (their names are numbered)
        self.largest_loop = 0  # elements of the largest loop nest
        self.parallel_loops = 0  # loops emitted as prange: without any, parallel=True would only cost compile time
        self.hoisted: dict = {}  # value id -> the scalar variable holding a 0-d array's element
        # value id -> the variable that already holds it (a buffer updated in place, a loop's scalar):
        # no `v5 = t5` renaming statements, each of which Numba would type, lower and count references for
        self.held_in: dict[int, str] = {}
        self.checked_indices: set = set()  # (index tensor id, lowest, size) bound checks emitted so far
        self.index_errors: list = []  # per rt.IndexOutOfBounds number: (primitive, dimension, size)
        self.units = schedule(graph)
        self.position = {n.out.id: i for i, unit in enumerate(self.units) for n in unit}
        self.producer = {n.out.id: n for n in graph.nodes}
        # value id -> nodes reading its values (a count reads only its operand's shape: that operand need not
        # be stored for it)
        self.readers = {vid: readers for vid, nodes in graph.readers().items()
                        if (readers := [n for n in nodes if REGISTRY[n.prim].reads_values])}
        self.kept = graph.results()
        self.view_root = self._view_roots()
        self.in_place = self._in_place_writebacks()
        self.transposed_products = self._transposed_products()
        self.direct_outputs = self._direct_outputs()
        self.aliases = self._unit_reshapes()

    # ---- analysis ---------------------------------------------------------------------------------

    def _view_roots(self) -> dict:
        """value id -> the graph input it is a view of (permutes, reshapes and slices of inputs)."""
        roots = {v.id: v.id for v in self.graph.inputs}
        for n in self.graph.nodes:
            if n.prim in ("permute", "reshape", "index") and n.operands[0].id in roots and \
                    not any(item[0] in "tm" for item in n.attrs.get("key", ())):
                roots[n.out.id] = roots[n.operands[0].id]
        return roots

    def _in_place_writebacks(self) -> dict:
        """src id -> dst input: write-backs whose loop can store the new value straight into the buffer.

        Safe when the value is computed element by element in a loop of the buffer's shape, after every
        guard and index check (a kernel that raises has changed nothing), and nothing reads the old value
        afterwards (reads in that loop itself are at the same index and come before the stores at the
        end of the loop body).
        """
        dst_count: dict[int, int] = {}
        src_count: dict[int, int] = {}
        for dst, src in self.graph.writebacks:
            dst_count[dst.id] = dst_count.get(dst.id, 0) + 1
            src_count[src.id] = src_count.get(src.id, 0) + 1
        last_check = max([self.position.get(v.id, -1) for v, _, _ in self.graph.guards] +
                         [self.position[n.out.id] for n in self.graph.nodes if checks_indices(n)], default=-1)
        outputs = {v.id for v in self.graph.outputs}
        written_from = {src.id for _, src in self.graph.writebacks}
        chosen = {}
        for dst, src in self.graph.writebacks:
            producer = self.producer.get(src.id)
            if producer is None or elementwise(REGISTRY[producer.prim], producer.attrs) is None or src.type != dst.type:
                continue
            if dst_count[dst.id] > 1 or src_count[src.id] > 1 or src.id in outputs or dst.id in outputs \
                    or dst.id in written_from:
                continue
            where = self.position[src.id]
            if where <= last_check:
                continue
            if self._old_value_read_after(dst, where, self.units[where]):
                continue
            chosen[src.id] = dst
        return chosen

    def _transposed_products(self) -> dict:
        """matmul result id -> the matmul, for products used only by the transpose right after them.

        The transpose then computes b.T @ a.T instead: the same numbers, row-major in the order the
        loops read them (a weight gradient read through a transposed view strides across memory).
        """
        products = {}
        for n in self.graph.nodes:
            if n.prim != "permute" or tuple(n.attrs["dims"]) != (1, 0):
                continue
            x = n.operands[0]
            producer = self.producer.get(x.id)
            if producer is not None and producer.prim == "matmul" and len(x.type.shape) == 2 and \
                    self.readers.get(x.id) == [n] and x.id not in self.kept and \
                    self.position[n.out.id] == self.position[x.id] + 1:
                products[x.id] = producer
        return products

    def _direct_outputs(self) -> set:
        """Names of the outputs computed straight into the buffer the caller passes for them.

        Those are the arrays a loop or a matrix product makes; other outputs (scalars, views, inputs,
        an output returned twice) are copied into their buffer at the end.
        """
        direct = set()
        ids = [v.id for v in self.graph.outputs]
        for v in self.graph.outputs:
            producer = self.producer.get(v.id)
            if producer is None or ids.count(v.id) > 1 or not v.type.shape or v.id in self.in_place:
                continue
            prim = REGISTRY[producer.prim]
            product = producer.prim == "matmul" and v.id not in self.transposed_products
            transposed = producer.prim == "permute" and producer.operands[0].id in self.transposed_products
            if in_loop(prim) or product or transposed:
                direct.add(self.name(v))
        return direct

    def _unit_reshapes(self) -> dict:
        """value id -> its source, for reshapes that only add or drop size-1 dims and are read only
        element by element (by loops, or as the index or values of gather and scatter_add).

        Those reshapes emit nothing: their readers index the source instead (a reshape in Numba costs
        ~0.1 s of compile time, and a copy when the source is a caller's array)."""
        element_reads = {"gather": (1,), "scatter_add": (1, 2)}
        aliases = {}
        for n in self.graph.nodes:
            x, out = n.operands[0] if n.operands else None, n.out
            if n.prim != "reshape" or not out.type.shape or not x.type.shape or out.id in self.kept or \
                    [s for s in out.type.shape if s != 1] != [s for s in x.type.shape if s != 1]:
                continue
            readers = self.readers.get(out.id, [])
            if all(in_loop(REGISTRY[r.prim]) or
                   all(k in element_reads.get(r.prim, ()) for k, o in enumerate(r.operands) if o.id == out.id)
                   for r in readers):
                aliases[out.id] = x
        return aliases

    def _old_value_read_after(self, dst: Value, where: int, unit: list) -> bool:
        members = {n.out.id for n in unit}
        for vid, root in self.view_root.items():
            if root != dst.id:
                continue
            for reader in self.readers.get(vid, []):
                at = self.position[reader.out.id]
                if at > where:
                    return True
                if at == where and (vid != dst.id or reader.out.id not in members):
                    return True
        return False

    # ---- emission helpers ----------------------------------------------------------------------------

    def emit(self, depth: int, text: str) -> None:
        self.lines.append("    " * depth + text)

    def name(self, v: Value) -> str:
        held = self.held_in.get(v.id)
        return held if held is not None else f"c{v.id}" if v.id in self.constants else f"v{v.id}"

    def allocate(self, name: str, shape: tuple | str, dtype: np.dtype, fill: str | None = None) -> None:
        """``name = `` a new row-major array (an output's is the caller's), filled with ``fill`` when given.

        Always np.empty, filled by a store: Numba compiles each allocation function once per process
        for each (dimension count, dtype), and np.full or np.zeros beside np.empty would double that.
        """
        if name not in self.direct_outputs:
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

    def element(self, v: Value, index: list) -> str:
        """v's element at ``index`` (a constant of equal elements is its scalar)."""
        source = self.aliases.get(v.id)
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
        return self.array(v) if self.layout.get(v.id, "C") == "C" else f"np.ascontiguousarray({self.name(v)})"

    # ---- the function --------------------------------------------------------------------------------

    def generate(self) -> str:
        graph = self.graph
        args = []
        used = set(self.readers) | self.kept | {dst.id for dst, _ in graph.writebacks}
        for v in graph.inputs:
            if v.const is not None and v.id not in used:
                continue
            if v.const is not None and v.const.size and (v.const == v.const.flat[0]).all():
                self.scalars.add(v.id)  # a constant of equal elements: one typed scalar
                self.constants.add(v.id)
            else:
                args.append(v)
                self.layout[v.id] = "I"
        entry = graph.name
        # one buffer per output, from the caller (making and returning arrays in Numba costs more)
        seen: set = set()
        outputs = []
        for k, v in enumerate(graph.outputs):
            direct = self.name(v) in self.direct_outputs and v.id not in seen
            outputs.append((v, self.name(v) if direct else f"o{k}", direct))
            seen.add(v.id)
        parameters = [self.name(v) for v in args] + [name for _, name, _ in outputs]
        decorator = len(self.lines)
        self.emit(0, "")  # the decorator, once the loops are known
        self.emit(0, f"def {entry}({', '.join(parameters)}):")
        for v in graph.inputs:
            if v.id in self.constants:
                self.emit(1, f"{self.name(v)} = {literal(v.const.flat[0], v.type.dtype.np)}")
        guards = {}
        for k, (value, expected, _) in enumerate(graph.guards):
            guards.setdefault(value.id, []).append((k, expected))
        for v in graph.inputs:  # guards on inputs (rare) are checked first
            self._guards(guards.pop(v.id, []), v)
        for unit in self.units:
            if in_loop(REGISTRY[unit[0].prim]):
                self._loop(unit)
            else:
                self._single(unit[0])
            for n in unit:
                self._guards(guards.pop(n.out.id, []), n.out)
        for v, name, direct in outputs:  # before the write-backs: an output may be an input's old value
            if not direct:
                self._store_whole(name, v)
        for dst, src in graph.writebacks:
            if self.in_place.get(src.id) is not dst:
                self._store_whole(self.name(dst), src)
        self.lines[decorator] = f"@njit({JIT_OPTIONS}{', parallel=True' if self.parallel_loops else ''})"
        self.emit(0, "")
        self.emit(0, "")
        self.emit(0, f"ENTRY = {entry}")
        self.emit(0, f"ARG_IDS = {tuple(v.id for v in args)}  # the graph inputs {entry} takes, in order")
        self.emit(0, f"INDEX_ERRORS = {tuple(self.index_errors)}  # rt.IndexOutOfBounds(k, index): "
                     f"k -> (primitive, dimension, size)")
        opt = 1 if self.largest_loop < FULL_OPTIMIZATION_MIN_ELEMENTS else 3
        self.emit(0, f"LLVM_OPT = {opt}  # loops of {self.largest_loop} elements at most")
        header = [f"# tracegrad kernel: graph {graph.name}, {len(graph.nodes)} nodes in {len(self.units)} units",
                  "import math", "", "import numpy as np", "from numba import njit, prange", "",
                  "from tracegrad.backends.numba_cpu import fastmath as fm, runtime as rt", "", ""]
        return "\n".join(header + self.lines) + "\n"

    def _store_whole(self, target: str, v: Value) -> None:
        """target (an array of v's shape) = v's values."""
        value = self.name(v) if v.id in self.scalars or v.type.shape else f"{self.name(v)}.item()"
        self.emit(1, f"{target}[{'...' if v.type.shape else '()'}] = {value}")

    def _guards(self, checks: list, v: Value) -> None:
        for k, expected in checks:
            value = self.name(v) if v.id in self.scalars else f"{self.name(v)}.item()"
            self.emit(1, f"if {value} != {literal(expected, v.type.dtype.np)}:")
            self.emit(2, f"raise rt.GuardFailed({k})")

    # ---- loop units ---------------------------------------------------------------------------------

    def _loop(self, unit: list) -> None:
        """The unit's loop nest, inline in the entry function.

        Inline, not a function per loop: Numba's fixed cost per compiled function (~0.2 s here)
        outweighs what smaller functions save in typing and LLVM time.
        """
        nest = LoopNest(self, unit)
        self.largest_loop = max(self.largest_loop, math.prod(nest.shape))
        self.emit(1, f"# {', '.join(f'%{n.out.id} {n.prim}' for n in unit)}")
        nest.allocate()
        nest.emit_loops(nest.body())
        nest.fold_partial_rows()
        self.scalars |= nest.registers

    def _needed_outside(self, n: Node, unit: list) -> bool:
        return n.out.id in self.kept or any(r not in unit for r in self.readers.get(n.out.id, []))

    # ---- other nodes ---------------------------------------------------------------------------------

    def _single(self, n: Node) -> None:
        lower = LOWERINGS.get(n.prim)
        if lower is None:
            raise Unsupported(f"no Numba lowering for primitive {n.prim!r}")
        if n.out.id in self.aliases:
            self.emit(1, f"# %{n.out.id} {n.prim}: read as %{self.aliases[n.out.id].id}")
            return
        self.emit(1, f"# %{n.out.id} {n.prim}")
        self.layout[n.out.id] = lower(self, n) or "C"


def generate(graph: Graph, parallel: bool = False) -> str:
    """The source of a module whose ``ENTRY`` runs ``graph`` on the inputs ``ARG_IDS`` names.

    Raises Unsupported when some node has no lowering."""
    return _Generator(graph, parallel).generate()

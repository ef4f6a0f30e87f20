"""Lower an optimized graph to the Python source of one Numba ``@njit`` function.

The graph's units (``ir.passes.schedule``) are emitted in order. A loop unit becomes one loop nest
over its shape: each node is one statement on scalars (the primitive's ``scalar`` template),
operands of other units are array reads with broadcasting folded into the index, values needed
elsewhere are stored at the end of the body, and reductions accumulate in the same nest (in a
scalar when they reduce the innermost axes). Other nodes have a lowering below: BLAS (``rt.dot``)
for matmul, views for movement, loops for gather, scatter, index tensors and argmax. Write-backs store into the caller's
buffers; where nothing reads the old value later, the loop computing the new value writes it in
place. Guards raise ``rt.GuardFailed`` before any write-back happens.
"""
from __future__ import annotations

import math

import numpy as np

from .. import Unsupported
from ...ir.graph import Graph, Node, Value
from ...ir.passes import schedule
from ...primitives import REGISTRY

PARALLEL_MIN_ELEMENTS = 1 << 15  # smaller loops finish before the threads would start
# A kernel whose loops are all smaller than this is compiled with LLVM at -O1: measured on W1 and W4,
# 15% less compile time for 2-3% more run time; bigger loops (W2's Adam update) ran 20% slower at -O1.
FULL_OPTIMIZATION_MIN_ELEMENTS = 1 << 15
JIT_OPTIONS = 'cache=True, error_model="numpy", fastmath={"reassoc", "contract"}'


def scalar_type(dtype: np.dtype) -> str:
    """The NumPy scalar type's name in generated code ('np.float32')."""
    return "np.bool_" if dtype == np.bool_ else f"np.{np.dtype(dtype).name}"


def literal(value, dtype: np.dtype) -> str:
    """A typed literal: plain Python numbers would promote float32 arithmetic to float64."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return repr(bool(value))
    if dtype.kind == "f":
        value = float(value)
        text = "np.nan" if math.isnan(value) else ("np.inf" if value > 0 else "-np.inf") if math.isinf(value) \
            else repr(value)
        return f"{scalar_type(dtype)}({text})"
    return f"{scalar_type(dtype)}({int(value)})"


def _index(parts: list) -> str:
    return ", ".join(parts) if parts else "()"


def _broadcast_index(shape: tuple, loop_shape: tuple, end: int | None = None) -> list:
    """Index of an operand of ``shape`` broadcast against loop indices i0, i1, ...: aligned so its last
    dim meets loop dim ``end - 1`` (default: the last), a size-1 dim reads its only element."""
    offset = (len(loop_shape) if end is None else end) - len(shape)
    return ["0" if s == 1 and loop_shape[offset + j] != 1 else f"i{offset + j}" for j, s in enumerate(shape)]


def _key_text(key: tuple) -> str:
    """A basic-indexing key template as Python subscript text."""
    parts = []
    for item in key:
        if item[0] == "s":
            parts.append(":".join("" if x is None else str(x) for x in item[1:]))
        elif item[0] == "i":
            parts.append(str(item[1]))
        elif item[0] == "n":
            parts.append("None")
        else:
            parts.append("...")
    return ", ".join(parts) + ("" if ("e",) in key else ", ...")  # a trailing ... keeps results arrays


def numba_threads() -> int:
    """Numba's thread count (NUMBA_NUM_THREADS): parallel kernels cut their outer loop into this many chunks."""
    import numba
    return numba.config.NUMBA_NUM_THREADS


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
        self.units = schedule(graph)
        self.position = {n.out.id: i for i, unit in enumerate(self.units) for n in unit}
        self.producer = {n.out.id: n for n in graph.nodes}
        self.readers: dict[int, list] = {}  # value id -> nodes reading it
        for n in graph.nodes:
            for o in n.operands:
                self.readers.setdefault(o.id, []).append(n)
        self.kept = {v.id for v in graph.outputs} | {v.id for v, _, _ in graph.guards} | \
            {src.id for _, src in graph.writebacks}
        self.view_root = self._view_roots()
        self.in_place = self._in_place_writebacks()
        self.transposed_products = self._transposed_products()

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
        guard, and nothing reads the old value afterwards (reads in that loop itself are at the same
        index and come before the stores at the end of the loop body).
        """
        dst_count: dict[int, int] = {}
        src_count: dict[int, int] = {}
        for dst, src in self.graph.writebacks:
            dst_count[dst.id] = dst_count.get(dst.id, 0) + 1
            src_count[src.id] = src_count.get(src.id, 0) + 1
        last_guard = max((self.position.get(v.id, -1) for v, _, _ in self.graph.guards), default=-1)
        outputs = {v.id for v in self.graph.outputs}
        written_from = {src.id for _, src in self.graph.writebacks}
        chosen = {}
        for dst, src in self.graph.writebacks:
            producer = self.producer.get(src.id)
            if producer is None or REGISTRY[producer.prim].scalar is None or src.type != dst.type:
                continue
            if dst_count[dst.id] > 1 or src_count[src.id] > 1 or src.id in outputs or dst.id in outputs \
                    or dst.id in written_from:
                continue
            where = self.position[src.id]
            if where <= last_guard:
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
        return f"c{v.id}" if v.id in self.constants else f"v{v.id}"

    def allocate(self, name: str, shape: tuple | str, dtype: np.dtype, fill: str | None = None) -> None:
        """``name = `` a new row-major array, filled with ``fill`` when given.

        Always np.empty, filled by a store: Numba compiles each allocation function once per process
        for each (dimension count, dtype), and np.full or np.zeros beside np.empty would double that.
        """
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
        return self.name(v) if v.id in self.scalars else f"{self.name(v)}[{_index(index)}]"

    def fresh(self, v: Value) -> str:
        """An expression for a new row-major array holding v's values."""
        if v.id in self.scalars or self.layout.get(v.id, "C") not in "CI":
            return self.row_major(v)
        return f"{self.name(v)}.copy()"

    def contiguous(self, v: Value) -> str:
        """An expression for v as a matrix BLAS takes: row-major, or column-major (a transposed row-major).

        The layout of a caller's array is known to Numba only (it compiles a variant for each):
        rt.blas_operand copies it when strided and is the identity otherwise."""
        layout = self.layout.get(v.id, "C")
        return self.array(v) if layout in "CF" else f"rt.blas_operand({self.name(v)})"

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
        self.emit(0, f"@njit({JIT_OPTIONS}{', parallel=True' if self.parallel else ''})")
        self.emit(0, f"def {entry}({', '.join(self.name(v) for v in args)}):")
        for v in graph.inputs:
            if v.id in self.constants:
                self.emit(1, f"{self.name(v)} = {literal(v.const.flat[0], v.type.dtype.np)}")
        guards = {}
        for k, (value, expected, _) in enumerate(graph.guards):
            guards.setdefault(value.id, []).append((k, expected))
        for v in graph.inputs:  # guards on inputs (rare) are checked first
            self._guards(guards.pop(v.id, []), v)
        for unit in self.units:
            if REGISTRY[unit[0].prim].scalar is not None or REGISTRY[unit[0].prim].reducer is not None:
                self._loop(unit)
            else:
                self._single(unit[0])
            for n in unit:
                self._guards(guards.pop(n.out.id, []), n.out)
        for dst, src in graph.writebacks:
            if self.in_place.get(src.id) is not dst:
                self.emit(1, f"{self.name(dst)}[{'...' if dst.type.shape else '()'}] = {self._whole(src)}")
        # every output is a fresh array of its own: views, inputs and repeats are copied
        outputs, seen = [], set()
        views = {n.out.id for n in graph.nodes if n.prim in ("permute", "reshape", "index")
                 and n.operands[0].id not in self.transposed_products}  # those permutes compute a product
        for v in graph.outputs:
            if v.id in self.scalars:
                outputs.append(self.array(v))
            elif v.id in seen or v.id in views or v.id in self.layout and v in graph.inputs:
                outputs.append(f"{self.name(v)}.copy()")
            else:
                outputs.append(self.name(v))
            seen.add(v.id)
        self.emit(1, f"return ({', '.join(outputs)}{',' if len(outputs) == 1 else ''})")
        self.emit(0, "")
        self.emit(0, "")
        self.emit(0, f"ENTRY = {entry}")
        self.emit(0, f"ARG_IDS = {tuple(v.id for v in args)}  # the graph inputs {entry} takes, in order")
        opt = 1 if self.largest_loop < FULL_OPTIMIZATION_MIN_ELEMENTS else 3
        self.emit(0, f"LLVM_OPT = {opt}  # loops of {self.largest_loop} elements at most")
        header = [f"# tracegrad kernel: graph {graph.name}, {len(graph.nodes)} nodes in {len(self.units)} units",
                  "import math", "", "import numpy as np", "from numba import njit, prange", "",
                  "from tracegrad.backends.numba_cpu import fastmath as fm, runtime as rt", "", ""]
        return "\n".join(header + self.lines) + "\n"

    def _whole(self, v: Value) -> str:
        """v's value as the right-hand side of a full-array store."""
        if v.id in self.scalars or not v.type.shape:
            return self.name(v) if v.id in self.scalars else f"{self.name(v)}.item()"
        return self.name(v)

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
        nest = _LoopNest(self, unit)
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
        lower = _LOWERINGS.get(n.prim)
        if lower is None:
            raise Unsupported(f"no Numba lowering for primitive {n.prim!r}")
        self.emit(1, f"# %{n.out.id} {n.prim}")
        self.layout[n.out.id] = lower(self, n) or "C"


class _LoopNest:
    """The plan of one loop unit: its shape, what it stores, and how each reduction accumulates.

    Reductions over the innermost axes keep a scalar accumulator ``a<id>``, started at the loop level
    where the reduced axes begin; others accumulate into their output array. A float32 sum or product
    in a scalar runs in float64: summing a whole tensor in float32, one element after the other, would
    lose digits that NumPy's pairwise sum keeps. With numba-parallel, the outer loop of a large nest is
    a prange; reductions over axis 0 would race there, so the outer axis is then cut into one chunk per
    thread, each accumulating into its own row ``p<id>[c]`` of a partial result, and the rows are
    combined after the loop.
    """

    def __init__(self, gen: "_Generator", unit: list) -> None:
        self.gen, self.unit = gen, unit
        self.reductions = [n for n in unit if REGISTRY[n.prim].reducer is not None]
        first = unit[0]
        self.shape = first.operands[0].type.shape if REGISTRY[first.prim].reducer is not None else first.out.type.shape
        self.depth = depth = len(self.shape)
        self.members = {n.out.id for n in unit if REGISTRY[n.prim].reducer is None}
        self.stored = [n for n in unit if n.out.id in self.members and gen._needed_outside(n, unit)]
        # 0-d results stay scalar variables (no 0-d arrays to allocate, store and read back)
        self.registers = {n.out.id for n in self.stored if depth == 0 and n.out.id not in gen.in_place}
        self.registers |= {r.out.id for r in self.reductions if not r.out.type.shape}
        self.level, self.accumulator = {}, {}
        for r in self.reductions:
            axes = tuple(sorted(r.attrs["axes"]))
            inner = axes == tuple(range(depth - len(axes), depth))
            self.level[r.out.id] = depth - len(axes) if inner else None
            widened = inner and r.prim in ("sum", "prod") and r.out.type.dtype.np == np.float32
            self.accumulator[r.out.id] = np.dtype(np.float64) if widened else np.dtype(r.out.type.dtype.np)
        self.parallel = gen.parallel and depth > 0 and math.prod(self.shape) >= PARALLEL_MIN_ELEMENTS
        self.partial = {r.out.id for r in self.reductions if self.parallel and 0 in r.attrs["axes"]}
        self.chunks = f"chunks{first.out.id}"
        self.hoisted: dict = {}  # 0-d operands of other units, read once before the loop

    # ---- before the loop ----------------------------------------------------------------------------

    def allocate(self) -> None:
        """Arrays for stored values and reduction results, partial rows, hoisted 0-d operands."""
        gen = self.gen
        for n in self.stored:
            if n.out.id in self.registers:
                continue
            dst = gen.in_place.get(n.out.id)
            if dst is not None:
                gen.emit(1, f"{gen.name(n.out)} = {gen.name(dst)}")
            else:
                gen.allocate(gen.name(n.out), n.out.type.shape, n.out.type.dtype.np)
            gen.layout[n.out.id] = "C"
        if self.partial:
            gen.emit(1, f"{self.chunks} = {min(numba_threads(), self.shape[0])}")
        for r in self.reductions:
            rid = r.out.id
            if rid in self.partial:
                rows = [self.chunks] + [str(size) for size in (r.out.type.shape if self.level[rid] is None else ())]
                gen.allocate(f"p{rid}", f"({', '.join(rows)},)", self.accumulator[rid], fill=self.start(r))
            if rid in self.registers:
                continue
            starts_filled = self.level[rid] is None and rid not in self.partial
            gen.allocate(gen.name(r.out), r.out.type.shape, r.out.type.dtype.np,
                         fill=self.start(r) if starts_filled else None)
            gen.layout[rid] = "C"
        for n in self.unit:
            for o in n.operands:
                if o.id not in self.members and o.id not in gen.scalars and o.type.shape == () \
                        and o.id not in self.hoisted:
                    self.hoisted[o.id] = f"s{o.id}"
                    gen.emit(1, f"s{o.id} = {gen.name(o)}.item()")

    # ---- the loop body ------------------------------------------------------------------------------

    def body(self) -> list:
        """The innermost statements: one per node, then the stores of values needed elsewhere."""
        lines = []
        for n in self.unit:
            prim = REGISTRY[n.prim]
            if prim.reducer is None:
                text = prim.scalar_template(n.attrs).format(*(self.read(o) for o in n.operands),
                                                            T=scalar_type(n.out.type.dtype.np))
                lines.append(f"t{n.out.id} = {text}")
                continue
            x, dtype = self.read(n.operands[0]), self.accumulator[n.out.id]
            if n.operands[0].type.dtype.np != dtype:
                x = f"{scalar_type(dtype)}({x})"
            acc = self.accumulate_into(n)
            lines.append(f"{acc} = {prim.reducer[1].format(x, acc=acc, T=scalar_type(dtype))}")
        element = f"[{_index([f'i{k}' for k in range(self.depth)])}]"
        lines += [f"{self.gen.name(n.out)}{'' if n.out.id in self.registers else element} = t{n.out.id}"
                  for n in self.stored]
        return lines

    def read(self, o: Value) -> str:
        """An operand inside the loop: this unit's register, a scalar, or an element of an array."""
        if o.id in self.members:
            return f"t{o.id}"
        if o.id in self.gen.scalars:
            return self.gen.name(o)
        if o.id in self.hoisted:
            return self.hoisted[o.id]
        return f"{self.gen.name(o)}[{_index(_broadcast_index(o.type.shape, self.shape))}]"

    def output_index(self, r: Node) -> list:
        """Where loop element (i0, i1, ...) lands in reduction r's result."""
        axes, keep = r.attrs["axes"], r.attrs["keepdim"]
        return [("0" if j in axes else f"i{j}") for j in range(self.depth) if keep or j not in axes]

    def accumulate_into(self, r: Node) -> str:
        if self.level[r.out.id] is not None:
            return f"a{r.out.id}"
        if r.out.id in self.partial:
            return f"p{r.out.id}[{_index(['c'] + self.output_index(r))}]"
        return f"{self.gen.name(r.out)}[{_index(self.output_index(r))}]"

    def start(self, r: Node) -> str:
        """The reduction's identity, typed as its accumulator."""
        dtype = self.accumulator[r.out.id]
        return literal(REGISTRY[r.prim].reducer[0](dtype), dtype)

    def final(self, r: Node, value: str) -> str:
        """An accumulated value cast back to the reduction's dtype."""
        dtype = r.out.type.dtype.np
        return value if self.accumulator[r.out.id] == dtype else f"{scalar_type(dtype)}({value})"

    def store_target(self, r: Node, index: list) -> str:
        """Where a reduction's result goes: its scalar variable, or an element of its array."""
        return self.gen.name(r.out) if r.out.id in self.registers else f"{self.gen.name(r.out)}[{_index(index)}]"

    # ---- the nest -----------------------------------------------------------------------------------

    def emit_loops(self, body: list) -> None:
        """The loops around ``body``, with each scalar accumulator started and stored at its level."""
        gen, shape, depth = self.gen, self.shape, self.depth
        # indent[k]: the indentation of statements at loop level k (inside loops 0..k-1). A dimension of
        # size 1 gets no loop, only its index variable: fewer statements for Numba to compile.
        indent = [2 if self.partial else 1]
        if self.partial:
            gen.emit(1, f"for c in prange({self.chunks}):")
        for k in range(depth + 1):
            for r in self.reductions:
                if self.level[r.out.id] == k:
                    gen.emit(indent[k], f"a{r.out.id} = {self.start(r)}")
            if k == depth:
                break
            if k == 0 and self.partial:
                gen.emit(indent[k], f"for i0 in range(c * {shape[0]} // {self.chunks}, "
                                    f"(c + 1) * {shape[0]} // {self.chunks}):")
            elif shape[k] == 1:
                gen.emit(indent[k], f"i{k} = 0")
                indent.append(indent[k])
                continue
            else:
                gen.emit(indent[k], f"for i{k} in {'prange' if self.parallel and k == 0 else 'range'}({shape[k]}):")
            indent.append(indent[k] + 1)
        for line in body:
            gen.emit(indent[depth], line)
        for k in range(depth, -1, -1):
            for r in self.reductions:
                if self.level[r.out.id] != k:
                    continue
                if r.out.id in self.partial:
                    gen.emit(indent[k], f"p{r.out.id}[c] = a{r.out.id}")
                else:
                    gen.emit(indent[k], f"{self.store_target(r, self.output_index(r))} = "
                                        f"{self.final(r, f'a{r.out.id}')}")

    def fold_partial_rows(self) -> None:
        """After a chunked parallel loop: combine each reduction's per-chunk rows into its result."""
        gen = self.gen
        for r in self.reductions:
            if r.out.id not in self.partial:
                continue
            combine = REGISTRY[r.prim].reducer[1]
            kept = [] if self.level[r.out.id] is not None else [f"j{k}" for k in range(len(r.out.type.shape))]
            for k, size in enumerate(r.out.type.shape if kept else ()):
                gen.emit(1 + k, f"for j{k} in range({size}):")
            inner = 1 + len(kept)
            gen.emit(inner, f"a = p{r.out.id}[{_index(['0'] + kept)}]")
            gen.emit(inner, f"for c in range(1, {self.chunks}):")
            row = f"p{r.out.id}[{_index(['c'] + kept)}]"
            gen.emit(inner + 1, f"a = {combine.format(row, acc='a')}")
            gen.emit(inner, f"{self.store_target(r, kept)} = {self.final(r, 'a')}")


def _matmul(gen: _Generator, n: Node) -> str:
    a, b = n.operands
    if n.out.type.dtype.np not in (np.float32, np.float64):
        raise Unsupported(f"matmul of {n.out.type.dtype.name} (BLAS handles float32 and float64 only)")
    out = gen.name(n.out)
    if n.out.id in gen.transposed_products:
        gen.emit(1, "# (computed transposed, by the permute that reads it)")
        return "C"
    if len(n.out.type.shape) == 2:
        gen.emit(1, f"{out} = rt.dot({gen.contiguous(a)}, {gen.contiguous(b)})")
        return "C"
    # batched: one np.dot per batch element, the batch dimensions broadcast by the index
    batch = n.out.type.shape[:-2]
    gen.allocate(out, n.out.type.shape, n.out.type.dtype.np)
    operands = []
    for v in (a, b):
        name = f"m{v.id}"
        gen.emit(1, f"{name} = {gen.row_major(v)}")
        parts = _broadcast_index(v.type.shape[:-2], batch)
        operands.append(f"{name}[{', '.join(parts + ['...'])}]")
    for k, size in enumerate(batch):
        gen.emit(1 + k, f"for i{k} in range({size}):")
    gen.emit(1 + len(batch), f"rt.matmul_into({operands[0]}, {operands[1]}, {out}[{', '.join(f'i{k}' for k in range(len(batch)))}])")
    return "C"


def _permute(gen: _Generator, n: Node) -> str:
    x, dims = n.operands[0], tuple(n.attrs["dims"])
    product = gen.transposed_products.get(x.id)
    if product is not None:
        a, b = product.operands
        gen.emit(1, f"{gen.name(n.out)} = rt.dot({gen.contiguous(b)}.T, {gen.contiguous(a)}.T)")
        return "C"
    if dims == (1, 0):
        gen.emit(1, f"{gen.name(n.out)} = {gen.array(x)}.T")
        return {"C": "F", "F": "C", "I": "I"}.get(gen.layout.get(x.id, "C"), "A")
    gen.emit(1, f"{gen.name(n.out)} = np.transpose({gen.array(x)}, {dims})")
    return "A"


def _reshape(gen: _Generator, n: Node) -> str:
    gen.emit(1, f"{gen.name(n.out)} = {gen.row_major(n.operands[0])}.reshape({n.attrs['shape']})")
    return "C"


def _index_read(gen: _Generator, n: Node) -> str:
    key = n.attrs["key"]
    if any(item[0] in "tm" for item in key):
        return _index_tensors(gen, n)
    x = n.operands[0]
    gen.emit(1, f"{gen.name(n.out)} = {gen.array(x)}[{_key_text(key)}]")
    return "A"


def _index_put(gen: _Generator, n: Node) -> str:
    key = n.attrs["key"]
    if any(item[0] in "tm" for item in key):
        return _index_put_tensors(gen, n)
    x, values = n.operands[:2]
    out = gen.name(n.out)
    gen.emit(1, f"{out} = {gen.fresh(x)}")
    rhs = gen.name(values) if values.id in gen.scalars or values.type.shape else f"{gen.name(values)}.item()"
    gen.emit(1, f"{out}[{_key_text(key)}] {'+=' if n.attrs['accumulate'] else '='} {rhs}")
    return "C"


def _cat(gen: _Generator, n: Node) -> str:
    parts = ", ".join(gen.array(o) for o in n.operands)
    gen.emit(1, f"{gen.name(n.out)} = np.concatenate(({parts},), axis={n.attrs['dim']})")
    return "C"


def _along_axis(gen: _Generator, n: Node, idx: Value, size: int, dim: int) -> tuple[int, list]:
    """Open loops over idx's shape and bound-check idx; returns (depth, index of the indexed array)."""
    depth = len(idx.type.shape)
    for k, s in enumerate(idx.type.shape):
        gen.emit(1 + k, f"for i{k} in range({s}):")
    gen.emit(1 + depth, f"j = {gen.element(idx, [f'i{k}' for k in range(depth)])}")
    gen.emit(1 + depth, "if j < 0:")
    gen.emit(2 + depth, f"j += {size}")
    gen.emit(1 + depth, f"if j < 0 or j >= {size}:")
    gen.emit(2 + depth, f'raise IndexError("{n.prim}: an index is out of range for dimension {dim} of size {size}")')
    return depth, ["j" if k == dim else f"i{k}" for k in range(depth)]


def _gather(gen: _Generator, n: Node) -> str:
    x, idx = n.operands
    out, dim = gen.name(n.out), n.attrs["dim"]
    if not x.type.shape:
        gen.emit(1, f"{out} = {gen.fresh(x)}")
        return "C"
    gen.allocate(out, n.out.type.shape, n.out.type.dtype.np)
    depth, where = _along_axis(gen, n, idx, x.type.shape[dim], dim)
    gen.emit(1 + depth, f"{out}[{_index([f'i{k}' for k in range(depth)])}] = {gen.element(x, where)}")
    return "C"


def _scatter_add(gen: _Generator, n: Node) -> str:
    x, idx, src = n.operands
    out, dim = gen.name(n.out), n.attrs["dim"]
    gen.emit(1, f"{out} = {gen.fresh(x)}")
    if not x.type.shape:
        gen.emit(1, f"{out}[()] += {gen.name(src) if src.id in gen.scalars else gen.name(src) + '.item()'}")
        return "C"
    depth, where = _along_axis(gen, n, idx, x.type.shape[dim], dim)
    gen.emit(1 + depth, f"{out}[{_index(where)}] += {gen.element(src, [f'i{k}' for k in range(depth)])}")
    return "C"


def _arg_extremum(gen: _Generator, n: Node) -> str:
    """argmax/argmin along one axis: the first position of the extremum, or of the first NaN (as NumPy)."""
    x, axis = n.operands[0], n.attrs["axes"][0]
    shape, out = x.type.shape, gen.name(n.out)
    better = ">" if n.prim == "argmax" else "<"
    kept = [("0" if k == axis else f"i{k}") for k in range(len(shape))]
    where = _index(kept if n.attrs["keepdim"] else [p for k, p in enumerate(kept) if k != axis])
    gen.allocate(out, n.out.type.shape, np.dtype(np.int64))  # all written: each at axis index 0
    gen.allocate(f"best{n.out.id}", tuple(1 if k == axis else s for k, s in enumerate(shape)), x.type.dtype.np)
    for k, size in enumerate(shape):
        gen.emit(1 + k, f"for i{k} in range({size}):")
    depth = 1 + len(shape)
    gen.emit(depth, f"e = {gen.element(x, [f'i{k}' for k in range(len(shape))])}")
    gen.emit(depth, f"b = best{n.out.id}[{_index(kept)}]")
    gen.emit(depth, f"if i{axis} == 0 or b == b and (e {better} b or e != e):")
    gen.emit(depth + 1, f"best{n.out.id}[{_index(kept)}] = e")
    gen.emit(depth + 1, f"{out}[{where}] = i{axis}")
    return "C"


def _tensor_key(key: tuple) -> tuple[int, int]:
    """(first, last) positions of a key's index tensors when they are adjacent and every other item is a
    full slice (x[idx], x[:, rows, cols]); Unsupported otherwise."""
    tensors = [k for k, item in enumerate(key) if item[0] == "t"]
    if any(item[0] == "m" for item in key):
        raise Unsupported("indexing with a boolean mask")
    if tensors != list(range(tensors[0], tensors[-1] + 1)) or any(
            item[0] != "t" and item != ("s", None, None, None) for item in key):
        raise Unsupported("indexing that mixes index tensors with integers, None, Ellipsis or partial slices")
    return tensors[0], tensors[-1]


def _gathered_positions(gen: _Generator, n: Node, x: Value, indices: list, first: int, last: int,
                        result_shape: tuple) -> tuple[int, list, list]:
    """Open loops over the result of x[..., idx..., ...] and compute each index tensor's position (bound
    checked); returns (depth, the element's index in x, the loop index of the result)."""
    lead, trail = first, len(x.type.shape) - last - 1
    middle = len(result_shape) - lead - trail  # the broadcast shape of the index tensors
    for k, size in enumerate(result_shape):
        gen.emit(1 + k, f"for i{k} in range({size}):")
    depth = len(result_shape)
    position = [f"i{k}" for k in range(lead)]
    for m, idx in enumerate(indices):
        size = x.type.shape[first + m]
        parts = _broadcast_index(idx.type.shape, result_shape, end=lead + middle)
        gen.emit(1 + depth, f"j{m} = {gen.element(idx, parts)}")
        gen.emit(1 + depth, f"if j{m} < 0:")
        gen.emit(2 + depth, f"j{m} += {size}")
        gen.emit(1 + depth, f"if j{m} < 0 or j{m} >= {size}:")
        gen.emit(2 + depth, f'raise IndexError("{n.prim}: an index is out of range for dimension {first + m} '
                            f'of size {size}")')
        position.append(f"j{m}")
    position += [f"i{k}" for k in range(lead + middle, len(result_shape))]
    return depth, position, [f"i{k}" for k in range(len(result_shape))]


def _index_tensors(gen: _Generator, n: Node) -> str:
    x, indices = n.operands[0], n.operands[1:]
    first, last = _tensor_key(n.attrs["key"])
    out = gen.name(n.out)
    gen.allocate(out, n.out.type.shape, n.out.type.dtype.np)
    depth, position, loop = _gathered_positions(gen, n, x, indices, first, last, n.out.type.shape)
    gen.emit(1 + depth, f"{out}[{_index(loop)}] = {gen.element(x, position)}")
    return "C"


def _index_put_tensors(gen: _Generator, n: Node) -> str:
    x, values, indices = n.operands[0], n.operands[1], n.operands[2:]
    first, last = _tensor_key(n.attrs["key"])
    out = gen.name(n.out)
    # the region x[key] has the shape of x with the indexed dims replaced by the index tensors' broadcast
    from ...primitives.base import broadcast_shapes
    region = x.type.shape[:first] + broadcast_shapes(*(i.type.shape for i in indices)) + x.type.shape[last + 1:]
    gen.emit(1, f"{out} = {gen.fresh(x)}")
    depth, position, loop = _gathered_positions(gen, n, x, indices, first, last, region)
    parts = _broadcast_index(values.type.shape, region)
    gen.emit(1 + depth, f"{out}[{_index(position)}] {'+=' if n.attrs['accumulate'] else '='} "
                        f"{gen.element(values, parts)}")
    return "C"


_LOWERINGS = {"matmul": _matmul, "permute": _permute, "reshape": _reshape, "index": _index_read,
              "index_put": _index_put, "cat": _cat, "gather": _gather, "scatter_add": _scatter_add,
              "argmax": _arg_extremum, "argmin": _arg_extremum}


def generate(graph: Graph, parallel: bool = False) -> str:
    """The source of a module whose ``ENTRY`` runs ``graph`` on the inputs ``ARG_IDS`` names.

    Raises Unsupported when some node has no lowering."""
    return _Generator(graph, parallel).generate()

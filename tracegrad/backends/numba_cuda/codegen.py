"""Lower an optimized graph to the Python source of a module of ``@cuda.jit`` kernels and a host driver.

The graph is planned by the Numba CPU backend's ``plan.py`` (units in run order, a ``LoopPlan`` per loop
nest, in-place write-backs, aliases, literals); this module only writes code for a plan. A loop unit becomes
one kernel: threads walk its *parallel* elements with a grid-stride loop, and the axes that a reduction of
the unit (other than a full one) reduces are walked in order inside a thread, so every element of such a
reduction's result belongs to one thread (no races). A full reduction accumulates per thread, then per
block in shared memory, and a one-thread kernel folds the blocks' partials. Other nodes have a lowering
each (``lowerings.py``). The driver (``ENTRY``) allocates device arrays, launches the kernels in order,
checks guards and index values on the host as soon as they are computed (each check copies one value from
the device, which waits for the kernels before it), makes the outputs and stores the write-backs last.
"""
from __future__ import annotations

import math

import numpy as np

from .. import KernelReport, Unsupported
from ...ir.graph import Graph, Node, Value
from ...primitives import REGISTRY
from ..numba_cpu.loops import LoopPlan
from ..numba_cpu.codegen import single_lowering
from ..numba_cpu.plan import Plan, plan
from ..numba_cpu.source import broadcast_index, index_text, literal, scalar_type
from .scalars import CUDA, integral_from

SCALAR_ROLES = ("hyper", "number")  # inputs passed as host 0-d arrays: their value goes to kernels by value


class Kernel:
    """One ``@cuda.jit`` function being written: its parameters (the driver's names) and body lines."""

    def __init__(self, name: str, comment: str) -> None:
        self.name, self.comment = name, comment
        self.params: list[str] = []
        self.args: list[str] = []  # the driver's expression passed for each parameter
        self.lines: list[str] = []

    def param(self, name: str, argument: str | None = None) -> str:
        """``name`` as a parameter of this kernel, passed the driver's ``argument`` (by default its variable ``name``)."""
        if name not in self.params:
            self.params.append(name)
            self.args.append(argument or name)
        return name

    def emit(self, depth: int, text: str) -> None:
        """One body line, ``depth`` levels inside the function."""
        self.lines.append("    " * depth + text)

    def source(self) -> list[str]:
        return ["@cuda.jit", f"def {self.name}({', '.join(self.params)}):", f"    # {self.comment}", *self.lines,
                "", ""]


def flat_index(kernel: Kernel, depth: int, axes: list) -> None:
    """Split the grid-stride element number ``e`` into the indices ``i<axis>`` of (axis, size) pairs, row-major
    (size-1 axes get no variable: their index is 0)."""
    axes = [(axis, size) for axis, size in axes if size != 1]
    rest = "e"
    for position, (axis, size) in enumerate(reversed(axes)):
        if position == len(axes) - 1:
            kernel.emit(depth, f"i{axis} = {rest}")
        else:
            kernel.emit(depth, f"i{axis} = {rest} % {size}")
            kernel.emit(depth, f"r = {rest} // {size}")
            rest = "r"


def shape_index(shape: tuple) -> list:
    """The index of an element of a grid-stride loop over ``shape``: i<k>, or 0 for a size-1 dim."""
    return ["0" if size == 1 else f"i{k}" for k, size in enumerate(shape)]


class Emitter:
    """Writes the module of a Plan: the kernels, the driver, and what changes while they are written."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.kernels: list[Kernel] = []
        self.driver: list[str] = []
        self.loop_nests = 0
        self.held_in: dict[int, str] = {}  # value id -> the variable holding it (a buffer updated in place)
        self.fresh: set[int] = set()       # ids of arrays this call allocated that nothing else is a view of
        self.checked: set = set()          # (index tensor id, lowest, size) checks emitted so far
        self.scalars = {v.id for v in plan.graph.inputs if v.role in SCALAR_ROLES}

    # ---- names and reads ------------------------------------------------------------------------------

    def emit(self, depth: int, text: str) -> None:
        """One line of the driver, ``depth`` levels inside it."""
        self.driver.append("    " * depth + text)

    def name(self, v: Value) -> str:
        """The driver variable holding v (s<id> for a scalar input, v<id> for a device array)."""
        held = self.held_in.get(v.id)
        return held if held is not None else f"s{v.id}" if v.id in self.scalars else f"v{v.id}"

    def element(self, kernel: Kernel, v: Value, index: list) -> str:
        """v's element at ``index`` inside ``kernel`` (a literal constant or a scalar input is its value)."""
        source = self.plan.aliases.get(v.id)
        if source is not None:  # a reshape that adds or drops size-1 dims: the same element of its source
            kept = iter(part for part, size in zip(index, v.type.shape) if size != 1)
            return self.element(kernel, source, ["0" if size == 1 else next(kept) for size in source.type.shape])
        if v.id in self.plan.literals:
            return literal(v.const.flat[0], v.type.dtype.np)
        if v.id in self.scalars:
            return kernel.param(self.name(v))
        return self.ref(kernel, v, index)

    def ref(self, kernel: Kernel, v: Value, index: list) -> str:
        """The element of v's device array at ``index`` inside ``kernel``, to read or to store. A 0-d array is
        passed as a one-element view (``v5.reshape(1)``) and indexed [0]: the simulator's ``x[()]`` reads a 0-d
        array, not its value."""
        name = self.name(v)
        if not v.type.shape:
            return f"{kernel.param(name, f'{name}.reshape(1)')}[0]"
        return f"{kernel.param(name)}[{index_text(index)}]"

    def _scalar(self, v: Value) -> str | None:
        """The driver expression of a literal constant's or a scalar input's value; None for an array."""
        if v.id in self.plan.literals:
            return literal(v.const.flat[0], v.type.dtype.np)
        return self.name(v) if v.id in self.scalars else None

    def _full(self, v: Value, value: str) -> str:
        return f"rt.full(P, {v.type.shape}, {scalar_type(v.type.dtype.np)}, {value})"

    def array(self, v: Value) -> str:
        """A driver expression for v as a C-contiguous device array (a literal or a scalar input is filled in)."""
        value = self._scalar(v)
        if value is not None:
            self.emit(1, f"f{v.id} = {self._full(v, value)}")
            return f"f{v.id}"
        source = self.plan.aliases.get(v.id)
        if source is not None:
            return f"{self.array(source)}.reshape({v.type.shape})"
        return self.name(v)

    def allocate(self, v: Value) -> str:
        """``v<id> = `` a new device array for v (its values are written by kernels)."""
        self.emit(1, f"{self.name(v)} = cuda.device_array({v.type.shape}, {scalar_type(v.type.dtype.np)})")
        self.fresh.add(v.id)
        return self.name(v)

    def clone(self, v: Value, into: Value) -> str:
        """``into``'s new array, a copy of v's values."""
        value = self._scalar(v)
        self.emit(1, f"{self.name(into)} = {self._full(v, value) if value is not None else f'rt.clone(P, {self.array(v)})'}")
        self.fresh.add(into.id)
        return self.name(into)

    # ---- kernels --------------------------------------------------------------------------------------

    def kernel(self, comment: str) -> Kernel:
        """A new kernel (appended to the module), named k<number>."""
        self.kernels.append(Kernel(f"k{len(self.kernels)}", comment))
        return self.kernels[-1]

    def launch(self, kernel: Kernel, elements: int) -> None:
        """The driver's launch of ``kernel`` over ``elements`` (grid-stride)."""
        self.emit(1, f"rt.launch(P, {kernel.name}, {elements}, {', '.join(kernel.args)})")

    def map_kernel(self, comment: str, shape: tuple, body) -> Kernel:
        """A kernel with one grid-stride loop over ``shape``: ``body(kernel, index)`` returns its statements
        for the element at ``index``; launched at once."""
        kernel = self.kernel(comment)
        kernel.emit(1, f"for e in range(cuda.grid(1), {math.prod(shape)}, cuda.gridsize(1)):")
        flat_index(kernel, 2, list(enumerate(shape)))
        for line in body(kernel, shape_index(shape)):
            kernel.emit(2, line)
        self.launch(kernel, math.prod(shape))
        return kernel

    def check_indices(self, n: Node, idx: Value, dim: int, size: int) -> None:
        """Raise the primitive's eager error (``indexing.out_of_bounds``) for the first value of idx outside the
        range n's primitive accepts into dimension ``dim`` of ``size``: a device-to-host copy of one number,
        before any later kernel and every write-back. A check made before is not repeated (index values are
        never overwritten)."""
        from ...primitives.indexing import lowest_index
        lowest = lowest_index(n.prim, size)
        if (idx.id, lowest, size) in self.checked:
            return
        self.checked.add((idx.id, lowest, size))
        self.emit(1, f"bad = rt.out_of_range(P, {self.array(idx)}, {lowest}, {size})")
        self.emit(1, "if bad is not None:")
        self.emit(2, f"raise out_of_bounds({n.prim!r}, bad, {dim}, {size})")

    # ---- the module -----------------------------------------------------------------------------------

    def module(self) -> str:
        """The module's source (emit it once per Emitter)."""
        plan, graph = self.plan, self.plan.graph
        for k, v in enumerate(graph.inputs):
            if v not in plan.arguments:
                continue
            if v.const is not None:
                self.emit(1, f"{self.name(v)} = P.constants[{v.id}]  # uploaded once, when the program was built")
            elif v.id in self.scalars:
                self.emit(1, f"{self.name(v)} = inputs[{k}][()]")
            else:
                self.emit(1, f"{self.name(v)} = inputs[{k}]")
        guards: dict = {}
        for k, (value, expected, _) in enumerate(graph.guards):
            guards.setdefault(value.id, []).append((k, expected))
        for v in graph.inputs:  # guards on inputs (rare) are checked first
            self._guards(guards.pop(v.id, []), v)
        for unit, loop in zip(plan.units, plan.loops):
            if loop is not None:
                LoopKernel(self, loop).emit()
            else:
                self._single(unit[0])
            for n in unit:
                self._guards(guards.pop(n.out.id, []), n.out)
        outputs, seen = [], set()
        for k, v in enumerate(graph.outputs):  # before the write-backs: an output may be an input's old value
            if v.id in self.fresh and v.id not in seen:
                outputs.append(self.name(v))
            else:
                self.emit(1, f"o{k} = rt.clone(P, {self.array(v)})")
                outputs.append(f"o{k}")
            seen.add(v.id)
        for dst, src in graph.writebacks:
            if plan.in_place.get(src.id) is not dst:
                self.emit(1, f"rt.copy(P, {self.name(dst)}, {self.array(src)})")
        self.emit(1, f"return [{', '.join(outputs)}]")
        entry = graph.name
        header = [f"# tracegrad CUDA kernels: graph {entry}, {len(graph.nodes)} nodes in {len(plan.units)} units, "
                  f"{len(self.kernels)} kernels", "import math", "", "import numpy as np", "from numba import cuda", "",
                  "from tracegrad.backends.numba_cuda import runtime as rt",
                  "from tracegrad.primitives.indexing import out_of_bounds", "",
                  "THREADS = rt.THREADS  # per block: a compile-time constant of the shared-memory reductions", "", ""]
        kernels = [line for kernel in self.kernels for line in kernel.source()]
        driver = [f"def {entry}(P, inputs):",
                  f'    """Run graph {entry} on one array per graph input (device arrays; host 0-d arrays for '
                  f'hyper and number inputs); P: the Program (constants, launch count)."""', *self.driver]
        constants = tuple(v.id for v in plan.arguments if v.const is not None)
        footer = ["", "", f"ENTRY = {entry}", f"CONSTANTS = {constants}  # ids of the constant inputs P uploads"]
        return "\n".join(header + kernels + driver + footer) + "\n"

    def _guards(self, checks: list, v: Value) -> None:
        for k, expected in checks:
            value = self.name(v) if v.id in self.scalars else f"rt.item({self.array(v)})"
            self.emit(1, f"if {value} != {literal(expected, v.type.dtype.np)}:  # guard {k}: a device-to-host copy")
            self.emit(2, f"raise rt.GuardFailed({k})")

    def _single(self, n: Node) -> None:
        """A unit of one node that is no loop: its lowering."""
        from .lowerings import LOWERINGS
        lower = single_lowering(self, n, LOWERINGS, "CUDA")
        if lower is not None:
            lower(self.plan, self, n)


class LoopKernel:
    """The kernel of one loop unit (a LoopPlan): which axes threads share out, which they walk in order."""

    def __init__(self, code: Emitter, loop: LoopPlan) -> None:
        self.code, self.loop = code, loop
        depth = loop.depth
        # full reductions combine across threads; the others' axes are walked inside a thread
        self.full = [r for r in loop.reductions if depth and set(r.attrs["axes"]) == set(range(depth))]
        self.serial = sorted({a for r in loop.reductions if r not in self.full for a in r.attrs["axes"]})
        self.parallel = [a for a in range(depth) if a not in self.serial]
        # a reduction over the innermost serial axes (a full one: over everything) keeps a scalar accumulator,
        # started at this serial level; the others accumulate into their result, filled with the identity first
        self.level = {}
        for r in loop.reductions:
            axes = sorted(r.attrs["axes"])
            suffix = axes == self.serial[len(self.serial) - len(axes):]
            self.level[r.out.id] = -1 if r in self.full else len(self.serial) - len(axes) if suffix else None

    def accumulator(self, r: Node) -> np.dtype:
        """A scalar accumulator of a float32 sum or product runs in float64, as the CPU backend's does."""
        widened = self.level[r.out.id] is not None and r.prim in ("sum", "prod") and \
            r.out.type.dtype.np == np.float32
        return np.dtype(np.float64) if widened else np.dtype(r.out.type.dtype.np)

    def start(self, r: Node) -> str:
        dtype = self.accumulator(r)
        return literal(CUDA.reduction(REGISTRY[r.prim])[0](dtype), dtype)

    def final(self, r: Node, value: str) -> str:
        dtype = r.out.type.dtype.np
        return value if self.accumulator(r) == dtype else f"{scalar_type(dtype)}({value})"

    def emit(self) -> None:
        """Allocate the unit's arrays, write its kernel (and a fold kernel for full reductions), launch them."""
        code, loop = self.code, self.loop
        comment = ", ".join(f"%{n.out.id} {n.prim}" for n in loop.unit)
        code.emit(1, f"# {comment}")
        for n in loop.unit:
            prim = REGISTRY[n.prim]
            if (CUDA.reduction(prim) if n in loop.reductions else CUDA.elementwise(prim, n.attrs)) is None:
                raise Unsupported(f"no CUDA lowering for primitive {n.prim!r}: declare "
                                  f"lowerings={{'cuda': '<template>'}} on it")
        for n in loop.stored:
            dst = loop.in_place.get(n.out.id)
            if dst is not None:
                code.held_in[n.out.id] = code.name(dst)
            else:
                code.allocate(n.out)
        elements = math.prod(loop.shape[a] for a in self.parallel)
        for r in loop.reductions:
            code.allocate(r.out)
            if self.level[r.out.id] is None:
                code.emit(1, f"rt.fill(P, {code.name(r.out)}, {self.start(r)})")
            if r in self.full:
                code.emit(1, f"p{r.out.id} = cuda.device_array(rt.blocks({elements}), "
                             f"{scalar_type(self.accumulator(r))})  # one partial result per block")
        kernel = code.kernel(comment)
        code.loop_nests += 1
        self._body(kernel, elements)
        code.launch(kernel, elements)
        if self.full:
            self._fold(comment)

    def _body(self, kernel: Kernel, elements: int) -> None:
        loop, shape = self.loop, self.loop.shape
        for r in self.full:
            kernel.emit(1, f"a{r.out.id} = {self.start(r)}  # this thread's share")
        kernel.emit(1, f"for e in range(cuda.grid(1), {elements}, cuda.gridsize(1)):")
        flat_index(kernel, 2, [(a, shape[a]) for a in self.parallel])
        indent = [2]  # indent[k]: the depth of statements inside the first k serial loops
        for k in range(len(self.serial) + 1):
            for r in loop.reductions:
                if self.level[r.out.id] == k:
                    kernel.emit(indent[k], f"a{r.out.id} = {self.start(r)}")
            if k == len(self.serial):
                break
            axis = self.serial[k]
            if shape[axis] != 1:
                kernel.emit(indent[k], f"for i{axis} in range({shape[axis]}):")
            indent.append(indent[k] + (shape[axis] != 1))
        for line in self._statements(kernel):
            kernel.emit(indent[-1], line)
        for k in range(len(self.serial), -1, -1):
            for r in loop.reductions:
                if self.level[r.out.id] == k:
                    target = self.code.ref(kernel, r.out, loop.output_index(r))
                    kernel.emit(indent[k], f"{target} = {self.final(r, f'a{r.out.id}')}")
        for r in self.full:
            self._block_reduce(kernel, r)

    def _statements(self, kernel: Kernel) -> list:
        """The innermost statements: one per node, then the stores of values needed elsewhere."""
        loop, code, lines = self.loop, self.code, []
        for n in loop.unit:
            prim = REGISTRY[n.prim]
            if n not in loop.reductions:
                dtype = n.out.type.dtype.np
                text = CUDA.elementwise(prim, n.attrs).format(*(self.read(kernel, o) for o in n.operands),
                                                             T=scalar_type(dtype), I=integral_from(dtype))
                lines.append(f"t{n.out.id} = {text}")
                continue
            x, dtype = self.read(kernel, n.operands[0]), self.accumulator(n)
            if n.operands[0].type.dtype.np != dtype:
                x = f"{scalar_type(dtype)}({x})"
            acc = f"a{n.out.id}" if self.level[n.out.id] is not None else code.ref(kernel, n.out, loop.output_index(n))
            lines.append(f"{acc} = {CUDA.reduction(prim)[1].format(x, acc=acc, T=scalar_type(dtype))}")
        for n in loop.stored:
            lines.append(f"{code.ref(kernel, n.out, loop.index)} = t{n.out.id}")
        return lines

    def read(self, kernel: Kernel, o: Value) -> str:
        """An operand inside the loop: this unit's value, a literal or scalar, or an element of an array."""
        if o.id in self.loop.members:
            return f"t{o.id}"
        return self.code.element(kernel, o, broadcast_index(o.type.shape, self.loop.shape))

    def _block_reduce(self, kernel: Kernel, r: Node) -> None:
        """Combine the threads' shares of full reduction r in shared memory (a tree); thread 0 stores the
        block's partial. Every thread of the block gets here (after its grid-stride loop): syncthreads is safe."""
        rid, combine = r.out.id, CUDA.reduction(REGISTRY[r.prim])[1]
        kernel.emit(1, f"shared{rid} = cuda.shared.array(THREADS, {scalar_type(self.accumulator(r))})")
        kernel.emit(1, f"shared{rid}[cuda.threadIdx.x] = a{rid}")
        kernel.emit(1, "cuda.syncthreads()")
        kernel.emit(1, "half = THREADS // 2")
        kernel.emit(1, "while half > 0:")
        kernel.emit(2, "if cuda.threadIdx.x < half:")
        mine, other = f"shared{rid}[cuda.threadIdx.x]", f"shared{rid}[cuda.threadIdx.x + half]"
        kernel.emit(3, f"{mine} = {combine.format(other, acc=mine)}")
        kernel.emit(2, "cuda.syncthreads()")
        kernel.emit(2, "half //= 2")
        kernel.emit(1, "if cuda.threadIdx.x == 0:")
        kernel.emit(2, f"{kernel.param(f'p{rid}')}[cuda.blockIdx.x] = shared{rid}[0]")

    def _fold(self, comment: str) -> None:
        """A one-thread kernel folding each full reduction's per-block partials into its result."""
        code = self.code
        kernel = code.kernel(f"the blocks' partial results of {comment}, folded")
        kernel.emit(1, "if cuda.grid(1) == 0:")
        for r in self.full:
            rid, combine = r.out.id, CUDA.reduction(REGISTRY[r.prim])[1]
            partial = kernel.param(f"p{rid}")
            kernel.emit(2, f"a = {partial}[0]")
            kernel.emit(2, f"for c in range(1, {partial}.shape[0]):")
            kernel.emit(3, f"a = {combine.format(f'{partial}[c]', acc='a')}")
            target = code.ref(kernel, r.out, self.loop.output_index(r))
            kernel.emit(2, f"{target} = {self.final(r, 'a')}")
        code.launch(kernel, 1)


def generate(graph: Graph) -> str:
    """The source of a module whose ``ENTRY(P, inputs)`` runs ``graph`` (Unsupported when a node has no lowering)."""
    return Emitter(plan(graph, parallel=False)).module()


def report(graph: Graph) -> KernelReport:
    """``generate``'s source with its counts: loop-unit kernels (loop nests) and all kernels."""
    emitter = Emitter(plan(graph, parallel=False))
    return KernelReport(emitter.module(), emitter.loop_nests, kernels=len(emitter.kernels))

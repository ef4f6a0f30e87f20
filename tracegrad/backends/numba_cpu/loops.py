"""The loop nest of one loop unit, planned (``LoopPlan``) and emitted (``LoopNest``): elementwise statements,
stores and fused reductions."""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Mapping

import numpy as np

from ...ir.graph import Node, Value
from ...primitives import REGISTRY
from .scalars import elementwise, reduction
from .source import broadcast_index, index_text, literal, numba_threads, scalar_type

if TYPE_CHECKING:
    from .codegen import Emitter

# Loops of fewer elements run serially under numba-parallel too: measured on this project's 2-core
# machines (an elementwise + Adam step), prange made loops of 65k and 262k elements 1.4-2.4x slower,
# broke even at 1M and was 1.5x faster at 2M; a serial kernel also compiles in half the time.
PARALLEL_MIN_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class LoopPlan:
    """One loop unit's nest, planned: its shape, what it stores, and how each reduction accumulates.

    Reductions over the innermost axes keep a scalar accumulator ``a<id>``, started at the loop level
    where the reduced axes begin; others accumulate into their output array. A float32 sum or product
    in a scalar runs in float64: summing a whole tensor in float32, one element after the other, would
    lose digits that NumPy's pairwise sum keeps. With numba-parallel, the outer loop of a large nest is
    a prange; reductions over axis 0 would race there, so the outer axis is then cut into one chunk per
    thread, each accumulating into its own row ``p<id>[c]`` of a partial result, and the rows are
    combined after the loop.
    """

    unit: tuple
    shape: tuple                     # the loop's shape (a reduction's operand's, for a unit it starts)
    reductions: tuple                # the unit's reductions, accumulated in the nest
    members: frozenset               # ids of the values the body computes element by element
    stored: tuple                    # element-wise nodes whose values outlive the loop
    in_place: Mapping[int, Value]    # stored value id -> the caller's buffer it is stored into
    registers: frozenset             # ids of 0-d results held as scalar variables, not arrays
    level: Mapping[int, int | None]  # reduction id -> loop level of its scalar accumulator, None: its array
    accumulator: Mapping[int, np.dtype]  # reduction id -> the dtype it accumulates in
    parallel: bool                   # the outer loop is a prange
    partial: frozenset               # ids of reductions accumulated per chunk of rows, folded after the loop

    @classmethod
    def of(cls, unit: tuple, readers: Mapping, kept: frozenset, in_place: Mapping, parallel: bool) -> "LoopPlan":
        """The nest of loop unit ``unit``; ``readers``, ``kept`` and ``in_place`` as in the kernel's Plan."""
        reductions = tuple(n for n in unit if reduction(REGISTRY[n.prim]) is not None)
        first = unit[0]
        shape = first.operands[0].type.shape if first in reductions else first.out.type.shape
        depth = len(shape)
        members = frozenset(n.out.id for n in unit if n not in reductions)
        stored = tuple(n for n in unit if n.out.id in members and
                       (n.out.id in kept or any(r not in unit for r in readers.get(n.out.id, ()))))
        # 0-d results stay scalar variables (no 0-d arrays to allocate, store and read back)
        registers = {n.out.id for n in stored if depth == 0 and n.out.id not in in_place}
        registers |= {r.out.id for r in reductions if not r.out.type.shape}
        level, accumulator = {}, {}
        for r in reductions:
            axes = tuple(sorted(r.attrs["axes"]))
            inner = axes == tuple(range(depth - len(axes), depth))
            level[r.out.id] = depth - len(axes) if inner else None
            widened = inner and r.prim in ("sum", "prod") and r.out.type.dtype.np == np.float32
            accumulator[r.out.id] = np.dtype(np.float64) if widened else np.dtype(r.out.type.dtype.np)
        parallel = parallel and depth > 0 and math.prod(shape) >= PARALLEL_MIN_ELEMENTS
        partial = frozenset(r.out.id for r in reductions if parallel and 0 in r.attrs["axes"])
        stores_in_place = {n.out.id: in_place[n.out.id] for n in stored if n.out.id in in_place}
        return cls(unit, shape, reductions, members, stored, MappingProxyType(stores_in_place), frozenset(registers),
                   MappingProxyType(level), MappingProxyType(accumulator), parallel, partial)

    @property
    def depth(self) -> int:
        """The number of the loop's dims."""
        return len(self.shape)

    @property
    def chunks(self) -> str:
        """The variable holding the number of chunks of rows of a chunked parallel loop."""
        return f"chunks{self.unit[0].out.id}"

    @property
    def index(self) -> list:
        """The loop index of each dim; a dim of size 1 gets no loop and is indexed by 0."""
        return ["0" if size == 1 else f"i{k}" for k, size in enumerate(self.shape)]

    def output_index(self, r: Node) -> list:
        """Where loop element (i0, i1, ...) lands in reduction r's result."""
        axes, keep, index = r.attrs["axes"], r.attrs["keepdim"], self.index
        return [("0" if j in axes else index[j]) for j in range(self.depth) if keep or j not in axes]

    def start(self, r: Node) -> str:
        """The reduction's identity, typed as its accumulator."""
        dtype = self.accumulator[r.out.id]
        return literal(reduction(REGISTRY[r.prim])[0](dtype), dtype)

    def final(self, r: Node, value: str) -> str:
        """An accumulated value cast back to the reduction's dtype."""
        dtype = r.out.type.dtype.np
        return value if self.accumulator[r.out.id] == dtype else f"{scalar_type(dtype)}({value})"


class LoopNest:
    """Emits one planned loop nest (a LoopPlan) through the kernel's emitter."""

    def __init__(self, loop: LoopPlan, code: "Emitter") -> None:
        self.loop, self.code = loop, code

    # ---- before the loop ----------------------------------------------------------------------------

    def allocate(self) -> None:
        """Arrays for stored values and reduction results, partial rows, hoisted 0-d operands."""
        loop, code = self.loop, self.code
        for n in loop.stored:
            if n.out.id in loop.registers:
                continue
            dst = loop.in_place.get(n.out.id)
            if dst is not None:
                code.hold(n.out.id, code.name(dst))
            else:
                code.allocate(code.name(n.out), n.out.type.shape, n.out.type.dtype.np)
            code.layout[n.out.id] = "C"
        if loop.partial:
            code.emit(1, f"{loop.chunks} = {min(numba_threads(), loop.shape[0])}")
        for r in loop.reductions:
            rid = r.out.id
            if rid in loop.partial:
                rows = [loop.chunks] + [str(size) for size in (r.out.type.shape if loop.level[rid] is None else ())]
                code.allocate(f"p{rid}", f"({', '.join(rows)},)", loop.accumulator[rid], fill=loop.start(r))
            if rid in loop.registers:
                continue
            starts_filled = loop.level[rid] is None and rid not in loop.partial
            code.allocate(code.name(r.out), r.out.type.shape, r.out.type.dtype.np,
                          fill=loop.start(r) if starts_filled else None)
            code.layout[rid] = "C"
        for n in loop.unit:  # 0-d operands of other units are read once, before their first loop
            for o in n.operands:
                if o.id not in loop.members and o.id not in code.scalars and o.type.shape == () \
                        and o.id not in code.hoisted:
                    code.hoisted[o.id] = f"s{o.id}"
                    code.emit(1, f"s{o.id} = {code.name(o)}.item()")

    # ---- the loop body ------------------------------------------------------------------------------

    def body(self) -> list:
        """The innermost statements: one per node, then the stores of values needed elsewhere."""
        loop, lines = self.loop, []
        for n in loop.unit:
            prim = REGISTRY[n.prim]
            if n not in loop.reductions:
                text = elementwise(prim, n.attrs).format(*(self.read(o) for o in n.operands),
                                                         T=scalar_type(n.out.type.dtype.np))
                lines.append(f"t{n.out.id} = {text}")
                continue
            x, dtype = self.read(n.operands[0]), loop.accumulator[n.out.id]
            if n.operands[0].type.dtype.np != dtype:
                x = f"{scalar_type(dtype)}({x})"
            acc = self.accumulate_into(n)
            lines.append(f"{acc} = {reduction(prim)[1].format(x, acc=acc, T=scalar_type(dtype))}")
        element = f"[{index_text(loop.index)}]"
        for n in loop.stored:
            if n.out.id in loop.registers:
                self.code.hold(n.out.id, f"t{n.out.id}")  # outside any loop: t<id> is the value
            else:
                lines.append(f"{self.code.name(n.out)}{element} = t{n.out.id}")
        return lines

    def read(self, o: Value) -> str:
        """An operand inside the loop: this unit's register, a scalar, or an element of an array."""
        code = self.code
        if o.id in self.loop.members:
            return f"t{o.id}"
        if o.id in code.scalars:
            return code.name(o)
        if o.id in code.hoisted:
            return code.hoisted[o.id]
        return code.element(o, broadcast_index(o.type.shape, self.loop.shape))

    def accumulate_into(self, r: Node) -> str:
        """Where reduction r accumulates: its scalar accumulator, its chunk's row, or its result's element."""
        loop = self.loop
        if loop.level[r.out.id] is not None:
            return f"a{r.out.id}"
        if r.out.id in loop.partial:
            return f"p{r.out.id}[{index_text(['c'] + loop.output_index(r))}]"
        return f"{self.code.name(r.out)}[{index_text(loop.output_index(r))}]"

    def store_target(self, r: Node, index: list) -> str:
        """Where a reduction's result goes: its scalar variable, or an element of its array."""
        name = self.code.name(r.out)
        return name if r.out.id in self.loop.registers else f"{name}[{index_text(index)}]"

    # ---- the nest -----------------------------------------------------------------------------------

    def emit_loops(self, body: list) -> None:
        """The loops around ``body``, with each scalar accumulator started and stored at its level."""
        loop, code = self.loop, self.code
        shape, depth = loop.shape, loop.depth
        # indent[k]: the indentation of statements at loop level k (inside loops 0..k-1). A dimension of
        # size 1 gets no loop (its index is 0): fewer statements for Numba to compile.
        indent = [2 if loop.partial else 1]
        if loop.partial:
            code.loop(1, "c", loop.chunks, parallel=True)
        for k in range(depth + 1):
            for r in loop.reductions:
                if loop.level[r.out.id] == k:
                    code.emit(indent[k], f"a{r.out.id} = {loop.start(r)}")
            if k == depth:
                break
            if k == 0 and loop.partial:
                code.loop(indent[k], "i0", f"c * {shape[0]} // {loop.chunks}, (c + 1) * {shape[0]} // {loop.chunks}")
            elif shape[k] == 1:
                indent.append(indent[k])
                continue
            else:
                code.loop(indent[k], f"i{k}", shape[k], parallel=loop.parallel and k == 0)
            indent.append(indent[k] + 1)
        for line in body:
            code.emit(indent[depth], line)
        for k in range(depth, -1, -1):
            for r in loop.reductions:
                if loop.level[r.out.id] != k:
                    continue
                if r.out.id in loop.partial:
                    code.emit(indent[k], f"p{r.out.id}[c] = a{r.out.id}")
                elif r.out.id in loop.registers and loop.final(r, "a") == "a":
                    code.hold(r.out.id, f"a{r.out.id}")  # a 0-d result of its own dtype: the accumulator is it
                else:
                    code.emit(indent[k], f"{self.store_target(r, loop.output_index(r))} = "
                                         f"{loop.final(r, f'a{r.out.id}')}")

    def fold_partial_rows(self) -> None:
        """After a chunked parallel loop: combine each reduction's per-chunk rows into its result."""
        loop, code = self.loop, self.code
        for r in loop.reductions:
            if r.out.id not in loop.partial:
                continue
            combine = reduction(REGISTRY[r.prim])[1]
            kept = [] if loop.level[r.out.id] is not None else [f"j{k}" for k in range(len(r.out.type.shape))]
            for k, size in enumerate(r.out.type.shape if kept else ()):
                code.loop(1 + k, f"j{k}", size)
            inner = 1 + len(kept)
            code.emit(inner, f"a = p{r.out.id}[{index_text(['0'] + kept)}]")
            code.loop(inner, "c", f"1, {loop.chunks}")
            row = f"p{r.out.id}[{index_text(['c'] + kept)}]"
            code.emit(inner + 1, f"a = {combine.format(row, acc='a')}")
            code.emit(inner, f"{self.store_target(r, kept)} = {loop.final(r, 'a')}")

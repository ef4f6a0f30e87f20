"""The loop nest of one loop unit: elementwise statements, stores and fused reductions."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ...ir.graph import Node, Value
from ...primitives import REGISTRY
from .scalars import elementwise, reduction
from .source import broadcast_index, index_text, literal, numba_threads, scalar_type

if TYPE_CHECKING:
    from .codegen import _Generator

# Loops of fewer elements run serially under numba-parallel too: measured on this project's 2-core
# machines (an elementwise + Adam step), prange made loops of 65k and 262k elements 1.4-2.4x slower,
# broke even at 1M and was 1.5x faster at 2M; a serial kernel also compiles in half the time.
PARALLEL_MIN_ELEMENTS = 1 << 20


class LoopNest:
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
        self.reductions = [n for n in unit if reduction(REGISTRY[n.prim]) is not None]
        first = unit[0]
        self.shape = first.operands[0].type.shape if first in self.reductions else first.out.type.shape
        self.depth = depth = len(self.shape)
        self.members = {n.out.id for n in unit if n not in self.reductions}
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
        self.hoisted = gen.hoisted  # 0-d operands of other units, read once before their first loop
        # the loop index of each dim; a dim of size 1 gets no loop and is indexed by 0
        self.index = ["0" if size == 1 else f"i{k}" for k, size in enumerate(self.shape)]

    # ---- before the loop ----------------------------------------------------------------------------

    def allocate(self) -> None:
        """Arrays for stored values and reduction results, partial rows, hoisted 0-d operands."""
        gen = self.gen
        for n in self.stored:
            if n.out.id in self.registers:
                continue
            dst = gen.in_place.get(n.out.id)
            if dst is not None:
                gen.held_in[n.out.id] = gen.name(dst)
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
            if n not in self.reductions:
                text = elementwise(prim, n.attrs).format(*(self.read(o) for o in n.operands),
                                                         T=scalar_type(n.out.type.dtype.np))
                lines.append(f"t{n.out.id} = {text}")
                continue
            x, dtype = self.read(n.operands[0]), self.accumulator[n.out.id]
            if n.operands[0].type.dtype.np != dtype:
                x = f"{scalar_type(dtype)}({x})"
            acc = self.accumulate_into(n)
            lines.append(f"{acc} = {reduction(prim)[1].format(x, acc=acc, T=scalar_type(dtype))}")
        element = f"[{index_text(self.index)}]"
        for n in self.stored:
            if n.out.id in self.registers:
                self.gen.held_in[n.out.id] = f"t{n.out.id}"  # outside any loop: t<id> is the value
            else:
                lines.append(f"{self.gen.name(n.out)}{element} = t{n.out.id}")
        return lines

    def read(self, o: Value) -> str:
        """An operand inside the loop: this unit's register, a scalar, or an element of an array."""
        if o.id in self.members:
            return f"t{o.id}"
        if o.id in self.gen.scalars:
            return self.gen.name(o)
        if o.id in self.hoisted:
            return self.hoisted[o.id]
        return self.gen.element(o, broadcast_index(o.type.shape, self.shape))

    def output_index(self, r: Node) -> list:
        """Where loop element (i0, i1, ...) lands in reduction r's result."""
        axes, keep = r.attrs["axes"], r.attrs["keepdim"]
        return [("0" if j in axes else self.index[j]) for j in range(self.depth) if keep or j not in axes]

    def accumulate_into(self, r: Node) -> str:
        if self.level[r.out.id] is not None:
            return f"a{r.out.id}"
        if r.out.id in self.partial:
            return f"p{r.out.id}[{index_text(['c'] + self.output_index(r))}]"
        return f"{self.gen.name(r.out)}[{index_text(self.output_index(r))}]"

    def start(self, r: Node) -> str:
        """The reduction's identity, typed as its accumulator."""
        dtype = self.accumulator[r.out.id]
        return literal(reduction(REGISTRY[r.prim])[0](dtype), dtype)

    def final(self, r: Node, value: str) -> str:
        """An accumulated value cast back to the reduction's dtype."""
        dtype = r.out.type.dtype.np
        return value if self.accumulator[r.out.id] == dtype else f"{scalar_type(dtype)}({value})"

    def store_target(self, r: Node, index: list) -> str:
        """Where a reduction's result goes: its scalar variable, or an element of its array."""
        return self.gen.name(r.out) if r.out.id in self.registers else f"{self.gen.name(r.out)}[{index_text(index)}]"

    # ---- the nest -----------------------------------------------------------------------------------

    def emit_loops(self, body: list) -> None:
        """The loops around ``body``, with each scalar accumulator started and stored at its level."""
        gen, shape, depth = self.gen, self.shape, self.depth
        # indent[k]: the indentation of statements at loop level k (inside loops 0..k-1). A dimension of
        # size 1 gets no loop (its index is 0): fewer statements for Numba to compile.
        indent = [2 if self.partial else 1]
        if self.partial:
            gen.emit(1, f"for c in prange({self.chunks}):")
            gen.parallel_loops += 1
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
                indent.append(indent[k])
                continue
            else:
                parallel = self.parallel and k == 0
                gen.emit(indent[k], f"for i{k} in {'prange' if parallel else 'range'}({shape[k]}):")
                gen.parallel_loops += parallel
            indent.append(indent[k] + 1)
        for line in body:
            gen.emit(indent[depth], line)
        for k in range(depth, -1, -1):
            for r in self.reductions:
                if self.level[r.out.id] != k:
                    continue
                if r.out.id in self.partial:
                    gen.emit(indent[k], f"p{r.out.id}[c] = a{r.out.id}")
                elif r.out.id in self.registers and self.final(r, "a") == "a":
                    gen.held_in[r.out.id] = f"a{r.out.id}"  # a 0-d result of its own dtype: the accumulator is it
                else:
                    gen.emit(indent[k], f"{self.store_target(r, self.output_index(r))} = "
                                        f"{self.final(r, f'a{r.out.id}')}")

    def fold_partial_rows(self) -> None:
        """After a chunked parallel loop: combine each reduction's per-chunk rows into its result."""
        gen = self.gen
        for r in self.reductions:
            if r.out.id not in self.partial:
                continue
            combine = reduction(REGISTRY[r.prim])[1]
            kept = [] if self.level[r.out.id] is not None else [f"j{k}" for k in range(len(r.out.type.shape))]
            for k, size in enumerate(r.out.type.shape if kept else ()):
                gen.emit(1 + k, f"for j{k} in range({size}):")
            inner = 1 + len(kept)
            gen.emit(inner, f"a = p{r.out.id}[{index_text(['0'] + kept)}]")
            gen.emit(inner, f"for c in range(1, {self.chunks}):")
            row = f"p{r.out.id}[{index_text(['c'] + kept)}]"
            gen.emit(inner + 1, f"a = {combine.format(row, acc='a')}")
            gen.emit(inner, f"{self.store_target(r, kept)} = {self.final(r, 'a')}")

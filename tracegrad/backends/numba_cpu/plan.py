"""The plan of a kernel: what the emitter (``codegen.py``) writes, decided before any line is written.

A plan is analysis only: built once per graph by ``plan``, never changed afterwards. It holds the units in
the order they run (``schedule.py``), where each value is computed and who reads its values, the results
the step must keep, which write-backs a loop stores in place, which products are computed transposed,
which outputs go straight into the caller's buffers, which reshapes emit nothing, which constants become
literals, and the plan of each loop nest (``loops.LoopPlan``). Everything that changes while lines are
written (variable names, layouts, hoisted scalars, counters) belongs to the emitter.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from typing import Mapping

from ...ir.graph import Graph, Node, Value
from ...primitives import REGISTRY
from .loops import LoopPlan
from .lowerings import checks_indices
from .scalars import elementwise, in_loop
from .schedule import schedule


@dataclass(frozen=True)
class Plan:
    """A graph's kernel, planned (see the module's docstring); mappings are read-only views."""

    graph: Graph
    parallel: bool
    units: tuple                             # tuples of nodes, in the order the kernel runs them
    loops: tuple                             # per unit: its LoopPlan, None for a unit that is one other node
    position: Mapping[int, int]              # value id -> the unit computing it
    producer: Mapping[int, Node]             # value id -> the node computing it
    readers: Mapping[int, tuple]             # value id -> nodes reading its values (a count reads only a shape)
    kept: frozenset                          # ids of outputs, guarded values and write-back sources
    view_root: Mapping[int, int]             # value id -> the graph input it is a view of
    in_place: Mapping[int, Value]            # src id -> the input buffer its loop stores it into
    transposed_products: Mapping[int, Node]  # matmul result id -> the matmul, computed by its transpose
    direct_outputs: frozenset                # ids of outputs computed straight into the caller's buffer
    aliases: Mapping[int, Value]             # reshape result id -> its source, which its readers index
    arguments: tuple                         # the graph inputs the entry function takes, in order
    literals: frozenset                      # ids of constants of equal elements, inlined as one typed scalar

    @property
    def largest_loop(self) -> int:
        """Elements of the largest loop nest (0 without any)."""
        return max((math.prod(loop.shape) for loop in self.loops if loop is not None), default=0)


def plan(graph: Graph, parallel: bool) -> Plan:
    """The plan of ``graph``'s kernel (``parallel``: numba-parallel's prange loops)."""
    units = tuple(tuple(unit) for unit in schedule(graph))
    position = {n.out.id: i for i, unit in enumerate(units) for n in unit}
    producer = {n.out.id: n for n in graph.nodes}
    # a count reads only its operand's shape: that operand need not be stored for it
    readers = {vid: readers for vid, nodes in graph.readers().items()
               if (readers := tuple(n for n in nodes if REGISTRY[n.prim].reads_values))}
    kept = frozenset(graph.results())
    view_root = _view_roots(graph)
    in_place = _in_place_writebacks(graph, units, position, producer, readers, view_root)
    transposed = _transposed_products(graph, position, producer, readers, kept)
    arguments, literals = _arguments(graph, readers, kept)
    loops = tuple(LoopPlan.of(unit, readers, kept, in_place, parallel) if in_loop(REGISTRY[unit[0].prim]) else None
                  for unit in units)
    return Plan(graph, parallel, units, loops, MappingProxyType(position), MappingProxyType(producer),
                MappingProxyType(readers), kept, MappingProxyType(view_root), MappingProxyType(in_place),
                MappingProxyType(transposed), _direct_outputs(graph, producer, in_place, transposed),
                MappingProxyType(_unit_reshapes(graph, readers, kept)), arguments, literals)


def _arguments(graph: Graph, readers: dict, kept: frozenset) -> tuple[tuple, frozenset]:
    """(the inputs the entry function takes, the constants inlined as literals); unused constants are neither."""
    used = set(readers) | kept | {dst.id for dst, _ in graph.writebacks}
    arguments, literals = [], set()
    for v in graph.inputs:
        if v.const is not None and v.id not in used:
            continue
        if v.const is not None and v.const.size and (v.const == v.const.flat[0]).all():
            literals.add(v.id)
        else:
            arguments.append(v)
    return tuple(arguments), frozenset(literals)


def _view_roots(graph: Graph) -> dict:
    """value id -> the graph input it is a view of (permutes, reshapes and slices of inputs)."""
    roots = {v.id: v.id for v in graph.inputs}
    for n in graph.nodes:
        if n.prim in ("permute", "reshape", "index") and n.operands[0].id in roots and \
                not (n.prim == "index" and n.attrs["key"].has_tensors):
            roots[n.out.id] = roots[n.operands[0].id]
    return roots


def _in_place_writebacks(graph: Graph, units: tuple, position: dict, producer: dict, readers: dict,
                         view_root: dict) -> dict:
    """src id -> dst input: write-backs whose loop can store the new value straight into the buffer.

    Safe when the value is computed element by element in a loop of the buffer's shape, after every
    guard and index check (a kernel that raises has changed nothing), and nothing reads the old value
    afterwards (reads in that loop itself are at the same index and come before the stores at the
    end of the loop body).
    """
    dst_count: dict[int, int] = {}
    src_count: dict[int, int] = {}
    for dst, src in graph.writebacks:
        dst_count[dst.id] = dst_count.get(dst.id, 0) + 1
        src_count[src.id] = src_count.get(src.id, 0) + 1
    last_check = max([position.get(v.id, -1) for v, _, _ in graph.guards] +
                     [position[n.out.id] for n in graph.nodes if checks_indices(n)], default=-1)
    outputs = {v.id for v in graph.outputs}
    written_from = {src.id for _, src in graph.writebacks}
    chosen = {}
    for dst, src in graph.writebacks:
        n = producer.get(src.id)
        if n is None or elementwise(REGISTRY[n.prim], n.attrs) is None or src.type != dst.type:
            continue
        if dst_count[dst.id] > 1 or src_count[src.id] > 1 or src.id in outputs or dst.id in outputs \
                or dst.id in written_from:
            continue
        where = position[src.id]
        if where <= last_check:
            continue
        if _old_value_read_after(dst, where, units[where], position, readers, view_root):
            continue
        chosen[src.id] = dst
    return chosen


def _old_value_read_after(dst: Value, where: int, unit: tuple, position: dict, readers: dict,
                          view_root: dict) -> bool:
    """Whether input dst's old value (or a view of it) is read after unit ``where``, or in it by another node
    than an element-wise read of dst itself."""
    members = {n.out.id for n in unit}
    for vid, root in view_root.items():
        if root != dst.id:
            continue
        for reader in readers.get(vid, ()):
            at = position[reader.out.id]
            if at > where:
                return True
            if at == where and (vid != dst.id or reader.out.id not in members):
                return True
    return False


def _transposed_products(graph: Graph, position: dict, producer: dict, readers: dict, kept: frozenset) -> dict:
    """matmul result id -> the matmul, for products used only by the transpose right after them.

    The transpose then computes b.T @ a.T instead: the same numbers, row-major in the order the
    loops read them (a weight gradient read through a transposed view strides across memory).
    """
    products = {}
    for n in graph.nodes:
        if n.prim != "permute" or tuple(n.attrs["dims"]) != (1, 0):
            continue
        x = n.operands[0]
        made_by = producer.get(x.id)
        if made_by is not None and made_by.prim == "matmul" and len(x.type.shape) == 2 and \
                readers.get(x.id) == (n,) and x.id not in kept and position[n.out.id] == position[x.id] + 1:
            products[x.id] = made_by
    return products


def _direct_outputs(graph: Graph, producer: dict, in_place: dict, transposed: dict) -> frozenset:
    """Ids of the outputs computed straight into the buffer the caller passes for them.

    Those are the arrays a loop or a matrix product makes; other outputs (scalars, views, inputs,
    an output returned twice) are copied into their buffer at the end.
    """
    direct = set()
    ids = [v.id for v in graph.outputs]
    for v in graph.outputs:
        n = producer.get(v.id)
        if n is None or ids.count(v.id) > 1 or not v.type.shape or v.id in in_place:
            continue
        product = n.prim == "matmul" and v.id not in transposed
        by_transpose = n.prim == "permute" and n.operands[0].id in transposed
        if in_loop(REGISTRY[n.prim]) or product or by_transpose:
            direct.add(v.id)
    return frozenset(direct)


def _unit_reshapes(graph: Graph, readers: dict, kept: frozenset) -> dict:
    """value id -> its source, for reshapes that only add or drop size-1 dims and are read only
    element by element (by loops, or as the index or values of gather and scatter_add).

    Those reshapes emit nothing: their readers index the source instead (a reshape in Numba costs
    ~0.1 s of compile time, and a copy when the source is a caller's array)."""
    element_reads = {"gather": (1,), "scatter_add": (1, 2)}
    aliases = {}
    for n in graph.nodes:
        x, out = n.operands[0] if n.operands else None, n.out
        if n.prim != "reshape" or not out.type.shape or not x.type.shape or out.id in kept or \
                [s for s in out.type.shape if s != 1] != [s for s in x.type.shape if s != 1]:
            continue
        if all(in_loop(REGISTRY[r.prim]) or
               all(k in element_reads.get(r.prim, ()) for k, o in enumerate(r.operands) if o.id == out.id)
               for r in readers.get(out.id, ())):
            aliases[out.id] = x
    return aliases

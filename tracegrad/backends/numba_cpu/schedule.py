"""The order a kernel runs a graph's nodes in: units, each one loop nest or one other node.

Loop nests fuse elementwise nodes of one shape with the reductions of their values; which nodes a loop
can compute is this backend's question (``scalars.in_loop``).
"""
from __future__ import annotations

from ...ir.graph import Graph, Node
from ...primitives import REGISTRY
from .scalars import elementwise, in_loop, reduction


def loop_primitive(n: Node) -> bool:
    """True for nodes a loop nest computes element by element: elementwise ops, expand, reductions."""
    return in_loop(REGISTRY[n.prim])


def schedule(graph: Graph) -> list[list[Node]]:
    """The nodes in the units a code generator emits, in a valid order: each unit one loop nest or one node.

    A loop node joins the unit of an operand computed in a loop of its shape (a reduction joins the
    loop of its operand and becomes an accumulation in it). A join is refused when another operand
    depends on that unit through something outside it (a matmul of its values, or a reduction it
    accumulates, which is only complete after the loop): the merged loop would need its own result.
    When a node joins a loop, the loops of its other operands that have the same shape and no path
    to or from it join as well (a backward pass reading forward values becomes one pass over memory).
    Then an elementwise chain whose values only a later loop of the same shape reads moves into that
    loop, when what the chain reads is stored anyway (``_sink_into_reader``). The units are then
    ordered so that each comes after every unit it reads from (a node that reads only shapes reads from
    none), and the units guards read come first
    (guard by guard, in the order they were traced): a kernel checks a guard before any node its value
    doesn't need can raise (when the guard fails the trace doesn't apply, so that error isn't the user's).
    """
    position = {id(n): i for i, n in enumerate(graph.nodes)}
    units: list[list[Node]] = []
    loop_shape: list = []          # per unit: the loop's shape, None for a unit that is not a loop
    deps: list[set] = []           # per unit: the units it reads from
    unit_of: dict[int, int] = {}   # value id -> unit computing it (a reduction's result: a unit of its own,
                                   # empty, depending on the loop that accumulates it)

    def new_unit(nodes: list, shape) -> int:
        units.append(nodes)
        loop_shape.append(shape)
        deps.append(set())
        return len(units) - 1

    def merge(source: int, target: int) -> None:
        """Move every node of unit ``source`` into ``target`` (no path joins them either way)."""
        units[target] = sorted(units[target] + units[source], key=lambda n: position[id(n)])
        units[source] = []
        deps[target] |= deps[source] - {target}
        for d in deps:
            if source in d:
                d.discard(source)
                d.add(target)
        for vid, u in unit_of.items():
            if u == source:
                unit_of[vid] = target

    def reaches(start: int, goal: int) -> bool:
        stack, seen = [start], set()
        while stack:
            u = stack.pop()
            if u == goal:
                return True
            if u not in seen:
                seen.add(u)
                stack.extend(deps[u])
        return False

    def units_read(n: Node) -> set:
        """The units n needs to have run: none for a node that reads only its operands' shapes (a count,
        which a backward pass reads inside the forward loop's pass)."""
        return {unit_of[o.id] for o in n.operands if o.id in unit_of} if REGISTRY[n.prim].reads_values else set()

    for n in graph.nodes:
        operand_units = units_read(n)
        is_reduction = reduction(REGISTRY[n.prim]) is not None
        target = None
        if loop_primitive(n):
            candidates = n.operands[:1] if is_reduction else n.operands
            for o in candidates:
                u = unit_of.get(o.id)
                if u is None or not loop_shape[u] or o.id not in {m.out.id for m in units[u]}:
                    continue  # not a loop, or a 0-d one: scalar statements gain nothing from sharing a unit,
                    # and a scalar joining one would wait for everything that unit waits for
                if not is_reduction and loop_shape[u] != n.out.type.shape:
                    continue
                if any(reaches(v, u) for v in operand_units - {u}):
                    continue
                target = u
                break
        if target is not None and not is_reduction:
            for o in n.operands:  # other loops of this shape that are independent of the target join it too
                u = unit_of.get(o.id)
                if u is not None and u != target and loop_shape[u] == loop_shape[target] and units[u] and \
                        not reaches(u, target) and not reaches(target, u):
                    merge(u, target)
            operand_units = units_read(n)
        if target is None:
            shape = (n.operands[0].type.shape if is_reduction else n.out.type.shape) if loop_primitive(n) else None
            target = new_unit([], shape)
        units[target].append(n)
        deps[target] |= operand_units - {target}
        if is_reduction:
            result = new_unit([], None)
            deps[result].add(target)
            unit_of[n.out.id] = result
        else:
            unit_of[n.out.id] = target

    _sink_into_reader(graph, units, loop_shape, deps, unit_of, position)
    order, done = [], set()

    def visit(u: int) -> None:
        if u in done:
            return
        done.add(u)
        for d in sorted(deps[u]):
            visit(d)
        if units[u]:
            order.append(units[u])
    for u in [unit_of[v.id] for v, _, _ in graph.guards if v.id in unit_of] + list(range(len(units))):
        visit(u)
    return order


def _sink_into_reader(graph: Graph, units: list, loop_shape: list, deps: list, unit_of: dict,
                      position: dict) -> None:
    """Move elementwise chains out of the loop that computes them into the one later loop that reads them.

    The greedy grouping puts a ReLU's backward mask, ``cast(gt(y, 0))``, in the forward loop beside y,
    which then stores the mask as an array for the backward loop to read. Computed in the backward loop
    instead, from y (stored anyway: a matmul reads it), the mask is never stored. A chain moves when its
    values are read only by the later loop (and are no output, guard or write-back), it reads at most as
    many arrays as it saves (so the reading loop reads no more), and nothing left behind would have to be
    stored for it.
    """
    readers, kept = graph.readers(), graph.results()
    producer = {n.out.id: n for n in graph.nodes}
    for target in range(len(units)):
        if loop_shape[target] is None:
            continue
        for vid in sorted({o.id for n in units[target] for o in n.operands}):
            source = unit_of.get(vid)
            if vid not in producer or source in (None, target) or loop_shape[source] != loop_shape[target]:
                continue
            chain = _sinkable_chain(producer[vid], units[source], units[target], readers, kept)
            moved = {n.out.id for n in chain}
            units[source] = [n for n in units[source] if n.out.id not in moved]
            units[target] = sorted(units[target] + chain, key=lambda n: position[id(n)])
            for n in chain:
                unit_of[n.out.id] = target
                deps[target] |= {unit_of[o.id] for o in n.operands if o.id in unit_of} - {target}


def _sinkable_chain(top: Node, source: list, target: list, readers: dict, kept: set) -> list:
    """``top`` and the nodes of loop ``source`` only it needs, when they can move into loop ``target``;
    else []. A node joins the chain only once every reader of its value is in the chain or the target."""
    in_source = {n.out.id: n for n in source}
    in_target = {n.out.id for n in target}
    chain: dict[int, Node] = {}  # value id -> node
    pending = [top]
    while pending:
        n = pending.pop()
        elsewhere = [r for r in readers[n.out.id] if r.out.id not in in_target and r.out.id not in chain]
        if n.out.id in chain or elementwise(REGISTRY[n.prim], n.attrs) is None or n.out.id in kept or elsewhere:
            if n is top:
                return []
            continue  # stays behind: the check below asks whether it is stored anyway
        chain[n.out.id] = n
        pending += [in_source[o.id] for o in n.operands if o.id in in_source]
    left = {vid for vid in in_source if vid not in chain}
    external = {o.id for n in chain.values() for o in n.operands if o.id not in chain and o.type.shape}
    for vid in external & left:
        if vid not in kept and all(r.out.id in chain or r.out.id in left for r in readers[vid]):
            return []  # read only inside the loop left behind: it would have to be stored for the chain
    saved = {vid for vid in chain if any(r.out.id in in_target for r in readers[vid])}
    already = {o.id for n in target for o in n.operands}
    return list(chain.values()) if len(external - already) <= len(saved) else []


def fusion_groups(graph: Graph) -> list[list[Node]]:
    """The loop units of ``schedule`` with two or more nodes: what runs fused in one loop nest."""
    return [unit for unit in schedule(graph) if len(unit) > 1]

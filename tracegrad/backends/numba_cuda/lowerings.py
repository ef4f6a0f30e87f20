"""CUDA lowerings of the nodes that are not loop units: the matrix product, movement, indexing, argmax, argsort, count.

A lowering is ``lower(plan, code, node)``: it reads the kernel's ``plan.Plan`` and writes driver lines and
kernels through the ``codegen.Emitter`` ``code``. Every array it makes is C-contiguous (a reshape is a view of
one; other movement is a copy kernel), so later kernels and the product index plain row-major arrays.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .. import Unsupported
from ...ir.graph import Node, Value
from ...primitives import REGISTRY
from ...primitives.index_key import Integer, IndexKey, NewAxis, Rest, Slice
from ..numba_cpu.lowerings import _tensor_key
from ..numba_cpu.source import broadcast_index, literal

if TYPE_CHECKING:
    from ..numba_cpu.plan import Plan
    from .codegen import Emitter, Kernel


def _matmul(plan: Plan, code: "Emitter", n: Node) -> None:
    a, b = n.operands
    if n.out.type.dtype.np not in (np.float32, np.float64):
        raise Unsupported(f"matmul of {n.out.type.dtype.name} (the CUDA product handles float32 and float64 only)")
    if n.out.id in plan.transposed_products:
        code.emit(1, "# (computed transposed, by the permute that reads it)")
        return
    out = code.allocate(n.out)
    if len(n.out.type.shape) == 2:
        code.emit(1, f"rt.matmul(P, {code.array(a)}, {code.array(b)}, {out})")
    elif a.type.shape[:-2] == n.out.type.shape[:-2] and all(s == 1 for s in b.type.shape[:-2]):
        # a stack of matrices times one matrix ([B, T, F] @ [F, O]): one product of its [B*T, F] rows
        rows, inner, columns = math.prod(a.type.shape[:-1]), a.type.shape[-1], b.type.shape[-1]
        code.emit(1, f"rt.matmul(P, {code.array(a)}.reshape(({rows}, {inner})), "
                     f"{code.array(b)}.reshape(({inner}, {columns})), {out}.reshape(({rows}, {columns})))")
    else:  # one product per matrix of the result, in driver loops over its (broadcast) batch dims
        batch = n.out.type.shape[:-2]
        for k, size in enumerate(batch):
            code.emit(1 + k, f"for i{k} in range({size}):")
        operands = [code.array(v) if len(v.type.shape) == 2 else
                    f"{code.array(v)}[{', '.join(broadcast_index(v.type.shape[:-2], batch))}]" for v in (a, b)]
        where = ", ".join(f"i{k}" for k in range(len(batch)))
        code.emit(1 + len(batch), f"rt.matmul(P, {operands[0]}, {operands[1]}, {out}[{where}])")


def _permute(plan: Plan, code: "Emitter", n: Node) -> None:
    x, dims = n.operands[0], tuple(n.attrs["dims"])
    product = plan.transposed_products.get(x.id)
    if product is not None:  # the product read only through this transpose: b.T @ a.T, row-major
        a, b = product.operands
        code.emit(1, f"rt.matmul(P, {code.array(b)}, {code.array(a)}, {code.allocate(n.out)}, ta=True, tb=True)")
        return
    code.allocate(n.out)

    def body(kernel: "Kernel", index: list) -> list:
        source = [""] * len(dims)
        for k, d in enumerate(dims):
            source[d] = index[k]
        return [f"{code.ref(kernel, n.out, index)} = {code.element(kernel, x, source)}"]
    code.map_kernel(f"%{n.out.id} permute {dims}: a copy", n.out.type.shape, body)


def _reshape(plan: Plan, code: "Emitter", n: Node) -> None:
    # every array here is C-contiguous: a reshape is a view (an output made of it is copied at the end)
    code.emit(1, f"{code.name(n.out)} = {code.array(n.operands[0])}.reshape({n.attrs['shape']})")


def _basic_positions(key: IndexKey, shape: tuple, index: list) -> list:
    """The position in an array of ``shape`` of the element at ``index`` of x[key] (slices, integers, None,
    Ellipsis)."""
    items = list(key.items)
    if not any(type(item) is Rest for item in items):
        items.append(Rest())
    taken = sum(type(item) in (Slice, Integer) for item in items)
    position, dim, out = [], 0, iter(index)
    for item in items:
        if type(item) is NewAxis:
            next(out)
        elif type(item) is Rest:
            for _ in range(len(shape) - taken):
                position.append(next(out))
                dim += 1
        elif type(item) is Integer:
            position.append(str(item.value % shape[dim] if item.value < 0 else item.value))
            dim += 1
        else:
            start, _, step = slice(item.start, item.stop, item.step).indices(shape[dim])
            i = next(out)
            position.append(str(start) if i == "0" else i if start == 0 and step == 1 else
                            f"{start} + {i}" if step == 1 else f"{start} + {step} * {i}")
            dim += 1
    return position


def _region(n: Node, x: Value, indices: list) -> tuple:
    """The shape of x[key]: what a read gives, what an index_put writes."""
    return REGISTRY["index"].shape_rule([x.type.shape] + [i.type.shape for i in indices], key=n.attrs["key"])


def _gathered_positions(code: "Emitter", kernel: "Kernel", n: Node, x: Value, indices: list, index: list,
                        region: tuple) -> tuple[list, list]:
    """For x[..., idx..., ...] (adjacent index tensors, full slices elsewhere) at element ``index`` of the
    region of ``region``'s shape: (statements computing each index tensor's position, negative ones counted
    from the end; x's position)."""
    first, last = _tensor_key(n.attrs["key"])
    lead, trail = first, len(x.type.shape) - last - 1
    middle = len(region) - lead - trail  # the index tensors' broadcast dims
    lines, position = [], list(index[:lead])
    for m, idx in enumerate(indices):
        parts = broadcast_index(idx.type.shape, region, end=lead + middle)
        lines += [f"j{m} = {code.element(kernel, idx, parts)}", f"if j{m} < 0:",
                  f"    j{m} += {x.type.shape[first + m]}"]
        position.append(f"j{m}")
    return lines, position + list(index[lead + middle:])


def _check_all(code: "Emitter", n: Node, x: Value, indices: list) -> None:
    first, _ = _tensor_key(n.attrs["key"])
    for m, idx in enumerate(indices):
        code.check_indices(n, idx, first + m, x.type.shape[first + m])


def _index_read(plan: Plan, code: "Emitter", n: Node) -> None:
    x, indices, key = n.operands[0], n.operands[1:], n.attrs["key"]
    if key.has_tensors:
        _check_all(code, n, x, indices)
    code.allocate(n.out)

    def body(kernel: "Kernel", index: list) -> list:
        if key.has_tensors:
            lines, position = _gathered_positions(code, kernel, n, x, indices, index, n.out.type.shape)
        else:
            lines, position = [], _basic_positions(key, x.type.shape, index)
        return lines + [f"{code.ref(kernel, n.out, index)} = {code.element(kernel, x, position)}"]
    code.map_kernel(f"%{n.out.id} index [{key}]", n.out.type.shape, body)


def _index_put(plan: Plan, code: "Emitter", n: Node) -> None:
    x, values, indices, key = n.operands[0], n.operands[1], n.operands[2:], n.attrs["key"]
    if key.has_tensors:
        _check_all(code, n, x, indices)
    out = code.clone(x, n.out)
    region = _region(n, x, indices)

    def body(kernel: "Kernel", index: list) -> list:
        if key.has_tensors:
            lines, position = _gathered_positions(code, kernel, n, x, indices, index, region)
        else:
            lines, position = [], _basic_positions(key, x.type.shape, index)
        value = code.element(kernel, values, broadcast_index(values.type.shape, region))
        if n.attrs["accumulate"] and key.has_tensors:  # repeated indices add up: atomically
            return lines + [f"cuda.atomic.add({kernel.param(out)}, ({', '.join(position)},), {value})"]
        # without accumulate, a position named twice keeps one of the values (which one is unspecified)
        return lines + [f"{code.ref(kernel, n.out, position)} {'+=' if n.attrs['accumulate'] else '='} {value}"]
    code.map_kernel(f"%{n.out.id} index_put [{key}]", region, body)


def _cat(plan: Plan, code: "Emitter", n: Node) -> None:
    dim = n.attrs["dim"]
    code.allocate(n.out)
    parts, offset = [], 0
    for x in n.operands:
        if x.type.shape[dim]:
            parts.append((x, offset))
            offset += x.type.shape[dim]

    def body(kernel: "Kernel", index: list) -> list:
        lines, at = [], index[dim]
        for k, (x, start) in enumerate(parts):
            position = [(f"{at} - {start}" if start else at) if j == dim else p for j, p in enumerate(index)]
            if len(parts) > 1:
                end = start + x.type.shape[dim]
                lines.append("else:" if k == len(parts) - 1 else f"{'elif' if k else 'if'} {at} < {end}:")
            indent = "    " if len(parts) > 1 else ""
            lines.append(f"{indent}{code.ref(kernel, n.out, index)} = {code.element(kernel, x, position)}")
        return lines
    code.map_kernel(f"%{n.out.id} cat along dim {dim}", n.out.type.shape, body)


def _along_axis(code: "Emitter", kernel: "Kernel", n: Node, index: list) -> tuple[list, list]:
    """For gather and scatter_add at element ``index`` of the index tensor: (statements reading the index j,
    the position in x with j along the node's dim)."""
    idx, dim = n.operands[1], n.attrs["dim"]
    return [f"j = {code.element(kernel, idx, index)}"], ["j" if k == dim else part for k, part in enumerate(index)]


def _gather(plan: Plan, code: "Emitter", n: Node) -> None:
    x, idx = n.operands
    if not x.type.shape:
        raise Unsupported("gather from a 0-d tensor")
    code.check_indices(n, idx, n.attrs["dim"], x.type.shape[n.attrs["dim"]])
    code.allocate(n.out)

    def body(kernel: "Kernel", index: list) -> list:
        lines, where = _along_axis(code, kernel, n, index)
        return lines + [f"{code.ref(kernel, n.out, index)} = {code.element(kernel, x, where)}"]
    code.map_kernel(f"%{n.out.id} gather along dim {n.attrs['dim']}", idx.type.shape, body)


def _scatter_add(plan: Plan, code: "Emitter", n: Node) -> None:
    x, idx, src = n.operands
    if not x.type.shape:
        raise Unsupported("scatter_add into a 0-d tensor")
    code.check_indices(n, idx, n.attrs["dim"], x.type.shape[n.attrs["dim"]])
    out = code.clone(x, n.out)

    def body(kernel: "Kernel", index: list) -> list:
        lines, where = _along_axis(code, kernel, n, index)
        value = code.element(kernel, src, index)
        return lines + [f"cuda.atomic.add({kernel.param(out)}, ({', '.join(where)},), {value})"]
    code.map_kernel(f"%{n.out.id} scatter_add along dim {n.attrs['dim']} (atomic: indices repeat)",
                    idx.type.shape, body)


def _arg_extremum(plan: Plan, code: "Emitter", n: Node) -> None:
    """argmax/argmin along one axis: the first position of the extremum, or of the first NaN (as NumPy).
    A thread owns each position of the other axes and walks the axis in order."""
    x, axis = n.operands[0], n.attrs["axes"][0]
    shape = x.type.shape
    code.allocate(n.out)
    better = ">" if n.prim == "argmax" else "<"
    others = tuple(1 if k == axis else s for k, s in enumerate(shape))

    def body(kernel: "Kernel", index: list) -> list:
        along = [f"i{axis}" if k == axis else p for k, p in enumerate(index)]
        first = ["0" if k == axis else p for k, p in enumerate(index)]
        where = first if n.attrs["keepdim"] else [p for k, p in enumerate(first) if k != axis]
        return [f"b = {code.element(kernel, x, first)}", "at = 0",
                f"for i{axis} in range(1, {shape[axis]}):",
                f"    c = {code.element(kernel, x, along)}",
                f"    if b == b and (c {better} b or c != c):",
                "        b = c",
                f"        at = i{axis}",
                f"{code.ref(kernel, n.out, where)} = at"]
    code.map_kernel(f"%{n.out.id} {n.prim} along axis {axis}", others, body)


def _argsort(plan: Plan, code: "Emitter", n: Node) -> None:
    """A stable sort by ranks: the thread of each element counts the elements that sort before it in its row
    (smaller, or equal and earlier; NaN as the largest value) and writes its position at that rank. O(n) per
    element, fine for the rows a training step sorts (top-k of logits, a batch's losses)."""
    x, axis = n.operands[0], n.attrs["dim"]
    code.allocate(n.out)
    first, second = ("v", "w") if n.attrs["descending"] else ("w", "v")  # v: this element, w: another

    def body(kernel: "Kernel", index: list) -> list:
        at = index[axis]
        other = [("j" if k == axis else p) for k, p in enumerate(index)]
        rank = [("rank" if k == axis else p) for k, p in enumerate(index)]
        return [f"v = {code.element(kernel, x, index)}", "vn = v != v", "rank = 0",
                f"for j in range({x.type.shape[axis]}):",
                f"    w = {code.element(kernel, x, other)}",
                "    wn = w != w",
                f"    if not {first}n and ({second}n or {first} < {second}) or (w == v or wn and vn) and j < {at}:",
                "        rank += 1",
                f"{code.ref(kernel, n.out, rank)} = {at}"]
    code.map_kernel(f"%{n.out.id} argsort along dim {axis} (by ranks)", x.type.shape, body)


def _count(plan: Plan, code: "Emitter", n: Node) -> None:
    """The element count of a reduction, from its input's shape: every element of the result holds it."""
    shape = n.operands[0].type.shape
    count = math.prod(shape[a] for a in n.attrs["axes"])
    code.emit(1, f"rt.fill(P, {code.allocate(n.out)}, {literal(count, np.int64)})")


LOWERINGS = {"matmul": _matmul, "permute": _permute, "reshape": _reshape, "index": _index_read,
             "index_put": _index_put, "cat": _cat, "gather": _gather, "scatter_add": _scatter_add,
             "argmax": _arg_extremum, "argmin": _arg_extremum, "count": _count,
             "argsort": _argsort}

"""Lowerings of the nodes that are not loop units: BLAS matmul, views, gather/scatter and index loops.

A lowering is ``lower(plan, code, node) -> layout``: it reads the kernel's ``plan.Plan`` (never changed), writes
its statements through the ``codegen.Emitter`` ``code``, and returns its result's layout ('C', 'F', 'A').
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .. import Unsupported
from ...ir.graph import Node, Value
from ...primitives.base import broadcast_shapes
from ...primitives.indexing import lowest_index
from ...primitives.index_key import IndexKey, Slice
from .source import broadcast_index, index_text

if TYPE_CHECKING:
    from .codegen import Emitter
    from .plan import Plan


def _matmul(plan: Plan, code: "Emitter", n: Node) -> str:
    a, b = n.operands
    if n.out.type.dtype.np not in (np.float32, np.float64):
        raise Unsupported(f"matmul of {n.out.type.dtype.name} (BLAS handles float32 and float64 only)")
    if n.out.id in plan.transposed_products:
        code.emit(1, "# (computed transposed, by the permute that reads it)")
        return "C"
    if len(n.out.type.shape) == 2:
        code.emit(1, _product(plan, code, n.out, code.array(a), code.array(b)))
        return "C"
    code.allocate(code.name(n.out), n.out.type.shape, n.out.type.dtype.np)
    if a.type.shape[:-2] == n.out.type.shape[:-2] and all(s == 1 for s in b.type.shape[:-2]):
        _rows_product(code, n)
    else:
        _batched_product(code, n)
    return "C"


def _rows_product(code: "Emitter", n: Node) -> None:
    """A stack of matrices times one matrix ([B, T, F] @ [F, O]) as one product of [B*T, F] rows:
    one BLAS call, not one per matrix."""
    a, b = n.operands
    rows, inner, columns = math.prod(a.type.shape[:-1]), a.type.shape[-1], b.type.shape[-1]
    matrix = code.array(b)
    if len(b.type.shape) > 2:
        matrix += f"[{', '.join(['0'] * (len(b.type.shape) - 2))}]"
    code.emit(1, f"rt.matmul_into({code.row_major(a)}.reshape(({rows}, {inner})), {matrix}, "
                 f"{code.name(n.out)}.reshape(({rows}, {columns})))")


def _batched_product(code: "Emitter", n: Node) -> None:
    """One BLAS product per matrix of the result, in loops over its batch dims (which broadcast)."""
    batch = n.out.type.shape[:-2]
    a, b = (_batch_operand(code, v, batch) for v in n.operands)
    for k, size in enumerate(batch):
        code.loop(1 + k, f"i{k}", size)
    where = ", ".join(f"i{k}" for k in range(len(batch)))
    code.emit(1 + len(batch), f"rt.matmul_into({a}, {b}, {code.name(n.out)}[{where}])")


def _batch_operand(code: "Emitter", v: Value, batch: tuple) -> str:
    """v's matrix at the batch loops' index (broadcast): a strided view is made row-major once, before
    the loops, not copied by the BLAS helper in every iteration."""
    name = code.array(v)
    if code.layout.get(v.id, "C") == "A":
        code.emit(1, f"m{v.id} = np.ascontiguousarray({name})")
        name = f"m{v.id}"
    if len(v.type.shape) == 2:
        return name
    return f"{name}[{', '.join(broadcast_index(v.type.shape[:-2], batch))}]"


def _product(plan: Plan, code: "Emitter", v: Value, a: str, b: str) -> str:
    """The statement computing v = a @ b: into the caller's buffer when v is an output."""
    out = code.name(v)
    return f"rt.matmul_into({a}, {b}, {out})" if v.id in plan.direct_outputs else f"{out} = rt.dot({a}, {b})"


def _permute(plan: Plan, code: "Emitter", n: Node) -> str:
    x, dims = n.operands[0], tuple(n.attrs["dims"])
    product = plan.transposed_products.get(x.id)
    if product is not None:
        a, b = product.operands
        code.emit(1, _product(plan, code, n.out, f"{code.array(b)}.T", f"{code.array(a)}.T"))
        return "C"
    if dims == (1, 0):
        code.emit(1, f"{code.name(n.out)} = {code.array(x)}.T")
        return {"C": "F", "F": "C", "I": "I"}.get(code.layout.get(x.id, "C"), "A")
    code.emit(1, f"{code.name(n.out)} = np.transpose({code.array(x)}, {dims})")
    return "A"


def _reshape(plan: Plan, code: "Emitter", n: Node) -> str:
    code.emit(1, f"{code.name(n.out)} = {code.row_major(n.operands[0])}.reshape({n.attrs['shape']})")
    return "C"


def _index_read(plan: Plan, code: "Emitter", n: Node) -> str:
    key = n.attrs["key"]
    if key.has_tensors:
        return _index_tensors(code, n)
    x = n.operands[0]
    code.emit(1, f"{code.name(n.out)} = {code.array(x)}[{key.subscript()}]")
    return "A"


def _index_put(plan: Plan, code: "Emitter", n: Node) -> str:
    key = n.attrs["key"]
    if key.has_tensors:
        return _index_put_tensors(code, n)
    x, values = n.operands[:2]
    out = code.name(n.out)
    code.emit(1, f"{out} = {code.fresh(x)}")
    rhs = code.name(values) if values.type.shape else code.item(values)
    code.emit(1, f"{out}[{key.subscript()}] {'+=' if n.attrs['accumulate'] else '='} {rhs}")
    return "C"


def _cat(plan: Plan, code: "Emitter", n: Node) -> str:
    """One loop nest per operand, copying it into its place (see Emitter.copy_of: not np.concatenate)."""
    out, dim = code.name(n.out), n.attrs["dim"]
    code.allocate(out, n.out.type.shape, n.out.type.dtype.np)
    start = 0
    for operand in n.operands:
        code.copy_into(out, operand, [""] * dim + [f" + {start}" if start else ""])
        start += operand.type.shape[dim]
    return "C"


def checks_indices(n: Node) -> bool:
    """Whether n's lowering checks index values, and so may raise (gather, scatter_add, index tensors)."""
    return n.prim in ("gather", "scatter_add") or "key" in n.attrs and bool(n.attrs["key"].tensor_positions)


def _loops_over(code: "Emitter", shape: tuple) -> tuple[int, list]:
    """Open loops over ``shape`` (none for a size-1 dim: its index is 0); returns (indentation of the loop
    body, the index of an element)."""
    indent = 1
    for k, s in enumerate(shape):
        if s != 1:
            code.loop(indent, f"i{k}", s)
            indent += 1
    return indent, ["0" if s == 1 else f"i{k}" for k, s in enumerate(shape)]


def _check_indices(code: "Emitter", n: Node, idx: Value, dim: int, size: int) -> None:
    """A loop raising rt.IndexOutOfBounds for the first value of idx (row-major) that n's primitive
    rejects along dimension ``dim`` of ``size``: Kernel turns it into the error the primitive raises
    eagerly (``indexing.out_of_bounds``). An index tensor checked by the same rule before is not checked
    again (values are never overwritten)."""
    lowest = lowest_index(n.prim, size)
    check = code.index_check(idx, lowest, size, (n.prim, dim, size))
    if check is None:
        return
    indent, loop = _loops_over(code, idx.type.shape)
    code.emit(indent, f"j = {code.element(idx, loop)}")
    code.emit(indent, f"if j < {lowest} or j >= {size}:")
    code.emit(indent + 1, f"raise rt.IndexOutOfBounds({check}, j)")


def _along_axis(code: "Emitter", n: Node) -> tuple[int, list, list]:
    """For gather and scatter_add: check the index tensor, then open loops over its shape; returns
    (indentation of the loop body, index of the index tensor, index of the indexed array)."""
    x, idx, dim = n.operands[0], n.operands[1], n.attrs["dim"]
    _check_indices(code, n, idx, dim, x.type.shape[dim])
    indent, loop = _loops_over(code, idx.type.shape)
    code.emit(indent, f"j = {code.element(idx, loop)}")
    return indent, loop, ["j" if k == dim else part for k, part in enumerate(loop)]


def _gather(plan: Plan, code: "Emitter", n: Node) -> str:
    x, idx = n.operands
    out = code.name(n.out)
    if not x.type.shape:  # a scalar has one element along its only "dimension"
        _check_indices(code, n, idx, n.attrs["dim"], 1)
        code.emit(1, f"{out} = {code.fresh(x)}")
        return "C"
    code.allocate(out, n.out.type.shape, n.out.type.dtype.np)
    indent, loop, where = _along_axis(code, n)
    code.emit(indent, f"{out}[{index_text(loop)}] = {code.element(x, where)}")
    return "C"


def _scatter_add(plan: Plan, code: "Emitter", n: Node) -> str:
    x, idx, src = n.operands
    out = code.name(n.out)
    if not x.type.shape:
        _check_indices(code, n, idx, n.attrs["dim"], 1)
        code.emit(1, f"{out} = {code.fresh(x)}")
        code.emit(1, f"{out}[()] += {code.item(src)}")
        return "C"
    code.emit(1, f"{out} = {code.fresh(x)}")
    indent, loop, where = _along_axis(code, n)
    code.emit(indent, f"{out}[{index_text(where)}] += {code.element(src, loop)}")
    return "C"


def _arg_extremum(plan: Plan, code: "Emitter", n: Node) -> str:
    """argmax/argmin along one axis: the first position of the extremum, or of the first NaN (as NumPy)."""
    x, axis = n.operands[0], n.attrs["axes"][0]
    shape, out = x.type.shape, code.name(n.out)
    better = ">" if n.prim == "argmax" else "<"
    kept = [("0" if k == axis else f"i{k}") for k in range(len(shape))]
    where = index_text(kept if n.attrs["keepdim"] else [p for k, p in enumerate(kept) if k != axis])
    code.allocate(out, n.out.type.shape, np.dtype(np.int64))  # all written: each at axis index 0
    code.allocate(f"best{n.out.id}", tuple(1 if k == axis else s for k, s in enumerate(shape)), x.type.dtype.np)
    for k, size in enumerate(shape):
        code.loop(1 + k, f"i{k}", size)
    depth = 1 + len(shape)
    code.emit(depth, f"e = {code.element(x, [f'i{k}' for k in range(len(shape))])}")
    code.emit(depth, f"b = best{n.out.id}[{index_text(kept)}]")
    code.emit(depth, f"if i{axis} == 0 or b == b and (e {better} b or e != e):")
    code.emit(depth + 1, f"best{n.out.id}[{index_text(kept)}] = e")
    code.emit(depth + 1, f"{out}[{where}] = i{axis}")
    return "C"


def _argsort(plan: Plan, code: "Emitter", n: Node) -> str:
    """One stable merge sort per row along the sorted dim (as the primitive's impl; NaN sorts last)."""
    x, dim = n.operands[0], n.attrs["dim"]
    shape, out = x.type.shape, code.name(n.out)
    code.allocate(out, shape, np.dtype(np.int64))
    indent, loop = _loops_over(code, tuple(1 if k == dim else s for k, s in enumerate(shape)))
    loop[dim] = ":"
    row = f"{code.array(x)}[{index_text(loop)}]"
    if n.attrs["descending"]:  # ascending order of the reversed row, read backwards (ties keep their order)
        code.emit(indent, f"{out}[{index_text(loop)}] = "
                          f"{shape[dim] - 1} - np.argsort({row}[::-1], kind='mergesort')[::-1]")
    else:
        code.emit(indent, f"{out}[{index_text(loop)}] = np.argsort({row}, kind='mergesort')")
    return "C"


def _tensor_key(key: IndexKey) -> tuple[int, int]:
    """(first, last) positions of a key's index tensors when they are adjacent and every other item is a
    full slice (x[idx], x[:, rows, cols]); Unsupported otherwise."""
    tensors = key.tensor_positions
    if key.has_mask:
        raise Unsupported("indexing with a boolean mask")
    if tensors != tuple(range(tensors[0], tensors[-1] + 1)) or any(
            k not in tensors and item != Slice() for k, item in enumerate(key.items)):
        raise Unsupported("indexing that mixes index tensors with integers, None, Ellipsis or partial slices")
    return tensors[0], tensors[-1]


def _gathered_positions(code: "Emitter", n: Node, x: Value, indices: list, first: int, last: int,
                        result_shape: tuple) -> tuple[int, list, list]:
    """Check the index tensors, open loops over the result of x[..., idx..., ...] and compute each index
    tensor's position (negative ones count from the end); returns (depth, the element's index in x, the
    loop index of the result)."""
    lead, trail = first, len(x.type.shape) - last - 1
    middle = len(result_shape) - lead - trail  # the broadcast shape of the index tensors
    for m, idx in enumerate(indices):
        _check_indices(code, n, idx, first + m, x.type.shape[first + m])
    # Each position is read as soon as the loops over the index tensors' dims are open, before the loops
    # over the trailing dims: those then move a contiguous run (a convolution's batch), which LLVM vectorizes.
    position = [f"i{k}" for k in range(lead)]
    for k, size in enumerate(result_shape):
        if k == lead + middle:
            _read_positions(code, x, indices, first, result_shape, lead + middle, k + 1, position)
        code.loop(1 + k, f"i{k}", size)
    depth = len(result_shape)
    if len(position) == lead:  # no trailing dims
        _read_positions(code, x, indices, first, result_shape, lead + middle, depth + 1, position)
    position += [f"i{k}" for k in range(lead + middle, len(result_shape))]
    return depth, position, [f"i{k}" for k in range(len(result_shape))]


def _read_positions(code: "Emitter", x: Value, indices: list, first: int, result_shape: tuple, end: int,
                    indent: int, position: list) -> None:
    """Read each index tensor's position (negative ones count from the end) at ``indent``; append their
    names to ``position``."""
    for m, idx in enumerate(indices):
        size = x.type.shape[first + m]
        parts = broadcast_index(idx.type.shape, result_shape, end=end)
        code.emit(indent, f"j{m} = {code.element(idx, parts)}")
        code.emit(indent, f"if j{m} < 0:")
        code.emit(indent + 1, f"j{m} += {size}")
        position.append(f"j{m}")


def _index_tensors(code: "Emitter", n: Node) -> str:
    x, indices = n.operands[0], n.operands[1:]
    first, last = _tensor_key(n.attrs["key"])
    out = code.name(n.out)
    code.allocate(out, n.out.type.shape, n.out.type.dtype.np)
    depth, position, loop = _gathered_positions(code, n, x, indices, first, last, n.out.type.shape)
    code.emit(1 + depth, f"{out}[{index_text(loop)}] = {code.element(x, position)}")
    return "C"


def _index_put_tensors(code: "Emitter", n: Node) -> str:
    x, values, indices = n.operands[0], n.operands[1], n.operands[2:]
    first, last = _tensor_key(n.attrs["key"])
    out = code.name(n.out)
    # the region x[key] has the shape of x with the indexed dims replaced by the index tensors' broadcast
    region = x.type.shape[:first] + broadcast_shapes(*(i.type.shape for i in indices)) + x.type.shape[last + 1:]
    code.emit(1, f"{out} = {code.fresh(x)}")
    depth, position, loop = _gathered_positions(code, n, x, indices, first, last, region)
    parts = broadcast_index(values.type.shape, region)
    code.emit(1 + depth, f"{out}[{index_text(position)}] {'+=' if n.attrs['accumulate'] else '='} "
                         f"{code.element(values, parts)}")
    return "C"


def _count(plan: Plan, code: "Emitter", n: Node) -> str:
    """The element count of a reduction, from its input's shape (printed as a product of sizes, so a kernel
    generic in a size reads it at run time): every element of the result holds it."""
    shape = n.operands[0].type.shape
    count = " * ".join(str(shape[a]) for a in n.attrs["axes"]) or "1"
    code.allocate(code.name(n.out), n.out.type.shape, np.int64, fill=f"np.int64({count})")
    return "C"


LOWERINGS = {"matmul": _matmul, "permute": _permute, "reshape": _reshape, "index": _index_read,
              "index_put": _index_put, "cat": _cat, "gather": _gather, "scatter_add": _scatter_add,
              "argmax": _arg_extremum, "argmin": _arg_extremum, "count": _count,
              "argsort": _argsort}

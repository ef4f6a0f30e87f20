"""Lowerings of the nodes that are not loop units: BLAS matmul, views, gather/scatter and index loops."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from .. import Unsupported
from ...ir.graph import Node, Value
from ...primitives.base import broadcast_shapes
from ...primitives.indexing import lowest_index
from .source import broadcast_index, index_text, key_text

if TYPE_CHECKING:
    from .codegen import _Generator


def _matmul(gen: "_Generator", n: Node) -> str:
    a, b = n.operands
    if n.out.type.dtype.np not in (np.float32, np.float64):
        raise Unsupported(f"matmul of {n.out.type.dtype.name} (BLAS handles float32 and float64 only)")
    out = gen.name(n.out)
    if n.out.id in gen.transposed_products:
        gen.emit(1, "# (computed transposed, by the permute that reads it)")
        return "C"
    if len(n.out.type.shape) == 2:
        gen.emit(1, _product(gen, out, gen.array(a), gen.array(b)))
        return "C"
    gen.allocate(out, n.out.type.shape, n.out.type.dtype.np)
    if a.type.shape[:-2] == n.out.type.shape[:-2] and all(s == 1 for s in b.type.shape[:-2]):
        _rows_product(gen, n)
    else:
        _batched_product(gen, n)
    return "C"


def _rows_product(gen: "_Generator", n: Node) -> None:
    """A stack of matrices times one matrix ([B, T, F] @ [F, O]) as one product of [B*T, F] rows:
    one BLAS call, not one per matrix."""
    a, b = n.operands
    rows, inner, columns = math.prod(a.type.shape[:-1]), a.type.shape[-1], b.type.shape[-1]
    matrix = f"{gen.array(b)}[{', '.join(['0'] * (len(b.type.shape) - 2))}]" if len(b.type.shape) > 2 else gen.array(b)
    gen.emit(1, f"rt.matmul_into({gen.row_major(a)}.reshape(({rows}, {inner})), {matrix}, "
                f"{gen.name(n.out)}.reshape(({rows}, {columns})))")


def _batched_product(gen: "_Generator", n: Node) -> None:
    """One BLAS product per matrix of the result, in loops over its batch dims (which broadcast)."""
    batch = n.out.type.shape[:-2]
    a, b = (_batch_operand(gen, v, batch) for v in n.operands)
    for k, size in enumerate(batch):
        gen.emit(1 + k, f"for i{k} in range({size}):")
    gen.emit(1 + len(batch), f"rt.matmul_into({a}, {b}, {gen.name(n.out)}[{', '.join(f'i{k}' for k in range(len(batch)))}])")


def _batch_operand(gen: "_Generator", v: Value, batch: tuple) -> str:
    """v's matrix at the batch loops' index (broadcast): a strided view is made row-major once, before
    the loops, not copied by the BLAS helper in every iteration."""
    name = gen.array(v)
    if gen.layout.get(v.id, "C") == "A":
        gen.emit(1, f"m{v.id} = np.ascontiguousarray({name})")
        name = f"m{v.id}"
    if len(v.type.shape) == 2:
        return name
    return f"{name}[{', '.join(broadcast_index(v.type.shape[:-2], batch))}]"


def _product(gen: "_Generator", out: str, a: str, b: str) -> str:
    """The statement computing out = a @ b: into the caller's buffer when out is an output."""
    return f"rt.matmul_into({a}, {b}, {out})" if out in gen.direct_outputs else f"{out} = rt.dot({a}, {b})"


def _permute(gen: "_Generator", n: Node) -> str:
    x, dims = n.operands[0], tuple(n.attrs["dims"])
    product = gen.transposed_products.get(x.id)
    if product is not None:
        a, b = product.operands
        gen.emit(1, _product(gen, gen.name(n.out), f"{gen.array(b)}.T", f"{gen.array(a)}.T"))
        return "C"
    if dims == (1, 0):
        gen.emit(1, f"{gen.name(n.out)} = {gen.array(x)}.T")
        return {"C": "F", "F": "C", "I": "I"}.get(gen.layout.get(x.id, "C"), "A")
    gen.emit(1, f"{gen.name(n.out)} = np.transpose({gen.array(x)}, {dims})")
    return "A"


def _reshape(gen: "_Generator", n: Node) -> str:
    gen.emit(1, f"{gen.name(n.out)} = {gen.row_major(n.operands[0])}.reshape({n.attrs['shape']})")
    return "C"


def _index_read(gen: "_Generator", n: Node) -> str:
    key = n.attrs["key"]
    if any(item[0] in "tm" for item in key):
        return _index_tensors(gen, n)
    x = n.operands[0]
    gen.emit(1, f"{gen.name(n.out)} = {gen.array(x)}[{key_text(key)}]")
    return "A"


def _index_put(gen: "_Generator", n: Node) -> str:
    key = n.attrs["key"]
    if any(item[0] in "tm" for item in key):
        return _index_put_tensors(gen, n)
    x, values = n.operands[:2]
    out = gen.name(n.out)
    gen.emit(1, f"{out} = {gen.fresh(x)}")
    rhs = gen.name(values) if values.id in gen.scalars or values.type.shape else f"{gen.name(values)}.item()"
    gen.emit(1, f"{out}[{key_text(key)}] {'+=' if n.attrs['accumulate'] else '='} {rhs}")
    return "C"


def _cat(gen: "_Generator", n: Node) -> str:
    parts = ", ".join(gen.array(o) for o in n.operands)
    gen.emit(1, f"{gen.name(n.out)} = np.concatenate(({parts},), axis={n.attrs['dim']})")
    return "C"


def checks_indices(n: Node) -> bool:
    """Whether n's lowering checks index values, and so may raise (gather, scatter_add, index tensors)."""
    return n.prim in ("gather", "scatter_add") or any(item[0] == "t" for item in n.attrs.get("key", ()))


def _loops_over(gen: "_Generator", shape: tuple) -> tuple[int, list]:
    """Open loops over ``shape`` (none for a size-1 dim: its index is 0); returns (indentation of the loop
    body, the index of an element)."""
    indent = 1
    for k, s in enumerate(shape):
        if s != 1:
            gen.emit(indent, f"for i{k} in range({s}):")
            indent += 1
    return indent, ["0" if s == 1 else f"i{k}" for k, s in enumerate(shape)]


def _check_indices(gen: "_Generator", n: Node, idx: Value, dim: int, size: int) -> None:
    """A loop raising rt.IndexOutOfBounds for the first value of idx (row-major) that n's primitive
    rejects along dimension ``dim`` of ``size``: Kernel turns it into the error the primitive raises
    eagerly (``indexing.out_of_bounds``). An index tensor checked by the same rule before is not checked
    again (values are never overwritten)."""
    lowest = lowest_index(n.prim, size)
    if (idx.id, lowest, size) in gen.checked_indices:
        return
    gen.checked_indices.add((idx.id, lowest, size))
    gen.index_errors.append((n.prim, dim, size))
    indent, loop = _loops_over(gen, idx.type.shape)
    gen.emit(indent, f"j = {gen.element(idx, loop)}")
    gen.emit(indent, f"if j < {lowest} or j >= {size}:")
    gen.emit(indent + 1, f"raise rt.IndexOutOfBounds({len(gen.index_errors) - 1}, j)")


def _along_axis(gen: "_Generator", n: Node) -> tuple[int, list, list]:
    """For gather and scatter_add: check the index tensor, then open loops over its shape; returns
    (indentation of the loop body, index of the index tensor, index of the indexed array)."""
    x, idx, dim = n.operands[0], n.operands[1], n.attrs["dim"]
    _check_indices(gen, n, idx, dim, x.type.shape[dim])
    indent, loop = _loops_over(gen, idx.type.shape)
    gen.emit(indent, f"j = {gen.element(idx, loop)}")
    return indent, loop, ["j" if k == dim else part for k, part in enumerate(loop)]


def _gather(gen: "_Generator", n: Node) -> str:
    x, idx = n.operands
    out = gen.name(n.out)
    if not x.type.shape:  # a scalar has one element along its only "dimension"
        _check_indices(gen, n, idx, n.attrs["dim"], 1)
        gen.emit(1, f"{out} = {gen.fresh(x)}")
        return "C"
    gen.allocate(out, n.out.type.shape, n.out.type.dtype.np)
    indent, loop, where = _along_axis(gen, n)
    gen.emit(indent, f"{out}[{index_text(loop)}] = {gen.element(x, where)}")
    return "C"


def _scatter_add(gen: "_Generator", n: Node) -> str:
    x, idx, src = n.operands
    out = gen.name(n.out)
    if not x.type.shape:
        _check_indices(gen, n, idx, n.attrs["dim"], 1)
        gen.emit(1, f"{out} = {gen.fresh(x)}")
        gen.emit(1, f"{out}[()] += {gen.name(src) if src.id in gen.scalars else gen.name(src) + '.item()'}")
        return "C"
    gen.emit(1, f"{out} = {gen.fresh(x)}")
    indent, loop, where = _along_axis(gen, n)
    gen.emit(indent, f"{out}[{index_text(where)}] += {gen.element(src, loop)}")
    return "C"


def _arg_extremum(gen: "_Generator", n: Node) -> str:
    """argmax/argmin along one axis: the first position of the extremum, or of the first NaN (as NumPy)."""
    x, axis = n.operands[0], n.attrs["axes"][0]
    shape, out = x.type.shape, gen.name(n.out)
    better = ">" if n.prim == "argmax" else "<"
    kept = [("0" if k == axis else f"i{k}") for k in range(len(shape))]
    where = index_text(kept if n.attrs["keepdim"] else [p for k, p in enumerate(kept) if k != axis])
    gen.allocate(out, n.out.type.shape, np.dtype(np.int64))  # all written: each at axis index 0
    gen.allocate(f"best{n.out.id}", tuple(1 if k == axis else s for k, s in enumerate(shape)), x.type.dtype.np)
    for k, size in enumerate(shape):
        gen.emit(1 + k, f"for i{k} in range({size}):")
    depth = 1 + len(shape)
    gen.emit(depth, f"e = {gen.element(x, [f'i{k}' for k in range(len(shape))])}")
    gen.emit(depth, f"b = best{n.out.id}[{index_text(kept)}]")
    gen.emit(depth, f"if i{axis} == 0 or b == b and (e {better} b or e != e):")
    gen.emit(depth + 1, f"best{n.out.id}[{index_text(kept)}] = e")
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


def _gathered_positions(gen: "_Generator", n: Node, x: Value, indices: list, first: int, last: int,
                        result_shape: tuple) -> tuple[int, list, list]:
    """Check the index tensors, open loops over the result of x[..., idx..., ...] and compute each index
    tensor's position (negative ones count from the end); returns (depth, the element's index in x, the
    loop index of the result)."""
    lead, trail = first, len(x.type.shape) - last - 1
    middle = len(result_shape) - lead - trail  # the broadcast shape of the index tensors
    for m, idx in enumerate(indices):
        _check_indices(gen, n, idx, first + m, x.type.shape[first + m])
    for k, size in enumerate(result_shape):
        gen.emit(1 + k, f"for i{k} in range({size}):")
    depth = len(result_shape)
    position = [f"i{k}" for k in range(lead)]
    for m, idx in enumerate(indices):
        size = x.type.shape[first + m]
        parts = broadcast_index(idx.type.shape, result_shape, end=lead + middle)
        gen.emit(1 + depth, f"j{m} = {gen.element(idx, parts)}")
        gen.emit(1 + depth, f"if j{m} < 0:")
        gen.emit(2 + depth, f"j{m} += {size}")
        position.append(f"j{m}")
    position += [f"i{k}" for k in range(lead + middle, len(result_shape))]
    return depth, position, [f"i{k}" for k in range(len(result_shape))]


def _index_tensors(gen: "_Generator", n: Node) -> str:
    x, indices = n.operands[0], n.operands[1:]
    first, last = _tensor_key(n.attrs["key"])
    out = gen.name(n.out)
    gen.allocate(out, n.out.type.shape, n.out.type.dtype.np)
    depth, position, loop = _gathered_positions(gen, n, x, indices, first, last, n.out.type.shape)
    gen.emit(1 + depth, f"{out}[{index_text(loop)}] = {gen.element(x, position)}")
    return "C"


def _index_put_tensors(gen: "_Generator", n: Node) -> str:
    x, values, indices = n.operands[0], n.operands[1], n.operands[2:]
    first, last = _tensor_key(n.attrs["key"])
    out = gen.name(n.out)
    # the region x[key] has the shape of x with the indexed dims replaced by the index tensors' broadcast
    region = x.type.shape[:first] + broadcast_shapes(*(i.type.shape for i in indices)) + x.type.shape[last + 1:]
    gen.emit(1, f"{out} = {gen.fresh(x)}")
    depth, position, loop = _gathered_positions(gen, n, x, indices, first, last, region)
    parts = broadcast_index(values.type.shape, region)
    gen.emit(1 + depth, f"{out}[{index_text(position)}] {'+=' if n.attrs['accumulate'] else '='} "
                        f"{gen.element(values, parts)}")
    return "C"


def _count(gen: "_Generator", n: Node) -> str:
    """The element count of a reduction, from its input's shape (printed as a product of sizes, so a kernel
    generic in a size reads it at run time): every element of the result holds it."""
    shape = n.operands[0].type.shape
    count = " * ".join(str(shape[a]) for a in n.attrs["axes"]) or "1"
    gen.allocate(gen.name(n.out), n.out.type.shape, np.int64, fill=f"np.int64({count})")
    return "C"


LOWERINGS = {"matmul": _matmul, "permute": _permute, "reshape": _reshape, "index": _index_read,
              "index_put": _index_put, "cat": _cat, "gather": _gather, "scatter_add": _scatter_add,
              "argmax": _arg_extremum, "argmin": _arg_extremum, "count": _count}

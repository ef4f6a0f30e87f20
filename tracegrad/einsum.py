"""einsum as a composition of permute, reshape, index, sum, mul and matmul (so it differentiates and compiles).

Labels are letters; the dims an ellipsis covers get integer labels, aligned from the right and broadcast
like NumPy's. Each operand first takes the diagonal of repeated labels and sums the labels no one else
needs; operands are then contracted left to right, each pair as one matrix product (a broadcast product
when no label is contracted).
"""
from __future__ import annotations

import math
import string

import numpy as np

from . import dtypes
from .ops import _cast
from .shapes import getitem
from .tensor import Tensor

Label = str | int
_LETTERS = set(string.ascii_letters)


def _term_labels(term: str, ndim: int, position: int) -> list[Label]:
    """The labels of one operand's subscripts: letters as they are, the ellipsis's dims as 0, 1, ... counted so
    that the last dim it covers is -1 (made non-negative later)."""
    for char in term.replace("...", ""):
        if char not in _LETTERS:
            raise RuntimeError(f"einsum(): invalid subscript given at index {position + term.index(char)} in the "
                               f"equation string, subscripts must be in [a-zA-Z]")
    head, ellipsis, tail = term.partition("...")
    letters = len(head) + len(tail)
    if not ellipsis and letters != ndim or ellipsis and letters > ndim:
        raise RuntimeError(f"einsum(): the number of subscripts in the equation ({letters}) does not match the number "
                           f"of dimensions ({ndim}) for operand {position}"
                           f"{'' if ellipsis else ' and no ellipsis was given'}")
    covered = ndim - letters if ellipsis else 0
    return list(head) + list(range(-covered, 0)) + list(tail)


def _parse(equation: str, operands: tuple) -> tuple[list[list[Label]], list[Label]]:
    """Each operand's labels and the output's, for an equation with or without '->'."""
    equation = equation.replace(" ", "")
    lhs, arrow, rhs = equation.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(operands):
        raise RuntimeError(f"einsum(): {'more' if len(operands) > len(terms) else 'fewer'} operands were provided "
                           f"than specified in the equation ({len(terms)} in {equation!r}, {len(operands)} given)")
    offsets = np.cumsum([0] + [len(t) + 1 for t in terms])
    labels = [_term_labels(t, x.ndim, int(p)) for t, x, p in zip(terms, operands, offsets)]
    covered = max((-min((a for a in ls if isinstance(a, int)), default=0) for ls in labels), default=0)
    labels = [[a + covered if isinstance(a, int) else a for a in ls] for ls in labels]  # ellipsis dims: 0..covered-1
    if not arrow:
        counts = [a for ls in labels for a in ls if isinstance(a, str)]
        return labels, list(range(covered)) + sorted(a for a in set(counts) if counts.count(a) == 1)
    output = _term_labels(rhs, len(rhs.replace("...", "")) + covered * ("..." in rhs), len(lhs) + 2)
    output = [a + covered if isinstance(a, int) else a for a in output]
    known = {a for ls in labels for a in ls}
    for a in output:
        if output.count(a) > 1:
            raise RuntimeError(f"einsum(): output subscript {a} appears more than once in the output")
        if a not in known:
            raise RuntimeError(f"einsum(): output subscript {a} does not appear in the equation for any input operand")
    return labels, output


def _label_sizes(operands: tuple, labels: list[list[Label]]) -> dict[Label, int]:
    """Each label's size, broadcasting size-1 dims (RuntimeError where two sizes differ otherwise)."""
    sizes: dict[Label, int] = {}
    for x, ls in zip(operands, labels):
        for a, size in zip(ls, x.shape):
            if sizes.get(a, 1) != 1 and size not in (1, sizes[a]):
                raise RuntimeError(f"einsum(): operands do not broadcast: subscript {a} has size {sizes[a]} in one "
                                   f"operand and {size} in another")
            sizes[a] = size if sizes.get(a, 1) == 1 else sizes[a]
    return sizes


def _diagonal(x: Tensor, labels: list[Label]) -> tuple[Tensor, list[Label]]:
    """x with each repeated label reduced to its diagonal (one dim per label, at the end)."""
    for a in [a for a in dict.fromkeys(labels) if labels.count(a) > 1]:
        at = [k for k, b in enumerate(labels) if b == a]
        rest = [k for k in range(x.ndim) if k not in at]
        diagonal = Tensor._make(np.arange(x.shape[at[0]]))
        x = getitem(x.permute(rest + at), (slice(None),) * len(rest) + (diagonal,) * len(at))
        labels = [labels[k] for k in rest] + [a]
    return x, labels


def _sum_unneeded(x: Tensor, labels: list[Label], needed: set) -> tuple[Tensor, list[Label]]:
    """x summed over the labels not in needed."""
    dims = [k for k, a in enumerate(labels) if a not in needed]
    if not dims:
        return x, labels
    return x.sum(dims), [a for a in labels if a in needed]


def _arranged(x: Tensor, labels: list[Label], order: list[Label], sizes: dict[Label, int]) -> Tensor:
    """x permuted to order (labels it lacks become size-1 dims), size-1 dims expanded to their label's size
    where ``sizes`` names one."""
    present = [a for a in order if a in labels]
    x = x.permute([labels.index(a) for a in present]) if labels else x
    x = x.reshape([x.shape[present.index(a)] if a in labels else 1 for a in order])
    target = [sizes.get(a, s) for a, s in zip(order, x.shape)]
    return x.expand(target) if list(x.shape) != target else x


def _contract(a: Tensor, la: list[Label], b: Tensor, lb: list[Label], needed: set,
              sizes: dict[Label, int]) -> tuple[Tensor, list[Label]]:
    """The product of two operands over their shared labels, summing those not needed afterwards."""
    shared = [c for c in la if c in lb]
    batch = [c for c in shared if c in needed]
    summed = [c for c in shared if c not in needed]
    only_a = [c for c in la if c not in lb]
    only_b = [c for c in lb if c not in la]
    out_labels = batch + only_a + only_b
    if not summed:  # a broadcast product: outer products, elementwise products
        order = out_labels
        return _arranged(a, la, order, {}) * _arranged(b, lb, order, {}), out_labels
    common = {c: sizes[c] for c in batch + summed}
    a = _arranged(a, la, batch + only_a + summed, common)
    b = _arranged(b, lb, batch + summed + only_b, common)
    lead = [common[c] for c in batch]
    m = math.prod(a.shape[len(batch):len(batch) + len(only_a)])
    n = math.prod(b.shape[len(batch) + len(summed):])
    k = math.prod(common[c] for c in summed)
    if batch:
        product = a.reshape(-1, m, k) @ b.reshape(-1, k, n)
    else:
        product = a.reshape(m, k) @ b.reshape(k, n)
    shape = lead + list(a.shape[len(batch):len(batch) + len(only_a)]) + list(b.shape[len(batch) + len(summed):])
    return product.reshape(shape), out_labels


def einsum(equation: str, *operands) -> Tensor:
    """Sum of products over the subscripts of an Einstein-summation equation ('ij,jk->ik', '...ij->...ji')."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if not operands or not all(isinstance(x, Tensor) for x in operands):
        raise TypeError("einsum(): expected an equation string followed by one or more Tensors")
    labels, output = _parse(equation, operands)
    sizes = _label_sizes(operands, labels)
    result_dtype = operands[0].dtype
    for x in operands[1:]:
        result_dtype = dtypes.promote_types(result_dtype, x.dtype)
    terms = []
    for position, (x, ls) in enumerate(zip(operands, labels)):
        x, ls = _diagonal(_cast(x, result_dtype), ls)
        others = {c for later in labels[:position] + labels[position + 1:] for c in later}
        terms.append(_sum_unneeded(x, ls, others | set(output)))
    x, ls = terms[0]
    for position, (y, ly) in enumerate(terms[1:], start=1):
        needed = set(output) | {c for later in labels[position + 1:] for c in later}
        x, ls = _sum_unneeded(x, ls, needed | set(ly))
        y, ly = _sum_unneeded(y, ly, needed | set(ls))
        x, ls = _contract(x, ls, y, ly, needed, sizes)
    x, ls = _sum_unneeded(x, ls, set(output))
    return _arranged(x, ls, output, sizes) if ls != output else x

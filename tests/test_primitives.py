"""Every primitive in the table, exercised through the public ops.

One table (CASES) lists, per primitive, calls of the public ops that reach it, with a NumPy reference.
From it the tests check values against NumPy, the primitives' shape and dtype rules against the eager
results, gradients against finite differences (float64), second derivatives of the elementwise and
matmul set, input-shaped gradients on every shape (size-0 included) and, for the non-differentiable
primitives, that nothing is recorded. Exact-value tests at the end pin the rules at kinks and ties.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import scipy.special

import tracegrad as tg
from tracegrad.autograd import gradcheck, gradgradcheck
from tracegrad.dtypes import from_numpy
from tracegrad.primitives import REGISTRY
from tracegrad.primitives import reduce as R
from tracegrad.tensor import apply

# Primitives whose results carry no gradient, by specification (not read from the table, so a VJP
# that goes missing from a differentiable primitive is caught rather than reclassified).
NON_DIFFERENTIABLE = {"eq", "ne", "lt", "le", "gt", "ge", "logical_not", "isnan", "isinf", "bitwise_and",
                      "bitwise_or", "bitwise_xor", "floor_divide", "argmax", "argmin", "any", "all", "count",
                      "argsort"}


# ---- inputs ----------------------------------------------------------------------------------------

def positive(shape, seed=0) -> np.ndarray:
    """float64 values in [0.5, 2): inside the domain of log, sqrt and pow."""
    return np.random.default_rng(seed).uniform(0.5, 2.0, shape)


def signed(shape, seed=0) -> np.ndarray:
    """float64 values with random signs and magnitudes in [0.3, 2): away from the kinks at 0."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0.3, 2.0, shape) * rng.choice([-1.0, 1.0], shape)


def small_ints(shape, seed=0, dtype=np.float64) -> np.ndarray:
    """Values in {0, 1, 2}: equal elements are likely (comparisons, ties)."""
    return np.random.default_rng(seed).integers(0, 3, shape).astype(dtype)


def bools(shape, seed=0) -> np.ndarray:
    """A random boolean mask."""
    return np.random.default_rng(seed).random(shape) < 0.5


def as_tensors(arrays, requires_grad: bool) -> list:
    """Tensors of the case's arrays; float ones become leaves requiring grad when asked."""
    return [tg.tensor(a, requires_grad=requires_grad and a.dtype.kind == "f") for a in arrays]


# ---- NumPy references --------------------------------------------------------------------------------

def add_rows_ref(x: np.ndarray, rows, v: np.ndarray) -> np.ndarray:
    """x with v[k] added to row rows[k], one row at a time (repeated rows add up)."""
    out = x.copy()
    for k, r in enumerate(rows):
        out[r] += v[k]
    return out


def setitem_ref(x: np.ndarray, key, v: np.ndarray) -> np.ndarray:
    """A copy of x with x[key] = v."""
    out = x.copy()
    out[key] = v
    return out


def gather_ref(x: np.ndarray, dim: int, idx: np.ndarray) -> np.ndarray:
    """out[p] = x[p with p[dim] replaced by idx[p]], element by element."""
    out = np.empty(idx.shape, x.dtype)
    for p in np.ndindex(idx.shape):
        src = list(p)
        src[dim] = idx[p]
        out[p] = x[tuple(src)]
    return out


def scatter_add_ref(x: np.ndarray, dim: int, idx: np.ndarray, src: np.ndarray) -> np.ndarray:
    """out[p with p[dim] replaced by idx[p]] += src[p], element by element."""
    out = x.copy()
    for p in np.ndindex(idx.shape):
        dst = list(p)
        dst[dim] = idx[p]
        out[tuple(dst)] += src[p]
    return out


# ---- the case table ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """Public op(s) reaching primitive ``prim``, their arguments and a NumPy reference."""

    prim: str
    op: Callable
    args: tuple
    ref: Callable | None = None  # None: ``op`` itself (operators and indexing work on ndarrays too)
    label: str = ""
    float_result: bool = True    # False for casts to integer or bool types
    smooth: bool = True          # False: inputs sit on a discontinuity, finite differences don't apply
    gradcheck_eps: float = 1e-6  # larger where the op rounds to float32 (differences need a wider step)

    @property
    def differentiable(self) -> bool:
        has_float_input = any(a.dtype.kind == "f" for a in self.args)
        return self.prim not in NON_DIFFERENTIABLE and self.float_result and has_float_input

    def reference(self, *arrays):
        return (self.ref or self.op)(*arrays)

    def __str__(self) -> str:
        return f"{self.prim}-{self.label}"


CASES: list[Case] = []


def case(prim: str, op: Callable, *args: np.ndarray, ref: Callable | None = None, label: str = "", **kw) -> None:
    """Add a case to the table (labelled by its argument shapes unless a label is given)."""
    CASES.append(Case(prim, op, tuple(args), ref, label or ",".join(str(a.shape) for a in args), **kw))


EDGE_SHAPES = [(3, 4), (), (1,), (0, 3)]

# name -> (public op, NumPy reference, input sampler)
UNARY = {
    "neg": (operator.neg, np.negative, signed),
    "exp": (tg.exp, np.exp, signed),
    "log": (tg.log, np.log, positive),
    "log1p": (tg.log1p, np.log1p, positive),
    "expm1": (tg.expm1, np.expm1, signed),
    "sqrt": (tg.sqrt, np.sqrt, positive),
    "sin": (tg.sin, np.sin, signed),
    "cos": (tg.cos, np.cos, signed),
    "tanh": (tg.tanh, np.tanh, signed),
    "sigmoid": (tg.sigmoid, scipy.special.expit, signed),
    "relu": (tg.relu, lambda a: np.maximum(a, 0.0), signed),
    "abs": (tg.abs, np.abs, signed),
    "erf": (tg.erf, scipy.special.erf, signed),
    "sign": (tg.sign, np.sign, signed),
    "floor": (tg.floor, np.floor, signed),
    "ceil": (tg.ceil, np.ceil, signed),
    "round": (tg.round, np.round, signed),
    "trunc": (tg.trunc, np.trunc, signed),
}
for _name, (_op, _ref, _sample) in UNARY.items():
    for _shape in EDGE_SHAPES:
        case(_name, _op, _sample(_shape), ref=_ref)
case("neg", lambda x: x.neg(), small_ints((2, 3), dtype=np.int64), ref=np.negative, label="int64")
case("abs", lambda x: x.abs(), small_ints((2, 3), dtype=np.int64) - 1, ref=np.abs, label="int64")
case("round", tg.round, np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49]), ref=np.round, label="halves-to-even", smooth=False)
case("exp", lambda x: x.exp(), small_ints((2, 3), dtype=np.int64), ref=lambda a: np.exp(a).astype(np.float32),
     label="int64-computes-in-float32")

SPECIAL = np.array([1.0, np.nan, np.inf, -np.inf, 0.0, -2.5])
case("isnan", tg.isnan, SPECIAL, ref=np.isnan)
case("isinf", lambda x: x.isinf(), SPECIAL, ref=np.isinf)
case("isnan", tg.isnan, signed((2, 3)), ref=np.isnan, label="no-nan")
case("logical_not", tg.logical_not, SPECIAL, ref=np.logical_not, label="float")
case("logical_not", operator.invert, bools((3, 4)), ref=np.logical_not, label="bool-invert")

BROADCAST_SHAPES = [((3, 4), (3, 4)), ((3, 1), (1, 4)), ((2, 3), (3,)), ((), (2, 3)), ((2, 3), ()), ((1,), ()),
                    ((0, 3), (1, 3))]
# name -> (public op, NumPy reference, sampler of the left operand, sampler of the right operand)
BINARY = {
    "add": (operator.add, np.add, signed, signed),
    "sub": (operator.sub, np.subtract, signed, signed),
    "mul": (operator.mul, np.multiply, signed, signed),
    "div": (operator.truediv, np.true_divide, signed, positive),
    "pow": (operator.pow, np.power, positive, signed),
    "maximum": (tg.maximum, np.maximum, signed, signed),  # independent draws: no exact ties
    "minimum": (tg.minimum, np.minimum, signed, signed),
    "remainder": (operator.mod, np.remainder, signed, positive),
    "floor_divide": (operator.floordiv, np.floor_divide, signed, positive),
}
for _name, (_op, _ref, _left, _right) in BINARY.items():
    for _ls, _rs in BROADCAST_SHAPES:
        case(_name, _op, _left(_ls, seed=1), _right(_rs, seed=2), ref=_ref)
case("pow", lambda x: x ** 3, signed((2, 3)), ref=lambda a: a ** 3.0, label="int-exponent")
case("pow", lambda x: 2.0 ** x, signed((2, 3)), ref=lambda a: 2.0 ** a, label="scalar-base")
case("remainder", operator.mod, np.array([-7, 7, -7, 5]), np.array([3, -3, -3, 5]), label="int64-sign-of-divisor")
case("floor_divide", operator.floordiv, np.array([-7, 7, -7, 5]), np.array([2, -2, -2, 5]), label="int64")
case("add", operator.add, small_ints((2, 3), dtype=np.int64), small_ints((3,), dtype=np.int64), label="int64")
case("mul", operator.mul, small_ints((2, 3), dtype=np.int32), np.array(3, dtype=np.int32), label="int32")
case("div", operator.truediv, np.array([1, 2, 7]), np.array([2, 2, 2]),
     ref=lambda a, b: (a / b).astype(np.float32), label="int64-true-division")

for _name, _op in [("eq", operator.eq), ("ne", operator.ne), ("lt", operator.lt), ("le", operator.le),
                   ("gt", operator.gt), ("ge", operator.ge)]:
    case(_name, _op, small_ints((3, 4), seed=1), small_ints((3, 4), seed=2))
    case(_name, _op, small_ints((3, 1), seed=1), small_ints((4,), seed=2))
    case(_name, _op, small_ints((2, 3), seed=1, dtype=np.int64), small_ints((), seed=2, dtype=np.int64))
    case(_name, _op, small_ints((0, 3)), small_ints((3,)))
case("eq", lambda a: a == 1.0, small_ints((2, 3)), label="python-scalar")

for _name, _op in [("bitwise_and", operator.and_), ("bitwise_or", operator.or_), ("bitwise_xor", operator.xor)]:
    case(_name, _op, bools((3, 4), seed=1), bools((3, 4), seed=2))
    case(_name, _op, np.array([[12], [5]]), np.array([10, 3, 6]), label="int64-broadcast")
    case(_name, lambda a, b, f=_op: f(a > 1.0, b < 1.0), positive((3, 4), seed=1), positive((3, 4), seed=2),
         label="masks-of-floats")

case("where", tg.where, bools((3, 4)), signed((3, 4), seed=1), signed((3, 4), seed=2), ref=np.where)
case("where", tg.where, bools((3, 1)), signed((1, 4), seed=1), signed((), seed=2), ref=np.where)
case("where", lambda c, x: tg.where(c, x, 0.0), bools((2, 3)), signed((2, 3)), ref=lambda c, x: np.where(c, x, 0.0),
     label="scalar-other")
case("where", lambda c, x: x.masked_fill(c, -1.5), bools((2, 3)), signed((2, 3)),
     ref=lambda c, x: np.where(c, -1.5, x), label="masked_fill")
case("where", tg.where, bools((0, 3)), signed((0, 3)), signed((3,)), ref=np.where)

case("cast", lambda x: x.to(tg.float32).to(tg.float64), signed((3, 4)),
     ref=lambda a: a.astype(np.float32).astype(np.float64), label="float64-float32-float64", gradcheck_eps=1e-3)
case("cast", lambda x: x.float(), signed(()), ref=lambda a: a.astype(np.float32), label="0-d", gradcheck_eps=1e-3)
case("cast", lambda x: x.long(), signed((2, 3)) * 3, ref=lambda a: a.astype(np.int64), label="to-int64-truncates",
     float_result=False)
case("cast", lambda x: x.bool(), np.array([0.0, -0.5, 2.0]), ref=lambda a: a.astype(bool), label="to-bool",
     float_result=False)
case("cast", lambda x: x.double(), bools((2, 2)), ref=lambda a: a.astype(np.float64), label="bool-to-float64")
case("cast", lambda x: x.int(), np.array([1, -2, 3]), ref=lambda a: a.astype(np.int32), label="int64-to-int32")

case("copy", tg.clone, signed((3, 4)), ref=np.copy)
case("copy", lambda x: x.t().contiguous(), signed((3, 4)), ref=lambda a: np.ascontiguousarray(a.T),
     label="contiguous-of-transpose")
case("copy", tg.clone, signed(()), ref=np.copy)
case("copy", tg.clone, signed((0, 2)), ref=np.copy)

# ---- reductions
REDUCTIONS = {"sum": np.sum, "amax": np.amax, "amin": np.amin, "prod": np.prod}
REDUCE_DIMS = [None, 0, -1, (0, 2), (-1, 1)]
for _name, _ref in REDUCTIONS.items():
    for _dim in REDUCE_DIMS:
        for _keep in (False, True):
            # amax/amin take dim=() for "every dim" (like PyTorch); sum/prod take None
            _arg = () if _dim is None and _name in ("amax", "amin") else _dim
            case(_name, lambda x, n=_name, d=_arg, k=_keep: getattr(x, n)(d, keepdim=k), signed((2, 3, 4)),
                 ref=lambda a, r=_ref, d=_dim, k=_keep: r(a, axis=d, keepdims=k), label=f"dim={_dim},keepdim={_keep}")
    case(_name, lambda x, n=_name: getattr(x, n)(), signed(()), ref=_ref, label="0-d")
    case(_name, lambda x, n=_name: getattr(x, n)(0), signed((1, 3)), ref=lambda a, r=_ref: r(a, axis=0),
         label="size-1-dim")
    case(_name, lambda x, n=_name: getattr(x, n)(0), signed((2, 0)), ref=lambda a, r=_ref: r(a, axis=0),
         label="size-0-kept-dim")
case("sum", lambda x: x.sum(0), signed((0, 3)), ref=lambda a: np.sum(a, axis=0), label="over-size-0-dim")
case("prod", lambda x: x.prod(1), signed((3, 0)), ref=lambda a: np.prod(a, axis=1), label="over-size-0-dim")
case("prod", lambda x: x.prod(1), np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0], [1.5, -2.0, 0.5]]),
     ref=lambda a: np.prod(a, axis=1), label="with-zeros")
case("sum", lambda x: x.sum(), bools((3, 4)), ref=lambda a: np.sum(a, dtype=np.int64), label="bool-counts-int64")
case("sum", lambda x: x.sum(1), small_ints((2, 3), dtype=np.int32), ref=lambda a: np.sum(a, axis=1, dtype=np.int64),
     label="int32-sums-in-int64")
case("sum", lambda x: x.mean(1), signed((2, 3)), ref=lambda a: np.mean(a, axis=1), label="mean")

# count: reached from the front end only by traced means, so called directly here
for _axes, _keep in (((1,), False), ((0, 1), True), ((), False)):
    case("count", lambda x, a=_axes, k=_keep: apply(R.reduce_count, x, axes=a, keepdim=k), signed((3, 4)),
         ref=lambda v, a=_axes, k=_keep: np.full(np.sum(v, axis=a, keepdims=k).shape, np.prod([v.shape[i] for i in a]),
                                                 np.int64), label=f"axes={_axes},keepdim={_keep}")

TIES = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 1.0, 2.0], [0.0, -1.0, 5.0, 5.0]])
for _name, _ref in (("argmax", np.argmax), ("argmin", np.argmin)):
    case(_name, lambda x, n=_name: getattr(x, n)(), TIES, ref=_ref, label="flat-first-of-ties")
    case(_name, lambda x, n=_name: getattr(x, n)(1), TIES, ref=lambda a, r=_ref: r(a, axis=1), label="dim=1")
    case(_name, lambda x, n=_name: getattr(x, n)(-2, keepdim=True), signed((3, 4)),
         ref=lambda a, r=_ref: r(a, axis=0, keepdims=True), label="dim=-2,keepdim")
    case(_name, lambda x, n=_name: getattr(tg, n)(x), signed(()), ref=_ref, label="0-d")
for _name, _ref in (("any", np.any), ("all", np.all)):
    case(_name, lambda x, n=_name: getattr(x, n)(), bools((3, 4)), ref=_ref, label="all-dims")
    case(_name, lambda x, n=_name: getattr(x, n)(1, keepdim=True), bools((3, 4)),
         ref=lambda a, r=_ref: r(a, axis=1, keepdims=True), label="dim=1,keepdim")
    case(_name, lambda x, n=_name: getattr(x, n)(-1), small_ints((2, 3)), ref=lambda a, r=_ref: r(a, axis=-1),
         label="float-nonzero")
    case(_name, lambda x, n=_name: getattr(x, n)(0), bools((0, 2)), ref=lambda a, r=_ref: r(a, axis=0),
         label="empty")

SORT_TIES = np.array([[1.0, np.nan, 3.0, 1.0, -np.inf, 3.0], [2.0, 2.0, 2.0, 0.0, np.nan, np.nan]])


def stable_argsort_ref(a: np.ndarray, axis: int, descending: bool) -> np.ndarray:
    """Stable order along axis, NaN as the largest value: descending keeps ties in their original order too."""
    keys = np.where(np.isnan(a), np.inf, a)  # NaN after inf (stable among themselves)
    rank = np.isnan(a).astype(np.int64)
    order = np.lexsort((rank, keys), axis=axis) if not descending else np.lexsort((-rank, -keys), axis=axis)
    return order.astype(np.int64)


for _desc in (False, True):
    case("argsort", lambda x, d=_desc: x.argsort(-1, descending=d), SORT_TIES,
         ref=lambda a, d=_desc: stable_argsort_ref(a, 1, d), label=f"ties-nan,descending={_desc}")
    case("argsort", lambda x, d=_desc: tg.argsort(x, 0, descending=d), small_ints((4, 3)),
         ref=lambda a, d=_desc: stable_argsort_ref(a, 0, d), label=f"dim=0,descending={_desc}")
case("argsort", lambda x: x.argsort(), signed(()), ref=lambda a: np.array(0), label="0-d")
case("argsort", lambda x: x.argsort(1), signed((2, 0)), ref=lambda a: np.zeros((2, 0), np.int64), label="empty")
case("argsort", lambda x: x.argsort(descending=True), bools((5,)),
     ref=lambda a: stable_argsort_ref(a.astype(np.float64), 0, True), label="bool")

# ---- movement
case("reshape", lambda x: x.reshape(2, 6), signed((3, 4)), ref=lambda a: a.reshape(2, 6))
case("reshape", lambda x: x.view(-1), signed((3, 4)), ref=lambda a: a.reshape(-1), label="view(-1)")
case("reshape", lambda x: x.t().reshape(12), signed((3, 4)), ref=lambda a: a.T.reshape(12), label="non-contiguous")
case("reshape", lambda x: x.reshape(1, 1), signed(()), ref=lambda a: a.reshape(1, 1), label="0-d")
case("reshape", lambda x: x.reshape(()), signed((1, 1)), ref=lambda a: a.reshape(()), label="to-0-d")
case("reshape", lambda x: x.reshape(3, 0), signed((0, 3)), ref=lambda a: a.reshape(3, 0))
case("reshape", lambda x: x.unsqueeze(1).squeeze(), signed((3,)), ref=lambda a: a.copy(), label="unsqueeze-squeeze")
case("reshape", lambda x: x.flatten(1), signed((2, 3, 2)), ref=lambda a: a.reshape(2, 6), label="flatten")

case("permute", lambda x: x.permute(2, 0, 1), signed((2, 3, 4)), ref=lambda a: a.transpose(2, 0, 1))
case("permute", lambda x: x.permute(-1, 1, -3), signed((2, 3, 4)), ref=lambda a: a.transpose(2, 1, 0),
     label="negative-dims")
case("permute", lambda x: x.t(), signed((3, 4)), ref=lambda a: a.T, label="t")
case("permute", lambda x: x.transpose(0, -1), signed((1, 3, 0)), ref=lambda a: a.swapaxes(0, -1))

case("expand", lambda x: x.expand(3, 4), signed((3, 1)), ref=lambda a: np.broadcast_to(a, (3, 4)))
case("expand", lambda x: x.expand(2, 3, 4), signed((4,)), ref=lambda a: np.broadcast_to(a, (2, 3, 4)),
     label="new-leading-dims")
case("expand", lambda x: x.expand(-1, 4), signed((3, 1)), ref=lambda a: np.broadcast_to(a, (3, 4)), label="-1")
case("expand", lambda x: x.expand(2, 2), signed(()), ref=lambda a: np.broadcast_to(a, (2, 2)))
case("expand", lambda x: x.expand(0, 3), signed((1, 3)), ref=lambda a: np.broadcast_to(a, (0, 3)))

case("cat", lambda a, b: tg.cat([a, b]), signed((2, 3)), signed((4, 3), seed=1),
     ref=lambda a, b: np.concatenate([a, b]))
case("cat", lambda a, b: tg.cat([a, b], -1), signed((2, 3)), signed((2, 1), seed=1),
     ref=lambda a, b: np.concatenate([a, b], -1))
case("cat", lambda a, b, c: tg.cat([a, b, c], 1), signed((2, 1)), signed((2, 0), seed=1), signed((2, 2), seed=2),
     ref=lambda a, b, c: np.concatenate([a, b, c], 1))
case("cat", lambda a, b: tg.stack([a, b], 1), signed((2, 3)), signed((2, 3), seed=1),
     ref=lambda a, b: np.stack([a, b], 1), label="stack")
case("cat", lambda a, b: tg.cat([a, b]), np.array([1, 2]), np.array([3]), ref=lambda a, b: np.concatenate([a, b]))

MATMUL_SHAPES = [((3,), (3,)), ((3,), (3, 2)), ((2, 3), (3,)), ((2, 3), (3, 4)), ((2, 2, 3), (3, 4)),
                 ((3,), (2, 3, 4)), ((2, 2, 3), (3,)), ((2, 1, 2, 3), (3, 3, 2)), ((4, 2, 3), (4, 3, 2)),
                 ((1, 3), (3, 1)), ((2, 0), (0, 3)), ((0, 3), (3, 2))]
for _ls, _rs in MATMUL_SHAPES:
    case("matmul", operator.matmul, signed(_ls, seed=1), signed(_rs, seed=2))
case("matmul", lambda a, b: a.mm(b), signed((2, 3)), signed((3, 2), seed=1), ref=np.matmul, label="mm")
case("matmul", lambda a, b: a.bmm(b), signed((2, 2, 3)), signed((2, 3, 2), seed=1), ref=np.matmul, label="bmm")

# ---- indexing
MASK = np.array([[True, False, True, False], [False, False, True, True], [True, True, False, False]])
INDEX_KEYS = {
    "slices": (slice(1, None), slice(None, None, 2)),
    "int-and-list": (slice(1, None), [0, 2]),
    "negative": (-1, slice(-3, -1)),
    "none-ellipsis": (None, Ellipsis, 1),
    "repeated-list": ([0, 0, 2],),
    "two-arrays": (np.array([[0, 2], [1, 1]]), np.array([[3, 0], [1, 1]])),
    "0-d-result": (0, 1),
    "bool-mask": (MASK,),
    "bool-row-mask": (np.array([True, False, True]),),
    "empty-list": (np.array([], dtype=np.int64),),
}
for _label, _key in INDEX_KEYS.items():
    case("index", lambda x, k=_key: x[k], signed((3, 4)), label=_label)
case("index", lambda x: x[:, 1], signed((0, 3)), label="size-0")
case("index", lambda x, i: x[i], signed((5,)), np.array([4, -1, 0]), label="index-tensor")
case("index", lambda x, m: x[m], signed((2, 3)), bools((2, 3)), label="mask-tensor")
case("index", lambda x: x.index_select(1, tg.tensor([3, 0, 3])), signed((2, 4)), ref=lambda a: a[:, [3, 0, 3]],
     label="index_select")
case("index", lambda x: x.narrow(1, 1, 2), signed((2, 4)), ref=lambda a: a[:, 1:3], label="narrow")
case("index", lambda x: x.flip(0), signed((3, 2)), ref=lambda a: a[::-1], label="flip")


def setitem_case(key, value: np.ndarray, label: str) -> None:
    """x.clone()[key] = value, checked against the same assignment on a NumPy copy."""
    def op(x, v):
        y = x.clone()
        y[key] = v
        return y

    case("index_put", op, signed((3, 4)), value, ref=lambda x, v: setitem_ref(x, key, v), label=label)


setitem_case((slice(1, None), [0, 2]), signed((2, 2), seed=1), "setitem-slice-and-list")
setitem_case((MASK,), signed((), seed=1), "setitem-mask-broadcast-0-d")
setitem_case((1,), signed((4,), seed=1), "setitem-row")
setitem_case((slice(None), 0), signed((1,), seed=1), "setitem-column-broadcast")
setitem_case((np.array([0, 2]),), signed((4,), seed=1), "setitem-rows-broadcast")
case("index_put", lambda x, v: tg.index_put(x, (tg.tensor([0, 2, 0]),), v, accumulate=True), signed((3, 4)),
     signed((3, 4), seed=1), ref=lambda x, v: add_rows_ref(x, [0, 2, 0], v), label="accumulate-repeated")
case("index_put", lambda x, v: x.index_put((tg.tensor([1]), tg.tensor([3])), v), signed((2, 4)), signed((1,), seed=1),
     ref=lambda x, v: setitem_ref(x, ([1], [3]), v), label="method")


IDX = np.array([[0, 2, 1, 0], [1, 1, 0, 2], [2, 0, 2, 1]])
case("gather", lambda x, i: x.gather(1, i), signed((3, 4)), IDX[:, :2], ref=lambda x, i: gather_ref(x, 1, i))
case("gather", lambda x, i: x.gather(0, i), signed((3, 4)), IDX[:2], ref=lambda x, i: gather_ref(x, 0, i))
case("gather", lambda x, i: tg.gather(x, -1, i), signed((3, 4)), IDX % 3, ref=lambda x, i: gather_ref(x, 1, i),
     label="negative-dim-repeats")
case("gather", lambda x, i: x.gather(0, i), signed(()), np.array(0), ref=lambda x, i: x.copy(), label="0-d")
case("gather", lambda x: x.max(0).values, signed(()), ref=lambda a: a.copy(), label="max(dim)-of-0-d")
case("gather", lambda x: x.max(1).values, TIES + signed((3, 4)) * 0.01, ref=lambda a: a.max(1), label="max(dim)")
case("scatter_add", lambda x, i, s: x.scatter_add(1, i, s), signed((3, 4)), IDX, signed((3, 4), seed=1),
     ref=lambda x, i, s: scatter_add_ref(x, 1, i, s))
case("scatter_add", lambda x, i, s: x.scatter_add(0, i, s), signed((3, 4)), IDX[:2], signed((2, 4), seed=1),
     ref=lambda x, i, s: scatter_add_ref(x, 0, i, s))
case("scatter_add", lambda x, i, s: x.scatter_add(0, i, s), signed(()), np.array(0), signed((), seed=1),
     ref=lambda x, i, s: x + s, label="0-d")

CASE_IDS = [str(c) for c in CASES]
DIFFERENTIABLE = [c for c in CASES if c.differentiable]
SMOOTH = [c for c in DIFFERENTIABLE if c.smooth]
NOT_DIFFERENTIABLE = [c for c in CASES if not c.differentiable and any(a.dtype.kind == "f" for a in c.args)]
SECOND_ORDER_KINDS = {"elementwise", "linalg"}
SECOND_ORDER = [c for c in SMOOTH if REGISTRY[c.prim].kind in SECOND_ORDER_KINDS]


def test_table_covers_every_registered_primitive():
    covered = {c.prim for c in CASES}
    assert covered >= set(REGISTRY), f"add cases for: {sorted(set(REGISTRY) - covered)}"
    assert covered <= set(REGISTRY), f"cases name unknown primitives: {sorted(covered - set(REGISTRY))}"


def test_every_primitive_has_its_gradient_checks():
    assert NON_DIFFERENTIABLE <= set(REGISTRY), f"stale names: {sorted(NON_DIFFERENTIABLE - set(REGISTRY))}"
    assert NON_DIFFERENTIABLE <= {c.prim for c in NOT_DIFFERENTIABLE}  # each seen with inputs requiring grad
    differentiable = set(REGISTRY) - NON_DIFFERENTIABLE
    assert differentiable <= {c.prim for c in SMOOTH}
    second_order = {name for name in differentiable if REGISTRY[name].kind in SECOND_ORDER_KINDS}
    assert second_order <= {c.prim for c in SECOND_ORDER}


@pytest.mark.parametrize("c", CASES, ids=CASE_IDS)
def test_values_match_numpy(c: Case):
    out = c.op(*as_tensors(c.args, requires_grad=False))
    expected = np.asarray(c.reference(*c.args))
    assert isinstance(out, tg.Tensor)
    assert tuple(out.shape) == expected.shape
    assert out.numpy().dtype == expected.dtype
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6, atol=1e-12)


@pytest.fixture
def impl_calls(monkeypatch):
    """Record (primitive, input arrays, attrs, result) of every primitive implementation that runs."""
    calls = []

    def recording(prim, impl):
        def run(*arrays, **attrs):
            result = impl(*arrays, **attrs)
            calls.append((prim, arrays, attrs, np.asarray(result)))
            return result
        return run

    for prim in REGISTRY.values():
        monkeypatch.setattr(prim, "impl", recording(prim, prim.impl))
    return calls


def _has_boolean_mask(prim, arrays) -> bool:
    return prim.name == "index" and any(a.dtype == np.bool_ for a in arrays[1:])


@pytest.mark.parametrize("c", CASES, ids=CASE_IDS)
def test_shape_and_dtype_rules_agree_with_eager_results(c: Case, impl_calls):
    c.op(*as_tensors(c.args, requires_grad=c.differentiable))
    assert any(prim.name == c.prim for prim, *_ in impl_calls), f"the case never ran primitive {c.prim}"
    for prim, arrays, attrs, result in impl_calls:
        shapes = [a.shape for a in arrays]
        in_dtypes = [from_numpy(a.dtype) for a in arrays]
        assert prim.dtype_rule(in_dtypes, **attrs) is from_numpy(result.dtype), (prim.name, in_dtypes, attrs)
        if _has_boolean_mask(prim, arrays):
            # The result size depends on the mask's values: a rule may refuse, but must not guess wrong.
            try:
                shape = prim.shape_rule(shapes, **attrs)
            except (ValueError, RuntimeError, NotImplementedError):
                continue
        else:
            shape = prim.shape_rule(shapes, **attrs)
        assert tuple(shape) == result.shape, (prim.name, shapes, attrs)


@pytest.mark.parametrize("c", SMOOTH, ids=str)
def test_gradcheck(c: Case):
    assert gradcheck(c.op, as_tensors(c.args, requires_grad=True), eps=c.gradcheck_eps)


@pytest.mark.parametrize("c", DIFFERENTIABLE, ids=str)
def test_backward_gives_gradients_shaped_like_the_inputs(c: Case):
    inputs = as_tensors(c.args, requires_grad=True)
    out = c.op(*inputs)
    assert out.requires_grad and out.grad_fn is not None
    out.backward(tg.ones_like(out))
    for x in inputs:
        if x.requires_grad:
            assert x.grad is not None and x.grad.shape == x.shape and x.grad.dtype == x.dtype


@pytest.mark.parametrize("c", NOT_DIFFERENTIABLE, ids=str)
def test_non_differentiable_results_do_not_require_grad(c: Case):
    out = c.op(*as_tensors(c.args, requires_grad=True))
    assert not out.requires_grad and out.grad_fn is None


@pytest.mark.parametrize("c", SECOND_ORDER, ids=str)
def test_second_order_gradcheck(c: Case):
    assert gradgradcheck(c.op, as_tensors(c.args, requires_grad=True), eps=c.gradcheck_eps)


# ---- exact gradients at kinks and ties (the values PyTorch defines there) ----------------------------

def grads(fn, *values) -> list:
    """Gradients of fn(*leaves).sum() with respect to float64 leaves holding values."""
    leaves = [tg.tensor(v, dtype=tg.float64, requires_grad=True) for v in values]
    fn(*leaves).sum().backward()
    return [x.grad.tolist() for x in leaves]


@pytest.mark.parametrize("fn, wins", [(tg.maximum, operator.gt), (tg.minimum, operator.lt)], ids=["max", "min"])
def test_elementwise_extremum_ties_split_the_gradient_evenly(fn, wins):
    x, y = [1.0, 2.0, 3.0, -1.0], [1.0, 1.0, 4.0, -1.0]
    share = [0.5 if a == b else float(wins(a, b)) for a, b in zip(x, y)]
    assert grads(fn, x, y) == [share, [1 - s for s in share]]


@pytest.mark.parametrize("name", ["amax", "amin"])
def test_reduction_extremum_ties_share_the_gradient(name):
    x = [[1.0, 3.0, 3.0], [2.0, 2.0, 2.0], [-3.0, 0.0, -3.0]]
    best = [max(row) if name == "amax" else min(row) for row in x]
    expected = [[float(v == b) / row.count(b) for v in row] for row, b in zip(x, best)]
    assert grads(lambda t: getattr(t, name)(1), x) == [expected]
    flat = [1.0, 3.0, 3.0] if name == "amax" else [3.0, 1.0, 1.0]
    assert grads(lambda t: getattr(t, name)(), flat) == [[0.0, 0.5, 0.5]]


def test_relu_and_abs_have_zero_gradient_at_zero():
    assert grads(tg.relu, [0.0, 2.0, -2.0]) == [[0.0, 1.0, 0.0]]
    assert grads(tg.abs, [0.0, 2.0, -2.0]) == [[0.0, 1.0, -1.0]]


def test_sqrt_gradient_at_zero_is_infinite():
    assert grads(tg.sqrt, [0.0, 4.0]) == [[math.inf, 0.25]]


def test_pow_with_tensor_exponent_at_zero_base():
    x = [0.0, 0.0, 0.0, 0.0, 0.0, 2.0]
    y = [2.0, 1.0, 0.0, 0.5, -1.0, 0.0]
    leaves = [tg.tensor(v, dtype=tg.float64, requires_grad=True) for v in (x, y)]
    out = leaves[0] ** leaves[1]
    assert out.tolist() == [0.0, 0.0, 1.0, 0.0, math.inf, 1.0]  # 0 ** 0 == 1, 0 ** -1 == inf
    out.sum().backward()
    # d/dx = y * x ** (y - 1), defined as 0 where y == 0;
    # d/dy = x ** y * log(x), defined as 0 where x == 0 and y >= 0.
    assert leaves[0].grad.tolist() == [0.0, 1.0, 0.0, math.inf, -math.inf, 0.0]
    assert leaves[1].grad.tolist() == [0.0, 0.0, 0.0, 0.0, -math.inf, math.log(2.0)]


def test_prod_gradient_is_the_product_of_the_others_even_with_zeros():
    assert grads(lambda t: t.prod(), [0.0, 2.0, 3.0]) == [[6.0, 0.0, 0.0]]
    assert grads(lambda t: t.prod(), [0.0, 0.0, 3.0]) == [[0.0, 0.0, 0.0]]
    assert grads(lambda t: t.prod(), [4.0, 2.0, 3.0]) == [[6.0, 12.0, 8.0]]


def test_remainder_gradient_with_respect_to_the_divisor():
    x, y = [-3.5, 3.5, 2.0], [2.0, -2.0, 1.5]
    # remainder(x, y) = x - floor(x / y) * y
    assert grads(tg.remainder, x, y) == [[1.0, 1.0, 1.0], [-math.floor(a / b) for a, b in zip(x, y)]]


def test_index_with_repeated_positions_accumulates_the_gradient():
    assert grads(lambda t: t[[0, 2, 0, 0]], [1.0, 2.0, 3.0]) == [[3.0, 0.0, 1.0]]


def test_scatter_add_gradient_gathers_for_the_source():
    x = tg.zeros(2, 3, dtype=tg.float64, requires_grad=True)
    src = tg.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=tg.float64, requires_grad=True)
    idx = tg.tensor([[2, 2], [0, 1]])
    weights = tg.tensor([[10.0, 20.0, 30.0], [40.0, 50.0, 60.0]], dtype=tg.float64)
    (x.scatter_add(1, idx, src) * weights).sum().backward()
    assert x.grad.tolist() == weights.tolist()
    assert src.grad.tolist() == [[30.0, 30.0], [40.0, 50.0]]

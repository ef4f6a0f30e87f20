"""The PyTorch-style op surface: functions (tracegrad.exp, ...) that are also Tensor methods.

Every op here is a few lines that promote types, normalize arguments and call primitives via
``apply``; composites (softmax, var, ...) are built from other ops, so they get gradients for free.
"""
from __future__ import annotations

import builtins
import collections
import math

import numpy as np

from . import dtypes
from .autograd.engine import name_node
from .autograd.grad_mode import no_grad
from .primitives import elementwise as E
from .primitives import indexing as I
from .primitives import movement as M
from .primitives import reduce as R
from .tensor import TRACE, Tensor, _data_dependent_shape, _wrap_dim, apply

# ---- operands and type promotion ----------------------------------------------------------------


def _const(value, d: dtypes.dtype) -> Tensor:
    standin = _traced_number(value)
    if standin is not None:  # a float argument a compiled step reads at every call
        return _cast(standin, d)
    return Tensor._make(np.array(value, dtype=d.np))


def _traced_number(value) -> Tensor | None:
    """The graph value a float argument of a traced step stands for (compiler/numbers.py), else None."""
    return None if TRACE.tracer is None else TRACE.tracer.standin(value)


def _cast(x, d: dtypes.dtype) -> Tensor:
    """x as a tensor of dtype d (Python numbers become constants)."""
    if isinstance(x, Tensor):
        return x if x._data.dtype == d.np else apply(E.cast, x, dtype=d, src=x.dtype)
    return _const(x, d)


def _check_operand(x, op: str) -> None:
    if not isinstance(x, (Tensor, int, float, bool, np.number, np.bool_)):
        raise TypeError(f"{op}(): expected a Tensor or a number as operand, got {type(x).__name__}")


def _promote(a, b, op: str) -> tuple[Tensor, Tensor]:
    """Two operands as tensors of their common dtype (PyTorch's promotion rule)."""
    if isinstance(a, Tensor):
        if isinstance(b, Tensor):
            if a._data.dtype == b._data.dtype:
                return a, b
            if a._data.ndim and b._data.ndim:  # what result_type decides for two tensors with dimensions
                d = dtypes.promote_types(a.dtype, b.dtype)
                return _cast(a, d), _cast(b, d)
        elif type(b) is float and a._data.dtype.kind == "f" or type(b) is int and a._data.dtype.kind in "fi":
            return a, Tensor._make(np.array(b, dtype=a._data.dtype))  # the common case: tensor op number
    _check_operand(a, op)
    _check_operand(b, op)
    d = dtypes.result_type(a, b)
    return _cast(a, d), _cast(b, d)


def _binary(prim, a, b) -> Tensor:
    a, b = _promote(a, b, prim.name)
    return apply(prim, a, b)


def _float_operands(a, b, op: str) -> tuple[Tensor, Tensor]:
    a, b = _promote(a, b, op)
    if a.dtype.category != dtypes.FLOAT:
        d = dtypes.get_default_dtype()
        a, b = _cast(a, d), _cast(b, d)
    return a, b


def _floating(x: Tensor) -> Tensor:
    """Integer and bool inputs of transcendental functions compute in the default float type."""
    return x if x._data.dtype.kind == "f" else _cast(x, dtypes.get_default_dtype())


# ---- arithmetic ---------------------------------------------------------------------------------

def add(input, other, *, alpha=1) -> Tensor:
    """input + alpha * other, with broadcasting."""
    if not _is_one(alpha):
        other = _binary(E.mul, other, alpha)
    return _binary(E.add, input, other)


def sub(input, other, *, alpha=1) -> Tensor:
    """input - alpha * other, with broadcasting."""
    if getattr(input, "dtype", None) is dtypes.bool_ and getattr(other, "dtype", None) is dtypes.bool_:
        raise RuntimeError("Subtraction, the `-` operator, with two bool tensors is not supported. "
                           "Use the `^` or `logical_xor()` operator instead.")
    if not _is_one(alpha):
        other = _binary(E.mul, other, alpha)
    return _binary(E.sub, input, other)


def div(input, other, *, rounding_mode: str | None = None) -> Tensor:
    """True division (integers give floats); rounding_mode 'floor' or 'trunc' rounds the result."""
    if rounding_mode == "floor":
        return floor_divide(input, other)
    if rounding_mode == "trunc":
        a, b = _promote(input, other, "div")
        if a.dtype.category != dtypes.FLOAT:
            _check_integer_divisor(b)
            return apply(E.trunc, apply(E.div, _cast(a, dtypes.float64), _cast(b, dtypes.float64))).to(a.dtype)
        return apply(E.trunc, apply(E.div, a, b))
    if rounding_mode is not None:
        raise ValueError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but found '{rounding_mode}'")
    return apply(E.div, *_float_operands(input, other, "div"))


def _holds_zero(divisor: Tensor) -> bool:
    """Whether some element of divisor is zero.

    While a step is traced the test is recorded and its outcome becomes a guard, so a replay whose
    divisor holds a zero runs eagerly (and raises) instead of dividing by it; eagerly NumPy tests the array.
    """
    if TRACE.tracer is None:
        return not np.all(divisor._data)
    return bool((divisor == 0).any())


def _check_integer_divisor(divisor: Tensor) -> None:
    """Raise PyTorch's error for an integer division by zero (integers have no inf)."""
    if _holds_zero(divisor):
        raise RuntimeError("ZeroDivisionError: an integer tensor was divided by zero; make the divisor nonzero "
                           "or divide floating point tensors (which give inf)")


def _integer_division(prim, input, other) -> Tensor:
    a, b = _promote(input, other, prim.name)
    if a.dtype.category != dtypes.FLOAT:
        _check_integer_divisor(b)
    return apply(prim, a, b)


def floor_divide(input, other) -> Tensor:
    """Division rounded toward negative infinity."""
    return _integer_division(E.floor_divide, input, other)


def remainder(input, other) -> Tensor:
    """Python-style modulus (the sign of the divisor)."""
    return _integer_division(E.remainder, input, other)


def neg(input: Tensor) -> Tensor:
    """-input."""
    if input.dtype is dtypes.bool_:
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. "
                           "If you are trying to invert a mask, use the `~` or `logical_not()` operator instead.")
    return apply(E.neg, input)


def round(input: Tensor, *, decimals: int = 0) -> Tensor:
    """Round half to even, optionally to a number of decimals."""
    if decimals:
        scale = 10.0 ** decimals
        return apply(E.round, input * scale) / scale
    return apply(E.round, input)


def rsqrt(input: Tensor) -> Tensor:
    """1 / sqrt(input)."""
    return 1 / input.sqrt()


def reciprocal(input: Tensor) -> Tensor:
    """1 / input."""
    return 1 / _floating(input)


def square(input: Tensor) -> Tensor:
    """input * input."""
    return _binary(E.mul, input, input)


def tan(input: Tensor) -> Tensor:
    """Tangent, elementwise."""
    return input.sin() / input.cos()


def log2(input: Tensor) -> Tensor:
    """Base-2 logarithm."""
    return input.log() * (1 / np.log(2))


def log10(input: Tensor) -> Tensor:
    """Base-10 logarithm."""
    return input.log() * (1 / np.log(10))


def isfinite(input: Tensor) -> Tensor:
    """True where the element is neither inf nor NaN."""
    return logical_not(input.isnan() | input.isinf())


def clamp(input: Tensor, min=None, max=None) -> Tensor:
    """Limit values to [min, max] (either may be None); the gradient passes where min <= x <= max."""
    if min is None and max is None:
        raise RuntimeError("clamp: At least one of 'min' or 'max' must not be None")
    out = input
    if min is not None:
        out = where(out < min, min, out)
    if max is not None:
        out = where(out > max, max, out)
    return name_node(out, "ClampBackward1")


clip = clamp


def clamp_min(input: Tensor, min) -> Tensor:
    """max(input, min)."""
    return clamp(input, min=min)


def clamp_max(input: Tensor, max) -> Tensor:
    """min(input, max)."""
    return clamp(input, max=max)


def _is_one(value) -> bool:
    """True for the number 1 (a tensor-valued scale, e.g. a traced hyperparameter, is never skipped)."""
    return not isinstance(value, Tensor) and _traced_number(value) is None and value == 1


def lerp(input: Tensor, end: Tensor, weight) -> Tensor:
    """input + weight * (end - input) (for weights >= 0.5, end - (end - input) * (1 - weight), like PyTorch)."""
    if not isinstance(weight, Tensor) and weight >= 0.5:
        return end - (end - input) * (1 - weight)
    return input + weight * (end - input)


def addcmul(input: Tensor, tensor1: Tensor, tensor2: Tensor, *, value=1) -> Tensor:
    """input + value * tensor1 * tensor2."""
    return input + tensor1 * tensor2 if _is_one(value) else input + value * tensor1 * tensor2


def addcdiv(input: Tensor, tensor1: Tensor, tensor2: Tensor, *, value=1) -> Tensor:
    """input + value * tensor1 / tensor2."""
    return input + tensor1 / tensor2 if _is_one(value) else input + value * tensor1 / tensor2


def logaddexp(input, other) -> Tensor:
    """log(exp(input) + exp(other)), computed without overflow."""
    a, b = _promote(input, other, "logaddexp")
    if a.dtype.category != dtypes.FLOAT:
        raise NotImplementedError(f'"logaddexp" not implemented for {_legacy(a.dtype)} tensors; convert the '
                                  f"operands to a floating dtype first (x.float())")
    larger = apply(E.maximum, a, b)
    # Equal infinities would give inf - inf: their difference counts as 0 (the result is the infinity).
    diff = where(larger.isinf() & (a == b), 0, a - b)
    return name_node(larger + (-diff.abs()).exp().log1p(), "LogaddexpBackward0")


# ---- comparison and logic -----------------------------------------------------------------------

# equal, allclose and isclose compare the arrays in NumPy when no step is traced; while one is, they are
# tensor ops, so the comparison is part of the graph (and a Python bool of it a guard on its outcome).

def equal(input: Tensor, other: Tensor) -> bool:
    """True when both tensors have the same shape and elements."""
    if input.shape != other.shape:
        return False
    if TRACE.tracer is None:
        return bool(np.array_equal(input._data, other._data))
    return bool((input == other).all())


def allclose(input: Tensor, other: Tensor, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> bool:
    """True when all elements are close (|a - b| <= atol + rtol * |b|)."""
    if TRACE.tracer is None:
        return bool(np.allclose(input._data, other._data, rtol=rtol, atol=atol, equal_nan=equal_nan))
    return bool(isclose(input, other, rtol, atol, equal_nan).all())


def isclose(input: Tensor, other: Tensor, rtol: float = 1e-05, atol: float = 1e-08, equal_nan: bool = False) -> Tensor:
    """Elementwise closeness as a bool tensor."""
    if TRACE.tracer is None:
        return Tensor._make(np.isclose(input._data, other._data, rtol=rtol, atol=atol, equal_nan=equal_nan))
    # NumPy's formula, in the dtype NumPy computes it in (other made inexact, then promoted with input).
    d = dtypes.from_numpy(np.result_type(input._data.dtype, np.result_type(other._data.dtype, 1.0)))
    x, y = _cast(input, d), _cast(other, d)
    close = ((x - y).abs() <= atol + rtol * y.abs()) & isfinite(y) | (x == y)
    return close | x.isnan() & y.isnan() if equal_nan else close


def _logical(prim, a, b) -> Tensor:
    a, b = _promote(a, b, prim.name)
    if a.dtype.category == dtypes.FLOAT:
        raise TypeError(f"{prim.name} is only supported for integer and bool tensors, got {a.dtype}")
    return apply(prim, a, b)


def logical_not(input: Tensor) -> Tensor:
    """True where the element is zero/False."""
    return apply(E.logical_not, input)


def logical_and(input: Tensor, other: Tensor) -> Tensor:
    """Elementwise AND of truth values."""
    return input.bool() & other.bool()


def logical_or(input: Tensor, other: Tensor) -> Tensor:
    """Elementwise OR of truth values."""
    return input.bool() | other.bool()


def bitwise_not(input: Tensor) -> Tensor:
    """~input: logical not for bool, bitwise complement for integers."""
    if input.dtype is dtypes.bool_:
        return logical_not(input)
    if input.dtype.category == dtypes.FLOAT:
        raise TypeError("bitwise_not is only supported for integer and bool tensors")
    return -input - 1


def where(condition: Tensor, input=None, other=None) -> Tensor:
    """Elements of input where condition holds, else of other (both broadcast)."""
    if input is None and other is None:
        _data_dependent_shape("where(condition) with one argument")
        return nonzero(condition, as_tuple=True)
    if not isinstance(condition, Tensor) or condition.dtype is not dtypes.bool_:
        raise RuntimeError("where expected condition to be a boolean tensor")
    x, y = _promote(input, other, "where")
    return apply(E.where, condition, x, y)


def masked_fill(input: Tensor, mask: Tensor, value) -> Tensor:
    """input with the elements where mask is True replaced by value."""
    if not isinstance(mask, Tensor) or mask.dtype is not dtypes.bool_:
        raise RuntimeError("masked_fill only supports boolean masks")
    return name_node(apply(E.where, mask, _cast(value, input.dtype), input), "MaskedFillBackward0")


def nonzero(input: Tensor, *, as_tuple: bool = False):
    """Indices of the non-zero elements (no gradient)."""
    _data_dependent_shape("nonzero")
    idx = np.nonzero(input._data)
    if as_tuple:
        return tuple(Tensor._make(i.astype(np.int64)) for i in idx)
    return Tensor._make(np.stack(idx, axis=1).astype(np.int64) if idx else np.zeros((0, 0), np.int64))


# ---- reductions ---------------------------------------------------------------------------------

def _normalized(axes: tuple, ndim: int) -> bool:
    """True for a non-empty tuple of increasing ints in [0, ndim)."""
    previous = -1
    for a in axes:
        if type(a) is not int or a <= previous or a >= ndim:
            return False
        previous = a
    return previous >= 0


def _axes(dim, ndim: int) -> tuple[int, ...]:
    """Normalize dim (None, int, or a sequence) to sorted non-negative axes; None means all."""
    if type(dim) is tuple and _normalized(dim, ndim):
        return dim  # already normalized (the backward pass always passes this form)
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (int, np.integer)):
        return (_wrap_dim(int(dim), ndim),) if ndim else ()
    axes = tuple(sorted({_wrap_dim(int(d), ndim) for d in dim})) if ndim else ()
    if len(axes) != len(tuple(dim)):
        raise RuntimeError(f"dim {list(dim)} appears multiple times in the list of dims")
    return axes if len(tuple(dim)) else tuple(range(ndim))


def sum(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Sum over dim (all dims by default)."""
    if dtype is not None:
        input = _cast(input, dtypes.to_dtype(dtype))
    out = apply(R.reduce_sum, input, axes=_axes(dim, input._data.ndim), keepdim=keepdim)
    return out if dim is None else name_node(out, "SumBackward1")


def mean(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Mean over dim (all dims by default); floating inputs only, like PyTorch."""
    if dtype is not None:
        input = _cast(input, dtypes.to_dtype(dtype))
    if input.dtype.category != dtypes.FLOAT:
        raise RuntimeError(f"mean(): could not infer output dtype. Input dtype must be either a floating "
                           f"point or complex dtype. Got: {_legacy(input.dtype)}")
    axes = _axes(dim, input._data.ndim)
    total = apply(R.reduce_sum, input, axes=axes, keepdim=keepdim)
    if TRACE.tracer is None:
        count = _const(math.prod([input._data.shape[a] for a in axes]), total.dtype)
    else:  # the same value, computed from the shape in the graph: no batch size baked into a compiled step
        count = _cast(apply(R.reduce_count, input, axes=axes, keepdim=keepdim), total.dtype)
    out = apply(E.div, total, count)  # total / count, without the operator's dispatch
    return name_node(out, "MeanBackward0" if dim is None else "MeanBackward1")


def _legacy(d: dtypes.dtype) -> str:
    from .tensor import _legacy_kind
    return _legacy_kind(d)


def _check_nonempty(input: Tensor, dim, axes: tuple, name: str) -> None:
    if dim is None or dim == ():
        if input._data.size == 0:
            raise RuntimeError(f"{name}(): Expected reduction dim to be specified for input.numel() == 0. "
                               f"Specify the reduction dim with the 'dim' argument.")
        return
    for a in axes:
        if input._data.shape[a] == 0:
            raise IndexError(f"{name}(): Expected reduction dim {a} to have non-zero size.")


def amax(input: Tensor, dim=(), keepdim: bool = False) -> Tensor:
    """Maximum over dim (all dims when dim is empty); ties share the gradient."""
    axes = _axes(dim if dim != () else None, input._data.ndim)
    _check_nonempty(input, dim, axes, "max" if dim == () else "amax")
    return apply(R.reduce_max, input, axes=axes, keepdim=keepdim)


def amin(input: Tensor, dim=(), keepdim: bool = False) -> Tensor:
    """Minimum over dim (all dims when dim is empty); ties share the gradient."""
    axes = _axes(dim if dim != () else None, input.ndim)
    _check_nonempty(input, dim, axes, "min" if dim == () else "amin")
    return apply(R.reduce_min, input, axes=axes, keepdim=keepdim)


return_types = collections.namedtuple("max", ["values", "indices"])
_MinResult = collections.namedtuple("min", ["values", "indices"])


def _extremum(input: Tensor, dim, keepdim: bool, other, pick, pairwise, result_type):
    if isinstance(dim, Tensor):
        other, dim = dim, None
    if other is not None:
        return _binary(pairwise, input, other)
    if dim is None:
        return name_node((amax if pick is argmax else amin)(input), "MaxBackward1" if pick is argmax else "MinBackward1")
    indices = pick(input, dim, keepdim=True)
    # argmax/argmin give indices in range: gather's range check (a guard while tracing) is not needed
    values = apply(I.gather, input, indices, dim=_wrap_dim(dim, input.ndim))
    if not keepdim and input.ndim:
        values, indices = values.squeeze(dim), indices.squeeze(dim)
    return result_type(name_node(values, "MaxBackward0" if pick is argmax else "MinBackward0"), indices)


def max(input: Tensor, dim=None, keepdim: bool = False, *, other=None):
    """max(): the largest element; max(dim): (values, indices); max(other): elementwise maximum."""
    return _extremum(input, dim, keepdim, other, argmax, E.maximum, return_types)


def min(input: Tensor, dim=None, keepdim: bool = False, *, other=None):
    """min(): the smallest element; min(dim): (values, indices); min(other): elementwise minimum."""
    return _extremum(input, dim, keepdim, other, argmin, E.minimum, _MinResult)


def argmax(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Index of the largest element (of the flattened tensor when dim is None)."""
    if dim is None:
        out = apply(R.argmax, input.reshape(-1), axes=(0,), keepdim=False)
        return out.reshape((1,) * input.ndim) if keepdim else out
    return apply(R.argmax, input, axes=_axes(dim, input.ndim) or (0,), keepdim=keepdim)


def argmin(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """Index of the smallest element (of the flattened tensor when dim is None)."""
    if dim is None:
        out = apply(R.argmin, input.reshape(-1), axes=(0,), keepdim=False)
        return out.reshape((1,) * input.ndim) if keepdim else out
    return apply(R.argmin, input, axes=_axes(dim, input.ndim) or (0,), keepdim=keepdim)


_SortResult = collections.namedtuple("sort", ["values", "indices"])
_TopkResult = collections.namedtuple("topk", ["values", "indices"])


def _sort_indices(input: Tensor, dim: int, descending: bool) -> tuple[Tensor, Tensor, int]:
    """(input as at least 1-D, the positions that sort it along dim, dim made non-negative)."""
    x = input if input._data.ndim else input.reshape(1)
    dim = _wrap_dim(dim, input._data.ndim)
    return x, apply(I.argsort, x, dim=dim, descending=bool(descending)), dim


def _sorted_result(input: Tensor, x: Tensor, indices: Tensor, dim: int, result_type, node: str):
    """(values, indices) of input picked at indices along dim, shaped back to a 0-d input's shape."""
    # indices come from argsort, so they are in range: gather's range check (a guard while tracing) is not needed
    values = name_node(apply(I.gather, x, indices, dim=dim), node)
    if not input._data.ndim:
        values, indices = values.reshape(()), indices.reshape(())
    return result_type(values, indices)


def sort(input: Tensor, dim: int = -1, descending: bool = False, *, stable: bool = False):
    """(values, indices) sorted along dim; ties keep their order (always stable), NaN counts as largest."""
    x, indices, dim = _sort_indices(input, dim, descending)
    return _sorted_result(input, x, indices, dim, _SortResult, "SortBackward0")


def argsort(input: Tensor, dim: int = -1, descending: bool = False, *, stable: bool = False) -> Tensor:
    """The indices that sort input along dim (stable: ties keep their order)."""
    x, indices, dim = _sort_indices(input, dim, descending)
    return indices if input._data.ndim else indices.reshape(())


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True):
    """(values, indices) of the k largest (or smallest) elements along dim, in sorted order."""
    size = input._data.shape[_wrap_dim(dim, input._data.ndim)] if input._data.ndim else 1
    if not 0 <= k <= size:
        raise RuntimeError(f"selected index k out of range: k={k} must be in [0, {size}] for dim {dim} of size {size}")
    x, indices, dim = _sort_indices(input, dim, largest)
    indices = apply(I.index, indices, key=I.narrow_key(dim, 0, k))
    return _sorted_result(input, x, indices, dim, _TopkResult, "TopkBackward0")


def prod(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Product over dim (all dims by default)."""
    if dtype is not None:
        input = _cast(input, dtypes.to_dtype(dtype))
    out = apply(R.reduce_prod, input, axes=_axes(dim, input.ndim), keepdim=keepdim)
    return out if dim is None else name_node(out, "ProdBackward1")


def any(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """True if any element (over dim) is non-zero."""
    return apply(R.reduce_any, input, axes=_axes(dim, input.ndim), keepdim=keepdim)


def all(input: Tensor, dim=None, keepdim: bool = False) -> Tensor:
    """True if every element (over dim) is non-zero."""
    return apply(R.reduce_all, input, axes=_axes(dim, input.ndim), keepdim=keepdim)


def var(input: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None) -> Tensor:
    """Variance over dim with Bessel's correction by default (correction=1)."""
    if isinstance(dim, bool):  # var(unbiased) positional form
        dim, unbiased = None, dim
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    axes = _axes(dim, input.ndim)
    count = math.prod([input._data.shape[a] for a in axes])
    centered = input - mean(input, axes, keepdim=True)
    return name_node(sum(centered * centered, axes, keepdim=keepdim) / builtins.max(count - correction, 0), "VarBackward0")


def std(input: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None) -> Tensor:
    """Standard deviation: sqrt(var)."""
    return name_node(var(input, dim, unbiased, keepdim, correction=correction).sqrt(), "StdBackward0")


def vector_norm(x: Tensor, ord=2, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """The ord-norm of x over dim (all dims by default): 2, 1, inf, -inf, 0 (nonzero count) or any other number."""
    if x.dtype.category != dtypes.FLOAT:
        raise RuntimeError(f"linalg.vector_norm: Expected a floating point or complex tensor as input. "
                           f"Got {_legacy(x.dtype)}")
    if dtype is not None:
        x = _cast(x, dtypes.to_dtype(dtype))
    if isinstance(ord, str) or isinstance(ord, bool) or not isinstance(ord, (int, float)):
        raise RuntimeError(f"linalg.vector_norm: Expected ord to be a number, got {ord!r}; use linalg.matrix_norm "
                           f"for 'fro' and 'nuc'")
    if ord == 0:  # the count of nonzero elements; where() and abs() give it a (zero) gradient, as PyTorch does
        return sum(masked_fill(x, x != 0, 1).abs(), dim, keepdim)
    magnitude = x.abs()
    if ord == math.inf:
        return amax(magnitude, dim if dim is not None else (), keepdim)
    if ord == -math.inf:
        return amin(magnitude, dim if dim is not None else (), keepdim)
    if ord == 1:
        return sum(magnitude, dim, keepdim)
    total = sum(x * x if ord == 2 else magnitude ** ord, dim, keepdim)
    # The root's derivative is infinite at 0; routing zeros around it gives the zero gradient PyTorch defines there.
    is_zero = total == 0
    root = where(is_zero, 1.0, total)
    return where(is_zero, 0.0, root.sqrt() if ord == 2 else root ** (1.0 / ord))


def norm(input: Tensor, p="fro", dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    """The vector p-norm over dim (all dims by default); 'fro' (or None) is the 2-norm."""
    if p == "nuc":
        from .linalg import matrix_norm
        return matrix_norm(input, "nuc", dim if dim is not None else (-2, -1), keepdim, dtype=dtype)
    return vector_norm(input, 2 if p in ("fro", None) else p, dim, keepdim, dtype=dtype)


def _max_shift(input: Tensor, dim) -> Tensor:
    """The maximum over dim (kept) as a constant, to subtract before exp so that it cannot overflow.

    The shift cancels exactly in value and gradient, so it carries no gradient; computing it without
    recording (rather than detaching a recorded result) leaves no unused node, and no node-output
    reference cycle for the garbage collector, behind.
    """
    with no_grad():
        return amax(input, dim, keepdim=True)


def logsumexp(input: Tensor, dim, keepdim: bool = False) -> Tensor:
    """log(sum(exp(input))) over dim, computed without overflow."""
    input = _floating(input)
    axes = _axes(dim, input.ndim)
    shift = _max_shift(input, axes)
    shift = where(shift.isinf(), 0.0, shift)
    out = sum((input - shift).exp(), axes, keepdim=True).log() + shift
    return name_node(out if keepdim else out.squeeze(axes), "LogsumexpBackward0")


def softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    """exp(input) normalized to sum to 1 over dim."""
    if dtype is not None:
        input = _cast(input, dtypes.to_dtype(dtype))
    shifted = (input - _max_shift(input, dim)).exp()
    return name_node(shifted / sum(shifted, dim, keepdim=True), "SoftmaxBackward0")


def log_softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    """input - logsumexp(input) over dim."""
    if dtype is not None:
        input = _cast(input, dtypes.to_dtype(dtype))
    shifted = input - _max_shift(input, dim)
    return name_node(shifted - sum(shifted.exp(), dim, keepdim=True).log(), "LogSoftmaxBackward0")


def _scan_operand(input: Tensor, dtype) -> Tensor:
    """The input of cumsum/cumprod: cast to dtype when given, integers and bools to int64 (as PyTorch)."""
    if dtype is not None:
        return _cast(input, dtypes.to_dtype(dtype))
    return input if input.dtype.category == dtypes.FLOAT else _cast(input, dtypes.int64)


def cumsum(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    """Running sum along dim, as a matmul with a triangular matrix of ones (differentiable)."""
    input = _scan_operand(input, dtype)
    dim = _wrap_dim(dim, input.ndim)
    n = input._data.shape[dim] if input.ndim else 1
    tri = Tensor._make(np.triu(np.ones((n, n), dtype=input._data.dtype)))
    moved = input.movedim(dim, -1) if input.ndim else input.reshape(1)
    return (moved @ tri).movedim(-1, dim) if input.ndim else (moved @ tri).reshape(())


def cumprod(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    """Running product along dim: a log-depth scan of products (exact gradients, zeros included)."""
    input = _scan_operand(input, dtype)
    dim = _wrap_dim(dim, input._data.ndim)
    moved = input.movedim(dim, -1) if input._data.ndim else input.reshape(1)
    n, shift = moved._data.shape[-1], 1
    while shift < n:  # after this round, each element is the product of the 2 * shift elements ending at it
        ones = Tensor._make(np.ones(moved._data.shape[:-1] + (shift,), dtype=moved._data.dtype))
        moved = moved * cat([ones, narrow(moved, -1, 0, n - shift)], -1)
        shift *= 2
    out = moved.movedim(-1, dim) if input._data.ndim else moved.reshape(())
    return name_node(out, "CumprodBackward0")


# ---- matrix products ----------------------------------------------------------------------------

def matmul(input: Tensor, other: Tensor) -> Tensor:
    """Matrix product with NumPy rules: 1-D operands are vectors, leading dims broadcast."""
    if not isinstance(input, Tensor) or not isinstance(other, Tensor):
        raise TypeError("matmul(): argument 'other' must be a Tensor")
    if input._data.dtype != other._data.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {_legacy(input.dtype).lower()} "
                           f"!= {_legacy(other.dtype).lower()}")
    if input._data.ndim >= 2 and other._data.ndim >= 2:  # matrices and stacks of them: the primitive as it is
        return name_node(apply(M.matmul, input, other),
                         "MmBackward0" if input._data.ndim == other._data.ndim == 2 else "UnsafeViewBackward0")
    a, b = input, other
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are {a.ndim}D and {b.ndim}D")
    if a.ndim == 1 and b.ndim == 1:
        if a.shape[0] != b.shape[0]:
            raise RuntimeError(f"inconsistent tensor size, expected tensor [{a.shape[0]}] and src [{b.shape[0]}] "
                               f"to have the same number of elements, but got {a.shape[0]} and {b.shape[0]} elements respectively")
        return name_node(apply(M.matmul, a.reshape(1, -1), b.reshape(-1, 1)).reshape(()), "DotBackward0")
    if a.ndim == 1:
        return apply(M.matmul, a.unsqueeze(0), b).squeeze(-2)
    if b.ndim == 1:
        return name_node(apply(M.matmul, a, b.unsqueeze(-1)).squeeze(-1), "MvBackward0" if a.ndim == 2 else "ViewBackward0")
    return apply(M.matmul, a, b)


def mm(input: Tensor, mat2: Tensor) -> Tensor:
    """Product of two 2-D matrices."""
    if input.ndim != 2 or mat2.ndim != 2:
        raise RuntimeError(f"self must be a matrix (got {input.ndim}-D and {mat2.ndim}-D tensors)")
    return matmul(input, mat2)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    """Batched product of two 3-D tensors with equal batch sizes."""
    if input.ndim != 3 or mat2.ndim != 3:
        raise RuntimeError(f"batch1 must be a 3D tensor (got {input.ndim}-D and {mat2.ndim}-D tensors)")
    if input.shape[0] != mat2.shape[0]:
        raise RuntimeError(f"batch1 and batch2 must have same number of batches, got {input.shape[0]} and {mat2.shape[0]}")
    return name_node(matmul(input, mat2), "BmmBackward0")


def dot(input: Tensor, other: Tensor) -> Tensor:
    """Inner product of two 1-D tensors."""
    if input.ndim != 1 or other.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input.ndim}D and {other.ndim}D tensors")
    return matmul(input, other)


def mv(input: Tensor, vec: Tensor) -> Tensor:
    """Matrix-vector product."""
    return matmul(input, vec)


def outer(input: Tensor, vec2: Tensor) -> Tensor:
    """Outer product of two vectors."""
    return input.unsqueeze(1) * vec2.unsqueeze(0)


def _is_zero(value) -> bool:
    """True for the number 0 (a tensor-valued scale, e.g. a traced hyperparameter, is never skipped)."""
    return not isinstance(value, Tensor) and _traced_number(value) is None and value == 0


def _scaled_sum(input: Tensor, product: Tensor, beta, alpha) -> Tensor:
    """beta * input + alpha * product; beta=0 ignores input's values (NaN and inf too), as PyTorch does."""
    if not _is_one(alpha):
        product = alpha * product
    if _is_zero(beta):  # zeros in input's shape (and a zero gradient for it), whatever its values
        return product + masked_fill(input, Tensor._make(np.array(True)), 0)
    return product + (input if _is_one(beta) else beta * input)


def addmm(input: Tensor, mat1: Tensor, mat2: Tensor, *, beta=1, alpha=1) -> Tensor:
    """beta * input + alpha * (mat1 @ mat2)."""
    return _scaled_sum(input, mm(mat1, mat2), beta, alpha)


def baddbmm(input: Tensor, batch1: Tensor, batch2: Tensor, *, beta=1, alpha=1) -> Tensor:
    """beta * input + alpha * bmm(batch1, batch2)."""
    return name_node(_scaled_sum(input, bmm(batch1, batch2), beta, alpha), "BaddbmmBackward0")


# ---- conversion ---------------------------------------------------------------------------------

def to(input: Tensor, *args, **kwargs) -> Tensor:
    """Convert dtype (to(dtype), to(other)); the device must be 'cpu'."""
    target = kwargs.get("dtype")
    for a in args + tuple(v for k, v in kwargs.items() if k == "device"):
        if isinstance(a, Tensor):
            target = a.dtype
        elif isinstance(a, dtypes.dtype) or a in (float, int, bool):
            target = dtypes.to_dtype(a)
        elif isinstance(a, str) or a is None:
            if a not in (None, "cpu") and not str(a).startswith("cpu"):
                raise RuntimeError(f"tracegrad tensors live on the CPU; device {a!r} is not available")
        elif not isinstance(a, bool):
            raise TypeError(f"to() received an invalid argument {a!r}")
    if target is None or target is input.dtype:
        return input.clone() if kwargs.get("copy") else input
    return apply(E.cast, input, dtype=target, src=input.dtype)


def type_as(input: Tensor, other: Tensor) -> Tensor:
    """input cast to other's dtype."""
    return to(input, other.dtype)


def _to_dtype(d: dtypes.dtype, doc: str):
    def convert(input: Tensor) -> Tensor:
        return to(input, d)
    convert.__doc__ = doc
    return convert


float_ = _to_dtype(dtypes.float32, "Cast to float32.")
double = _to_dtype(dtypes.float64, "Cast to float64.")
half = _to_dtype(dtypes.float16, "Cast to float16.")
long = _to_dtype(dtypes.int64, "Cast to int64.")
int_ = _to_dtype(dtypes.int32, "Cast to int32.")
bool_ = _to_dtype(dtypes.bool_, "Cast to bool.")


# ---- creation helpers the VJPs need -------------------------------------------------------------


from .shapes import *  # noqa: E402,F401,F403  (the shape and indexing ops, defined there with the helpers above)

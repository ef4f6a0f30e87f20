"""The PyTorch-style op surface: functions (tracegrad.exp, ...) that are also Tensor methods.

Every op here is a few lines that promote types, normalize arguments and call primitives via
``apply``; composites (softmax, var, ...) are built from other ops, so they get gradients for free.
"""
from __future__ import annotations

import builtins
import collections
import math
import operator
from typing import Sequence

import numpy as np

from . import dtypes
from .autograd.grad_mode import no_grad
from .primitives import elementwise as E
from .primitives import indexing as I
from .primitives import movement as M
from .primitives import reduce as R
from .primitives.index_key import (FULL, NEW_AXIS, REST, IndexKey, Slice, index_key, index_tensor_item, integer_item,
                                   mask_item, slice_item)
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
    return out


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
    return apply(E.where, mask, _cast(value, input.dtype), input)


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
    return apply(R.reduce_sum, input, axes=_axes(dim, input._data.ndim), keepdim=keepdim)


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
    if out.grad_fn is not None:
        out.grad_fn.display_name = "MeanBackward0"
    return out


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
        return (amax if pick is argmax else amin)(input)
    indices = pick(input, dim, keepdim=True)
    # argmax/argmin give indices in range: gather's range check (a guard while tracing) is not needed
    values = apply(I.gather, input, indices, dim=_wrap_dim(dim, input.ndim))
    if not keepdim and input.ndim:
        values, indices = values.squeeze(dim), indices.squeeze(dim)
    return result_type(values, indices)


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


def prod(input: Tensor, dim=None, keepdim: bool = False, *, dtype=None) -> Tensor:
    """Product over dim (all dims by default)."""
    if dtype is not None:
        input = _cast(input, dtypes.to_dtype(dtype))
    return apply(R.reduce_prod, input, axes=_axes(dim, input.ndim), keepdim=keepdim)


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
    return sum(centered * centered, axes, keepdim=keepdim) / builtins.max(count - correction, 0)


def std(input: Tensor, dim=None, unbiased=None, keepdim: bool = False, *, correction=None) -> Tensor:
    """Standard deviation: sqrt(var)."""
    return var(input, dim, unbiased, keepdim, correction=correction).sqrt()


def norm(input: Tensor, p="fro", dim=None, keepdim: bool = False, dtype=None) -> Tensor:
    """Vector p-norm over dim (2 by default; 'fro', 1, inf, -inf and other numbers)."""
    if dtype is not None:
        input = _cast(input, dtypes.to_dtype(dtype))
    if p in ("fro", 2, 2.0, None):
        squares = sum(input * input, dim, keepdim)
        # sqrt'(0) is infinite; routing zeros around it gives the zero gradient PyTorch defines there.
        is_zero = squares == 0
        return where(is_zero, 0.0, where(is_zero, 1.0, squares).sqrt())
    magnitude = abs(input)
    if p == float("inf"):
        return amax(magnitude, dim if dim is not None else (), keepdim)
    if p == float("-inf"):
        return amin(magnitude, dim if dim is not None else (), keepdim)
    if p == 1:
        return sum(magnitude, dim, keepdim)
    if p == 0:
        return sum((input != 0).to(input.dtype), dim, keepdim)
    return sum(magnitude ** p, dim, keepdim) ** (1.0 / p)


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
    return out if keepdim else out.squeeze(axes)


def softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    """exp(input) normalized to sum to 1 over dim."""
    if dtype is not None:
        input = _cast(input, dtypes.to_dtype(dtype))
    shifted = (input - _max_shift(input, dim)).exp()
    return shifted / sum(shifted, dim, keepdim=True)


def log_softmax(input: Tensor, dim: int, dtype=None) -> Tensor:
    """input - logsumexp(input) over dim."""
    if dtype is not None:
        input = _cast(input, dtypes.to_dtype(dtype))
    shifted = input - _max_shift(input, dim)
    return shifted - sum(shifted.exp(), dim, keepdim=True).log()


def cumsum(input: Tensor, dim: int, *, dtype=None) -> Tensor:
    """Running sum along dim, as a matmul with a triangular matrix of ones (differentiable)."""
    if dtype is not None:
        input = _cast(input, dtypes.to_dtype(dtype))
    dim = _wrap_dim(dim, input.ndim)
    n = input._data.shape[dim] if input.ndim else 1
    tri = Tensor._make(np.triu(np.ones((n, n), dtype=input._data.dtype)))
    moved = input.movedim(dim, -1) if input.ndim else input.reshape(1)
    return (moved @ tri).movedim(-1, dim) if input.ndim else (moved @ tri).reshape(())


# ---- matrix products ----------------------------------------------------------------------------

def matmul(input: Tensor, other: Tensor) -> Tensor:
    """Matrix product with NumPy rules: 1-D operands are vectors, leading dims broadcast."""
    if not isinstance(input, Tensor) or not isinstance(other, Tensor):
        raise TypeError("matmul(): argument 'other' must be a Tensor")
    if input._data.dtype != other._data.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: {_legacy(input.dtype).lower()} "
                           f"!= {_legacy(other.dtype).lower()}")
    if input._data.ndim >= 2 and other._data.ndim >= 2:  # matrices and stacks of them: the primitive as it is
        return apply(M.matmul, input, other)
    a, b = input, other
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are {a.ndim}D and {b.ndim}D")
    if a.ndim == 1 and b.ndim == 1:
        if a.shape[0] != b.shape[0]:
            raise RuntimeError(f"inconsistent tensor size, expected tensor [{a.shape[0]}] and src [{b.shape[0]}] "
                               f"to have the same number of elements, but got {a.shape[0]} and {b.shape[0]} elements respectively")
        return apply(M.matmul, a.reshape(1, -1), b.reshape(-1, 1)).reshape(())
    if a.ndim == 1:
        return apply(M.matmul, a.unsqueeze(0), b).squeeze(-2)
    if b.ndim == 1:
        return apply(M.matmul, a, b.unsqueeze(-1)).squeeze(-1)
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
    return matmul(input, mat2)


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


def addmm(input: Tensor, mat1: Tensor, mat2: Tensor, *, beta=1, alpha=1) -> Tensor:
    """beta * input + alpha * (mat1 @ mat2)."""
    prod_ = mm(mat1, mat2)
    return (input if beta == 1 else beta * input) + (prod_ if alpha == 1 else alpha * prod_)


# ---- shapes -------------------------------------------------------------------------------------

def _shape_arg(shape) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if builtins.all(type(s) is int for s in shape):
        return shape
    for s in shape:
        if not isinstance(s, (int, np.integer)):
            raise TypeError(f"shape entries must be ints, got {type(s).__name__}")
    return tuple(int(s) for s in shape)


def _infer_shape(shape: tuple, numel: int) -> tuple:
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    if -1 in shape:
        known = math.prod([s for s in shape if s != -1])
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    if math.prod(shape) != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def reshape(input: Tensor, *shape) -> Tensor:
    """The same elements in a new shape (a view when possible); one dim may be -1."""
    shape = _infer_shape(_shape_arg(shape), input._data.size)
    if shape == input._data.shape:
        return input if not input._requires_grad else apply(M.reshape, input, shape=shape)
    return apply(M.reshape, input, shape=shape)


def view(input: Tensor, *shape) -> Tensor:
    """Like reshape, but raises when the result can't share memory with the input."""
    if len(shape) == 1 and isinstance(shape[0], dtypes.dtype):
        raise NotImplementedError("view(dtype) is not supported; use .to(dtype)")
    shape = _infer_shape(_shape_arg(shape), input._data.size)
    try:
        input._data.reshape(shape, copy=False)
    except ValueError:
        raise RuntimeError("view size is not compatible with input tensor's size and stride (at least one "
                           "dimension spans across two contiguous subspaces). Use .reshape(...) instead.") from None
    return apply(M.reshape, input, shape=shape)


def view_as(input: Tensor, other: Tensor) -> Tensor:
    """view(other.shape)."""
    return view(input, other.shape)


def reshape_as(input: Tensor, other: Tensor) -> Tensor:
    """reshape(other.shape)."""
    return reshape(input, other.shape)


def permute(input: Tensor, *dims) -> Tensor:
    """Reorder the dimensions (a view)."""
    dims = _shape_arg(dims)
    if len(dims) != input.ndim:
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does not match the "
                           f"length of the desired ordering of dimensions i.e. input.dim() = {input.ndim} is not "
                           f"equal to len(dims) = {len(dims)}")
    dims = tuple(_wrap_dim(d, input.ndim) for d in dims)
    if len(set(dims)) != len(dims):
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    return apply(M.permute, input, dims=dims)


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two dimensions (a view)."""
    ndim = input._data.ndim
    if ndim < 2 and dim0 in (0, -1) and dim1 in (0, -1):
        return input
    order = list(range(ndim))
    d0, d1 = _wrap_dim(dim0, ndim), _wrap_dim(dim1, ndim)
    order[d0], order[d1] = order[d1], order[d0]
    return apply(M.permute, input, dims=tuple(order))


swapaxes = transpose


def t(input: Tensor) -> Tensor:
    """Transpose a matrix (0-D and 1-D tensors are returned as they are)."""
    ndim = input._data.ndim
    if ndim > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {ndim}D")
    return apply(M.permute, input, dims=(1, 0)) if ndim == 2 else input


def movedim(input: Tensor, source: int, destination: int) -> Tensor:
    """Move one dimension to a new position."""
    order = list(range(input.ndim))
    src = _wrap_dim(source, input.ndim)
    order.remove(src)
    order.insert(_wrap_dim(destination, input.ndim), src)
    return permute(input, order)


def unsqueeze(input: Tensor, dim: int) -> Tensor:
    """Insert a size-1 dimension at dim."""
    dim = _wrap_dim(dim, input.ndim + 1)
    shape = input._data.shape
    return apply(M.reshape, input, shape=shape[:dim] + (1,) + shape[dim:])


def squeeze(input: Tensor, dim=None) -> Tensor:
    """Remove size-1 dimensions (all of them, or those in dim)."""
    shape = input._data.shape
    axes = range(len(shape)) if dim is None else _axes(dim, len(shape))
    new = tuple(s for i, s in enumerate(shape) if not (i in axes and s == 1))
    return input if new == shape else apply(M.reshape, input, shape=new)


def expand(input: Tensor, *sizes) -> Tensor:
    """Broadcast size-1 dimensions to sizes (-1 keeps a size); a view."""
    sizes = _shape_arg(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError(f"expand: the number of sizes provided ({len(sizes)}) must be greater or equal to "
                           f"the number of dimensions in the tensor ({input.ndim})")
    lead = len(sizes) - input.ndim
    shape = tuple(input._data.shape[i - lead] if s == -1 and i >= lead else s for i, s in enumerate(sizes))
    if shape == input._data.shape:
        return input
    M.expand.shape_rule([input._data.shape], shape=shape)
    return apply(M.expand, input, shape=shape)


def expand_as(input: Tensor, other: Tensor) -> Tensor:
    """expand(other.shape)."""
    return expand(input, other.shape)


def broadcast_to(input: Tensor, shape) -> Tensor:
    """expand(shape)."""
    return expand(input, tuple(shape))


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims start_dim..end_dim into one."""
    if input.ndim == 0:
        return input.reshape(1)
    start, end = _wrap_dim(start_dim, input.ndim), _wrap_dim(end_dim, input.ndim)
    if start > end:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shape = input._data.shape
    return reshape(input, shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:])


def unflatten(input: Tensor, dim: int, sizes) -> Tensor:
    """Split one dim into sizes."""
    dim = _wrap_dim(dim, input.ndim)
    shape = input._data.shape
    sizes = _infer_shape(tuple(sizes), shape[dim])
    return reshape(input, shape[:dim] + sizes + shape[dim + 1:])


def narrow(input: Tensor, dim: int, start: int, length: int) -> Tensor:
    """The slice [start, start + length) of dim (a view)."""
    dim = _wrap_dim(dim, input.ndim)
    return apply(I.index, input, key=I.narrow_key(dim, start, start + length))


def split(tensor: Tensor, split_size_or_sections, dim: int = 0) -> tuple:
    """Views of consecutive pieces of dim: equal pieces of a size, or a list of sizes."""
    dim = _wrap_dim(dim, tensor.ndim)
    size = tensor._data.shape[dim]
    if isinstance(split_size_or_sections, (int, np.integer)):
        step = int(split_size_or_sections)
        sections = [builtins.min(step, size - i) for i in range(0, size, step)] or [0]
    else:
        sections = list(split_size_or_sections)
        if builtins.sum(sections) != size:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {size} (input tensor's "
                               f"size at dimension {dim}), but got split_sizes={sections}")
    out, start = [], 0
    for n in sections:
        out.append(narrow(tensor, dim, start, n))
        start += n
    return tuple(out)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple:
    """Split into (at most) chunks pieces of equal size."""
    size = input._data.shape[_wrap_dim(dim, input.ndim)]
    return split(input, builtins.max(1, -(-size // chunks)), dim)


def unbind(input: Tensor, dim: int = 0) -> tuple:
    """The slices along dim, with dim removed."""
    return tuple(s.squeeze(dim) for s in split(input, 1, dim))


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate tensors along an existing dim."""
    tensors = [t for t in tensors]
    if not tensors:
        raise ValueError("cat(): expected a non-empty list of Tensors")
    d = dtypes.result_type(*[t for t in tensors if t.ndim]) if builtins.any(t.ndim for t in tensors) else tensors[0].dtype
    tensors = [_cast(t, d) for t in tensors if not (t.ndim == 1 and t._data.shape[0] == 0)] or tensors[:1]
    if builtins.any(t.ndim == 0 for t in tensors):
        raise RuntimeError("zero-dimensional tensor cannot be concatenated")
    dim = _wrap_dim(dim, tensors[0].ndim)
    M.cat.shape_rule([t._data.shape for t in tensors], dim=dim)
    return apply(M.cat, *tensors, dim=dim)


concat = cat


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Join tensors of equal shape along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    first = tensors[0].shape
    for t_ in tensors:
        if t_.shape != first:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(first)} at entry 0 "
                               f"and {list(t_.shape)} at entry {tensors.index(t_)}")
    dim = _wrap_dim(dim, len(first) + 1)
    return cat([unsqueeze(t_, dim) for t_ in tensors], dim)


def flip(input: Tensor, *dims) -> Tensor:
    """Reverse the order of elements along dims (flip(0, 1) or flip((0, 1)))."""
    axes = set(_axes(dims[0] if len(dims) == 1 else dims, input.ndim))
    key = IndexKey(tuple(Slice(step=-1) if i in axes else FULL for i in range(input.ndim)))
    return apply(I.index, input, key=key)


def repeat(input: Tensor, *sizes) -> Tensor:
    """Tile the tensor sizes[i] times along each dim."""
    sizes = _shape_arg(sizes)
    if len(sizes) < input.ndim:
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number of dimensions of tensor")
    x = input.reshape((1,) * (len(sizes) - input.ndim) + input._data.shape)
    interleaved = tuple(v for s in x._data.shape for v in (1, s))
    expanded = x.reshape(interleaved).expand(tuple(v for r, s in zip(sizes, x._data.shape) for v in (r, s)))
    return expanded.reshape(tuple(r * s for r, s in zip(sizes, x._data.shape)))


def clone(input: Tensor, *, memory_format=None) -> Tensor:
    """A copy with its own memory (gradients flow back to the input)."""
    return apply(E.copy, input)


def contiguous(input: Tensor, memory_format=None) -> Tensor:
    """The tensor itself if contiguous, else a contiguous copy."""
    return input if input._data.flags.c_contiguous else clone(input)


def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    """Lower triangle of the last two dims; other elements zero."""
    n, m = input._data.shape[-2:]
    keep = Tensor._make(np.tril(np.ones((n, m), dtype=bool), diagonal))
    return where(keep, input, 0)


def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    """Upper triangle of the last two dims; other elements zero."""
    n, m = input._data.shape[-2:]
    keep = Tensor._make(np.triu(np.ones((n, m), dtype=bool), diagonal))
    return where(keep, input, 0)


# ---- indexing -----------------------------------------------------------------------------------

def _index_tensor(item) -> Tensor:
    t = item if isinstance(item, Tensor) else Tensor._make(np.asarray(item))
    kind = t._data.dtype.kind
    if kind == "b":
        return t
    if kind in "iu":
        return t if t._data.dtype == np.int64 else _cast(t, dtypes.int64)
    if t._data.size == 0:
        return Tensor._make(t._data.astype(np.int64))
    raise IndexError("tensors used as indices must be long, int, byte or bool tensors")


def parse_key(key) -> tuple[IndexKey, tuple]:
    """Split an index expression into a static key template and its index tensors."""
    if not isinstance(key, tuple):
        key = (key,)
    template, tensors = [], []
    for item in key:
        if item is None:
            template.append(NEW_AXIS)
        elif item is Ellipsis:
            template.append(REST)
        elif isinstance(item, (bool, np.bool_)):
            tensors.append(Tensor._make(np.array(bool(item))))
            template.append(mask_item(len(tensors) - 1))
        elif isinstance(item, (int, np.integer)):
            template.append(integer_item(int(item)))
        elif isinstance(item, slice):
            bounds = [None if v is None else operator.index(v) for v in (item.start, item.stop, item.step)]
            if bounds[2] is not None and bounds[2] <= 0:
                raise ValueError("step must be greater than zero")
            template.append(slice_item(*bounds) if bounds != [None, None, None] else FULL)
        elif isinstance(item, (Tensor, list, np.ndarray, range)):
            tensors.append(_index_tensor(list(item) if isinstance(item, range) else item))
            # a boolean mask, whose result size depends on its values, or integer indices
            template.append((mask_item if tensors[-1]._data.dtype == np.bool_ else index_tensor_item)(len(tensors) - 1))
        else:
            raise IndexError(f"only integers, slices (`:`), ellipsis (`...`), None and long or byte Variables "
                             f"are valid indices (got {type(item).__name__})")
    return index_key(tuple(template)), tuple(tensors)


def getitem(input: Tensor, key) -> Tensor:
    """input[key]: slicing gives views; integer and boolean tensors gather copies."""
    if input.ndim == 0 and key is not None and key is not Ellipsis and not isinstance(key, (tuple, Tensor)):
        raise IndexError("invalid index of a 0-dim tensor. Use `tensor.item()` in Python or `tensor.item<T>()` "
                         "in C++ to convert a 0-dim tensor to a number")
    template, tensors = parse_key(key)
    return apply(I.index, input, *tensors, key=template)


def setitem(input: Tensor, key, value) -> None:
    """input[key] = value, in place (value broadcasts; gradients flow to both)."""
    template, tensors = parse_key(key)
    value = _cast(value, input.dtype) if not isinstance(value, Tensor) else value
    if value.dtype is not input.dtype:
        value = _cast(value, input.dtype)
    input._inplace(I.index_put, value, *tensors, key=template, accumulate=False,
                   direct=lambda dst, v, *idx: I.put(dst, v, idx, template, accumulate=False))


def index_put(input: Tensor, indices: tuple, values: Tensor, accumulate: bool = False) -> Tensor:
    """A copy of input with input[indices] set to (or, with accumulate, increased by) values."""
    template, tensors = parse_key(tuple(indices))
    return apply(I.index_put, input, _cast(values, input.dtype), *tensors, key=template, accumulate=accumulate)


def _outside(index: Tensor, size: int) -> bool:
    """Whether some index lies outside [0, size).

    While a step is traced the test is recorded and its outcome becomes a guard: a replay with an index
    out of range runs eagerly and raises, where the compiled gather would wrap a negative index.
    Eagerly NumPy tests the array.
    """
    if TRACE.tracer is None:
        data = index._data
        return bool(data.size) and (data.min() < 0 or data.max() >= size)
    return bool(((index < 0) | (index >= size)).any())


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """The entries of index along dim."""
    if index.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    dim = _wrap_dim(dim, input.ndim)
    if _outside(index, input._data.shape[dim] if input.ndim else 1):
        raise IndexError("index out of range in self")
    template, tensors = parse_key((slice(None),) * dim + (index.reshape(-1),))
    return apply(I.index, input, *tensors, key=template)


def gather(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """out[i][j] = input[index[i][j]][j] (for dim=0), and so on."""
    ndim = input._data.ndim
    dim = _wrap_dim(dim, ndim)
    if index._data.dtype != np.int64:
        raise RuntimeError(f"gather(): Expected dtype int64 for index, got {index.dtype}")
    if index._data.ndim != ndim:
        raise RuntimeError("Index tensor must have the same number of dimensions as input tensor")
    for d in range(ndim):  # index values are checked by the primitive (replays of compiled steps too)
        if d != dim and index._data.shape[d] > input._data.shape[d]:
            raise RuntimeError(f"Size does not match at dimension {d} expected index {list(index.shape)} to be "
                               f"smaller than self {list(input.shape)} apart from dimension {dim}")
    return apply(I.gather, input, index, dim=dim)


def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """A copy of input with src added at the positions index names along dim."""
    dim = _wrap_dim(dim, input._data.ndim)
    if src._data.shape != index._data.shape:
        raise RuntimeError(f"scatter_add(): src must have the shape of index, got {list(src.shape)} and "
                           f"{list(index.shape)}; slice src first")
    return apply(I.scatter_add, input, index, _cast(src, input.dtype), dim=dim)


def masked_select(input: Tensor, mask: Tensor) -> Tensor:
    """The elements where mask (broadcast) is True, as a 1-D tensor."""
    _data_dependent_shape("masked_select")
    shape = np.broadcast_shapes(input._data.shape, mask._data.shape)
    return getitem(expand(input, shape), expand(mask, shape))


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
        return clone(input) if kwargs.get("copy") else input
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

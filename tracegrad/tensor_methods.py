"""Tensor methods and operators: the ops of ops.py bound to Tensor, plus the in-place variants."""
from __future__ import annotations

import numpy as np

from . import creation, dtypes, ops
from .autograd.grad_mode import is_grad_enabled
from .primitives import elementwise as E
from .primitives import movement as M
from .surface import direct_in_place, inplace_operand, plain_float, refuse
from .tensor import TRACE, Tensor, _legacy_kind, apply

# ---- methods that are the functions of ops.py ----------------------------------------------------

_SAME_NAME = """
add sub div floor_divide remainder neg rsqrt tan round reciprocal square log2 log10 isfinite clamp clip
clamp_min clamp_max lerp addcmul addcdiv equal allclose isclose bitwise_not logical_not logical_and
logical_or masked_fill nonzero sum mean amax amin max min argmax argmin prod any all var std norm
logsumexp softmax log_softmax cumsum cumprod sort argsort topk logaddexp matmul mm bmm baddbmm dot mv outer addmm
roll reshape view view_as reshape_as
permute transpose swapaxes t movedim unsqueeze squeeze expand expand_as broadcast_to flatten unflatten
narrow split chunk unbind flip repeat clone contiguous tril triu index_select gather scatter_add
masked_select index_put to type_as double half long
""".split()

for _name in _SAME_NAME:
    setattr(Tensor, _name, getattr(ops, _name))
Tensor.float = ops.float_
Tensor.int = ops.int_
Tensor.bool = ops.bool_
Tensor.divide, Tensor.subtract, Tensor.true_divide = ops.div, ops.sub, ops.div
Tensor.__getitem__ = ops.getitem


def _where_method(self: Tensor, condition: Tensor, other) -> Tensor:
    """self where condition holds, else other."""
    return ops.where(condition, self, other)


Tensor.where = _where_method
Tensor.__setitem__ = ops.setitem


def _cpu(self: Tensor) -> Tensor:
    """The tensor itself (tensors live on the CPU)."""
    return self


Tensor.cpu = _cpu
Tensor.T = property(lambda self: ops.apply(M.permute, self, dims=tuple(range(self._data.ndim))[::-1]),
                    doc="All dims reversed.")
Tensor.mT = property(lambda self: self.transpose(-2, -1), doc="The last two dims swapped.")

# ---- operators --------------------------------------------------------------------------------

_OPERAND_TYPES = (Tensor, int, float, bool, np.number, np.bool_)


def _operator(fn, reflected: bool = False, prim=None, any_dtype: bool = True):
    """An operator method. With prim, two common cases skip fn's general type promotion (same result):
    a float tensor with a Python number, which becomes a constant of the tensor's dtype (what promotion
    makes of it), and two tensors of one dtype (the whole of a backward pass), for any dtype when any_dtype
    is set, else for float dtypes only."""
    def method(self, other):
        if prim is not None:
            is_float = self._data.dtype.kind == "f"
            if isinstance(other, Tensor):
                if other._data.dtype == self._data.dtype and (is_float or any_dtype):
                    return apply(prim, other, self) if reflected else apply(prim, self, other)
            elif (type(other) is float or type(other) is int) and is_float:
                number = Tensor._make(np.array(other, dtype=self._data.dtype))
                return apply(prim, number, self) if reflected else apply(prim, self, number)
        if not isinstance(other, _OPERAND_TYPES):
            return NotImplemented
        return fn(other, self) if reflected else fn(self, other)
    method.__doc__ = fn.__doc__
    return method


# (name, op, primitive, whether two tensors of one dtype skip promotion for any dtype): subtraction must still
# refuse two bool tensors and true division must turn integers into floats, so they skip it for floats only.
for _dunder, _fn, _prim, _any in [("add", ops.add, E.add, True), ("sub", ops.sub, E.sub, False),
                                  ("mul", ops.mul, E.mul, True), ("truediv", ops.div, E.div, False),
                                  ("floordiv", ops.floor_divide, None, False),
                                  ("mod", ops.remainder, None, False), ("pow", ops.pow, E.pow, True),
                                  ("matmul", ops.matmul, None, False), ("and", ops.bitwise_and, None, False),
                                  ("or", ops.bitwise_or, None, False), ("xor", ops.bitwise_xor, None, False)]:
    setattr(Tensor, f"__{_dunder}__", _operator(_fn, prim=_prim, any_dtype=_any))
    setattr(Tensor, f"__r{_dunder}__", _operator(_fn, reflected=True, prim=_prim, any_dtype=_any))
for _dunder, _fn, _prim in [("eq", ops.eq, E.eq), ("ne", ops.ne, E.ne), ("lt", ops.lt, E.lt), ("le", ops.le, E.le),
                            ("gt", ops.gt, E.gt), ("ge", ops.ge, E.ge)]:
    setattr(Tensor, f"__{_dunder}__", _operator(_fn, prim=_prim))
Tensor.__neg__ = ops.neg
Tensor.__pos__ = lambda self: self
Tensor.__abs__ = ops.abs
Tensor.__invert__ = ops.bitwise_not

# ---- in-place variants ----------------------------------------------------------------------------


def _scaled(other, alpha):
    return other if ops._is_one(alpha) else ops.mul(other, alpha)


def add_(self: Tensor, other, *, alpha=1) -> Tensor:
    """self += alpha * other."""
    if direct_in_place(self, E.add.write, other, alpha):
        return self
    return self._inplace(E.add, inplace_operand(self, _scaled(other, alpha)))


def sub_(self: Tensor, other, *, alpha=1) -> Tensor:
    """self -= alpha * other."""
    if direct_in_place(self, E.sub.write, other, alpha):
        return self
    return self._inplace(E.sub, inplace_operand(self, _scaled(other, alpha)))


def div_(self: Tensor, other, *, rounding_mode=None) -> Tensor:
    """self /= other."""
    if rounding_mode is not None:
        return self.copy_(ops.div(self, other, rounding_mode=rounding_mode))
    if self.dtype.category != dtypes.FLOAT:
        raise RuntimeError(f"result type Float can't be cast to the desired output type {_legacy_kind(self.dtype)}")
    if direct_in_place(self, E.div.write, other):
        return self
    return self._inplace(E.div, inplace_operand(self, other))


def copy_(self: Tensor, src, non_blocking: bool = False) -> Tensor:
    """Copy src (broadcast, any dtype) into self."""
    ops.setitem(self, Ellipsis, src if isinstance(src, Tensor) else ops._const(src, self.dtype))
    return self


def fill_(self: Tensor, value) -> Tensor:
    """Set every element to value (a number or a one-element tensor)."""
    if isinstance(value, Tensor) and not value._requires_grad:
        # Eagerly a Python number is the cheaper operand; while a step is traced the tensor stays in the
        # graph (its number would be a guard on the exact value, failing whenever the value changes).
        value = value.item() if TRACE.tracer is None else value.reshape(())
    ops.setitem(self, Ellipsis, value)
    return self


def zero_(self: Tensor) -> Tensor:
    """Set every element to zero."""
    return fill_(self, 0)


def _composite_inplace(fn):
    """In-place form of an out-of-place op: compute, then copy into self."""
    def method(self: Tensor, *args, **kwargs) -> Tensor:
        recording = is_grad_enabled() and (self._requires_grad or any(getattr(a, "_requires_grad", False) for a in args))
        # The result may keep self for its backward, so it must see a copy that copy_ won't overwrite.
        result = fn(self._snapshot() if recording else self, *args, **kwargs)
        if result.dtype.category > self.dtype.category:
            raise RuntimeError(f"result type {_legacy_kind(result.dtype)} can't be cast to the desired output "
                               f"type {_legacy_kind(self.dtype)}")
        return copy_(self, result)
    method.__doc__ = f"In-place {fn.__name__} (returns self)."
    return method


def _numpy_in_place(self: Tensor, tensors: tuple, scale) -> bool:
    """Can the optimizer-style update of self from tensors (with a number scale) run in NumPy directly?"""
    if not ((type(scale) is float or type(scale) is int) and plain_float(self)):
        return False
    for t in tensors:
        if not isinstance(t, Tensor) or t._data.dtype != self._data.dtype or t._data.shape != self._data.shape \
                or (is_grad_enabled() and t._requires_grad):
            return False
    return True


def _fused(fn, numpy_update):
    """An in-place composite with a NumPy fast path doing the same float operations in the same order,
    with one temporary instead of one per op (Adam's update runs these on every parameter)."""
    composite = _composite_inplace(fn)

    def method(self: Tensor, a, b, **kwargs) -> Tensor:
        scale = kwargs.get("value", kwargs.get("weight", b if fn is ops.lerp else 1))
        tensors = (a,) if fn is ops.lerp else (a, b)
        if _numpy_in_place(self, tensors, scale):
            numpy_update(self._data, *[t._data for t in tensors], scale)
            self._vc[0] += 1
            return self
        return composite(self, a, b, **kwargs)
    method.__doc__ = f"In-place {fn.__name__} (returns self)."
    return method


def _lerp_update(x, end, weight) -> None:
    if weight < 0.5:  # x + weight * (end - x)
        tmp = np.subtract(end, x)
        tmp *= weight
        x += tmp
    else:  # end - (end - x) * (1 - weight)
        tmp = np.subtract(end, x)
        tmp *= 1 - weight
        np.subtract(end, tmp, out=x)


def _addcmul_update(x, t1, t2, value) -> None:
    tmp = np.multiply(t1, value) if value != 1 else t1.copy()
    tmp *= t2
    x += tmp


def _addcdiv_update(x, t1, t2, value) -> None:
    tmp = np.multiply(t1, value) if value != 1 else t1.copy()
    tmp /= t2
    x += tmp


def uniform_(self: Tensor, a: float = 0.0, b: float = 1.0, *, generator=None) -> Tensor:
    """Fill with uniform samples from [a, b)."""
    return copy_(self, creation.rand(self._data.shape, dtype=self.dtype, generator=generator) * (b - a) + a)


def normal_(self: Tensor, mean: float = 0.0, std: float = 1.0, *, generator=None) -> Tensor:
    """Fill with normal samples."""
    return copy_(self, creation.randn(self._data.shape, dtype=self.dtype, generator=generator) * std + mean)


def bernoulli_(self: Tensor, p: float = 0.5, *, generator=None) -> Tensor:
    """Fill with 1 with probability p, else 0."""
    return copy_(self, creation.bernoulli(self, p, generator=generator))


def index_put_(self: Tensor, indices: tuple, values: Tensor, accumulate: bool = False) -> Tensor:
    """self[indices] = values (or += with accumulate), in place."""
    if not accumulate:
        ops.setitem(self, tuple(indices), values)
        return self
    return copy_(self, ops.index_put(self, indices, values, accumulate=True))


def scatter_add_(self: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """In-place scatter_add."""
    return copy_(self, ops.scatter_add(self, dim, index, src))


def remainder_(self: Tensor, other) -> Tensor:
    """self %= other (an integer tensor divided by zero raises, like remainder)."""
    if direct_in_place(self, E.remainder.write, other):
        return self
    operand = inplace_operand(self, other)
    if self.dtype.category != dtypes.FLOAT:
        ops._check_integer_divisor(operand)
    return self._inplace(E.remainder, operand)


def neg_(self: Tensor) -> Tensor:
    """In-place neg (returns self)."""
    return ops.neg(self) if self.dtype is dtypes.bool_ else self._inplace(E.neg)  # neg raises for bool


def round_(self: Tensor) -> Tensor:
    """In-place round (returns self)."""
    if self.dtype.category != dtypes.FLOAT:
        refuse(dtypes.get_default_dtype(), self)
    return self._inplace(E.round)


Tensor.remainder_, Tensor.neg_, Tensor.round_ = remainder_, neg_, round_
Tensor.lerp_ = _fused(ops.lerp, _lerp_update)
Tensor.addcmul_ = _fused(ops.addcmul, _addcmul_update)
Tensor.addcdiv_ = _fused(ops.addcdiv, _addcdiv_update)
for _name in ["clamp", "clamp_min", "clamp_max", "masked_fill", "floor_divide", "rsqrt", "reciprocal", "square"]:
    setattr(Tensor, _name + "_", _composite_inplace(getattr(ops, _name)))
Tensor.clip_ = Tensor.clamp_
Tensor.add_, Tensor.sub_, Tensor.div_ = add_, sub_, div_
Tensor.copy_, Tensor.fill_, Tensor.zero_ = copy_, fill_, zero_
Tensor.uniform_, Tensor.normal_, Tensor.bernoulli_ = uniform_, normal_, bernoulli_
Tensor.index_put_, Tensor.scatter_add_ = index_put_, scatter_add_
Tensor.divide_, Tensor.subtract_ = div_, sub_
Tensor.__iadd__, Tensor.__isub__, Tensor.__imul__, Tensor.__itruediv__ = add_, sub_, Tensor.mul_, div_
Tensor.__ipow__ = Tensor.pow_


def _ior(self: Tensor, other) -> Tensor:
    return copy_(self, ops.bitwise_or(self, other))


def _iand(self: Tensor, other) -> Tensor:
    return copy_(self, ops.bitwise_and(self, other))


Tensor.__ior__, Tensor.__iand__ = _ior, _iand
def new_zeros(self: Tensor, *size, dtype=None, requires_grad: bool = False) -> Tensor:
    """Zeros of the given size, with self's dtype unless given."""
    return creation.zeros(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)


def new_ones(self: Tensor, *size, dtype=None, requires_grad: bool = False) -> Tensor:
    """Ones of the given size, with self's dtype unless given."""
    return creation.ones(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)


def new_full(self: Tensor, size, fill_value, dtype=None, requires_grad: bool = False) -> Tensor:
    """fill_value everywhere, with self's dtype unless given."""
    return creation.full(size, fill_value, dtype=dtype or self.dtype, requires_grad=requires_grad)


def new_tensor(self: Tensor, data, dtype=None, requires_grad: bool = False) -> Tensor:
    """A new tensor from data, with self's dtype unless given."""
    from .tensor import tensor
    return tensor(data, dtype=dtype or self.dtype, requires_grad=requires_grad)


Tensor.new_zeros, Tensor.new_ones, Tensor.new_full, Tensor.new_tensor = new_zeros, new_ones, new_full, new_tensor
Tensor.new_empty = Tensor.new_zeros

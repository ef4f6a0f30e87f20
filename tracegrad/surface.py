"""The regular elementwise family, generated from the primitive table.

A primitive declared with a ``Surface`` (``primitives/base.py``) gets, from this module alone, the
function ``tracegrad.<name>`` (also ``tracegrad.ops.<name>``), the method ``Tensor.<name>`` and,
unless its surface says otherwise, the in-place method ``Tensor.<name>_``. All three promote their
operands by the surface's one rule; the in-place method then refuses a result its tensor's dtype
can't hold (PyTorch's rule: ``tensor([1, 2]).exp_()`` raises, ``tensor([1, 2]).sign_()`` works) and
writes into the tensor. Primitives declared later (an extension) get theirs when declared.
"""
from __future__ import annotations

import sys
from typing import Callable

import numpy as np

from . import dtypes, ops
from .autograd.grad_mode import STATE
from .primitives.base import ON_DECLARE, REGISTRY, Primitive
from .tensor import TRACE, Tensor, _legacy_kind, apply


def _float(x: Tensor) -> tuple:
    return (ops._floating(x),)


def _same(x: Tensor) -> tuple:
    return (x,)


def _common(name: str) -> Callable:
    def promote(a, b) -> tuple:
        return ops._promote(a, b, name)
    return promote


def _integral(name: str) -> Callable:
    def promote(a, b) -> tuple:
        a, b = ops._promote(a, b, name)
        if a.dtype.category == dtypes.FLOAT:
            raise TypeError(f"{name} is only supported for integer and bool tensors, got {a.dtype}")
        return a, b
    return promote


def promotion(prim: Primitive) -> Callable:
    """The function turning the user's operands into the primitive's, by the surface's promotion rule."""
    rule = prim.surface.promote
    if rule in ("float", "same"):
        return _float if rule == "float" else _same
    if rule in ("common", "integral"):
        return (_common if rule == "common" else _integral)(prim.name)
    raise ValueError(f"primitive {prim.name!r}: unknown promotion rule {rule!r}; expected float, same, common "
                     f"or integral")


def function(prim: Primitive) -> Callable:
    """``tracegrad.<name>``: the operands promoted, then the primitive applied."""
    promote = promotion(prim)
    if prim.surface.promote in ("float", "same"):
        def op(input: Tensor) -> Tensor:
            return apply(prim, *promote(input))
    elif prim.surface.operand == "other":
        def op(input, other) -> Tensor:
            return apply(prim, *promote(input, other))
    else:
        keyword = prim.surface.operand

        def op(input, *other, **named) -> Tensor:  # the second operand by position or by its keyword
            if keyword in named:
                other += (named.pop(keyword),)
            if named or len(other) != 1:
                raise TypeError(f"{prim.name}() takes input and {keyword}, got {len(other)} more positional "
                                f"and the keywords {sorted(named)}")
            return apply(prim, *promote(input, *other))
    op.__name__ = op.__qualname__ = prim.name
    op.__doc__ = prim.surface.doc
    return op


def in_place(prim: Primitive) -> Callable:
    """``Tensor.<name>_``: the function's result written into self, which keeps its dtype."""
    rule = prim.surface.promote
    if rule in ("float", "same"):
        def op(self: Tensor) -> Tensor:
            if rule == "float" and self.dtype.category != dtypes.FLOAT:
                refuse(dtypes.get_default_dtype(), self)
            return self._inplace(prim)
    else:
        def op(self: Tensor, other) -> Tensor:  # (pow_ takes its exponent by position, as PyTorch's does)
            if prim.write is not None and direct_in_place(self, prim.write, other):
                return self
            operand = inplace_operand(self, other)
            if rule == "integral" and self.dtype.category == dtypes.FLOAT:
                promotion(prim)(self, operand)  # raises the function's error
            return self._inplace(prim, operand)
    op.__name__ = op.__qualname__ = f"{prim.name}_"
    op.__doc__ = f"In-place {prim.name} (returns self)."
    return op


def refuse(result: dtypes.dtype, self: Tensor) -> None:
    """Raise PyTorch's error for an in-place result of a wider category than self's dtype."""
    raise RuntimeError(f"result type {_legacy_kind(result)} can't be cast to the desired output type "
                       f"{_legacy_kind(self.dtype)}")


def inplace_operand(self: Tensor, other) -> Tensor:
    """other as a tensor of self's dtype; an in-place op can't change self's dtype to a wider category."""
    if isinstance(other, Tensor) and other._data.dtype == self._data.dtype:
        return other
    d = dtypes.result_type(self, other)
    if d.category > self.dtype.category:
        refuse(d, self)
    return ops._cast(other, self.dtype)


def plain_float(self: Tensor) -> bool:
    """A float tensor written in place with nothing recorded or traced: NumPy can do it directly.

    With grad mode on, a tensor that requires grad, or a view of one, takes the general path, which
    records the write or raises.
    """
    recorded = self._requires_grad or (self._base is not None and self._base._requires_grad)
    return (TRACE.tracer is None and self._data.dtype.kind == "f" and not self._inference
            and not (STATE.grad_enabled and recorded) and self._data.flags.writeable)


def plain_operand(self: Tensor, other) -> bool:
    """other is a tensor of self's dtype that nothing records and that broadcasts to self's shape."""
    if not isinstance(other, Tensor) or other._data.dtype != self._data.dtype or (STATE.grad_enabled
                                                                                  and other._requires_grad):
        return False
    shape = self._data.shape
    return other._data.shape == shape or np.broadcast_shapes(shape, other._data.shape) == shape


def direct_in_place(self: Tensor, ufunc, other, alpha=1) -> bool:
    """The optimizer hot path: self op= alpha * other straight in NumPy, for a float tensor that nothing
    records and a Python number (with alpha 1) or a plain tensor (with alpha a number). Done?

    alpha == 1 skips the multiplication, as the general path does (x * 1 == x exactly).
    """
    if (type(alpha) is not float and type(alpha) is not int) or not plain_float(self):
        return False
    data = self._data
    if type(other) is float or type(other) is int:
        if alpha != 1:
            return False
        ufunc(data, other, out=data, casting="unsafe")
    elif plain_operand(self, other):
        ufunc(data, other._data if alpha == 1 else other._data * alpha, out=data)
    else:
        return False
    self._vc[0] += 1
    return True




def install(prim: Primitive) -> None:
    """Make the function and methods of a primitive declared with a surface."""
    if prim.surface is None:
        return
    fn = function(prim)
    method = in_place(prim) if prim.surface.inplace else None
    for name in (prim.name,) + prim.surface.aliases:
        for namespace in (ops, sys.modules[__package__], Tensor):
            setattr(namespace, name, fn)
        if method is not None:
            setattr(Tensor, f"{name}_", method)


def generated() -> list[str]:
    """The names of the generated functions, in declaration order."""
    return [name for name, prim in REGISTRY.items() if prim.surface is not None]


for _prim in list(REGISTRY.values()):
    install(_prim)
ON_DECLARE.append(install)

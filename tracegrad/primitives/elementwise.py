"""Elementwise primitives: unary math, binary arithmetic with broadcasting, comparisons, where, casts.

Binary primitives take operands of one dtype (the front end promotes first) and broadcast.
"""
from __future__ import annotations

import math

import numpy as np

from .. import ops
from ..tensor import Tensor
from .base import Primitive, bool_dtype, elementwise_shape, quiet, records_nothing, same_dtype, sum_to_shape


def _unary(name: str, fn, *, saves=(), saves_output=False, silent=False, ufunc=True) -> Primitive:
    impl = quiet(fn) if silent else fn
    return Primitive(name, "elementwise", impl, shape_rule=elementwise_shape, dtype_rule=same_dtype,
                     saves=saves, saves_output=saves_output, ufunc=fn if ufunc and isinstance(fn, np.ufunc) else None)


def _scipy_special(name: str):
    """A scipy.special function, imported at its first use: importing scipy.special takes ~0.3 s."""
    def impl(x):
        import scipy.special
        return getattr(scipy.special, name)(x)
    impl.__name__ = name
    return impl


# ---- unary -------------------------------------------------------------------------------------

neg = _unary("neg", np.negative)
exp = _unary("exp", np.exp, saves_output=True, silent=True)
log = _unary("log", np.log, saves=(0,), silent=True)
log1p = _unary("log1p", np.log1p, saves=(0,), silent=True)
expm1 = _unary("expm1", np.expm1, saves_output=True, silent=True)
sqrt = _unary("sqrt", np.sqrt, saves_output=True, silent=True)
sin = _unary("sin", np.sin, saves=(0,))
cos = _unary("cos", np.cos, saves=(0,))
tanh = _unary("tanh", np.tanh, saves_output=True)
sigmoid = _unary("sigmoid", _scipy_special("expit"), saves_output=True)
relu = _unary("relu", lambda x: np.maximum(x, 0), saves_output=True)
abs = _unary("abs", np.abs, saves=(0,))
erf = _unary("erf", _scipy_special("erf"), saves=(0,))
sign = _unary("sign", np.sign)
floor = _unary("floor", np.floor)
ceil = _unary("ceil", np.ceil)
round = _unary("round", np.round)
trunc = _unary("trunc", np.trunc)
logical_not = Primitive("logical_not", "elementwise", np.logical_not, shape_rule=elementwise_shape,
                        dtype_rule=bool_dtype)
isnan = Primitive("isnan", "elementwise", np.isnan, shape_rule=elementwise_shape, dtype_rule=bool_dtype)
isinf = Primitive("isinf", "elementwise", np.isinf, shape_rule=elementwise_shape, dtype_rule=bool_dtype)

neg.defvjp(lambda node, g: (-g,))
exp.defvjp(lambda node, g: (g * node.saved_output(),))
log.defvjp(lambda node, g: (g / node.saved(0),))
log1p.defvjp(lambda node, g: (g / (node.saved(0) + 1),))
expm1.defvjp(lambda node, g: (g * (node.saved_output() + 1),))
sqrt.defvjp(lambda node, g: (g / (2 * node.saved_output()),))
sin.defvjp(lambda node, g: (g * node.saved(0).cos(),))
cos.defvjp(lambda node, g: (-g * node.saved(0).sin(),))
abs.defvjp(lambda node, g: (g * node.saved(0).sign(),))
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
erf.defvjp(lambda node, g: (g * _TWO_OVER_SQRT_PI * (-node.saved(0) * node.saved(0)).exp(),))


@tanh.defvjp
def _tanh_vjp(node, g):
    y = node.saved_output()
    return (g * (1 - y * y),)


@sigmoid.defvjp
def _sigmoid_vjp(node, g):
    y = node.saved_output()
    return (g * (y * (1 - y)),)


@relu.defvjp
def _relu_vjp(node, g):
    if records_nothing():  # the ops below on the arrays: y > 0, cast to g's dtype, multiply
        mask = node.saved_output()._data > 0
        return (Tensor._make(mul.impl(g._data, mask.astype(g._data.dtype))),)
    return (g * (node.saved_output() > 0),)


def _zero_vjp(node, g):
    """Piecewise-constant functions: the gradient is zero almost everywhere."""
    return (ops.zeros_like(g),)


for _p in (sign, floor, ceil, round, trunc):
    _p.defvjp(_zero_vjp)


def _cast_dtype(in_dtypes, dtype, src):
    return dtype


# ``src`` (the input dtype) is an attribute so that the VJP can cast the cotangent back.
cast = Primitive("cast", "elementwise", lambda x, dtype, src: x.astype(dtype.np),
                 shape_rule=elementwise_shape, dtype_rule=_cast_dtype)


@cast.defvjp
def _cast_vjp(node, g):
    return (g.to(node.attrs["src"]),)


copy = _unary("copy", lambda x: np.array(x, order="C"), ufunc=False)  # always row-major, like contiguous()
copy.defvjp(lambda node, g: (g,))


# ---- binary ------------------------------------------------------------------------------------

def _binary(name: str, fn, *, saves=(), silent=False, dtype_rule=same_dtype) -> Primitive:
    return Primitive(name, "elementwise", quiet(fn) if silent else fn, shape_rule=elementwise_shape,
                     dtype_rule=dtype_rule, saves=saves, ufunc=fn if isinstance(fn, np.ufunc) else None)


add = _binary("add", np.add, silent=True)
sub = _binary("sub", np.subtract, silent=True)
mul = _binary("mul", np.multiply, saves=(0, 1), silent=True)
div = _binary("div", np.true_divide, saves=(0, 1), silent=True)
pow = _binary("pow", np.power, saves=(0, 1), silent=True)
maximum = _binary("maximum", np.maximum, saves=(0, 1))
minimum = _binary("minimum", np.minimum, saves=(0, 1))
remainder = _binary("remainder", np.remainder, saves=(0, 1), silent=True)
floor_divide = _binary("floor_divide", np.floor_divide, silent=True)
eq = _binary("eq", np.equal, dtype_rule=bool_dtype)
ne = _binary("ne", np.not_equal, dtype_rule=bool_dtype)
lt = _binary("lt", np.less, dtype_rule=bool_dtype)
le = _binary("le", np.less_equal, dtype_rule=bool_dtype)
gt = _binary("gt", np.greater, dtype_rule=bool_dtype)
ge = _binary("ge", np.greater_equal, dtype_rule=bool_dtype)
bitwise_and = _binary("bitwise_and", np.bitwise_and)
bitwise_or = _binary("bitwise_or", np.bitwise_or)
bitwise_xor = _binary("bitwise_xor", np.bitwise_xor)


def _wanted(node, *grads):
    """Reduce each wanted cotangent to its input's shape; None where no gradient is needed."""
    out = []
    for g, shape, need in zip(grads, node.in_shapes, node.needs_input_grad):
        out.append(sum_to_shape(g, shape) if need else None)
    return tuple(out)


add.defvjp(lambda node, g: _wanted(node, g, g))


@sub.defvjp
def _sub_vjp(node, g):
    return _wanted(node, g, -g if node.needs_input_grad[1] else None)


@mul.defvjp
def _mul_vjp(node, g):
    x, y = node.saved(0), node.saved(1)
    need_x, need_y = node.needs_input_grad
    return _wanted(node, g * y if need_x else None, g * x if need_y else None)


@div.defvjp
def _div_vjp(node, g):
    x, y = node.saved(0), node.saved(1)
    need_x, need_y = node.needs_input_grad
    return _wanted(node, g / y if need_x else None, -g * x / (y * y) if need_y else None)


@pow.defvjp
def _pow_vjp(node, g):
    x, y = node.saved(0), node.saved(1)
    need_x, need_y = node.needs_input_grad
    gx = gy = None
    if need_x:
        gx = ops.where(y == 0, 0.0, g * y * x ** (y - 1))
    if need_y:
        gy = ops.where((x == 0) & (y >= 0), 0.0, g * x ** y * x.log())
    return _wanted(node, gx, gy)


def _minmax_vjp(node, g):
    """Gradient goes to the selected operand; ties split it evenly."""
    x, y = node.saved(0), node.saved(1)
    wins = (x > y) if node.prim is maximum else (x < y)
    share = wins.to(g.dtype) + (x == y).to(g.dtype) * 0.5
    need_x, need_y = node.needs_input_grad
    return _wanted(node, g * share if need_x else None, g * (1 - share) if need_y else None)


maximum.defvjp(_minmax_vjp)
minimum.defvjp(_minmax_vjp)


@remainder.defvjp
def _remainder_vjp(node, g):
    x, y = node.saved(0), node.saved(1)
    need_x, need_y = node.needs_input_grad
    return _wanted(node, g if need_x else None, -g * (x / y).floor() if need_y else None)


# ---- where -------------------------------------------------------------------------------------

where = Primitive("where", "elementwise", np.where, shape_rule=elementwise_shape,
                  dtype_rule=lambda in_dtypes, **a: in_dtypes[1], saves=(0,))


@where.defvjp
def _where_vjp(node, g):
    cond = node.saved(0)
    zero = ops.zeros((), dtype=g.dtype)
    _, need_x, need_y = node.needs_input_grad
    gx = ops.where(cond, g, zero) if need_x else None
    gy = ops.where(cond, zero, g) if need_y else None
    return _wanted(node, None, gx, gy)

"""Elementwise primitives: unary math, binary arithmetic with broadcasting, comparisons, where, casts.

Binary primitives take operands of one dtype (the front end promotes first) and broadcast.
"""
from __future__ import annotations

import math

import numpy as np

from ..tensor import Tensor
from . import lax
from .base import Primitive, Surface, bool_dtype, elementwise_shape, quiet, records_nothing, same_dtype


def _unary(name: str, fn, doc: str | None = None, *, promote="same", saves=(), saves_output=False, silent=False,
           ufunc=True, dtype_rule=same_dtype, inplace=True, aliases=()) -> Primitive:
    """An elementwise primitive of one operand; with ``doc``, a function and methods of the surface too."""
    impl = quiet(fn) if silent else fn
    return Primitive(name, "elementwise", impl, shape_rule=elementwise_shape, dtype_rule=dtype_rule,
                     saves=saves, saves_output=saves_output, ufunc=fn if ufunc and isinstance(fn, np.ufunc) else None,
                     surface=None if doc is None else Surface(doc, promote, inplace, aliases))


def _scipy_special(name: str):
    """A scipy.special function, imported at its first use: importing scipy.special takes ~0.3 s."""
    def impl(x):
        import scipy.special
        return getattr(scipy.special, name)(x)
    impl.__name__ = name
    return impl


# ---- unary -------------------------------------------------------------------------------------

neg = _unary("neg", np.negative)
exp = _unary("exp", np.exp, "e ** input, elementwise.", promote="float", saves_output=True, silent=True)
log = _unary("log", np.log, "Natural logarithm, elementwise.", promote="float", saves=(0,), silent=True)
log1p = _unary("log1p", np.log1p, "log(1 + input), accurate for small input.", promote="float", saves=(0,),
               silent=True)
expm1 = _unary("expm1", np.expm1, "exp(input) - 1, accurate for small input.", promote="float", saves_output=True,
               silent=True)
sqrt = _unary("sqrt", np.sqrt, "Square root, elementwise.", promote="float", saves_output=True, silent=True)
sin = _unary("sin", np.sin, "Sine, elementwise.", promote="float", saves=(0,))
cos = _unary("cos", np.cos, "Cosine, elementwise.", promote="float", saves=(0,))
tanh = _unary("tanh", np.tanh, "Hyperbolic tangent, elementwise.", promote="float", saves_output=True)
sigmoid = _unary("sigmoid", _scipy_special("expit"), "1 / (1 + exp(-input)), elementwise.", promote="float",
                 saves_output=True)
erf = _unary("erf", _scipy_special("erf"), "The error function, elementwise.", promote="float", saves=(0,))
relu = _unary("relu", lambda x: np.maximum(x, x.dtype.type(0)), "max(input, 0), elementwise.", saves_output=True)
abs = _unary("abs", np.abs, "Absolute value, elementwise.", saves=(0,), aliases=("absolute",))
sign = _unary("sign", np.sign, "-1, 0 or 1 by the sign of each element.")
floor = _unary("floor", np.floor, "Round down, elementwise.")
ceil = _unary("ceil", np.ceil, "Round up, elementwise.")
round = _unary("round", np.round)
trunc = _unary("trunc", np.trunc, "Round toward zero, elementwise.")
logical_not = _unary("logical_not", np.logical_not, dtype_rule=bool_dtype)
isnan = _unary("isnan", np.isnan, "True where the element is NaN.", dtype_rule=bool_dtype, inplace=False)
isinf = _unary("isinf", np.isinf, "True where the element is +-inf.", dtype_rule=bool_dtype, inplace=False)

neg.defvjp(lambda node, g: (lax.neg(g),))
exp.defvjp(lambda node, g: (lax.mul(g, node.saved_output()),))
log.defvjp(lambda node, g: (lax.div(g, node.saved(0)),))
log1p.defvjp(lambda node, g: (lax.div(g, lax.add(node.saved(0), 1)),))
expm1.defvjp(lambda node, g: (lax.mul(g, lax.add(node.saved_output(), 1)),))
sqrt.defvjp(lambda node, g: (lax.div(g, lax.mul(2, node.saved_output())),))
sin.defvjp(lambda node, g: (lax.mul(g, lax.cos(node.saved(0))),))
cos.defvjp(lambda node, g: (lax.mul(lax.neg(g), lax.sin(node.saved(0))),))
abs.defvjp(lambda node, g: (lax.mul(g, lax.sign(node.saved(0))),))
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


@erf.defvjp
def _erf_vjp(node, g):
    x = node.saved(0)
    return (lax.mul(lax.mul(g, _TWO_OVER_SQRT_PI), lax.exp(lax.mul(lax.neg(x), x))),)


@tanh.defvjp
def _tanh_vjp(node, g):
    y = node.saved_output()
    return (lax.mul(g, lax.sub(1, lax.mul(y, y))),)


@sigmoid.defvjp
def _sigmoid_vjp(node, g):
    y = node.saved_output()
    return (lax.mul(g, lax.mul(y, lax.sub(1, y))),)


@relu.defvjp
def _relu_vjp(node, g):
    if records_nothing():  # the ops below on the arrays: y > 0, cast to g's dtype, multiply
        mask = node.saved_output()._data > 0
        return (Tensor._make(mul.impl(g._data, mask.astype(g._data.dtype))),)
    return (lax.mul(g, lax.to(lax.gt(node.saved_output(), 0), g.dtype)),)


def _zero_vjp(node, g):
    """Piecewise-constant functions: the gradient is zero almost everywhere."""
    return (lax.zeros(g._data.shape, g.dtype),)


for _p in (sign, floor, ceil, round, trunc):
    _p.defvjp(_zero_vjp)


def _cast_dtype(in_dtypes, dtype, src):
    return dtype


# ``src`` (the input dtype) is an attribute so that the VJP can cast the cotangent back.
cast = Primitive("cast", "elementwise", lambda x, dtype, src: x.astype(dtype.np),
                 shape_rule=elementwise_shape, dtype_rule=_cast_dtype)


@cast.defvjp
def _cast_vjp(node, g):
    return (lax.to(g, node.attrs["src"]),)


copy = _unary("copy", lambda x: np.array(x, order="C"), ufunc=False)  # always row-major, like contiguous()
copy.defvjp(lambda node, g: (g,))
copy.node_name = "CloneBackward0"  # PyTorch's names: clone() and .to(dtype)
cast.node_name = "ToCopyBackward0"


# ---- binary ------------------------------------------------------------------------------------

def _binary(name: str, fn, doc: str | None = None, *, promote="common", saves=(), silent=False,
            dtype_rule=same_dtype, inplace=True, aliases=(), ufunc=None, operand="other") -> Primitive:
    """An elementwise primitive of two operands of one dtype, broadcast; with ``doc``, a function and methods
    of the surface too."""
    return Primitive(name, "elementwise", quiet(fn) if silent else fn, shape_rule=elementwise_shape,
                     dtype_rule=dtype_rule, saves=saves, ufunc=ufunc or (fn if isinstance(fn, np.ufunc) else None),
                     surface=None if doc is None else Surface(doc, promote, inplace, aliases, operand))


def _power(x, y):
    """x ** y; booleans stay boolean (NumPy's power of booleans is int8)."""
    out = np.power(x, y)
    return out.astype(np.bool_) if x.dtype == np.bool_ else out


add = _binary("add", np.add, silent=True)
sub = _binary("sub", np.subtract, silent=True)
mul = _binary("mul", np.multiply, "Elementwise product with broadcasting.", saves=(0, 1), silent=True,
              aliases=("multiply",))
div = _binary("div", np.true_divide, saves=(0, 1), silent=True)
pow = _binary("pow", _power, "input ** exponent, elementwise with broadcasting.", saves=(0, 1), silent=True,
              ufunc=np.power, operand="exponent")
maximum = _binary("maximum", np.maximum, "Elementwise maximum (ties share the gradient).", saves=(0, 1))
minimum = _binary("minimum", np.minimum, "Elementwise minimum (ties share the gradient).", saves=(0, 1))
remainder = _binary("remainder", np.remainder, saves=(0, 1), silent=True)
floor_divide = _binary("floor_divide", np.floor_divide, silent=True)
eq = _binary("eq", np.equal, "input == other, elementwise.", dtype_rule=bool_dtype, inplace=False)
ne = _binary("ne", np.not_equal, "input != other, elementwise.", dtype_rule=bool_dtype, inplace=False)
lt = _binary("lt", np.less, "input < other, elementwise.", dtype_rule=bool_dtype, inplace=False, aliases=("less",))
le = _binary("le", np.less_equal, "input <= other, elementwise.", dtype_rule=bool_dtype, inplace=False)
gt = _binary("gt", np.greater, "input > other, elementwise.", dtype_rule=bool_dtype, inplace=False,
             aliases=("greater",))
ge = _binary("ge", np.greater_equal, "input >= other, elementwise.", dtype_rule=bool_dtype, inplace=False)
bitwise_and = _binary("bitwise_and", np.bitwise_and, "input & other (bool or integer).", promote="integral")
bitwise_or = _binary("bitwise_or", np.bitwise_or, "input | other (bool or integer).", promote="integral")
bitwise_xor = _binary("bitwise_xor", np.bitwise_xor, "input ^ other (bool or integer).", promote="integral")


def _wanted(node, *grads):
    """Reduce each wanted cotangent to its input's shape; None where no gradient is needed."""
    out = []
    for g, shape, need in zip(grads, node.in_shapes, node.needs_input_grad):
        out.append(lax.sum_to_shape(g, shape) if need else None)
    return tuple(out)


add.defvjp(lambda node, g: _wanted(node, g, g))


@sub.defvjp
def _sub_vjp(node, g):
    return _wanted(node, g, lax.neg(g) if node.needs_input_grad[1] else None)


@mul.defvjp
def _mul_vjp(node, g):
    x, y = node.saved(0), node.saved(1)
    need_x, need_y = node.needs_input_grad
    return _wanted(node, lax.mul(g, y) if need_x else None, lax.mul(g, x) if need_y else None)


@div.defvjp
def _div_vjp(node, g):
    x, y = node.saved(0), node.saved(1)
    need_x, need_y = node.needs_input_grad
    return _wanted(node, lax.div(g, y) if need_x else None,
                   lax.div(lax.mul(lax.neg(g), x), lax.mul(y, y)) if need_y else None)


@pow.defvjp
def _pow_vjp(node, g):
    x, y = node.saved(0), node.saved(1)
    need_x, need_y = node.needs_input_grad
    gx = gy = None
    zero = lax.scalar(0, g)
    if need_x:
        gx = lax.where(lax.eq(y, 0), zero, lax.mul(lax.mul(g, y), lax.pow(x, lax.sub(y, 1))))
    if need_y:
        log_x = lax.log(x)
        gy = lax.where(lax.bitwise_and(lax.eq(x, 0), lax.ge(y, 0)), zero, lax.mul(lax.mul(g, lax.pow(x, y)), log_x))
    return _wanted(node, gx, gy)


def _minmax_vjp(node, g):
    """Gradient goes to the selected operand; ties split it evenly."""
    x, y = node.saved(0), node.saved(1)
    wins = lax.gt(x, y) if node.prim is maximum else lax.lt(x, y)
    share = lax.add(lax.to(wins, g.dtype), lax.mul(lax.to(lax.eq(x, y), g.dtype), 0.5))
    need_x, need_y = node.needs_input_grad
    return _wanted(node, lax.mul(g, share) if need_x else None, lax.mul(g, lax.sub(1, share)) if need_y else None)


maximum.defvjp(_minmax_vjp)
minimum.defvjp(_minmax_vjp)


@remainder.defvjp
def _remainder_vjp(node, g):
    x, y = node.saved(0), node.saved(1)
    need_x, need_y = node.needs_input_grad
    return _wanted(node, g if need_x else None, lax.mul(lax.neg(g), lax.floor(lax.div(x, y))) if need_y else None)


# ---- where -------------------------------------------------------------------------------------

where = Primitive("where", "elementwise", np.where, shape_rule=elementwise_shape,
                  dtype_rule=lambda in_dtypes, **a: in_dtypes[1], saves=(0,))


@where.defvjp
def _where_vjp(node, g):
    cond = node.saved(0)
    zero = lax.scalar(0, g)
    _, need_x, need_y = node.needs_input_grad
    gx = lax.where(cond, g, zero) if need_x else None
    gy = lax.where(cond, zero, g) if need_y else None
    return _wanted(node, None, gx, gy)

"""Vectorizable tanh, exp and log for scalars inside Numba-compiled loops.

Why these exist: the PyPI llvmlite has no SVML, so ``np.tanh``/``np.exp``/``np.log``
inside ``@njit`` code are scalar libm calls (3-18 ns per element), and a call in a
loop body stops LLVM from vectorizing the loop.  The float32 versions here are
branch-free polynomial/rational approximations made of arithmetic, min/max,
selects and bit reinterpretation only, so a loop such as

    for i in range(n):
        out[i] = tanh(x[i] * w[i] + b[i])

compiles to SIMD code.  The float64 versions are plain ``np.tanh``/``np.exp``/``np.log``
(libm: within 1 ulp, scalar, not vectorized): float64-accurate approximations were
not built yet.
Every function returns its argument's dtype; other argument types are a typing error.

Accuracy of the float32 versions against the float64 functions, measured over
every float32 input and asserted on dense grids by tests/test_fastmath.py:
    tanh  absolute error <= 1e-6 (measured 3.3e-7); relative error <= 4e-7, which
          is up to 6 ulp just below +-1 where the float32 spacing halves
    exp   <= 2 ulp (measured 1.01), subnormal results (x < -87.3) included, so
          relative error <= 2.4e-7 wherever the result is a normal float
    log   <= 2 ulp (measured 0.85), subnormal inputs included
Special values follow NumPy: NaN -> NaN, exp overflows to inf and underflows to 0
(exp(inf) = inf, exp(-inf) = 0), log(0) = -inf, log(x < 0) = nan, log(inf) = inf,
tanh(+-inf) = +-1.  The functions are compiled without fast-math flags except FMA
contraction, and keep these semantics when inlined into a ``fastmath=True`` kernel.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core.errors import TypingError
from numba.extending import intrinsic, overload, register_jitable

# error_model="numpy" lets float division vectorize; "contract" lets LLVM fuse
# a * b + c into one FMA (one rounding, fewer instructions), no other fast-math flag.
# The entry points below are cached on disk with the kernels (signed: cache.py).
_JIT_OPTIONS = {"error_model": "numpy", "fastmath": {"contract"}}
_F32 = np.float32


@intrinsic
def _float32_bits(typingctx, value):
    """Reinterpret a float32's bits as an int32 (free, and it vectorizes)."""
    if value != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.int32(types.float32), codegen


@intrinsic
def _wrap_int32(typingctx, value):
    """Wrap an integer to int32 like C would, so LLVM keeps later shifts in 32-bit lanes."""
    if not isinstance(value, types.Integer) or value.bitwidth < 32:
        return None

    def codegen(context, builder, signature, args):
        return builder.trunc(args[0], ir.IntType(32)) if value.bitwidth > 32 else args[0]

    return types.int32(value), codegen


@intrinsic
def _bits_float32(typingctx, bits):
    """Reinterpret the low 32 bits of an integer as a float32."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        low = args[0]
        if bits.bitwidth > 32:
            low = builder.trunc(low, ir.IntType(32))
        return builder.bitcast(low, ir.FloatType())

    return types.float32(bits), codegen


# tanh(x) = x P(x^2) / Q(x^2).  Coefficients: relative-error minimax fit on [0, 9]
# in float64 (Loeb's linearized least squares iterated with Lawson weights, 40k
# points), rounded to float32; fit error 4.5e-8.  Float32 tanh rounds to +-1 from
# |x| = 9.01 on; past the fit range the rational overshoots 1 (by 2e-6 at 10), so
# clamping x to 10 and clipping the result to [-1, 1] gives exactly +-1 there.
_TANH_CLAMP = _F32(10.0)
_TANH_P0, _TANH_P1, _TANH_P2, _TANH_P3, _TANH_P4 = (
    _F32(1.0), _F32(1.3381030e-01), _F32(3.4955896e-03), _F32(2.0609012e-05), _F32(1.3354416e-08))
_TANH_Q0, _TANH_Q1, _TANH_Q2, _TANH_Q3, _TANH_Q4 = (
    _F32(1.0), _F32(4.6714345e-01), _F32(2.5876995e-02), _F32(3.2856330e-04), _F32(7.7764867e-07))


def _tanh_float32(x):
    # min/max keep a NaN first argument, so NaN flows through to the result.
    clamped = max(min(x, _TANH_CLAMP), -_TANH_CLAMP)
    z = clamped * clamped
    p = _TANH_P0 + z * (_TANH_P1 + z * (_TANH_P2 + z * (_TANH_P3 + z * _TANH_P4)))
    q = _TANH_Q0 + z * (_TANH_Q1 + z * (_TANH_Q2 + z * (_TANH_Q3 + z * _TANH_Q4)))
    return max(min(clamped * p / q, _F32(1.0)), _F32(-1.0))


# exp(x) = 2^n exp(r), n = round(x / ln2), r = x - n ln2 (Cody-Waite: ln2 split in
# a 9-bit head, so n * head is exact, and a tail).  exp(r) = 1 + r + r^2 P(r):
# relative-error minimax fit (Lawson's iteratively reweighted least squares in
# float64 on |r| <= ln2/2), rounded to float32; fit error 3.1e-9.
_EXP_MAX = _F32(89.0)  # exp(89) overflows float32
_EXP_MIN = _F32(-104.0)  # exp(-104) rounds to 0
_LOG2E = _F32(1.44269504088896341)
_LN2_HEAD = _F32(0.693359375)
_LN2_TAIL = _F32(-2.12194440054690583e-4)
# Adding 1.5 * 2^23 rounds to an integer and leaves it in the low mantissa bits.
_ROUNDING_MAGIC = _F32(12582912.0)
_ROUNDING_MAGIC_BITS = 0x4B400000
_EXP_P0, _EXP_P1, _EXP_P2, _EXP_P3, _EXP_P4 = (
    _F32(0.49999994), _F32(0.16666521), _F32(0.041668393), _F32(0.0083687445), _F32(0.0013814528))


@register_jitable
def _power_of_two_float32(n):
    """2.0**n as float32 for integer n in [-126, 127], built from its exponent bits."""
    return _bits_float32((n + 127) << 23)


def _exp_float32(x):
    clamped = max(min(x, _EXP_MAX), _EXP_MIN)  # NaN passes through
    shifted = clamped * _LOG2E + _ROUNDING_MAGIC
    n_float = shifted - _ROUNDING_MAGIC
    r = (clamped - n_float * _LN2_HEAD) - n_float * _LN2_TAIL
    poly = _EXP_P0 + r * (_EXP_P1 + r * (_EXP_P2 + r * (_EXP_P3 + r * _EXP_P4)))
    exp_r = _F32(1.0) + (r + r * r * poly)
    # n is in [-150, 129]: scale in two halves so that each factor 2^half is a
    # normal float and results round once into the subnormal or overflow range.
    n = _wrap_int32(_float32_bits(shifted) - _ROUNDING_MAGIC_BITS)
    half = n >> 1
    return exp_r * _power_of_two_float32(half) * _power_of_two_float32(n - half)


# log(x) = k ln2 + log1p(f), x = 2^k (1 + f), 1 + f in [sqrt(1/2), sqrt(2)).
# log1p(f) = f - f^2/2 + f^3 P(f): relative-error minimax fit (Lawson, float64, on
# that f range), rounded to float32; fit error 5.8e-9.
_MIN_NORMAL = _F32(np.finfo(np.float32).tiny)
_SUBNORMAL_SCALE = _F32(2.0**23)
_SQRT_HALF_BITS = 0x3F3504F3  # float32 bits of sqrt(1/2)
_MANTISSA_MASK = 0x007FFFFF
_INF = _F32(np.inf)
_NAN = _F32(np.nan)
_LOG_P0, _LOG_P1, _LOG_P2, _LOG_P3, _LOG_P4, _LOG_P5, _LOG_P6, _LOG_P7 = (
    _F32(0.3333333), _F32(-0.25000823), _F32(0.20001234), _F32(-0.16623296),
    _F32(0.14201546), _F32(-0.13160598), _F32(0.12763391), _F32(-0.07635696))


def _log_float32(x):
    subnormal = x < _MIN_NORMAL
    normal = x * _SUBNORMAL_SCALE if subnormal else x  # exact; k is corrected below
    # Subtracting sqrt(1/2)'s bits before reading the exponent field rounds k so that
    # the mantissa bits, added back to sqrt(1/2)'s, give 1 + f in [sqrt(1/2), sqrt(2)).
    offset_bits = _wrap_int32(_float32_bits(normal) - _SQRT_HALF_BITS)
    k = (offset_bits >> 23) - (23 if subnormal else 0)
    f = _bits_float32((offset_bits & _MANTISSA_MASK) + _SQRT_HALF_BITS) - _F32(1.0)
    k_float = _F32(k)
    z = f * f
    poly = _LOG_P0 + f * (_LOG_P1 + f * (_LOG_P2 + f * (_LOG_P3 + f * (
        _LOG_P4 + f * (_LOG_P5 + f * (_LOG_P6 + f * _LOG_P7))))))
    tail = f * z * poly + k_float * _LN2_TAIL - _F32(0.5) * z
    result = (f + tail) + k_float * _LN2_HEAD
    result = result if x < _INF else x  # +inf stays inf, NaN stays NaN
    result = -_INF if x == 0 else result
    return _NAN if x < 0 else result


def _libm_float64(numpy_function):
    """Implementation for float64 arguments: the NumPy function, which Numba compiles to a libm call."""

    def implementation(x):
        return numpy_function(x)

    return implementation


def _by_dtype(name, x, float32_implementation, numpy_function):
    """Pick the implementation of fastmath.<name> for the argument's Numba type."""
    if x == types.float32:
        return float32_implementation
    if x == types.float64:
        return _libm_float64(numpy_function)
    raise TypingError(f"fastmath.{name} takes a float32 or float64 scalar, got {x}; "
                      "cast the argument to one of them first")


def _tanh(x):
    """Typing stub dispatched by argument type (see the overload below)."""


def _exp(x):
    """Typing stub dispatched by argument type (see the overload below)."""


def _log(x):
    """Typing stub dispatched by argument type (see the overload below)."""


@overload(_tanh, jit_options=_JIT_OPTIONS)
def _tanh_overload(x):
    return _by_dtype("tanh", x, _tanh_float32, np.tanh)


@overload(_exp, jit_options=_JIT_OPTIONS)
def _exp_overload(x):
    return _by_dtype("exp", x, _exp_float32, np.exp)


@overload(_log, jit_options=_JIT_OPTIONS)
def _log_overload(x):
    return _by_dtype("log", x, _log_float32, np.log)


@njit(**_JIT_OPTIONS)
def tanh(x):
    """Hyperbolic tangent of a float32/float64 scalar, vectorizable inside njit loops."""
    return _tanh(x)


@njit(**_JIT_OPTIONS)
def exp(x):
    """Exponential of a float32/float64 scalar, vectorizable inside njit loops."""
    return _exp(x)


@njit(**_JIT_OPTIONS)
def log(x):
    """Natural logarithm of a float32/float64 scalar, vectorizable inside njit loops."""
    return _log(x)

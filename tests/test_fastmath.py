"""Accuracy, special values, dtypes and vectorization of the Numba backend's tanh/exp/log."""
import platform
import re

import numba
import numpy as np
import pytest

from tracegrad.backends.numba_cpu import fastmath

FUNCTIONS = {"tanh": fastmath.tanh, "exp": fastmath.exp, "log": fastmath.log}
TINY = np.finfo(np.float32).tiny  # smallest normal float32
SPECIAL = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1.0, -1.0, np.finfo(np.float32).max,
                    -np.finfo(np.float32).max, TINY, -TINY, np.float32(1e-45), np.float32(-1e-45)], np.float32)


@numba.njit(error_model="numpy")
def _apply(function, x):
    """The loop shape generated kernels use: one call per element (compiled once per function and dtype)."""
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = function(x[i])
    return out


@numba.njit(error_model="numpy", fastmath=True)
def _apply_in_fast_math_kernel(function, x):
    """The same loop in a kernel compiled with every fast-math flag."""
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = function(x[i])
    return out


def _float32_between(low: float, high: float, stride: int = 1) -> np.ndarray:
    """Every stride-th float32 in [low, high) for 0 <= low < high, walking the bit patterns."""
    start, stop = np.array([low, high], np.float32).view(np.int32)
    return np.arange(start, stop, stride, dtype=np.int32).view(np.float32)


def _whole_domain() -> np.ndarray:
    """A sparse sample of every float32 magnitude, both signs, plus special values."""
    magnitudes = _float32_between(0.0, np.inf, stride=2039)
    return np.concatenate([magnitudes, -magnitudes, SPECIAL])


# Extra dense windows where each approximation is hardest: tanh close to +-1, exp near
# overflow and in the subnormal-result range, log around 1 (cancellation) and subnormals.
DENSE = {
    "tanh": lambda: np.concatenate([_float32_between(1e-3, 10.5, stride=31), -_float32_between(4.0, 9.0, 97)]),
    "exp": lambda: np.concatenate([_float32_between(87.0, 89.0), -_float32_between(87.0, 104.0)]),
    "log": lambda: np.concatenate([_float32_between(0.5, 2.0, stride=8), _float32_between(0.0, TINY, 61)]),
}


def _errors(name: str, x: np.ndarray, y: np.ndarray):
    """Errors of y against NumPy's float64 function, where its float32 rounding is finite.

    Returns (x, ulp error, absolute error, relative error or nan where the result is not a normal float).
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        reference = getattr(np, name)(x.astype(np.float64))
        rounded = reference.astype(np.float32)
    finite = np.isfinite(rounded)
    # Where the float32 reference is inf or nan, the result must be identical.
    np.testing.assert_array_equal(y[~finite], rounded[~finite], err_msg=f"{name} of {x[~finite]}")
    reference, rounded = reference[finite], rounded[finite]
    absolute = np.abs(y[finite].astype(np.float64) - reference)
    ulp = absolute / np.spacing(np.abs(rounded))
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = np.where(np.abs(rounded) >= TINY, absolute / np.abs(reference), np.nan)
    return x[finite], ulp, absolute, relative


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_float32_accuracy_over_the_whole_domain(name):
    x = np.concatenate([_whole_domain(), DENSE[name]()])
    y = _apply(FUNCTIONS[name], x)
    assert y.dtype == np.float32
    checked, ulp, absolute, relative = _errors(name, x, y)
    if name == "tanh":
        assert absolute.max() <= 1e-6, f"absolute error {absolute.max():.2e} at x = {checked[absolute.argmax()]}"
        worst = np.nanargmax(relative)
        assert relative[worst] <= 4e-7, f"relative error {relative[worst]:.2e} at x = {checked[worst]}"
    else:
        assert ulp.max() <= 2.0, f"{ulp.max():.2f} ulp at x = {checked[ulp.argmax()]}"


# Inputs whose float32 results are exactly representable, so they must match bit for bit.
EXACT_CASES = {
    "tanh": [np.nan, np.inf, -np.inf, 0.0, -0.0, 10.0, -10.0, 20.0, -20.0, 1e-45, -1e-45],
    "exp": [np.nan, np.inf, -np.inf, 0.0, -0.0, 89.0, 100.0, 3e38, -104.0, -200.0, -3e38],
    "log": [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, -1e-45, -3e38],
}


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_special_values_match_numpy_exactly(name):
    x = np.array(EXACT_CASES[name], np.float32)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        expected = getattr(np, name)(x.astype(np.float64)).astype(np.float32)
    for apply in (_apply, _apply_in_fast_math_kernel):
        y = apply(FUNCTIONS[name], x)
        np.testing.assert_array_equal(y, expected, err_msg=apply.__name__)
        numbers = ~np.isnan(expected)  # a NaN's sign bit differs between NumPy builds and means nothing
        np.testing.assert_array_equal(np.signbit(y[numbers]), np.signbit(expected[numbers]),
                                      err_msg=f"signs of zeros in {apply.__name__}")


def test_fast_math_kernel_keeps_the_accuracy():
    x = np.linspace(-80.0, 80.0, 100_001, dtype=np.float32)
    for name, function in FUNCTIONS.items():
        _, ulp, _, _ = _errors(name, x, _apply_in_fast_math_kernel(function, x))
        assert ulp.max() <= (6.0 if name == "tanh" else 2.0), name


def test_float64_arguments_give_libm_results():
    x = np.random.default_rng(0).standard_normal(1000) * 30.0
    x = np.concatenate([x, SPECIAL.astype(np.float64)])
    for name, function in FUNCTIONS.items():
        y = _apply(function, x)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            expected = getattr(np, name)(x)
        assert y.dtype == np.float64
        # Numba compiles np.tanh & co. to libm calls, which may differ from NumPy's loops by 1 ulp.
        np.testing.assert_allclose(y, expected, rtol=2.3e-16, atol=0.0, err_msg=name)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_return_type_is_the_argument_type(dtype):
    for name, function in FUNCTIONS.items():
        function(dtype(0.5))
        return_types = {sig.args: sig.return_type for sig in function.nopython_signatures}
        numba_type = numba.from_dtype(dtype)
        assert return_types[(numba_type,)] == numba_type, name


def test_non_float_argument_is_a_typing_error():
    with pytest.raises(numba.core.errors.TypingError, match="float32 or float64 scalar, got int64"):
        fastmath.exp(np.int64(3))


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="checks x86 instructions")
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_float32_loop_vectorizes(name):
    x = np.ones(16, np.float32)
    _apply(FUNCTIONS[name], x)
    signature = next(s for s in _apply.signatures if s[0].dispatcher is FUNCTIONS[name] and s[1].dtype == numba.float32)
    assembly = _apply.inspect_asm(signature)
    packed_single_arithmetic = re.findall(r"\bv?(?:mul|add|sub|fmadd\d*|fmsub\d*)ps\b", assembly)
    assert len(packed_single_arithmetic) >= 4, "the loop did not vectorize"

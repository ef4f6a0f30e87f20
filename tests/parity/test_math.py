"""Elementwise math: values and gradients, broadcasting, and the gradient at kinks and ties."""
import operator

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from .harness import check, check_error, randn  # noqa: E402

UNARY = ["abs", "exp", "sin", "cos", "tanh", "sigmoid", "relu", "neg"]
POSITIVE_ONLY = ["log", "log1p", "sqrt", "rsqrt"]


@pytest.mark.parametrize("name", UNARY + POSITIVE_ONLY)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_unary_function_and_method(name, dtype):
    data = randn(3, 4, dtype=dtype)
    if name in POSITIVE_ONLY:
        data = np.abs(data) + 0.1
    check(lambda lib, x: (getattr(lib, name)(x), getattr(x, name)()), data)


def test_unary_minus():
    check(lambda lib, x: -x, randn(2, 3))


@pytest.mark.parametrize("op", [operator.add, operator.sub, operator.mul, operator.truediv],
                         ids=lambda op: op.__name__)
@pytest.mark.parametrize("shapes", [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 1, 3), (4, 1)),
                                    ((), (2, 3)), ((5,), ())], ids=str)
def test_binary_operators_broadcast_values_and_grads(op, shapes):
    x, y = randn(*shapes[0], seed=1), randn(*shapes[1], seed=2)
    check(lambda lib, a, b: op(a, b), x, np.abs(y) + 0.5)


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div", "maximum", "minimum", "pow"])
def test_binary_functions_and_methods(name):
    x, y = np.abs(randn(3, 1, seed=1)) + 0.5, randn(1, 4, seed=2)
    check(lambda lib, a, b: (getattr(lib, name)(a, b), getattr(a, name)(b)), x, y)


@pytest.mark.parametrize("scalar", [2, 2.5, -1, 0.0], ids=repr)
def test_operators_with_python_scalars(scalar):
    check(lambda lib, x: (x + scalar, scalar - x, x * scalar, scalar * x, x - scalar, x / 4, 1 / x),
          np.abs(randn(2, 3)) + 0.5)


@pytest.mark.parametrize("exponent", [2, 3, 0.5, -1, -0.5, 0, 1.5], ids=repr)
def test_power_with_scalar_exponent(exponent):
    check(lambda lib, x: (x ** exponent, lib.pow(x, exponent), x.pow(exponent)), np.abs(randn(5)) + 0.5)


def test_power_of_scalar_and_tensor_exponent_grads():
    check(lambda lib, base, e: (2.0 ** e, base ** e), np.abs(randn(4, seed=1)) + 0.5, randn(4, seed=2))


def test_power_at_zero_base():
    check(lambda lib, x: (x ** 2, x ** 1, x ** 0, x ** 0.5), np.array([0.0, 1.0, 4.0]))


def test_relu_abs_and_sqrt_gradients_at_zero():
    data = np.array([0.0, -1.0, 2.0, -0.0])
    check(lambda lib, x: (lib.relu(x), x.abs(), lib.sqrt(x.abs())), data)


@pytest.mark.parametrize("bounds", [dict(min=-0.5, max=0.5), dict(min=-0.5), dict(max=0.5)], ids=str)
def test_clamp_with_both_or_one_bound(bounds):
    data = np.array([-1.0, -0.5, 0.0, 0.5, 1.0, 0.25])
    check(lambda lib, x: (lib.clamp(x, **bounds), x.clamp(**bounds)), data)


def test_clamp_with_positional_bounds():
    check(lambda lib, x: (x.clamp(-0.5, 0.5), lib.clamp(x, -0.5), lib.clamp(x, None, 0.5)),
          np.array([-1.0, -0.5, 0.0, 0.5, 1.0]))


def test_clamp_with_tensor_bounds():
    check(lambda lib, x, lo, hi: x.clamp(min=lo, max=hi), randn(3, 4), np.full(4, -0.3), np.full((3, 1), 0.4))


def test_clamp_without_bounds_is_an_error():
    check_error(lambda lib, x: lib.clamp(x), randn(3))


def test_clamp_on_integer_tensor():
    check(lambda lib: (lib.tensor([-3, 0, 5]).clamp(-1, 2), lib.tensor([-3, 0, 5]).clamp(min=0.5)))


def test_maximum_and_minimum_split_ties():
    x, y = np.array([1.0, 2.0, 2.0, 0.0]), np.array([2.0, 2.0, 1.0, 0.0])
    check(lambda lib, a, b: (lib.maximum(a, b), lib.minimum(a, b)), x, y)


def test_maximum_broadcast_with_ties():
    check(lambda lib, a, b: lib.maximum(a, b), np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([1.0, 1.0]))


def test_maximum_of_int_and_float_promotes():
    check(lambda lib: lib.maximum(lib.tensor([1, 5]), lib.tensor([2.5, 0.5])))


def test_sigmoid_and_tanh_saturate_without_nan():
    check(lambda lib, x: (lib.sigmoid(x), lib.tanh(x)), np.array([-100.0, -20.0, 0.0, 20.0, 100.0],
                                                                  dtype=np.float32))


def test_log_and_division_edge_values():
    check(lambda lib, x: (lib.log(x), 1.0 / x), np.array([0.0, 1.0, -1.0]), backward=False)


def test_exp_log_chain_gradients():
    check(lambda lib, x, y: lib.log(lib.exp(x) + lib.exp(y)) * lib.sigmoid(x * y), randn(3, 2, seed=3),
          randn(2, seed=4))


@pytest.mark.parametrize("op", [operator.add, operator.mul, operator.sub],
                         ids=lambda op: op.__name__)
def test_broadcast_shape_mismatch_is_an_error(op):
    check_error(lambda lib, a, b: op(a, b), randn(3, 4), randn(3))


def test_same_tensor_used_twice_accumulates_gradient():
    check(lambda lib, x: x * x + x * 3 - x / x, np.abs(randn(4)) + 0.5)

"""Type promotion: the result dtype of mixed tensor / zero-dim tensor / Python scalar operations."""
import operator

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from .harness import check, check_error  # noqa: E402

OPERANDS = {
    "f32": lambda lib: lib.tensor([1.5, -2.0]),
    "f64": lambda lib: lib.tensor([1.5, -2.0], dtype=lib.float64),
    "i64": lambda lib: lib.tensor([3, -4]),
    "i32": lambda lib: lib.tensor([3, -4], dtype=lib.int32),
    "bool": lambda lib: lib.tensor([True, False]),
    "f64 0-dim": lambda lib: lib.tensor(2.5, dtype=lib.float64),
    "i64 0-dim": lambda lib: lib.tensor(2),
    "bool 0-dim": lambda lib: lib.tensor(True),
    "float": lambda lib: 2.5,
    "int": lambda lib: 3,
    "bool scalar": lambda lib: True,
}
TENSORS = ["f32", "f64", "i64", "i32", "bool", "f64 0-dim", "i64 0-dim"]


@pytest.mark.parametrize("right", list(OPERANDS))
@pytest.mark.parametrize("left", TENSORS)
@pytest.mark.parametrize("op", [operator.add, operator.mul, operator.truediv], ids=lambda op: op.__name__)
def test_binary_op_result_dtype(op, left, right):
    def snippet(lib):
        return op(OPERANDS[left](lib), OPERANDS[right](lib))
    check(snippet)


@pytest.mark.parametrize("right", ["f32", "i64", "i32", "f64 0-dim", "i64 0-dim", "float", "int"])
@pytest.mark.parametrize("left", ["f32", "i64", "i32", "f64", "i64 0-dim"])
def test_subtraction_and_power_result_dtype(left, right):
    check(lambda lib: (OPERANDS[left](lib) - OPERANDS[right](lib), OPERANDS[left](lib) ** abs(OPERANDS[right](lib))))


@pytest.mark.parametrize("scalar", [2, 2.5], ids=repr)
def test_reflected_scalar_operations(scalar):
    check(lambda lib, x: (scalar + x, scalar - x, scalar * x, scalar / x, scalar ** x), np.array([1, 2, 3]))


@pytest.mark.parametrize("right", ["f32", "i64", "f64 0-dim", "float", "int", "bool"])
@pytest.mark.parametrize("left", ["f32", "i64", "i32", "bool"])
@pytest.mark.parametrize("op", [operator.lt, operator.le, operator.gt, operator.ge, operator.eq, operator.ne],
                         ids=lambda op: op.__name__)
def test_comparisons_give_bool(op, left, right):
    check(lambda lib: op(OPERANDS[left](lib), OPERANDS[right](lib)))


def test_bool_arithmetic():
    def snippet(lib):
        a, b = lib.tensor([True, True, False]), lib.tensor([True, False, False])
        return a + b, a * b, a & b, a | b, a ^ b, ~a, a.sum(), a + 1, a * 1.5, a.float(), a.long()
    check(snippet)


def test_bool_subtraction_is_an_error():
    check_error(lambda lib: lib.tensor([True]) - lib.tensor([False]))


def test_integer_floor_div_and_remainder():
    check(lambda lib, x, y: (x // y, x % y, x // 2, x % 3), np.array([7, -7, 5, -5]), np.array([2, 2, -3, -3]))


def test_float32_tensor_with_float64_zero_dim_grad_dtype():
    check(lambda lib, x, s: x * s + s, np.array([1.0, 2.0], dtype=np.float32), np.array(3.0))


def test_in_place_ops_keep_the_tensor_dtype():
    def snippet(lib):
        x = lib.tensor([1.0, 2.0])
        x += lib.tensor([1.0, 1.0], dtype=lib.float64)
        x.mul_(2)
        return x
    check(snippet)


def test_in_place_op_that_would_change_dtype_is_an_error():
    check_error(lambda lib: lib.tensor([1, 2]).add_(1.5))


def test_dtype_conversions():
    def snippet(lib, x):
        return (x.to(lib.float64), x.double(), x.float(), x.long(), x.int(), x.bool(), x.to(lib.int64),
                x.type(lib.float64), x.to(dtype=lib.float32), x.is_floating_point())
    check(snippet, np.array([0.0, -1.7, 2.5], dtype=np.float32))


@pytest.mark.parametrize("values", [[-1.7, 2.5, 0.0], [3.9, -3.9]], ids=repr)
def test_float_to_int_truncates_toward_zero(values):
    check(lambda lib: lib.tensor(values).long())


def test_unsupported_dtype_grad_request_is_an_error():
    check_error(lambda lib: lib.tensor([1, 2], requires_grad=True))

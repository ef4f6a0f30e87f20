"""Indexing (read and write, with gradients), gather, masked_fill, index_select and where."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from .harness import check, check_error, randn  # noqa: E402

X = randn(4, 5, 3)

READS = {
    "int": lambda lib, x: x[1],
    "negative_int": lambda lib, x: x[-1, -2],
    "all_ints": lambda lib, x: x[1, 2, 0],
    "slice": lambda lib, x: x[1:3],
    "slice_step": lambda lib, x: x[::2, 1::2],
    "negative_slice": lambda lib, x: x[-3:-1, :-2],
    "slice_past_end": lambda lib, x: x[2:10, 7:],
    "empty_slice": lambda lib, x: x[3:1],
    "none": lambda lib, x: x[None],
    "none_middle": lambda lib, x: x[:, None, 1],
    "ellipsis": lambda lib, x: x[..., 0],
    "ellipsis_middle": lambda lib, x: x[1, ..., 1:],
    "int_tensor": lambda lib, x: x[lib.tensor([0, 2, 2])],
    "int_tensor_negative": lambda lib, x: x[lib.tensor([-1, 0])],
    "int_tensor_2d": lambda lib, x: x[lib.tensor([[0, 1], [3, 3]])],
    "list": lambda lib, x: x[[1, 0, 1]],
    "two_int_tensors": lambda lib, x: x[lib.tensor([0, 1, 3]), lib.tensor([4, 0, 4])],
    "broadcast_int_tensors": lambda lib, x: x[lib.tensor([[0], [1]]), lib.tensor([1, 2, 3])],
    "int_tensor_after_slice": lambda lib, x: x[:, lib.tensor([0, 4])],
    "slice_between_int_tensors": lambda lib, x: x[lib.tensor([0, 1]), :, lib.tensor([2, 0])],
    "int_and_int_tensor": lambda lib, x: x[1, lib.tensor([0, 3])],
    "bool_mask_full": lambda lib, x: x[x > 0],
    "bool_mask_rows": lambda lib, x: x[lib.tensor([True, False, True, True])],
    "bool_mask_2d": lambda lib, x: x[x[:, :, 0] > 0],
    "bool_mask_then_slice": lambda lib, x: x[lib.tensor([True, False, False, True]), 1:3],
    "bool_mask_all_false": lambda lib, x: x[lib.tensor([False] * 4)],
    "scalar_bool_index": lambda lib, x: x[True],
    "int_tensor_0d": lambda lib, x: x[lib.tensor(2)],
    "chained": lambda lib, x: x[1:][::2][:, lib.tensor([1, 1])],
    "trailing_none": lambda lib, x: x[..., None],
    "int_slice_none": lambda lib, x: x[1, :, None],
    "tuple_of_lists": lambda lib, x: x[[0, 1], [2, 3]],
}


@pytest.mark.parametrize("name", list(READS))
def test_index_read_values_and_gradients(name):
    check(READS[name], X)


# name: (index to write at, value to write); the value may use the second input v of shape (5, 3)
WRITES = {
    "scalar_int": (lambda lib, x: 0, lambda lib, v: 1.5),
    "scalar_slice_step": (lambda lib, x: (slice(None), slice(None, None, 2)), lambda lib, v: -2.0),
    "tensor_broadcast": (lambda lib, x: slice(1, 3), lambda lib, v: v),
    "tensor_broadcast_ellipsis": (lambda lib, x: (Ellipsis, slice(1, 2), slice(None)), lambda lib, v: v[0]),
    "bool_mask_scalar": (lambda lib, x: x > 0, lambda lib, v: 0.0),
    "int_tensor_rows": (lambda lib, x: lib.tensor([3, 0]), lambda lib, v: v),
    "two_int_tensors": (lambda lib, x: (lib.tensor([0, 2]), lib.tensor([1, 4])), lambda lib, v: v[0]),
    "negative_index": (lambda lib, x: (-1, -1), lambda lib, v: v[0]),
    "int_scalar_into_float": (lambda lib, x: (1, 1, 1), lambda lib, v: 7),
}


@pytest.mark.parametrize("name", list(WRITES))
def test_index_write_values_and_gradients(name):
    index, value = WRITES[name]

    def snippet(lib, x, v):
        target = x * 1  # a non-leaf copy, so writing into it is allowed and differentiable
        target[index(lib, target)] = value(lib, v)
        return target
    check(snippet, X, randn(5, 3, seed=7))


def test_write_with_duplicate_indices_is_not_accumulated():
    def snippet(lib, x):
        target = x.clone()
        target[lib.tensor([1, 1])] = lib.tensor([5.0, 5.0])
        return target
    check(snippet, randn(3))


def test_write_mask_with_tensor_values():
    def snippet(lib, x, v):
        target = x.clone()
        mask = x > 0
        target[mask] = v[mask]
        return target
    check(snippet, randn(3, 4, seed=1), randn(3, 4, seed=2))


def test_augmented_assignment_through_an_integer_index():
    def snippet(lib, x):
        target = x * 1
        target[lib.tensor([0, 2])] += 1.0
        return target
    check(snippet, randn(3, 2))


def test_augmented_assignment_through_a_slice():
    def snippet(lib, x):
        target = x * 1
        target[1:] *= 2.0
        return target
    check(snippet, randn(3, 2))


def test_write_into_integer_tensor_truncates():
    def snippet(lib):
        target = lib.tensor([1, 2, 3])
        target[0] = 9.7
        target[lib.tensor([False, True, False])] = -4
        return target
    check(snippet)


def test_indexed_tensor_gradient_accumulates_over_repeats():
    check(lambda lib, x: x[lib.tensor([0, 0, 2, 0])] * lib.tensor([[1.0], [2.0], [3.0], [4.0]]), randn(3, 2))


@pytest.mark.parametrize("snippet", [
    lambda lib, x: x[4],
    lambda lib, x: x[0, 0, 0, 0],
    lambda lib, x: x[lib.tensor([0, 4])],
    lambda lib, x: x[lib.tensor([True, False])],
    lambda lib, x: x[lib.tensor([0.0, 1.0])],
    lambda lib, x: x[:, -6],
    lambda lib, x: x[::-1],
], ids=["int_out_of_range", "too_many_indices", "tensor_out_of_range", "mask_shape", "float_index",
        "negative_out_of_range", "negative_step"])
def test_index_errors(snippet):
    check_error(snippet, X)


def test_write_shape_mismatch_is_an_error():
    def snippet(lib, x, v):
        x.clone()[0:2] = v
    check_error(snippet, randn(4, 3), randn(3, 2))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_gather(dim):
    index = np.array([[0, 1, 0], [1, 1, 0]])
    check(lambda lib, x, i: (lib.gather(x, dim, i), x.gather(dim, i)), randn(2, 3), index)


def test_gather_with_smaller_index_and_repeats():
    check(lambda lib, x, i: x.gather(1, i), randn(3, 4), np.array([[3], [0], [3]]))


def test_gather_errors():
    check_error(lambda lib, x, i: x.gather(1, i), randn(2, 3), np.array([[0, 5]]))
    check_error(lambda lib, x, i: x.gather(1, i), randn(2, 3), np.array([0, 1]))


def test_masked_fill():
    def snippet(lib, x):
        mask = x > 0.5
        return (x.masked_fill(mask, 0.0), lib.masked_fill(x, mask, -1), x.masked_fill(x[0] < 0, float("-inf")),
                x.masked_fill(mask, lib.tensor(2.0)))
    check(snippet, randn(3, 4))


def test_masked_fill_with_non_bool_mask_is_an_error():
    check_error(lambda lib, x: x.masked_fill(lib.tensor([1, 0, 1]), 0.0), randn(3))


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_index_select(dim):
    check(lambda lib, x, i: (lib.index_select(x, dim, i), x.index_select(dim, i)), randn(3, 3), np.array([2, 0, 2]))


def test_index_select_errors():
    check_error(lambda lib, x, i: x.index_select(0, i), randn(3, 2), np.array([[0, 1]]))
    check_error(lambda lib, x, i: x.index_select(0, i), randn(3, 2), np.array([0, 3]))


def test_where_broadcasts_and_routes_gradients():
    def snippet(lib, x, y):
        return lib.where(x > y, x, y), lib.where(x > 0, x, 0.0), lib.where(y < 0, 1.0, y), x.where(x > 0, y)
    check(snippet, randn(3, 1, seed=1), randn(4, seed=2))


def test_where_with_one_argument_gives_indices():
    check(lambda lib, x: lib.where(x > 0), randn(3, 4))


def test_where_promotes_dtypes():
    check(lambda lib: (lib.where(lib.tensor([True, False]), lib.tensor([1, 2]), lib.tensor([0.5, 1.5])),
                       lib.where(lib.tensor([True, False]), lib.tensor([1, 2]), 0)))

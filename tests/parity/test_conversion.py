"""Leaving tensor land: item, tolist, numpy, Python number conversions, iteration and printing-free basics."""
import pytest

torch = pytest.importorskip("torch")

from .harness import check, check_error, randn  # noqa: E402


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "bool"])
def test_item_and_tolist_give_python_types(dtype):
    def snippet(lib):
        scalar = lib.tensor(1, dtype=getattr(lib, dtype))
        matrix = lib.tensor([[0, 1], [1, 0]], dtype=getattr(lib, dtype))
        return scalar.item(), lib.ones(1, 1, dtype=getattr(lib, dtype)).item(), scalar.tolist(), matrix.tolist()
    check(snippet)


def test_item_of_float32_keeps_float32_rounding():
    check(lambda lib: (lib.tensor(0.1).item(), lib.tensor([0.1, 1 / 3]).tolist()))


def test_item_of_a_tensor_requiring_grad():
    check(lambda lib, x: (x.sum().item(), x.tolist()), randn(3), backward=False)


def test_item_of_several_elements_is_an_error():
    check_error(lambda lib, x: x.item(), randn(2))


def test_numpy_shares_memory_and_keeps_dtype():
    def snippet(lib):
        tensor = lib.zeros(3, dtype=lib.float64)
        array = tensor.numpy()
        array[1] = 4.0
        return tensor, str(array.dtype), str(lib.tensor([1, 2]).numpy().dtype), lib.tensor([True]).numpy().tolist()
    check(snippet)


def test_numpy_of_a_tensor_requiring_grad_is_an_error():
    check_error(lambda lib, x: x.numpy(), randn(3))


def test_detached_numpy_works():
    check(lambda lib, x: x.detach().numpy().tolist(), randn(3), backward=False)


def test_python_number_conversions():
    def snippet(lib):
        return (float(lib.tensor(2.5)), int(lib.tensor(3.9)), int(lib.tensor([-3.9])), bool(lib.tensor([0.0])),
                bool(lib.tensor(2)), float(lib.tensor([1], dtype=lib.int64)))
    check(snippet)


def test_bool_of_several_elements_is_an_error():
    check_error(lambda lib: bool(lib.tensor([1.0, 2.0])))


def test_len_of_zero_dim_tensor_is_an_error():
    check_error(lambda lib: len(lib.tensor(1.0)))


def test_iterating_gives_rows():
    check(lambda lib, x: list(x), randn(3, 2))


def test_clone_and_contiguous():
    def snippet(lib, x):
        copy = x.clone()
        copy_values = copy.detach()
        copy_values[0] = 50.0
        return copy, x.t().contiguous(), x * 1
    check(snippet, randn(2, 3))


def test_data_attribute_is_a_detached_alias():
    def snippet(lib, x):
        alias = x.data
        alias[0] = 9.0
        return x, alias.requires_grad
    check(snippet, randn(3), backward=False)

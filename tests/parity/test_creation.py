"""Creation functions: values, shapes and the dtypes PyTorch infers or defaults to."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from .harness import check  # noqa: E402

PYTHON_DATA = [
    3, 2.5, True, -7,
    [1, 2, 3], [1.0, 2.0], [True, False], [1, 2.5], [True, 2], [[1, 2], [3, 4]],
    [[1.5], [2.5]], [], [[]], [[True], [False]],
]


@pytest.mark.parametrize("data", PYTHON_DATA, ids=repr)
def test_tensor_from_python_data_infers_dtype(data):
    check(lambda lib: lib.tensor(data))


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "bool"])
def test_tensor_with_explicit_dtype(dtype):
    check(lambda lib: lib.tensor([0, 1, 2], dtype=getattr(lib, dtype)))


@pytest.mark.parametrize("np_dtype", [np.float32, np.float64, np.int64, np.int32, np.bool_])
def test_tensor_keeps_numpy_dtype(np_dtype):
    array = np.array([[0, 1], [2, 3]]).astype(np_dtype)
    check(lambda lib: (lib.tensor(array), lib.as_tensor(array), lib.from_numpy(array)))


def test_from_numpy_shares_memory():
    def snippet(lib):
        array = np.zeros(3, dtype=np.float32)
        tensor = lib.from_numpy(array)
        array[0] = 5.0
        tensor[1] = 7.0
        return tensor.clone(), lib.tensor(array)
    check(snippet)


def test_tensor_requires_grad_flag():
    check(lambda lib: lib.tensor([1.0, 2.0], requires_grad=True) * 2)


@pytest.mark.parametrize("args", [(5,), (2, 7), (1, 2, 0.25), (0, 1, 0.1), (5, 0, -1), (1.0, 4), (0.5, 3.5)],
                         ids=repr)
def test_arange_values_and_dtype(args):
    check(lambda lib: lib.arange(*args))


@pytest.mark.parametrize("args", [(0, 1, 5), (0, 10, 1), (-1, 1, 4), (2, 3, 0)], ids=repr)
def test_linspace(args):
    check(lambda lib: lib.linspace(*args))


def test_linspace_and_arange_with_dtype():
    check(lambda lib: (lib.linspace(0, 1, 3, dtype=lib.float64), lib.arange(4, dtype=lib.float32),
                       lib.arange(0.0, 3.0, dtype=lib.int64)))


@pytest.mark.parametrize("args", [(3,), (2, 4), (4, 2)], ids=repr)
def test_eye(args):
    check(lambda lib: (lib.eye(*args), lib.eye(*args, dtype=lib.int64)))


@pytest.mark.parametrize("fill", [1.5, 2, True, -3.0], ids=repr)
def test_full_infers_dtype_from_fill_value(fill):
    check(lambda lib: (lib.full((2, 3), fill), lib.full((2,), fill, dtype=lib.float64)))


def test_zeros_ones_with_size_as_varargs_or_tuple():
    check(lambda lib: (lib.zeros(2, 3), lib.zeros((2, 3)), lib.ones(4), lib.ones((1, 2), dtype=lib.int32),
                       lib.zeros([]), lib.ones(0, 3)))


@pytest.mark.parametrize("np_dtype", [np.float64, np.int64, np.bool_])
def test_like_functions_keep_dtype_and_shape(np_dtype):
    array = np.arange(6).reshape(2, 3).astype(np_dtype)

    def snippet(lib, x):
        return (lib.zeros_like(x), lib.ones_like(x), lib.full_like(x, 1), lib.empty_like(x).shape,
                lib.zeros_like(x, dtype=lib.float32))
    check(snippet, array, requires_grad=False)


def test_like_functions_do_not_require_grad():
    check(lambda lib, x: (lib.zeros_like(x), lib.ones_like(x)), np.ones(3, dtype=np.float32))


def test_empty_shape_and_dtype():
    check(lambda lib: (lib.empty(2, 3).shape, lib.empty(2, 3).dtype, lib.empty((4,), dtype=lib.int64).dtype))


def test_random_functions_shapes_and_dtypes():
    def snippet(lib):
        lib.manual_seed(0)
        made = [lib.rand(2, 3), lib.randn(4), lib.randn((2, 2), dtype=lib.float64),
                lib.randint(0, 5, (3, 2)), lib.randint(5, (4,))]
        return [(t.shape, t.dtype) for t in made]
    check(snippet)


def test_random_values_are_in_range_and_reproducible():
    def snippet(lib):
        lib.manual_seed(123)
        first = lib.rand(1000)
        ints = lib.randint(2, 5, (1000,))
        lib.manual_seed(123)
        return (bool((first >= 0).all()), bool((first < 1).all()), bool((first == lib.rand(1000)).all()),
                int(ints.min()), int(ints.max()))
    check(snippet)


def test_default_dtype_switch():
    def snippet(lib):
        lib.set_default_dtype(lib.float64)
        try:
            made = (lib.tensor([1.5]), lib.zeros(2), lib.arange(0.0, 1.0, 0.5), lib.tensor([1, 2]) * 0.5,
                    lib.get_default_dtype())
        finally:
            lib.set_default_dtype(lib.float32)
        return made
    check(snippet)

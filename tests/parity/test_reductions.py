"""Reductions with dim (int, tuple, negative) and keepdim, softmax, and gradients at ties."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from .harness import check, check_error, randn  # noqa: E402

DIMS = [0, 1, -1, -3, (0, 2), (-1, 1), (0, 1, 2)]
MULTI_DIM_REDUCTIONS = ["sum", "mean", "amax", "amin", "logsumexp", "var", "std"]


@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin", "var", "std", "norm", "prod", "max", "min", "argmax"])
def test_reduce_everything(name):
    check(lambda lib, x: (getattr(x, name)(), getattr(lib, name)(x)), randn(2, 3, 4))


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", DIMS, ids=str)
@pytest.mark.parametrize("name", MULTI_DIM_REDUCTIONS)
def test_reduce_over_dims(name, dim, keepdim):
    check(lambda lib, x: (getattr(x, name)(dim, keepdim=keepdim), getattr(lib, name)(x, dim=dim, keepdim=keepdim)),
          randn(2, 3, 4))


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", DIMS[:-1], ids=str)  # PyTorch's norm over three dims raises (matrix-norm path)
def test_norm_over_dims(dim, keepdim):
    check(lambda lib, x: (x.norm(dim=dim, keepdim=keepdim), lib.norm(x, dim=dim, keepdim=keepdim)),
          randn(2, 3, 4))


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("name", ["max", "min", "prod", "argmax"])
def test_single_dim_reductions(name, dim, keepdim):
    check(lambda lib, x: (getattr(x, name)(dim, keepdim=keepdim), getattr(lib, name)(x, dim=dim, keepdim=keepdim)),
          randn(2, 3, 4))


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_min_with_dim_return_values_and_indices(name):
    def snippet(lib, x):
        result = getattr(x, name)(dim=1)
        values, indices = result
        return result.values, result.indices, values, indices, indices.dtype
    check(snippet, randn(3, 4))


def test_dims_given_as_list_and_keepdim_positionally():
    check(lambda lib, x: (x.sum(dim=[0, 2]), x.mean(-1, True), x.amax([0, 1]), x.argmax(1, True)), randn(2, 3, 4))


def test_nan_propagation():
    data = np.array([[1.0, np.nan, 3.0], [0.5, 2.0, -1.0]])
    check(lambda lib, x: (x.max(), x.max(dim=1), x.amax(dim=1), x.argmax(dim=1), x.sum(dim=1), x.min(),
                          lib.softmax(x, dim=1), lib.maximum(x, x[:, [2, 1, 0]]), x.clamp(0, 1), lib.relu(x)),
          data, backward=False)


def test_max_of_two_tensors_is_elementwise():
    check(lambda lib, x, y: (lib.max(x, y), lib.min(x, y)), randn(3, seed=1), randn(3, seed=2))


TIES = np.array([[3.0, 1.0, 3.0], [2.0, 2.0, 0.0]])


@pytest.mark.parametrize("snippet", [
    lambda lib, x: x.max(),
    lambda lib, x: x.min(),
    lambda lib, x: x.max(dim=1).values,
    lambda lib, x: x.min(dim=1).values,
    lambda lib, x: x.max(dim=1).indices,
    lambda lib, x: x.argmax(dim=1),
    lambda lib, x: x.argmax(),
    lambda lib, x: x.amax(dim=1),
    lambda lib, x: x.amax(),
    lambda lib, x: x.amin(dim=(0, 1)),
    lambda lib, x: x.norm(),
], ids=["max", "min", "max_dim", "min_dim", "max_dim_indices", "argmax_dim", "argmax", "amax_dim", "amax",
        "amin_dims", "norm"])
def test_reductions_with_ties(snippet):
    check(snippet, TIES)


def test_prod_gradient_with_zeros():
    check(lambda lib, x: (x.prod(), x.prod(dim=1)), np.array([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0], [1.0, 2.0, 3.0]]))


def test_norm_of_zero_vector_has_zero_gradient():
    check(lambda lib, x: x.norm(), np.zeros(3))


@pytest.mark.parametrize("p", [1, 2, 3, float("inf")], ids=repr)
def test_norm_orders(p):
    check(lambda lib, x: (x.norm(p=p), x.norm(p, dim=1)), randn(3, 4))


@pytest.mark.parametrize("options", [dict(), dict(unbiased=False), dict(unbiased=True), dict(correction=0),
                                     dict(correction=2), dict(dim=1, correction=0), dict(dim=0, unbiased=False)],
                         ids=str)
def test_var_std_corrections(options):
    check(lambda lib, x: (x.var(**options), x.std(**options), lib.var(x, **options)), randn(4, 5))


@pytest.mark.filterwarnings("ignore:.*degrees of freedom:UserWarning")
def test_var_of_single_element_is_nan():
    check(lambda lib, x: (x.var(), x.std(dim=0)), np.array([[1.5, 2.0]]), backward=False)


def test_sum_and_mean_dtypes():
    def snippet(lib):
        ints, bools = lib.tensor([[1, 2], [3, 4]]), lib.tensor([True, True, False])
        return (ints.sum(), ints.sum(dim=0), bools.sum(), ints.prod(), ints.max(), ints.argmax(),
                lib.tensor([1, 2], dtype=lib.int32).sum(), ints.float().mean(), ints.sum(dtype=lib.float64),
                ints.amax(dim=1))
    check(snippet)


def test_mean_of_integer_tensor_is_an_error():
    check_error(lambda lib: lib.tensor([1, 2]).mean())


def test_logsumexp_needs_dim():
    check_error(lambda lib, x: x.logsumexp(), randn(2, 3))


def test_reduce_over_out_of_range_dim_is_an_error():
    check_error(lambda lib, x: x.sum(dim=2), randn(2, 3))


def test_reduce_empty_tensor():
    check(lambda lib, x: (x.sum(), x.sum(dim=0), x.prod(), x.mean()), np.zeros((0, 3)))


def test_max_of_empty_tensor_is_an_error():
    check_error(lambda lib, x: x.max(), np.zeros((0, 3)))


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_softmax_family(name, dim):
    check(lambda lib, x: (getattr(lib, name)(x, dim=dim), getattr(x, name)(dim)), randn(3, 4) * 5)


def test_softmax_is_stable_for_large_inputs():
    check(lambda lib, x: (lib.softmax(x, dim=0), lib.log_softmax(x, dim=0), lib.logsumexp(x, dim=0)),
          np.array([1000.0, 0.0, -1000.0], dtype=np.float32))


def test_logsumexp_with_minus_infinity():
    check(lambda lib, x: lib.logsumexp(x, dim=1), np.array([[-np.inf, -np.inf], [0.0, -np.inf]]), backward=False)

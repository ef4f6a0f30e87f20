"""Matrix products in every rank combination, with broadcasting, gradients and shape errors."""
import pytest

torch = pytest.importorskip("torch")

from .harness import check, check_error, randn  # noqa: E402

RANK_COMBINATIONS = [
    ((3,), (3,)),             # dot product -> 0-dim
    ((3,), (3, 4)),           # vector @ matrix
    ((2, 3), (3,)),           # matrix @ vector
    ((2, 3), (3, 4)),
    ((5, 2, 3), (3, 4)),      # batched @ matrix
    ((2, 3), (5, 3, 4)),      # matrix @ batched
    ((5, 2, 3), (5, 3, 4)),
    ((5, 1, 2, 3), (4, 3, 2)),  # batch dims broadcast
    ((3,), (5, 3, 4)),        # vector @ batched
    ((5, 2, 3), (3,)),        # batched @ vector
]


@pytest.mark.parametrize("shapes", RANK_COMBINATIONS, ids=str)
def test_matmul_all_rank_combinations(shapes):
    a, b = randn(*shapes[0], seed=1), randn(*shapes[1], seed=2)
    check(lambda lib, x, y: (x @ y, lib.matmul(x, y), x.matmul(y)), a, b)


def test_mm_and_bmm():
    check(lambda lib, x, y: (lib.mm(x, y), x.mm(y)), randn(2, 3, seed=1), randn(3, 4, seed=2))
    check(lambda lib, x, y: (lib.bmm(x, y), x.bmm(y)), randn(2, 2, 3, seed=1), randn(2, 3, 4, seed=2))


def test_matmul_float64():
    check(lambda lib, x, y: x @ y, randn(4, 3, dtype="float64"), randn(3, 2, dtype="float64"))


def test_matmul_of_transposed_views():
    check(lambda lib, x, y: (x.t() @ y.T, x.transpose(0, 1) @ y.transpose(1, 0)), randn(3, 2, seed=1),
          randn(4, 3, seed=2))


def test_matmul_of_integer_tensors():
    check(lambda lib: lib.tensor([[1, 2], [3, 4]]) @ lib.tensor([5, 6]))


@pytest.mark.parametrize("shapes", [((2, 3), (4, 5)), ((3,), (4,)), ((2, 3), (2,)), ((2, 2, 3), (3, 3, 4))],
                         ids=str)
def test_matmul_shape_mismatch_is_an_error(shapes):
    check_error(lambda lib, x, y: x @ y, randn(*shapes[0]), randn(*shapes[1]))


def test_matmul_of_zero_dim_is_an_error():
    check_error(lambda lib, x, y: x @ y, randn(), randn(3))


def test_mm_needs_matrices():
    check_error(lambda lib, x, y: lib.mm(x, y), randn(2, 3, 4), randn(4, 2))
    check_error(lambda lib, x, y: lib.bmm(x, y), randn(3, 4), randn(4, 2))


def test_matmul_mixed_dtypes_is_an_error():
    check_error(lambda lib, x, y: x @ y, randn(2, 3), randn(3, 2, dtype="float64"))

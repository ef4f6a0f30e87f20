"""Shape operations: results, views sharing memory, gradients and errors."""
import pytest

torch = pytest.importorskip("torch")

from .harness import check, check_error, randn  # noqa: E402

X = randn(2, 3, 4)


@pytest.mark.parametrize("snippet", [
    lambda lib, x: x.reshape(6, 4),
    lambda lib, x: x.reshape(-1),
    lambda lib, x: x.reshape(4, -1),
    lambda lib, x: x.reshape((2, -1, 2)),
    lambda lib, x: lib.reshape(x, (24,)),
    lambda lib, x: x.view(3, 8),
    lambda lib, x: x.view(-1, 4),
    lambda lib, x: x.view((2, 12)),
    lambda lib, x: x.permute(2, 0, 1),
    lambda lib, x: x.permute((1, 2, 0)),
    lambda lib, x: lib.permute(x, (0, 2, 1)),
    lambda lib, x: x.permute(-1, 0, 1),
    lambda lib, x: x.transpose(0, 2),
    lambda lib, x: lib.transpose(x, -1, -2),
    lambda lib, x: x.unsqueeze(0),
    lambda lib, x: x.unsqueeze(-1),
    lambda lib, x: lib.unsqueeze(x, 2),
    lambda lib, x: x.flatten(),
    lambda lib, x: x.flatten(1),
    lambda lib, x: x.flatten(0, 1),
    lambda lib, x: lib.flatten(x, start_dim=-2, end_dim=-1),
    lambda lib, x: x.chunk(2, dim=2),
    lambda lib, x: x.chunk(3, dim=-1),
    lambda lib, x: lib.chunk(x, 2),
    lambda lib, x: x.split(3, dim=2),
    lambda lib, x: x.split([1, 3], dim=-1),
    lambda lib, x: lib.split(x, [2, 1], dim=1),
    lambda lib, x: x.split(1),
    lambda lib, x: x.chunk(5, dim=1),
    lambda lib, x: x.permute(2, 0, 1).reshape(4, 6),
    lambda lib, x: x.transpose(0, 1).contiguous().view(3, 8),
    lambda lib, x: x.reshape(6, 4).T,
], ids=["reshape", "reshape-1", "reshape-1b", "reshape_tuple", "lib.reshape", "view", "view-1", "view_tuple",
        "permute", "permute_tuple", "lib.permute", "permute_negative", "transpose", "lib.transpose_negative",
        "unsqueeze0", "unsqueeze-1", "lib.unsqueeze", "flatten", "flatten1", "flatten01", "lib.flatten_negative",
        "chunk", "chunk_uneven", "lib.chunk", "split_int", "split_list", "lib.split_list", "split_1",
        "chunk_more_than_size", "permute_reshape", "contiguous_view", "T"])
def test_shape_op_values_and_gradients(snippet):
    check(snippet, X)


@pytest.mark.parametrize("snippet", [
    lambda lib, x: x.squeeze(),
    lambda lib, x: x.squeeze(0),
    lambda lib, x: x.squeeze(1),
    lambda lib, x: x.squeeze(-1),
    lambda lib, x: lib.squeeze(x, 2),
    lambda lib, x: x.squeeze((0, 3)),
    lambda lib, x: x.expand(2, 3, 5, 4),
    lambda lib, x: x.expand(-1, 3, -1, 4),
    lambda lib, x: x.expand(6, 1, 3, 5, 4),
    lambda lib, x: x.expand((1, 3, 5, 4)),
    lambda lib, x: x.expand_as(lib.zeros(2, 3, 5, 4)),
], ids=["squeeze", "squeeze0", "squeeze_not_one", "squeeze-1", "lib.squeeze", "squeeze_tuple", "expand",
        "expand-1", "expand_new_dims", "expand_tuple", "expand_as"])
def test_squeeze_and_expand(snippet):
    check(snippet, randn(1, 3, 1, 4))


def test_t_of_matrix_vector_and_scalar():
    check(lambda lib, m, v, s: (m.t(), lib.t(m), v.t(), s.t(), m.T), randn(2, 3), randn(3), randn())




def test_views_share_memory_with_their_base():
    def snippet(lib, x):
        base = x.clone()
        view = base.view(3, 2)
        view[0, 0] = 100.0
        transposed = base.t()
        transposed[1, 0] = -5.0
        return base, view, transposed
    check(snippet, randn(2, 3))


def test_writing_through_a_view_gives_gradient_to_the_base():
    def snippet(lib, x, y):
        base = x * 1
        base.view(-1)[1:3] = y
        return base
    check(snippet, randn(2, 2, seed=1), randn(2, seed=2))


def test_views_of_a_tensor_without_grad_share_memory():
    def snippet(lib, x):
        base = x.clone()
        base.view(3, 2)[0, 0] = 100.0
        base.t()[1, 0] = -5.0
        base[1].mul_(2)
        return base
    check(snippet, randn(2, 3), requires_grad=False)


def test_size_dim_numel_and_shape():
    check(lambda lib, x: (x.size(), x.size(1), x.size(-1), x.shape, x.dim(), x.ndim, x.numel(), len(x),
                          x.shape[0], list(x.shape)), X)


@pytest.mark.parametrize("snippet", [
    lambda lib, x: x.reshape(5, 5),
    lambda lib, x: x.reshape(-1, -1),
    lambda lib, x: x.view(7, -1),
    lambda lib, x: x.transpose(0, 1).view(-1),
    lambda lib, x: x.permute(0, 1),
    lambda lib, x: x.permute(0, 1, 1),
    lambda lib, x: x.transpose(0, 3),
    lambda lib, x: x.unsqueeze(4),
    lambda lib, x: x.expand(2, 3, 5),
    lambda lib, x: x.expand(4, 3, 4),
    lambda lib, x: x.split([1, 2], dim=2),
    lambda lib, x: x.flatten(2, 1),
    lambda lib, x: x.squeeze(3),
], ids=["reshape_bad", "reshape_two_-1", "view_bad", "view_non_contiguous", "permute_short", "permute_repeat",
        "transpose_dim", "unsqueeze_dim", "expand_fewer_dims", "expand_non_singleton", "split_sizes",
        "flatten_order", "squeeze_dim"])
def test_shape_op_errors(snippet):
    check_error(snippet, X)


def test_cat_and_stack():
    a, b = randn(2, 3, seed=1), randn(2, 3, seed=2)
    check(lambda lib, x, y: (lib.cat([x, y]), lib.cat((x, y), dim=1), lib.cat([x, y], dim=-1),
                             lib.stack([x, y]), lib.stack((x, y), dim=2), lib.stack([x, y], dim=-1)), a, b)


def test_cat_promotes_dtypes_and_accepts_empty_tensors():
    check(lambda lib: (lib.cat([lib.tensor([1, 2]), lib.tensor([1.5])]), lib.cat([lib.zeros(0), lib.ones(2)])))


@pytest.mark.parametrize("snippet", [
    lambda lib, x, y: lib.cat([x, y]),
    lambda lib, x, y: lib.cat([x, y], dim=2),
    lambda lib, x, y: lib.stack([x, x.t()]),
    lambda lib, x, y: lib.cat([]),
    lambda lib, x, y: lib.stack([x, y]),
], ids=["cat_mismatch", "cat_dim", "stack_shapes", "cat_empty_list", "stack_mismatch"])
def test_cat_and_stack_errors(snippet):
    check_error(snippet, randn(2, 3), randn(3, 2))


def test_cat_of_tensors_with_different_ranks_is_an_error():
    check_error(lambda lib, x, y: lib.cat([x, y]), randn(2, 3), randn(3))

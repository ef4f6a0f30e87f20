"""Values and dtypes of the op surface against NumPy (computed independently), and the errors it raises.

Expected dtypes follow PyTorch's rules (float32 default, integer results int64, division of integers
float); expected values come from NumPy or SciPy on the same data.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import tracegrad as tg

R = np.random.default_rng(0)
X = R.normal(size=(3, 4)).astype(np.float32)  # the matrix most tests look at


def check(t: tg.Tensor, expected, dtype: tg.dtype, rtol: float = 1e-6) -> None:
    """t has dtype, expected's shape and expected's values."""
    expected = np.asarray(expected)
    assert t.dtype is dtype
    assert tuple(t.shape) == expected.shape
    np.testing.assert_allclose(t.numpy(), expected, rtol=rtol, atol=1e-7)


# ---- type promotion ----------------------------------------------------------------------------------

I64 = np.array([1, -2, 7])
I32 = np.array([3, 4, -5], dtype=np.int32)
F32 = np.array([0.5, -1.25, 3.0], dtype=np.float32)
B1, B2 = np.array([True, True, False]), np.array([True, False, False])

PROMOTION = {
    "int64 * float scalar": (lambda: tg.tensor(I64) * 2.5, I64 * 2.5, tg.float32),
    "float scalar * int64": (lambda: 2.5 * tg.tensor(I64), I64 * 2.5, tg.float32),
    "int64 * int scalar": (lambda: tg.tensor(I64) * 3, I64 * 3, tg.int64),
    "int32 * int scalar stays int32": (lambda: tg.tensor(I32) * 3, I32 * 3, tg.int32),
    "int64 / int64": (lambda: tg.tensor(I64) / tg.tensor([2, 4, 7]), I64 / np.array([2, 4, 7]), tg.float32),
    "int64 / int scalar": (lambda: tg.tensor(I64) / 2, I64 / 2, tg.float32),
    "int64 // int scalar": (lambda: tg.tensor(I64) // 2, I64 // 2, tg.int64),
    "float32 + float64 0-dim": (lambda: tg.tensor(F32) + tg.tensor(2.5, dtype=tg.float64), F32 + np.float32(2.5),
                                tg.float32),
    "float32 + float64 1-dim": (lambda: tg.tensor(F32) + tg.tensor([2.5], dtype=tg.float64),
                                F32.astype(np.float64) + 2.5, tg.float64),
    "int64 0-dim + float32": (lambda: tg.tensor(4) + tg.tensor(F32), F32 + 4, tg.float32),
    "int32 + int64 0-dim stays int32": (lambda: tg.tensor(I32) + tg.tensor(4), I32 + 4, tg.int32),
    "int32 + int64": (lambda: tg.tensor(I32) + tg.tensor(I64), I32.astype(np.int64) + I64, tg.int64),
    "bool + bool": (lambda: tg.tensor(B1) + tg.tensor(B2), B1 | B2, tg.bool),
    "bool * bool": (lambda: tg.tensor(B1) * tg.tensor(B2), B1 & B2, tg.bool),
    "bool + int scalar": (lambda: tg.tensor(B1) + 1, B1.astype(np.int64) + 1, tg.int64),
    "bool * float scalar": (lambda: tg.tensor(B1) * 1.5, B1 * 1.5, tg.float32),
    "bool.sum()": (lambda: tg.tensor(B1).sum(), np.int64(B1.sum()), tg.int64),
    "float64 ** int scalar": (lambda: tg.tensor(F32, dtype=tg.float64) ** 2, F32.astype(np.float64) ** 2, tg.float64),
    "int64 comparison with float": (lambda: tg.tensor(I64) < 1.5, I64 < 1.5, tg.bool),
    "int64.exp() computes in float32": (lambda: tg.tensor(I64).exp(), np.exp(I64).astype(np.float32), tg.float32),
}


@pytest.mark.parametrize("name", list(PROMOTION))
def test_type_promotion(name):
    make, expected, dtype = PROMOTION[name]
    check(make(), expected, dtype)


def test_result_type_matches_the_ops():
    assert tg.result_type(tg.tensor(I32), tg.tensor(I64)) is tg.int64
    assert tg.result_type(tg.tensor(I64), 2.5) is tg.float32
    assert tg.promote_types(tg.int32, tg.float64) is tg.float64


# ---- creation ----------------------------------------------------------------------------------------

CREATION = {
    "tensor of ints": (lambda: tg.tensor([[1, 2], [3, 4]]), [[1, 2], [3, 4]], tg.int64),
    "tensor of floats": (lambda: tg.tensor([1.0, 2.5]), [1.0, 2.5], tg.float32),
    "tensor of mixed ints and floats": (lambda: tg.tensor([1, 2.5]), [1.0, 2.5], tg.float32),
    "tensor of bools": (lambda: tg.tensor([True, False]), [True, False], tg.bool),
    "tensor of a scalar": (lambda: tg.tensor(3), np.int64(3), tg.int64),
    "tensor of a float64 array keeps float64": (lambda: tg.tensor(np.array([1.5])), [1.5], tg.float64),
    "tensor with dtype": (lambda: tg.tensor([1, 2], dtype=tg.float64), [1.0, 2.0], tg.float64),
    "arange(n)": (lambda: tg.arange(5), np.arange(5), tg.int64),
    "arange int negative step": (lambda: tg.arange(5, 0, -2), np.arange(5, 0, -2), tg.int64),
    "arange float step": (lambda: tg.arange(0, 1, 0.25), np.arange(0, 1, 0.25), tg.float32),
    "arange with dtype": (lambda: tg.arange(3, dtype=tg.float64), np.arange(3.0), tg.float64),
    "linspace": (lambda: tg.linspace(-1, 1, 5), np.linspace(-1, 1, 5), tg.float32),
    "linspace one step": (lambda: tg.linspace(2, 3, 1), [2.0], tg.float32),
    "eye(n)": (lambda: tg.eye(3), np.eye(3), tg.float32),
    "eye(n, m)": (lambda: tg.eye(2, 3), np.eye(2, 3), tg.float32),
    "full int": (lambda: tg.full((2, 3), 7), np.full((2, 3), 7), tg.int64),
    "full float": (lambda: tg.full((2,), 1.5), [1.5, 1.5], tg.float32),
    "full bool": (lambda: tg.full((2,), True), [True, True], tg.bool),
    "full with dtype": (lambda: tg.full((2,), 7, dtype=tg.float64), [7.0, 7.0], tg.float64),
    "zeros": (lambda: tg.zeros(2, 3), np.zeros((2, 3)), tg.float32),
    "ones tuple size": (lambda: tg.ones((2, 1), dtype=tg.int32), np.ones((2, 1)), tg.int32),
    "zeros_like int64": (lambda: tg.zeros_like(tg.tensor([5, 6])), [0, 0], tg.int64),
    "zeros_like float64": (lambda: tg.zeros_like(tg.ones(2, dtype=tg.float64)), [0.0, 0.0], tg.float64),
    "ones_like with dtype": (lambda: tg.ones_like(tg.tensor([5, 6]), dtype=tg.float32), [1.0, 1.0], tg.float32),
    "full_like": (lambda: tg.full_like(tg.tensor([1.0, 2.0]), 4), [4.0, 4.0], tg.float32),
}


@pytest.mark.parametrize("name", list(CREATION))
def test_creation(name):
    make, expected, dtype = CREATION[name]
    check(make(), expected, dtype)


def test_from_numpy_shares_memory_and_tensor_copies():
    arr = np.arange(3.0)
    shared, copied = tg.from_numpy(arr), tg.tensor(arr)
    arr[0] = 9.0
    assert shared.tolist() == [9.0, 1.0, 2.0] and copied.tolist() == [0.0, 1.0, 2.0]


# ---- reductions --------------------------------------------------------------------------------------

@pytest.mark.parametrize("correction", [0, 1, 2])
@pytest.mark.parametrize("dim", [None, 0, 1, (0, 1)], ids=str)
def test_var_and_std_with_correction(dim, correction):
    check(tg.tensor(X).var(dim, correction=correction), np.var(X, axis=dim, ddof=correction), tg.float32, rtol=1e-5)
    check(tg.tensor(X).std(dim, correction=correction), np.std(X, axis=dim, ddof=correction), tg.float32, rtol=1e-5)


def test_var_defaults_to_bessel_correction_and_unbiased_false_removes_it():
    check(tg.tensor(X).var(), np.var(X, ddof=1), tg.float32, rtol=1e-5)
    check(tg.tensor(X).std(1, unbiased=False, keepdim=True), np.std(X, axis=1, keepdims=True), tg.float32, rtol=1e-5)


@pytest.mark.parametrize("p", [1, 2, float("inf")], ids=str)
@pytest.mark.parametrize("dim", [None, 1, -2], ids=str)
def test_norm(p, dim):
    if dim is None:
        expected = np.linalg.norm(X.reshape(-1), ord=p)
    else:
        expected = np.linalg.norm(X, ord=p, axis=dim)
    check(tg.tensor(X).norm(p=p, dim=dim), expected, tg.float32, rtol=1e-5)


def test_mean_and_sum_with_dims():
    x = tg.tensor(X)
    check(x.mean(), X.mean(), tg.float32, rtol=1e-5)
    check(x.mean((0, 1), keepdim=True), X.mean((0, 1), keepdims=True), tg.float32, rtol=1e-5)
    check(x.sum(-1), X.sum(-1), tg.float32, rtol=1e-5)
    check(tg.tensor(I64).sum(), I64.sum(), tg.int64)
    with pytest.raises(RuntimeError):
        tg.tensor(I64).mean()


@pytest.mark.parametrize("dim", [0, 1, -1, (0, 1)], ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
def test_logsumexp_matches_scipy(dim, keepdim):
    check(tg.tensor(X).logsumexp(dim, keepdim=keepdim), scipy.special.logsumexp(X, axis=dim, keepdims=keepdim),
          tg.float32, rtol=1e-5)


def test_logsumexp_does_not_overflow():
    big = np.array([[1000.0, 1000.0], [-1000.0, -np.inf]], dtype=np.float32)
    check(tg.tensor(big).logsumexp(1), scipy.special.logsumexp(big, axis=1), tg.float32)


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_sums_to_one_and_log_softmax_is_its_log(dim):
    x = tg.tensor(X * 30)  # large logits: the shift must keep exp finite
    expected = scipy.special.softmax(X.astype(np.float64) * 30, axis=dim)
    check(x.softmax(dim), expected, tg.float32, rtol=1e-5)
    check(x.softmax(dim).sum(dim), np.ones(np.delete(X.shape, dim % 2)), tg.float32)
    check(x.log_softmax(dim), scipy.special.log_softmax(X.astype(np.float64) * 30, axis=dim), tg.float32, rtol=1e-5)


def test_max_min_with_dim_return_values_and_indices():
    values, indices = tg.tensor(X).max(1)
    check(values, X.max(1), tg.float32)
    check(indices, X.argmax(1), tg.int64)
    values, indices = tg.tensor(X).min(0, keepdim=True)
    check(values, X.min(0, keepdims=True), tg.float32)
    check(indices, X.argmin(0)[None], tg.int64)
    check(tg.tensor(X).max(), X.max(), tg.float32)


# ---- shape ops ---------------------------------------------------------------------------------------

A = np.arange(24.0, dtype=np.float32).reshape(2, 3, 4)

SHAPE_OPS = {
    "reshape -1": (lambda a: a.reshape(4, -1), A.reshape(4, -1)),
    "reshape tuple": (lambda a: a.reshape((6, 4)), A.reshape(6, 4)),
    "view -1": (lambda a: a.view(-1, 12), A.reshape(-1, 12)),
    "unsqueeze 0": (lambda a: a.unsqueeze(0), A[None]),
    "unsqueeze -1": (lambda a: a.unsqueeze(-1), A[..., None]),
    "squeeze all": (lambda a: a[:, :1, None].squeeze(), A[:, :1, None].squeeze()),
    "squeeze dim keeps others": (lambda a: a[:1, :1].squeeze(0), A[0, :1]),
    "squeeze non-1 dim is a no-op": (lambda a: a.squeeze(1), A),
    "flatten": (lambda a: a.flatten(), A.reshape(-1)),
    "flatten(1)": (lambda a: a.flatten(1), A.reshape(2, 12)),
    "flatten(0, 1)": (lambda a: a.flatten(0, 1), A.reshape(6, 4)),
    "permute": (lambda a: a.permute(1, 2, 0), A.transpose(1, 2, 0)),
    "transpose": (lambda a: a.transpose(0, 2), A.swapaxes(0, 2)),
    "expand -1": (lambda a: a[:, :1].expand(-1, 5, -1), np.broadcast_to(A[:, :1], (2, 5, 4))),
    "expand new dim": (lambda a: a[0, 0].expand(2, 4), np.broadcast_to(A[0, 0], (2, 4))),
    "repeat": (lambda a: a[0].repeat(2, 1), np.tile(A[0], (2, 1))),
    "repeat adds dims": (lambda a: a[0, 0].repeat(2, 2), np.tile(A[0, 0], (2, 2))),
    "cat dim 1": (lambda a: tg.cat([a, a[:, :1]], 1), np.concatenate([A, A[:, :1]], 1)),
    "cat dim -1": (lambda a: tg.cat([a, a], -1), np.concatenate([A, A], -1)),
    "stack": (lambda a: tg.stack([a[0], a[1]]), np.stack([A[0], A[1]])),
    "stack dim -1": (lambda a: tg.stack([a[0], a[1]], -1), np.stack([A[0], A[1]], -1)),
    "flip": (lambda a: a.flip(0, 2), A[::-1, :, ::-1]),
    "movedim": (lambda a: a.movedim(0, -1), np.moveaxis(A, 0, -1)),
}


@pytest.mark.parametrize("name", list(SHAPE_OPS))
def test_shape_ops(name):
    op, expected = SHAPE_OPS[name]
    check(op(tg.tensor(A)), expected, tg.float32)


def test_view_of_a_transpose_raises_and_reshape_copies():
    t = tg.tensor(A[0]).t()
    with pytest.raises(RuntimeError, match="view"):
        t.view(12)
    check(t.reshape(12), A[0].T.reshape(12), tg.float32)


def test_view_shares_memory():
    t = tg.tensor(A)
    v = t.view(6, 4)
    v[0, 0] = -1.0
    assert t[0, 0, 0].item() == -1.0


@pytest.mark.parametrize("size, chunks, expected", [(5, 3, [2, 2, 1]), (6, 4, [2, 2, 2]), (6, 3, [2, 2, 2]),
                                                     (2, 4, [1, 1])])
def test_chunk_sizes(size, chunks, expected):
    pieces = tg.arange(size).chunk(chunks)
    assert [p.shape[0] for p in pieces] == expected
    assert tg.cat(pieces).tolist() == list(range(size))


def test_split_sizes():
    x = tg.tensor(A)
    assert [p.shape[1] for p in x.split(2, dim=1)] == [2, 1]
    pieces = x.split([1, 3], dim=-1)
    check(pieces[0], A[..., :1], tg.float32)
    check(pieces[1], A[..., 1:], tg.float32)
    with pytest.raises(RuntimeError):
        x.split([1, 2], dim=-1)


def test_unbind():
    rows = tg.tensor(A).unbind(1)
    assert len(rows) == 3
    check(rows[2], A[:, 2], tg.float32)


# ---- indexing ----------------------------------------------------------------------------------------

M = np.arange(20.0, dtype=np.float32).reshape(4, 5)
MASK = M % 3 == 0

INDEX_KEYS = {
    "row": 1,
    "element": (2, 3),
    "slice": slice(1, 3),
    "slice with step": (slice(None, None, 2), slice(1, None, 2)),
    "negative index": (-1, -2),
    "negative slice": (slice(-3, -1), slice(None, -2)),
    "None": (None, 1),
    "Ellipsis": (Ellipsis, 2),
    "None and Ellipsis": (Ellipsis, None, slice(1, 3)),
    "integer list": [0, 2, 2],
    "integer list on dim 1": (slice(None), [4, 0]),
    "two integer lists": ([0, 3], [1, -1]),
    "negative integer list": [-1, -4],
    "bool mask": MASK,
    "bool row mask": np.array([True, False, False, True]),
    "list and slice and None": ([1, 2], None, slice(3, None)),
}


@pytest.mark.parametrize("name", list(INDEX_KEYS))
def test_getitem(name):
    key = INDEX_KEYS[name]
    check(tg.tensor(M)[key], M[key], tg.float32)


def test_getitem_with_index_tensors():
    t = tg.tensor(M)
    check(t[tg.tensor(MASK)], M[MASK], tg.float32)
    check(t[tg.tensor([[3, 0], [1, 1]])], M[[[3, 0], [1, 1]]], tg.float32)
    check(t[:, tg.tensor(2)], M[:, 2], tg.float32)


def test_basic_slicing_returns_a_view():
    t = tg.tensor(M)
    t[1:3, ::2][0, 1] = -5.0
    assert t[1, 2].item() == -5.0


SETITEM = {
    "element": ((1, 2), 9.0),
    "row broadcast scalar": ((2,), -1.0),
    "column from vector": ((slice(None), 1), np.array([1.0, 2.0, 3.0, 4.0], dtype=np.float32)),
    "block broadcast row": ((slice(1, 3), slice(None)), np.arange(5.0, dtype=np.float32)),
    "integer list": (([0, 3],), np.float32(7.0)),
    "bool mask": ((MASK,), 0.0),
    "None and Ellipsis": ((Ellipsis, None, 0), np.array([[1.0], [2.0], [3.0], [4.0]], dtype=np.float32)),
}


@pytest.mark.parametrize("name", list(SETITEM))
def test_setitem_broadcasts(name):
    key, value = SETITEM[name]
    t, expected = tg.tensor(M), M.copy()
    t[key] = tg.tensor(value) if isinstance(value, np.ndarray) else value
    expected[key] = value
    check(t, expected, tg.float32)


def test_setitem_casts_the_value_to_the_tensor_dtype():
    t = tg.tensor([1, 2, 3])
    t[0] = 7.9
    t[1:] = tg.tensor([4.2, 5.7])
    check(t, [7, 4, 5], tg.int64)


def test_gather_index_select_masked_fill():
    t = tg.tensor(M)
    idx = np.array([[0, 4], [1, 1], [3, 0], [2, 2]])
    check(t.gather(1, tg.tensor(idx)), np.take_along_axis(M, idx, 1), tg.float32)
    check(t.index_select(0, tg.tensor([3, 0, 3])), M[[3, 0, 3]], tg.float32)
    check(t.index_select(-1, tg.tensor([1])), M[:, [1]], tg.float32)
    check(t.masked_fill(tg.tensor(MASK), -2.0), np.where(MASK, -2.0, M), tg.float32)
    row_mask = np.array([True, False, True, False, False])
    check(t.masked_fill(tg.tensor(row_mask), 0.5), np.where(row_mask, 0.5, M), tg.float32)


def test_scatter_add_and_index_put_accumulate():
    idx = np.array([[0, 0, 2]])
    src = np.array([[1.0, 2.0, 3.0]], dtype=np.float32)
    expected = np.zeros((1, 4), np.float32)
    np.add.at(expected[0], idx[0], src[0])
    check(tg.zeros(1, 4).scatter_add(1, tg.tensor(idx), tg.tensor(src)), expected, tg.float32)
    rows = tg.tensor([1, 1, 0])
    values = tg.ones(3, 5)
    expected = M.copy()
    np.add.at(expected, [1, 1, 0], 1.0)
    check(tg.tensor(M).index_put((rows,), values, accumulate=True), expected, tg.float32)


def test_where_and_clamp():
    check(tg.where(tg.tensor(MASK), tg.tensor(M), 0.0), np.where(MASK, M, 0.0), tg.float32)
    check(tg.tensor(M).clamp(3, 11.5), np.clip(M, 3, 11.5), tg.float32)
    check(tg.tensor(M).clamp(max=4), np.minimum(M, 4), tg.float32)


# ---- errors ------------------------------------------------------------------------------------------

def test_shape_mismatch_names_both_sizes():
    with pytest.raises(RuntimeError, match=r"\(3\).*\(4\)"):
        tg.ones(2, 3) + tg.ones(4)
    with pytest.raises(RuntimeError, match=r"\(4\).*\(3\)"):
        tg.ones(5, 4) * tg.ones(5, 3)


def test_other_shape_errors():
    with pytest.raises(RuntimeError, match="2x3 and 4x2"):
        tg.ones(2, 3) @ tg.ones(4, 2)
    with pytest.raises(RuntimeError, match="invalid for input of size 6"):
        tg.ones(2, 3).reshape(4, -1)
    with pytest.raises(RuntimeError):
        tg.cat([tg.ones(2, 3), tg.ones(2, 4)])
    with pytest.raises(RuntimeError):
        tg.ones(3, 2).expand(3, 4)


@pytest.mark.parametrize("key", [5, -4, (0, 3), [0, 3], (0, 0, 0)], ids=str)
def test_bad_index_raises_index_error(key):
    with pytest.raises(IndexError):
        tg.ones(3, 3)[key]


@pytest.mark.parametrize("op, error, message", [
    (lambda t: t[tg.tensor([0, 3])], IndexError, "index 3 is out of bounds for dimension 0 with size 3"),
    (lambda t: t[:, tg.tensor([-4])], IndexError, "index -4 is out of bounds for dimension 1 with size 3"),
    (lambda t: t[1, 5], IndexError, "index 5 is out of bounds for dimension 1 with size 3"),
    (lambda t: t.__setitem__(tg.tensor([4]), 0.0), IndexError, "index 4 is out of bounds for dimension 0 with size 3"),
    (lambda t: t.gather(1, tg.tensor([[0], [-1], [1]])), RuntimeError,
     "index -1 is out of bounds for dimension 1 with size 3"),
    (lambda t: t.scatter_add(0, tg.tensor([[-1, 0, 0]]), tg.ones(1, 3)), RuntimeError,
     "index -1 is out of bounds for dimension 0 with size 3"),
], ids=["index", "negative index", "integer", "setitem", "gather", "scatter_add"])
def test_out_of_range_indices_raise_pytorchs_error(op, error, message):
    """x[idx] counts negative indices from the end, gather and scatter_add take none (PyTorch's rules)."""
    with pytest.raises(error, match=f"^{message}$"):
        op(tg.ones(3, 3))


def test_index_select_out_of_range_raises_index_error():
    with pytest.raises(IndexError):
        tg.ones(3).index_select(0, tg.tensor([3]))
    with pytest.raises(IndexError):  # like PyTorch, index_select does not wrap negative indices
        tg.ones(3).index_select(0, tg.tensor([-1]))


def test_bad_setitem_index_raises_index_error():
    t = tg.ones(3)
    with pytest.raises(IndexError):
        t[5] = 1.0


def test_boolean_mask_of_the_wrong_shape_raises_index_error():
    with pytest.raises(IndexError):
        tg.ones(3)[tg.tensor([True, False])]


@pytest.mark.parametrize("call", [lambda t: t.sum(2), lambda t: t.unsqueeze(3), lambda t: t.softmax(-3),
                                  lambda t: t.transpose(0, 2), lambda t: t.size(2), lambda t: t.argmax(5)],
                         ids=["sum", "unsqueeze", "softmax", "transpose", "size", "argmax"])
def test_dim_out_of_range_raises_index_error(call):
    with pytest.raises(IndexError, match="Dimension out of range"):
        call(tg.ones(3, 2))


@pytest.mark.parametrize("key, error", [(1.0, IndexError), ((0, 1.5), IndexError), (slice(0, 1.5), TypeError)],
                         ids=["float", "float-in-tuple", "float-slice-bound"])
def test_float_index_raises(key, error):
    # like PyTorch: a float index is an IndexError, a float slice bound a TypeError
    with pytest.raises(error):
        tg.ones(3, 3)[key]


def test_numpy_on_a_tensor_requiring_grad_raises():
    t = tg.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="detach"):
        t.numpy()
    assert t.detach().numpy().tolist() == [1.0, 1.0, 1.0]


def test_item_on_many_elements_raises():
    with pytest.raises(RuntimeError, match="3 elements"):
        tg.ones(3).item()
    assert tg.ones(1, 1).item() == 1.0
    assert isinstance(tg.tensor([4]).item(), int)


@pytest.mark.parametrize("op", [lambda a, b: a % b, lambda a, b: a // b], ids=["remainder", "floor_divide"])
def test_integer_division_by_zero_raises(op):
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        op(tg.tensor([1, -1]), 0)
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        op(tg.tensor([1, -1]), tg.tensor([2, 0]))


def test_float_division_by_zero_gives_ieee_values():
    check(tg.tensor([1.0, -1.0, 0.0]) / 0.0, [np.inf, -np.inf, np.nan], tg.float32)
    check(tg.tensor([1.0, -1.0]) % 0.0, [np.nan, np.nan], tg.float32)


def test_integer_to_negative_integer_power_raises():
    with pytest.raises(RuntimeError, match="negative integer powers"):
        tg.tensor([1, 2]) ** -1


def test_arange_with_inconsistent_step_sign_raises():
    with pytest.raises(RuntimeError):
        tg.arange(3, 1)
    with pytest.raises(RuntimeError):
        tg.arange(0, 5, -1)


def test_requires_grad_on_an_integer_tensor_raises():
    with pytest.raises(RuntimeError, match="floating point"):
        tg.tensor([1, 2], requires_grad=True)

"""utils.checkpoint (recomputation in backward) and utils.data (datasets, collation, DataLoader)."""
import collections
import warnings

import numpy as np
import pytest

import tracegrad
from tracegrad import nn
from tracegrad.utils.checkpoint import checkpoint
from tracegrad.utils.data import DataLoader, Dataset, Subset, TensorDataset, default_collate, random_split

# ---- checkpoint ------------------------------------------------------------------------------------------


def make_block():
    tracegrad.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.Tanh(), nn.Linear(8, 2))


def gradients(block, x, use_checkpoint, **kwargs):
    """Loss value, parameter grads, input grad and the generator state afterwards, for one backward."""
    block.zero_grad()
    x.grad = None
    tracegrad.manual_seed(1)
    out = checkpoint(block, x, **kwargs) if use_checkpoint else block(x)
    loss = (out ** 2).sum()
    loss.backward()
    grads = [p.grad.numpy().copy() for p in block.parameters()]
    return loss.item(), grads, None if x.grad is None else x.grad.numpy().copy(), tracegrad.rand(3).tolist()


@pytest.mark.parametrize("use_reentrant", [False, True])
def test_checkpoint_gives_the_same_gradients_and_replays_dropout(use_reentrant):
    block = make_block()
    x = tracegrad.randn(5, 4, requires_grad=True)
    expected = gradients(block, x, use_checkpoint=False)
    got = gradients(block, x, use_checkpoint=True, use_reentrant=use_reentrant)
    assert got[0] == expected[0]
    for a, b in zip(got[1], expected[1]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(got[2], expected[2], rtol=1e-6, atol=1e-7)
    assert got[3] == expected[3]  # the recomputation leaves the generator where the plain run left it


def test_checkpoint_recomputes_in_backward_and_keeps_nothing_in_forward():
    grad_modes = []

    def function(x):
        grad_modes.append(tracegrad.is_grad_enabled())
        return (x * 2).sin()

    x = tracegrad.randn(3, requires_grad=True)
    out = checkpoint(function, x, use_reentrant=False)
    assert grad_modes == [False] and out.requires_grad
    out.sum().backward()
    assert grad_modes == [False, True]
    np.testing.assert_allclose(x.grad.numpy(), 2 * np.cos(2 * x.detach().numpy()), rtol=1e-6)


def test_parameters_get_gradients_when_no_input_requires_grad():
    block = make_block().eval()
    x = tracegrad.randn(5, 4)
    expected = gradients(block, x, use_checkpoint=False)
    got = gradients(block, x, use_checkpoint=True, use_reentrant=False)
    for a, b in zip(got[1], expected[1]):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    frozen = make_block().requires_grad_(False)
    assert not checkpoint(frozen, x, use_reentrant=False).requires_grad


def test_reentrant_variant_warns_and_gives_no_parameter_gradients_without_grad_inputs():
    block = make_block()
    with pytest.warns(UserWarning, match="None of the inputs have requires_grad=True"):
        out = checkpoint(block, tracegrad.randn(2, 4), use_reentrant=True)
    assert not out.requires_grad


def test_checkpoint_arguments_keywords_and_multiple_outputs():
    x, y = tracegrad.randn(3, requires_grad=True), tracegrad.randn(3, requires_grad=True)

    def function(a, b, scale=1.0):
        return a * b * scale, a.exp()

    product, _unused = checkpoint(function, x, y, use_reentrant=False, scale=3.0)
    product.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3 * y.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(y.grad.numpy(), 3 * x.detach().numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match="Unexpected keyword arguments: scale"):
        checkpoint(function, x, y, use_reentrant=True, scale=3.0)
    with pytest.warns(UserWarning, match="use_reentrant parameter should be passed explicitly"):
        checkpoint(function, x, y)


def test_checkpoint_of_a_stack_trains_like_the_plain_model():
    def train(use_checkpoint):
        tracegrad.manual_seed(0)
        layers = nn.ModuleList([nn.Linear(6, 6) for _ in range(3)])
        opt = tracegrad.optim.SGD(layers.parameters(), lr=0.1)
        x = tracegrad.randn(8, 6)
        for _ in range(3):
            h = x
            for layer in layers:
                h = checkpoint(layer, h, use_reentrant=False) if use_checkpoint else layer(h)
                h = h.tanh()
            opt.zero_grad()
            h.pow(2).mean().backward()
            opt.step()
        return [p.detach().numpy() for p in layers.parameters()]

    for a, b in zip(train(True), train(False)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_checkpoint_matches_pytorch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    w1, w2, data = (rng.standard_normal(s).astype(np.float32) for s in [(5, 3), (2, 5), (4, 3)])
    results = []
    for lib in (tracegrad, torch):
        a = lib.tensor(w1, requires_grad=True)
        b = lib.tensor(w2, requires_grad=True)
        x = lib.tensor(data, requires_grad=True)
        out = lib.utils.checkpoint.checkpoint(lambda t: (t @ a.t()).relu() @ b.t(), x, use_reentrant=False)
        out.pow(2).sum().backward()
        results.append([out.detach().numpy().copy(), a.grad.numpy(), b.grad.numpy(), x.grad.numpy()])
    for ours, theirs in zip(*results):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


# ---- datasets and collation ------------------------------------------------------------------------------


class Squares(Dataset):
    """Samples (i, i*i) as a tuple of a float tensor and an int."""

    def __len__(self):
        return 7

    def __getitem__(self, index):
        return tracegrad.tensor([float(index)]), index * index


def test_tensor_dataset_and_subset():
    ds = TensorDataset(tracegrad.arange(10).reshape(5, 2), tracegrad.arange(5))
    assert len(ds) == 5 and ds[1][0].tolist() == [2, 3] and ds[1][1].item() == 1
    sub = Subset(ds, [4, 0])
    assert len(sub) == 2 and sub[0][1].item() == 4
    with pytest.raises(ValueError, match="Size mismatch between tensors"):
        TensorDataset(tracegrad.ones(3), tracegrad.ones(4))


def test_default_collate_follows_pytorch_types():
    batch = default_collate([(tracegrad.ones(2), 1, 0.5, "a"), (tracegrad.zeros(2), 2, 1.5, "b")])
    assert isinstance(batch, list) and len(batch) == 4
    assert batch[0].tolist() == [[1.0, 1.0], [0.0, 0.0]]
    assert batch[1].dtype is tracegrad.int64 and batch[2].dtype is tracegrad.float64 and batch[3] == ["a", "b"]
    mapped = default_collate([{"x": np.ones(2, np.float32), "y": True}, {"x": np.zeros(2, np.float32), "y": False}])
    assert mapped["x"].dtype is tracegrad.float32 and mapped["y"].dtype is tracegrad.bool
    Point = collections.namedtuple("Point", "x y")
    point = default_collate([Point(1, 2.0), Point(3, 4.0)])
    assert isinstance(point, Point) and point.x.tolist() == [1, 3]
    with pytest.raises(TypeError, match="default_collate"):
        default_collate([object()])


def test_random_split_by_lengths_and_fractions():
    ds = TensorDataset(tracegrad.arange(10))
    parts = random_split(ds, [7, 3])
    assert [len(p) for p in parts] == [7, 3]
    assert sorted(int(p[i][0]) for p in parts for i in range(len(p))) == list(range(10))
    assert [len(p) for p in random_split(ds, [0.55, 0.45])] == [6, 4]
    with pytest.raises(ValueError, match="Sum of input lengths"):
        random_split(ds, [5, 4])


# ---- DataLoader ----------------------------------------------------------------------------------------------


def indices_of(loader):
    return [batch[1].tolist() for batch in loader]


def test_loader_batches_in_order_and_keeps_the_last_partial_batch():
    ds = TensorDataset(tracegrad.arange(10).float(), tracegrad.arange(10))
    loader = DataLoader(ds, batch_size=4)
    batches = list(loader)
    assert len(loader) == 3 and indices_of(batches) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    x, y = batches[0]  # a list of tensors, like PyTorch
    assert isinstance(batches[0], list) and x.dtype is tracegrad.float32 and tuple(x.shape) == (4,)
    assert indices_of(DataLoader(ds, batch_size=4, drop_last=True)) == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert len(DataLoader(ds, batch_size=4, drop_last=True)) == 2
    assert len(DataLoader(ds, batch_size=5, drop_last=True)) == 2


def test_loader_batches_are_copies_of_the_dataset():
    data = tracegrad.zeros(4, 2)
    x, = next(iter(DataLoader(TensorDataset(data), batch_size=2)))
    x.add_(1)
    assert data.abs().sum().item() == 0


def test_shuffle_is_a_reproducible_permutation_that_changes_every_epoch():
    ds = TensorDataset(tracegrad.arange(10).float(), tracegrad.arange(10))
    loader = DataLoader(ds, batch_size=3, shuffle=True)
    tracegrad.manual_seed(0)
    first, second = indices_of(loader), indices_of(loader)
    assert sorted(sum(first, [])) == list(range(10)) and [len(b) for b in first] == [3, 3, 3, 1]
    assert first != second and sum(first, []) != list(range(10))
    tracegrad.manual_seed(0)
    assert indices_of(loader) == first
    for xs, ys in DataLoader(ds, batch_size=4, shuffle=True):
        assert xs.tolist() == [float(i) for i in ys.tolist()]  # the tensors are shuffled together


def test_loader_with_a_generic_dataset_custom_collate_and_no_batching():
    loader = DataLoader(Squares(), batch_size=3)
    values, squares = next(iter(loader))
    assert tuple(values.shape) == (3, 1) and squares.tolist() == [0, 1, 4]
    assert len(list(loader)) == 3
    assert next(iter(DataLoader(Squares(), batch_size=2, collate_fn=len))) == 2
    single = list(DataLoader(Squares(), batch_size=None))
    assert len(single) == 7 and single[3][1] == 9


def test_tensor_dataset_fast_path_equals_generic_collation():
    ds = TensorDataset(tracegrad.randn(9, 3), tracegrad.arange(9))
    fast = list(DataLoader(ds, batch_size=4))
    slow = list(DataLoader(ds, batch_size=4, collate_fn=default_collate.__call__))
    for (fx, fy), (sx, sy) in zip(fast, slow):
        assert tracegrad.equal(fx, sx) and tracegrad.equal(fy, sy)


def test_loader_argument_errors():
    ds = TensorDataset(tracegrad.ones(3))
    with pytest.raises(ValueError, match="batch_size should be a positive integer"):
        DataLoader(ds, batch_size=0)
    with pytest.raises(ValueError, match="num_workers"):
        DataLoader(ds, num_workers=-1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(list(DataLoader(ds, num_workers=2, pin_memory=True))) == 3


def test_loader_matches_pytorch_batching():
    torch = pytest.importorskip("torch")
    data = np.arange(14, dtype=np.float32).reshape(7, 2)
    for lib in (tracegrad, torch):
        loader = lib.utils.data.DataLoader(lib.utils.data.TensorDataset(lib.tensor(data)), batch_size=3)
        shapes = [tuple(b[0].shape) for b in loader]
        assert shapes == [(3, 2), (3, 2), (1, 2)] and len(loader) == 3

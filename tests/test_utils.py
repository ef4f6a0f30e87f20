"""utils.checkpoint and utils.data."""
import pytest

import tracegrad as torch
from tracegrad import nn
from tracegrad.utils.checkpoint import checkpoint
from tracegrad.utils.data import DataLoader, TensorDataset, random_split


def test_checkpoint_gives_the_same_gradients_and_replays_dropout():
    torch.manual_seed(0)
    block = nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.3), nn.Tanh(), nn.Linear(8, 2))
    x = torch.randn(5, 4, requires_grad=True)
    torch.manual_seed(1)
    block(x).pow(2).sum().backward()
    expected = [p.grad.clone() for p in block.parameters()] + [x.grad.clone()]
    block.zero_grad()
    x.grad = None
    torch.manual_seed(1)
    checkpoint(block, x, use_reentrant=False).pow(2).sum().backward()
    for e, p in zip(expected, list(block.parameters()) + [x]):
        assert torch.allclose(e, p.grad, atol=1e-6)


def test_data_loader_batches_shuffles_and_drops_last():
    ds = TensorDataset(torch.arange(10).float(), torch.arange(10))
    batches = list(DataLoader(ds, batch_size=4))
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(DataLoader(ds, batch_size=4, drop_last=True)) == 2
    torch.manual_seed(0)
    seen = sorted(i for b in DataLoader(ds, batch_size=3, shuffle=True) for i in b[1].tolist())
    assert seen == list(range(10))
    torch.manual_seed(0)
    first = [b[1].tolist() for b in DataLoader(ds, batch_size=3, shuffle=True)]
    torch.manual_seed(0)
    assert first == [b[1].tolist() for b in DataLoader(ds, batch_size=3, shuffle=True)]
    assert first != [b[1].tolist() for b in batches]
    with pytest.raises(ValueError):
        TensorDataset(torch.ones(3), torch.ones(4))


def test_random_split():
    parts = random_split(TensorDataset(torch.arange(10)), [7, 3])
    assert [len(p) for p in parts] == [7, 3]
    assert sorted(int(p[i][0]) for p in parts for i in range(len(p))) == list(range(10))

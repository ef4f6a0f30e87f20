"""nn: module registration and state, layers, losses (gradchecked composites) and init."""
import math

import numpy as np
import pytest

import tracegrad as torch
from tracegrad import nn
from tracegrad.autograd import gradcheck
from tracegrad.nn import functional as F


def f64(*shape, seed=0, low=-1.0, high=1.0):
    return torch.tensor(np.random.default_rng(seed).uniform(low, high, shape), dtype=torch.float64, requires_grad=True)


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.layers = nn.ModuleList([nn.Linear(4, 4), nn.Tanh()])
        self.scale = nn.Parameter(torch.ones(1))
        self.register_buffer("steps", torch.zeros(()))

    def forward(self, x):
        x = self.fc(x)
        for layer in self.layers:
            x = layer(x)
        return x * self.scale


def test_registration_and_traversal():
    m = Block()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["scale", "fc.weight", "fc.bias", "layers.0.weight", "layers.0.bias"]
    assert [n for n, _ in m.named_buffers()] == ["steps"]
    assert len(list(m.modules())) == 5 and len(list(m.children())) == 2
    assert isinstance(m.fc.weight, nn.Parameter) and m.fc.weight.requires_grad
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        m.nope
    del m.scale
    assert "scale" not in dict(m.named_parameters())


def test_state_dict_round_trip_and_load_errors():
    a, b = Block(), Block()
    sd = a.state_dict()
    assert list(sd) == ["scale", "steps", "fc.weight", "fc.bias", "layers.0.weight", "layers.0.bias"]
    assert not sd["fc.weight"].requires_grad and np.shares_memory(sd["fc.weight"].numpy(), a.fc.weight.detach().numpy())
    b.load_state_dict(sd)
    assert torch.equal(a.fc.weight, b.fc.weight)
    bad = dict(sd)
    bad.pop("fc.bias")
    bad["extra"] = torch.ones(1)
    with pytest.raises(RuntimeError, match=r'(?s)Missing key\(s\) in state_dict: "fc.bias".*Unexpected key\(s\) in state_dict: "extra"'):
        b.load_state_dict(bad)
    bad = dict(sd)
    bad["fc.weight"] = torch.ones(2, 2)
    with pytest.raises(RuntimeError, match="size mismatch for fc.weight"):
        b.load_state_dict(bad)


def test_train_eval_zero_grad_and_freezing():
    m = Block()
    m.eval()
    assert not any(x.training for x in m.modules())
    out = m(torch.ones(2, 3)).sum()
    assert out.requires_grad  # eval() does not stop recording
    m.train()
    m.fc.requires_grad_(False)
    m(torch.ones(2, 3)).sum().backward()
    assert m.fc.weight.grad is None and m.layers[0].weight.grad is not None
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())


def test_sequential_indexing_slicing_and_repr():
    s = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert isinstance(s[0], nn.Linear) and isinstance(s[1:], nn.Sequential) and len(s[1:]) == 2
    assert repr(s).startswith("Sequential(\n  (0): Linear(in_features=2, out_features=3, bias=True)")


def test_hooks():
    m = nn.Linear(2, 2)
    seen = []
    h = m.register_forward_hook(lambda mod, args, out: seen.append(out.shape))
    m.register_forward_pre_hook(lambda mod, args: (args[0] * 0,))
    out = m(torch.ones(1, 2))
    assert seen == [(1, 2)] and torch.allclose(out, m.bias.unsqueeze(0))
    h.remove()
    m(torch.ones(1, 2))
    assert len(seen) == 1


def test_linear_init_bounds_follow_fan_in():
    torch.manual_seed(0)
    m = nn.Linear(100, 50)
    bound = 1 / math.sqrt(100)
    assert m.weight.abs().max().item() <= bound and m.bias.abs().max().item() <= bound
    assert m.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_gradcheck(approximate):
    assert gradcheck(lambda x: F.gelu(x, approximate), (f64(5),))


def test_layer_norm_gradcheck_and_values():
    x, w, b = f64(2, 3, 4), f64(4, seed=1), f64(4, seed=2)
    assert gradcheck(lambda x, w, b: F.layer_norm(x, (4,), w, b), (x, w, b))
    out = F.layer_norm(x, (4,)).detach().numpy()
    np.testing.assert_allclose(out.mean(-1), 0, atol=1e-7)
    np.testing.assert_allclose(out.var(-1), 1, rtol=1e-2)  # eps shrinks it slightly


def test_cross_entropy_matches_reference_and_gradchecks():
    logits = f64(4, 5)
    target = torch.tensor([0, 4, 2, 2])
    logp = logits.detach().numpy() - np.log(np.exp(logits.detach().numpy()).sum(1, keepdims=True))
    expected = -logp[np.arange(4), target.numpy()].mean()
    assert F.cross_entropy(logits, target).item() == pytest.approx(expected)
    assert gradcheck(lambda x: F.cross_entropy(x, target), (logits,))
    assert gradcheck(lambda x: F.cross_entropy(x, target, label_smoothing=0.1), (logits,))
    weight = torch.tensor([1.0, 2.0, 1.0, 1.0, 3.0], dtype=torch.float64)
    ignored = torch.tensor([0, -100, 2, 4])
    assert gradcheck(lambda x: F.cross_entropy(x, ignored, weight=weight), (logits,))
    probs = torch.softmax(f64(4, 5, seed=3), 1).detach()
    assert gradcheck(lambda x: F.cross_entropy(x, probs), (logits,))


@pytest.mark.parametrize("loss", [nn.MSELoss(), nn.L1Loss(), nn.SmoothL1Loss(), nn.BCEWithLogitsLoss()])
def test_regression_losses_gradcheck(loss):
    x = f64(3, 2)
    target = torch.tensor(np.random.default_rng(5).uniform(0.1, 0.9, (3, 2)))
    assert gradcheck(lambda x: loss(x, target), (x,))


def test_nll_loss_errors():
    with pytest.raises(ValueError, match="Expected input batch_size"):
        F.nll_loss(torch.zeros(3, 2), torch.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="expected scalar type Long"):
        F.nll_loss(torch.zeros(2, 2), torch.zeros(2))


def test_dropout_train_and_eval():
    torch.manual_seed(0)
    d = nn.Dropout(0.25)
    x = torch.ones(10000)
    y = d(x)
    kept = (y != 0).float().mean().item()
    assert kept == pytest.approx(0.75, abs=0.02) and y.max().item() == pytest.approx(1 / 0.75)
    assert torch.equal(d.eval()(x), x)
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


def test_embedding_padding_row_gets_no_gradient():
    e = nn.Embedding(5, 3, padding_idx=0)
    assert e.weight[0].abs().sum().item() == 0
    e(torch.tensor([[0, 1], [2, 0]])).sum().backward()
    assert e.weight.grad[0].abs().sum().item() == 0 and e.weight.grad[1].abs().sum().item() == 3


def test_init_functions():
    w = torch.empty(30, 20)
    nn.init.xavier_uniform_(w)
    assert w.abs().max().item() <= math.sqrt(6 / 50)
    nn.init.constant_(w, 0.5)
    assert bool((w == 0.5).all())
    nn.init.kaiming_normal_(w, nonlinearity="relu")
    assert w.std().item() == pytest.approx(math.sqrt(2 / 20), rel=0.15)
    assert nn.init.calculate_gain("tanh") == pytest.approx(5 / 3)
    with pytest.raises(ValueError):
        nn.init.xavier_uniform_(torch.empty(3))


def test_clip_grad_norm_and_value():
    a, b = torch.ones(3, requires_grad=True), torch.ones(4, requires_grad=True)
    (a.sum() * 3 + b.sum() * 4).backward()
    total = nn.utils.clip_grad_norm_([a, b], 1.0)
    assert total.item() == pytest.approx(math.sqrt(3 * 9 + 4 * 16))
    assert math.sqrt((a.grad ** 2).sum().item() + (b.grad ** 2).sum().item()) == pytest.approx(1.0, rel=1e-5)
    nn.utils.clip_grad_value_([a, b], 0.1)
    assert b.grad.max().item() == pytest.approx(0.1) and a.grad.min().item() >= 0

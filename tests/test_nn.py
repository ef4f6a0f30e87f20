"""nn: Module semantics, containers, layers, functional composites (gradchecked), losses, init and grad utils."""
import collections
import copy
import math
import warnings

import numpy as np
import pytest

import tracegrad
from tracegrad import nn
from tracegrad.autograd import gradcheck, gradgradcheck
from tracegrad.nn import functional as F


def f64(*shape, seed=0, low=-1.0, high=1.0, requires_grad=True):
    """A float64 tensor of uniform values, for gradcheck."""
    data = np.random.default_rng(seed).uniform(low, high, shape)
    return tracegrad.tensor(data, dtype=tracegrad.float64, requires_grad=requires_grad)


@pytest.fixture
def torch_check():
    """The parity harness: runs a snippet in tracegrad and PyTorch and compares values and gradients."""
    pytest.importorskip("torch")
    from parity.harness import check
    return check


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 4)
        self.blocks = nn.ModuleList([nn.Linear(4, 4), nn.Tanh()])
        self.scale = nn.Parameter(tracegrad.ones(1))
        self.register_buffer("count", tracegrad.zeros(()))
        self.register_buffer("cache", tracegrad.zeros(2), persistent=False)

    def forward(self, x):
        x = self.fc(x)
        for block in self.blocks:
            x = block(x)
        return x * self.scale


# ---- registration and traversal -------------------------------------------------------------------


def test_registration_order_and_traversal():
    net = Net()
    assert [n for n, _ in net.named_parameters()] == ["scale", "fc.weight", "fc.bias", "blocks.0.weight",
                                                      "blocks.0.bias"]
    assert [n for n, _ in net.named_buffers()] == ["count", "cache"]
    assert [n for n, _ in net.named_children()] == ["fc", "blocks"]
    assert [n for n, _ in net.named_modules()] == ["", "fc", "blocks", "blocks.0", "blocks.1"]
    assert [type(m).__name__ for m in net.modules()] == ["Net", "Linear", "ModuleList", "Linear", "Tanh"]
    assert [n for n, _ in net.named_parameters(recurse=False)] == ["scale"]
    assert net.get_submodule("blocks.0") is net.blocks[0]
    assert net.get_parameter("blocks.0.bias") is net.blocks[0].bias


def test_shared_parameters_and_modules_are_listed_once_but_saved_under_every_name():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert len(list(model.parameters())) == 2
    assert len(list(model.named_parameters(remove_duplicate=False))) == 4
    assert list(model.state_dict()) == ["0.weight", "0.bias", "2.weight", "2.bias"]


def test_assignment_replaces_registration_of_any_kind():
    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.act = None
            self.act = nn.ReLU()  # a plain attribute becomes a submodule

    m = M()
    assert isinstance(m.act, nn.ReLU) and "act" in m._modules
    m.act = nn.Parameter(tracegrad.ones(1))  # a submodule becomes a parameter
    assert "act" not in m._modules and isinstance(m.act, nn.Parameter)
    m.act = None
    assert m.act is None and list(m.parameters()) == []
    del m.act
    with pytest.raises(AttributeError, match="'M' object has no attribute 'act'"):
        m.act


def test_registration_errors():
    lin = nn.Linear(2, 2)
    with pytest.raises(TypeError, match=r"cannot assign .* as parameter 'weight' \(tracegrad.nn.Parameter or None"):
        lin.weight = tracegrad.ones(2, 2)
    with pytest.raises(KeyError, match="attribute 'weight' already exists"):
        lin.register_buffer("weight", tracegrad.ones(1))
    with pytest.raises(KeyError, match="contain"):
        lin.add_module("a.b", nn.ReLU())
    with pytest.raises(TypeError, match="is not a Module subclass"):
        lin.add_module("x", 3)
    with pytest.raises(TypeError, match="as child module"):
        setattr(nn.Sequential(nn.ReLU()), "0", 3)
    with pytest.raises(AttributeError, match="before Module.__init__"):
        class Early(nn.Module):
            def __init__(self):
                self.w = nn.Parameter(tracegrad.ones(1))
        Early()


# ---- state dicts ------------------------------------------------------------------------------------


def test_state_dict_is_detached_shares_memory_and_skips_non_persistent_buffers():
    net = Net()
    sd = net.state_dict()
    assert isinstance(sd, collections.OrderedDict)
    assert list(sd) == ["scale", "count", "fc.weight", "fc.bias", "blocks.0.weight", "blocks.0.bias"]
    assert not sd["fc.weight"].requires_grad
    assert np.shares_memory(sd["fc.weight"].numpy(), net.fc.weight.detach().numpy())
    assert net.state_dict(keep_vars=True)["fc.weight"] is net.fc.weight
    assert list(net.fc.state_dict(prefix="enc.")) == ["enc.weight", "enc.bias"]


def test_load_state_dict_round_trip_copies_values():
    a, b = Net(), Net()
    b.load_state_dict(a.state_dict())
    for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
        assert tracegrad.equal(pa, pb), name
        assert not np.shares_memory(pa.detach().numpy(), pb.detach().numpy())
    assert b.fc.weight.requires_grad and b.fc.weight.is_leaf


def test_load_state_dict_errors_list_every_problem_and_copy_nothing():
    a, b = Net(), Net()
    before = b.fc.bias.detach().clone()
    bad = a.state_dict()
    del bad["fc.weight"]
    bad["extra"] = tracegrad.ones(1)
    bad["fc.bias"] = tracegrad.ones(5)
    with pytest.raises(RuntimeError) as info:
        b.load_state_dict(bad)
    message = str(info.value)
    assert message.startswith("Error(s) in loading state_dict for Net:")
    assert 'Missing key(s) in state_dict: "fc.weight".' in message
    assert 'Unexpected key(s) in state_dict: "extra".' in message
    assert "size mismatch for fc.bias: copying a param with shape" in message
    assert message.index("Missing") < message.index("Unexpected") < message.index("size mismatch")
    assert tracegrad.equal(b.fc.bias, before)
    with pytest.raises(RuntimeError, match='While copying the parameter named "scale"'):
        b.load_state_dict({**a.state_dict(), "scale": 1.0})


def test_load_state_dict_non_strict_reports_keys():
    lin = nn.Linear(1, 1)
    result = lin.load_state_dict({"weight": tracegrad.full((1, 1), 3.0), "other": tracegrad.ones(1)}, strict=False)
    assert result.missing_keys == ["bias"] and result.unexpected_keys == ["other"]
    assert lin.weight.item() == 3.0
    assert repr(lin.load_state_dict(lin.state_dict())) == "<All keys matched successfully>"


# ---- modes, gradients, conversion, hooks ---------------------------------------------------------------


def test_train_eval_reach_every_module_and_call_overrides():
    calls = []

    class Custom(nn.Module):
        def train(self, mode=True):
            calls.append(mode)
            return super().train(mode)

    model = nn.Sequential(nn.Linear(1, 1), nn.Sequential(Custom(), nn.Dropout()))
    assert model.eval() is model
    assert not any(m.training for m in model.modules()) and calls == [False]
    model.train()
    assert all(m.training for m in model.modules()) and calls == [False, True]
    with pytest.raises(ValueError, match="training mode is expected to be boolean"):
        model.train(0)


def test_frozen_parameters_keep_grad_none_and_zero_grad_modes():
    net = Net()
    net.fc.requires_grad_(False)
    net(tracegrad.ones(2, 3)).sum().backward()
    assert net.fc.weight.grad is None and net.fc.bias.grad is None
    assert net.blocks[0].weight.grad is not None
    net.zero_grad(set_to_none=False)
    assert net.blocks[0].weight.grad is not None and net.blocks[0].weight.grad.abs().sum().item() == 0
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_eval_does_not_stop_recording():
    model = nn.Linear(2, 1).eval()
    assert model(tracegrad.ones(1, 2)).requires_grad


def test_to_converts_in_place_keeping_parameter_identity():
    net = Net()
    weight = net.fc.weight
    net(tracegrad.ones(1, 3)).sum().backward()
    assert net.double() is net
    assert net.fc.weight is weight and weight.dtype is tracegrad.float64
    assert weight.grad.dtype is tracegrad.float64 and net.count.dtype is tracegrad.float64
    assert net(tracegrad.ones(1, 3, dtype=tracegrad.float64)).dtype is tracegrad.float64
    net.to(tracegrad.float32)
    assert weight.dtype is tracegrad.float32
    assert net.to("cpu") is net and net.to(device="cpu", dtype=tracegrad.float32) is net
    with pytest.raises(RuntimeError, match="cuda"):
        net.to("cuda")
    with pytest.raises(TypeError, match="floating point"):
        net.to(tracegrad.int64)


def test_deepcopy_gives_independent_parameters():
    lin = nn.Linear(2, 2)
    clone = copy.deepcopy(lin)
    assert isinstance(clone.weight, nn.Parameter) and clone.weight is not lin.weight
    with tracegrad.no_grad():
        clone.weight.add_(1)
    assert not tracegrad.equal(clone.weight, lin.weight)


def test_forward_hooks_replace_inputs_and_outputs_and_can_be_removed():
    lin = nn.Linear(2, 2)
    seen = []
    post = lin.register_forward_hook(lambda mod, args, out: seen.append(tuple(out.shape)))
    pre = lin.register_forward_pre_hook(lambda mod, args: args[0] * 0)
    out = lin(tracegrad.ones(1, 2))
    assert seen == [(1, 2)] and tracegrad.allclose(out, lin.bias.unsqueeze(0))
    replaced = lin.register_forward_hook(lambda mod, args, out: out + 1)
    assert tracegrad.allclose(lin(tracegrad.ones(1, 2)), lin.bias + 1)
    for handle in (post, pre, replaced):
        handle.remove()
    assert tracegrad.allclose(lin(tracegrad.zeros(1, 2)), lin.bias.unsqueeze(0)) and len(seen) == 2


def test_apply_visits_children_first():
    order = []
    model = nn.Sequential(nn.Linear(1, 1), nn.Tanh())
    model.apply(lambda m: order.append(type(m).__name__))
    assert order == ["Linear", "Tanh", "Sequential"]


def test_repr_matches_pytorch_layout():
    model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Sequential(nn.Dropout(0.1), nn.LayerNorm(16)),
                          nn.ModuleList([nn.GELU(), nn.GELU(), nn.Tanh()]), nn.CrossEntropyLoss())
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=4, out_features=16, bias=True)\n"
        "  (1): ReLU()\n"
        "  (2): Sequential(\n"
        "    (0): Dropout(p=0.1, inplace=False)\n"
        "    (1): LayerNorm((16,), eps=1e-05, elementwise_affine=True, bias=True)\n"
        "  )\n"
        "  (3): ModuleList(\n"
        "    (0-1): 2 x GELU(approximate='none')\n"
        "    (2): Tanh()\n"
        "  )\n"
        "  (4): CrossEntropyLoss()\n"
        ")")
    assert repr(nn.Embedding(5, 2, padding_idx=-1)) == "Embedding(5, 2, padding_idx=4)"
    assert repr(nn.Flatten()) == "Flatten(start_dim=1, end_dim=-1)"


# ---- containers ---------------------------------------------------------------------------------------


def test_sequential_indexing_slicing_and_editing():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    seq = nn.Sequential(a, b, c)
    assert seq[0] is a and seq[-1] is c and len(seq) == 3 and list(seq) == [a, b, c]
    tail = seq[1:]
    assert isinstance(tail, nn.Sequential) and list(tail._modules) == ["1", "2"] and tail[0] is b
    with pytest.raises(IndexError, match="index 3 is out of range"):
        seq[3]
    x = tracegrad.ones(4, 2)
    assert tracegrad.allclose(seq(x), c(b(a(x))))
    del seq[1]
    assert list(seq._modules) == ["0", "1"] and seq[1] is c
    seq.insert(1, b)
    seq.append(nn.Sigmoid())
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear", "Sigmoid"]
    seq[3] = nn.Tanh()
    assert isinstance(seq[3], nn.Tanh) and list(seq._modules) == ["0", "1", "2", "3"]
    named = nn.Sequential(collections.OrderedDict(enc=a, act=b))
    assert named.enc is a and list(named.state_dict()) == ["enc.weight", "enc.bias"]


def test_module_list_and_dict():
    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    assert len(list(layers.parameters())) == 6 and isinstance(layers[1:], nn.ModuleList)
    layers += [nn.ReLU()]
    layers.extend([nn.Tanh()])
    del layers[0]
    assert len(layers) == 4 and list(layers._modules) == ["0", "1", "2", "3"]
    table = nn.ModuleDict({"a": nn.Linear(1, 1)})
    table["b"] = nn.ReLU()
    table.update([("c", nn.Tanh())])
    assert list(table) == ["a", "b", "c"] and "b" in table and len(table) == 3
    assert isinstance(table.pop("b"), nn.ReLU) and list(table.keys()) == ["a", "c"]
    assert [n for n, _ in table.named_parameters()] == ["a.weight", "a.bias"]


# ---- layers -------------------------------------------------------------------------------------------


def test_linear_default_initialization_bounds():
    tracegrad.manual_seed(0)
    lin = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)  # kaiming_uniform(a=sqrt(5)) and the bias rule both give 1/sqrt(fan_in)
    weight, bias = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    assert np.abs(weight).max() <= bound and np.abs(bias).max() <= bound
    assert weight.std() == pytest.approx(bound / math.sqrt(3), rel=0.02)  # the std of U(-b, b)
    assert np.abs(weight).max() > 0.99 * bound
    assert lin.weight.is_leaf and lin.weight.grad_fn is None
    assert nn.Linear(3, 2, bias=False).bias is None


def test_linear_handles_batched_and_unbatched_inputs():
    lin = nn.Linear(3, 2)
    w, b = lin.weight.detach().numpy(), lin.bias.detach().numpy()
    x = np.random.default_rng(0).standard_normal((4, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(lin(tracegrad.tensor(x)).detach().numpy(), x @ w.T + b, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(lin(tracegrad.tensor(x[0, 0])).detach().numpy(), x[0, 0] @ w.T + b, rtol=1e-6)


def test_embedding_padding_row_is_zero_and_gets_no_gradient():
    emb = nn.Embedding(5, 3, padding_idx=0)
    assert emb.weight[0].abs().sum().item() == 0
    idx = tracegrad.tensor([[0, 1], [2, 0], [1, 1]])
    out = emb(idx)
    assert tuple(out.shape) == (3, 2, 3)
    out.sum().backward()
    assert emb.weight.grad[0].abs().sum().item() == 0
    np.testing.assert_array_equal(emb.weight.grad.numpy()[:, 0], [0, 3, 1, 0, 0])
    with pytest.raises(RuntimeError, match="indices"):
        emb(tracegrad.ones(2))


def test_embedding_from_pretrained_shares_and_freezes():
    table = tracegrad.arange(6.0).reshape(3, 2)
    emb = nn.Embedding.from_pretrained(table)
    assert not emb.weight.requires_grad
    np.testing.assert_array_equal(emb(tracegrad.tensor([2])).numpy(), [[4.0, 5.0]])
    assert nn.Embedding.from_pretrained(table, freeze=False).weight.requires_grad


def test_layer_norm_module_parameters():
    ln = nn.LayerNorm((2, 3))
    assert tracegrad.equal(ln.weight, tracegrad.ones(2, 3)) and tracegrad.equal(ln.bias, tracegrad.zeros(2, 3))
    assert nn.LayerNorm(3, elementwise_affine=False).weight is None
    assert nn.LayerNorm(3, bias=False).bias is None
    with pytest.raises(RuntimeError, match="normalized_shape"):
        ln(tracegrad.ones(3, 2))


def test_dropout_statistics_scaling_gradient_and_eval():
    tracegrad.manual_seed(0)
    drop = nn.Dropout(0.25)
    x = tracegrad.ones(20000, requires_grad=True)
    y = drop(x)
    kept = (y != 0).float().mean().item()
    assert kept == pytest.approx(0.75, abs=0.01)
    assert set(np.unique(y.detach().numpy())) == {0.0, np.float32(1 / 0.75)}
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), y.detach().numpy())  # d(out)/d(in) is the scaled mask
    assert drop.eval()(x) is x
    assert F.dropout(x, 1.0).abs().sum().item() == 0
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


def test_softmax_module_without_dim_warns_and_uses_legacy_dim():
    x = tracegrad.tensor(np.random.default_rng(0).standard_normal((2, 3)).astype(np.float32))
    with pytest.warns(UserWarning, match="Implicit dimension choice for softmax"):
        out = nn.Softmax()(x)
    np.testing.assert_allclose(out.sum(1).detach().numpy(), [1, 1], rtol=1e-6)
    np.testing.assert_allclose(nn.LogSoftmax(dim=0)(x).exp().sum(0).numpy(), [1, 1, 1], rtol=1e-6)


def test_activation_modules_match_functional():
    x = tracegrad.tensor([-2.0, -0.5, 0.0, 0.5, 2.0])
    pairs = [(nn.ReLU(), F.relu), (nn.Tanh(), F.tanh), (nn.Sigmoid(), F.sigmoid), (nn.SiLU(), F.silu),
             (nn.GELU("tanh"), lambda t: F.gelu(t, "tanh")), (nn.LeakyReLU(0.2), lambda t: F.leaky_relu(t, 0.2)),
             (nn.Softplus(2.0), lambda t: F.softplus(t, 2.0)), (nn.Identity(7, key=1), lambda t: t),
             (nn.Flatten(0), lambda t: t)]
    for module, fn in pairs:
        assert tracegrad.equal(module(x), fn(x)), module
    y = x.clone()
    assert nn.ReLU(inplace=True)(y) is y and y.min().item() == 0


# ---- functional: gradients (float64 gradcheck) ------------------------------------------------------------


@pytest.mark.parametrize("name,fn", [
    ("gelu", F.gelu), ("gelu_tanh", lambda x: F.gelu(x, "tanh")), ("silu", F.silu),
    ("softplus", F.softplus), ("softplus_beta", lambda x: F.softplus(x, 2.0, 1.0)), ("logsigmoid", F.logsigmoid),
    ("leaky_relu", lambda x: F.leaky_relu(x, 0.1)), ("softmax", lambda x: F.softmax(x, 1)),
    ("log_softmax", lambda x: F.log_softmax(x, 0)), ("normalize", F.normalize),
])
def test_activation_gradcheck(name, fn):
    assert gradcheck(fn, (f64(3, 4),))


@pytest.mark.parametrize("name", ["gelu", "log_softmax", "layer_norm", "cross_entropy"])
def test_second_order_gradients_of_composites(name):
    fns = {"gelu": F.gelu, "log_softmax": lambda x: F.log_softmax(x, 1),
           "layer_norm": lambda x: F.layer_norm(x, (4,)),
           "cross_entropy": lambda x: F.cross_entropy(x, tracegrad.tensor([1, 0, 3]), label_smoothing=0.1)}
    assert gradgradcheck(fns[name], (f64(3, 4),))


def test_linear_gradcheck():
    assert gradcheck(F.linear, (f64(2, 5, 3), f64(4, 3, seed=1), f64(4, seed=2)))
    assert gradcheck(F.linear, (f64(3), f64(4, 3, seed=1)))


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_gradcheck(affine):
    x = f64(2, 3, 4)
    if affine:
        assert gradcheck(lambda x, w, b: F.layer_norm(x, (3, 4), w, b), (x, f64(3, 4, seed=1), f64(3, 4, seed=2)))
    else:
        assert gradcheck(lambda x: F.layer_norm(x, 4), (x,))


def test_embedding_gradient_with_repeated_and_padding_indices():
    idx = tracegrad.tensor([[0, 2, 2], [1, 0, 3]])
    assert gradcheck(lambda w: F.embedding(idx, w), (f64(4, 3),))
    weight = f64(4, 3)
    F.embedding(idx, weight, padding_idx=2).sum().backward()
    np.testing.assert_array_equal(weight.grad.numpy()[:, 0], [2, 1, 0, 1])  # the padding row gets nothing


CLASS_TARGETS = tracegrad.tensor([0, 4, 2, 2])
IGNORED_TARGETS = tracegrad.tensor([0, -100, 2, 4])
WEIGHT = tracegrad.tensor([1.0, 2.0, 0.5, 1.0, 3.0], dtype=tracegrad.float64)


@pytest.mark.parametrize("kwargs", [
    {}, {"reduction": "sum"}, {"reduction": "none"}, {"weight": WEIGHT}, {"label_smoothing": 0.2},
    {"weight": WEIGHT, "label_smoothing": 0.3}, {"ignore_index": 2}, {"ignore_index": 2, "weight": WEIGHT},
], ids=str)
def test_cross_entropy_class_index_gradcheck(kwargs):
    assert gradcheck(lambda x: F.cross_entropy(x, CLASS_TARGETS, **kwargs), (f64(4, 5),))
    if "ignore_index" not in kwargs:  # the default ignore_index=-100 skips the second sample
        assert gradcheck(lambda x: F.cross_entropy(x, IGNORED_TARGETS, **kwargs), (f64(4, 5),))


def test_cross_entropy_spatial_unbatched_and_probability_targets_gradcheck():
    spatial = tracegrad.tensor([[0, 2, 1], [2, 2, 0]])
    assert gradcheck(lambda x: F.cross_entropy(x, spatial, weight=WEIGHT[:3], label_smoothing=0.1), (f64(2, 3, 3),))
    assert gradcheck(lambda x: F.cross_entropy(x, tracegrad.tensor(3)), (f64(5),))
    probs = F.softmax(f64(4, 5, seed=3, requires_grad=False), 1)
    assert gradcheck(lambda x, t: F.cross_entropy(x, t, weight=WEIGHT, label_smoothing=0.1), (f64(4, 5), probs))


def test_nll_and_regression_losses_gradcheck():
    log_probs = f64(4, 5)
    assert gradcheck(lambda x: F.nll_loss(x, IGNORED_TARGETS, weight=WEIGHT), (log_probs,))
    x, y = f64(3, 2), f64(3, 2, seed=4)
    for loss in (F.mse_loss, F.l1_loss, F.smooth_l1_loss, lambda a, b: F.smooth_l1_loss(a, b, beta=0.5)):
        assert gradcheck(loss, (x, y))


def test_binary_cross_entropy_gradcheck():
    probs, target = f64(3, 2, low=0.1, high=0.9), f64(3, 2, seed=1, low=0, high=1, requires_grad=False)
    assert gradcheck(lambda p: F.binary_cross_entropy(p, target, weight=target + 0.5), (probs,))
    pos_weight = tracegrad.tensor([0.5, 3.0], dtype=tracegrad.float64)
    assert gradcheck(lambda x: F.binary_cross_entropy_with_logits(x, target, pos_weight=pos_weight), (f64(3, 2),))


def test_binary_cross_entropy_with_logits_has_the_right_gradient_at_zero():
    x = tracegrad.zeros(3, requires_grad=True)
    target = tracegrad.tensor([0.0, 0.5, 1.0])
    F.binary_cross_entropy_with_logits(x, target, reduction="sum").backward()
    np.testing.assert_allclose(x.grad.numpy(), 0.5 - target.numpy())  # sigmoid(0) - t


# ---- functional: values against NumPy references ------------------------------------------------------------


def _np_log_softmax(x, axis):
    shifted = x - x.max(axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis, keepdims=True))


def test_cross_entropy_values_match_the_definition():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 4))
    target = np.array([0, 3, -100, 1, 1, 2])
    weight = np.array([1.0, 2.0, 0.5, 3.0])
    eps = 0.2
    logp = _np_log_softmax(logits, 1)
    valid = target != -100
    safe = np.where(valid, target, 0)
    w = weight[safe] * valid
    nll = -(logp[np.arange(6), safe] * w).sum() / w.sum()
    smooth = -((logp * weight).sum(1) * valid).sum() / w.sum()
    expected = (1 - eps) * nll + eps / 4 * smooth
    got = F.cross_entropy(tracegrad.tensor(logits), tracegrad.tensor(target), weight=tracegrad.tensor(weight),
                          label_smoothing=eps)
    assert got.item() == pytest.approx(expected, rel=1e-12)
    per_sample = F.cross_entropy(tracegrad.tensor(logits), tracegrad.tensor(target), reduction="none").numpy()
    np.testing.assert_allclose(per_sample, np.where(valid, -logp[np.arange(6), safe], 0.0), rtol=1e-12)


def test_cross_entropy_is_stable_for_huge_logits():
    logits = tracegrad.tensor([[1000.0, 0.0, -1000.0]], requires_grad=True)
    loss = F.cross_entropy(logits, tracegrad.tensor([1]))
    loss.backward()
    assert loss.item() == pytest.approx(1000.0) and bool(logits.grad.isfinite().all())
    assert F.binary_cross_entropy_with_logits(tracegrad.tensor([-200.0, 200.0]),
                                              tracegrad.tensor([1.0, 0.0])).item() == pytest.approx(200.0)


def test_layer_norm_and_gelu_values():
    x = np.random.default_rng(1).standard_normal((3, 5))
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(F.layer_norm(tracegrad.tensor(x), (5,), eps=1e-5).numpy(),
                               (x - mean) / np.sqrt(var + 1e-5), rtol=1e-10)
    exact = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x.ravel()]).reshape(x.shape)
    np.testing.assert_allclose(F.gelu(tracegrad.tensor(x)).numpy(), exact, rtol=1e-10)
    approx = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))
    np.testing.assert_allclose(F.gelu(tracegrad.tensor(x), approximate="tanh").numpy(), approx, rtol=1e-10)


def test_one_hot_and_normalize():
    np.testing.assert_array_equal(F.one_hot(tracegrad.tensor([0, 2])).numpy(), [[1, 0, 0], [0, 0, 1]])
    assert F.one_hot(tracegrad.tensor([1]), 4).dtype is tracegrad.int64
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        F.one_hot(tracegrad.tensor([3]), 2)
    np.testing.assert_allclose(F.normalize(tracegrad.tensor([[3.0, 4.0]])).numpy(), [[0.6, 0.8]])


# ---- losses: modules, reductions, errors -------------------------------------------------------------------


def test_loss_modules_hold_weights_as_buffers_and_check_reduction():
    weight = tracegrad.tensor([1.0, 2.0])
    loss = nn.CrossEntropyLoss(weight=weight, label_smoothing=0.1)
    assert list(loss.state_dict()) == ["weight"] and loss.weight is weight
    loss.double()
    assert loss.weight.dtype is tracegrad.float64
    assert nn.BCEWithLogitsLoss(pos_weight=tracegrad.ones(1)).pos_weight is not None
    with pytest.raises(ValueError, match="bogus is not a valid value for reduction"):
        nn.MSELoss(reduction="bogus")
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        F.l1_loss(tracegrad.ones(1), tracegrad.ones(1), reduction="avg")


def test_deprecated_size_average_and_reduce_map_to_reduction():
    x, y = tracegrad.tensor([1.0, 3.0]), tracegrad.zeros(2)
    with pytest.warns(UserWarning, match="size_average and reduce args will be deprecated"):
        assert nn.MSELoss(size_average=False).reduction == "sum"
    with pytest.warns(UserWarning):
        assert F.mse_loss(x, y, reduce=False).tolist() == [1.0, 9.0]


@pytest.mark.parametrize("module,reference", [
    (nn.MSELoss(), lambda x, y: ((x - y) ** 2).mean()),
    (nn.L1Loss(reduction="sum"), lambda x, y: np.abs(x - y).sum()),
    (nn.SmoothL1Loss(beta=0.5), lambda x, y: np.where(np.abs(x - y) < 0.5, 0.5 * (x - y) ** 2 / 0.5,
                                                      np.abs(x - y) - 0.25).mean()),
    (nn.BCELoss(), lambda p, t: -(t * np.log(p) + (1 - t) * np.log(1 - p)).mean()),
])
def test_loss_module_values(module, reference):
    rng = np.random.default_rng(2)
    x, y = rng.uniform(0.05, 0.95, (4, 3)), rng.uniform(0, 1, (4, 3))
    assert module(tracegrad.tensor(x), tracegrad.tensor(y)).item() == pytest.approx(reference(x, y), rel=1e-10)


def test_mse_loss_warns_when_shapes_broadcast():
    with pytest.warns(UserWarning, match="different to the input size"):
        F.mse_loss(tracegrad.ones(3, 1), tracegrad.ones(3))


@pytest.mark.parametrize("call,error,match", [
    (lambda: F.nll_loss(tracegrad.zeros(3, 2), tracegrad.tensor([0, 1])), ValueError, "Expected input batch_size"),
    (lambda: F.nll_loss(tracegrad.zeros(2, 2), tracegrad.zeros(2)), RuntimeError, "expected scalar type Long"),
    (lambda: F.cross_entropy(tracegrad.zeros(2, 3, 4), tracegrad.zeros(2, 3, dtype=tracegrad.int64)),
     RuntimeError, r"Expected target size \[2, 4\], got \[2, 3\]"),
    (lambda: F.cross_entropy(tracegrad.zeros(2, 3), tracegrad.tensor([0, 1]), weight=tracegrad.ones(2)),
     RuntimeError, "weight tensor should be defined either for all 3 classes"),
    (lambda: F.cross_entropy(tracegrad.zeros(2, 3), tracegrad.tensor([0, 1]), label_smoothing=1.5),
     RuntimeError, "label_smoothing must be between 0.0 and 1.0"),
    (lambda: F.cross_entropy(tracegrad.zeros(2, 3), tracegrad.zeros(2, 3, dtype=tracegrad.int64)),
     RuntimeError, "Expected floating point type for target with class probabilities"),
    (lambda: F.binary_cross_entropy(tracegrad.ones(2) / 2, tracegrad.ones(3)), ValueError, "target size"),
    (lambda: F.gelu(tracegrad.ones(1), approximate="fast"), RuntimeError, "approximate argument"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_loss_and_functional_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_cross_entropy_with_every_target_ignored_is_nan():
    loss = F.cross_entropy(tracegrad.zeros(2, 3), tracegrad.tensor([-100, -100]))
    assert math.isnan(loss.item())


# ---- init ----------------------------------------------------------------------------------------------


def test_calculate_gain_and_fans():
    init = nn.init
    assert init.calculate_gain("linear") == 1 and init.calculate_gain("tanh") == pytest.approx(5 / 3)
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    assert init.calculate_gain("selu") == 0.75
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="negative_slope"):
        init.calculate_gain("leaky_relu", "steep")
    assert init._calculate_fan_in_and_fan_out(tracegrad.empty(8, 4, 3, 3)) == (36, 72)
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(tracegrad.empty(3))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_normal_(tracegrad.empty(3, 3), mode="fan_avg")


@pytest.mark.parametrize("name,kwargs,expected_std", [
    ("xavier_uniform_", {}, math.sqrt(2 / (200 + 300))),
    ("xavier_normal_", {"gain": 2.0}, 2 * math.sqrt(2 / (200 + 300))),
    ("kaiming_uniform_", {"nonlinearity": "relu"}, math.sqrt(2 / 300)),
    ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}, math.sqrt(2 / 200)),
    ("uniform_", {"a": -1.0, "b": 3.0}, 4 / math.sqrt(12)),
    ("normal_", {"mean": 2.0, "std": 0.5}, 0.5),
])
def test_initializers_fill_in_place_with_the_right_spread(name, kwargs, expected_std):
    tracegrad.manual_seed(0)
    weight = nn.Parameter(tracegrad.empty(200, 300))
    out = getattr(nn.init, name)(weight, **kwargs)
    assert out is weight and weight.is_leaf and weight.grad_fn is None
    assert weight.detach().numpy().std() == pytest.approx(expected_std, rel=0.02)


def test_constant_initializers_and_zero_element_warning():
    w = tracegrad.empty(2, 3)
    assert bool((nn.init.constant_(w, 0.5) == 0.5).all())
    assert bool((nn.init.zeros_(w) == 0).all()) and bool((nn.init.ones_(w) == 1).all())
    with pytest.warns(UserWarning, match="zero-element"):
        nn.init.kaiming_uniform_(tracegrad.empty(0, 3))


# ---- nn.utils ----------------------------------------------------------------------------------------------


def _params_with_grads(*grads):
    params = [tracegrad.zeros(len(g), requires_grad=True) for g in grads]
    for p, g in zip(params, grads):
        p.grad = tracegrad.tensor(g)
    return params


def test_clip_grad_norm_scales_to_max_norm_and_returns_the_total():
    params = _params_with_grads([3.0, 0.0], [0.0, 4.0])
    total = nn.utils.clip_grad_norm_(params, 1.0)
    assert total.item() == pytest.approx(5.0)
    np.testing.assert_allclose(params[0].grad.numpy(), [3 / (5 + 1e-6), 0.0], rtol=1e-6)
    untouched = _params_with_grads([0.3, 0.4])
    assert nn.utils.clip_grad_norm_(untouched, 1.0).item() == pytest.approx(0.5)
    np.testing.assert_allclose(untouched[0].grad.numpy(), [0.3, 0.4], rtol=1e-6)


def test_clip_grad_norm_other_norms_and_edge_cases():
    params = _params_with_grads([3.0, -6.0], [2.0])
    assert nn.utils.clip_grad_norm_(params, 100.0, norm_type=float("inf")).item() == 6.0
    assert nn.utils.clip_grad_norm_(params, 100.0, norm_type=1).item() == pytest.approx(11.0)
    assert nn.utils.clip_grad_norm_([tracegrad.zeros(2, requires_grad=True)], 1.0).item() == 0.0
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(_params_with_grads([float("inf")]), 1.0, error_if_nonfinite=True)


def test_clip_grad_value_and_parameter_vectors():
    params = _params_with_grads([3.0, -0.5], [-2.0])
    nn.utils.clip_grad_value_(params, 1.0)
    assert params[0].grad.tolist() == [1.0, -0.5] and params[1].grad.tolist() == [-1.0]
    lin = nn.Linear(2, 3)
    vec = nn.utils.parameters_to_vector(lin.parameters())
    assert tuple(vec.shape) == (9,)
    nn.utils.vector_to_parameters(vec * 2, lin.parameters())
    np.testing.assert_allclose(nn.utils.parameters_to_vector(lin.parameters()).detach().numpy(),
                               2 * vec.detach().numpy())


# ---- parity with PyTorch (when it is installed) ---------------------------------------------------------------


def _randn(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


PARITY_SNIPPETS = {
    "linear": (lambda lib, x, w, b: lib.nn.functional.linear(x, w, b), [_randn(2, 3, 4), _randn(5, 4, seed=1),
                                                                       _randn(5, seed=2)]),
    "gelu": (lambda lib, x: (lib.nn.functional.gelu(x), lib.nn.functional.gelu(x, approximate="tanh")), [_randn(20)]),
    "silu_softplus_logsigmoid": (lambda lib, x: (lib.nn.functional.silu(x), lib.nn.functional.softplus(x, 2.0, 3.0),
                                                 lib.nn.functional.logsigmoid(x * 30)), [_randn(20)]),
    "leaky_relu": (lambda lib, x: lib.nn.functional.leaky_relu(x, 0.2), [_randn(20)]),
    "layer_norm": (lambda lib, x, w, b: lib.nn.functional.layer_norm(x, (3, 4), w, b, 1e-3),
                   [_randn(2, 3, 4), _randn(3, 4, seed=1), _randn(3, 4, seed=2)]),
    "normalize": (lambda lib, x: lib.nn.functional.normalize(x, dim=0), [_randn(4, 3)]),
    "cross_entropy": (lambda lib, x: (
        lib.nn.functional.cross_entropy(x, lib.tensor([1, 0, 4, -100, 2]), weight=lib.tensor([1.0, 2.0, 0.5, 1.5, 3.0]),
                                        label_smoothing=0.1),
        lib.nn.functional.cross_entropy(x, lib.tensor([1, 0, 4, 3, 2]), reduction="none"),
        lib.nn.functional.cross_entropy(x, lib.tensor([1, 0, 4, 3, 2]), ignore_index=4, reduction="sum")),
        [_randn(5, 5)]),
    "cross_entropy_probs": (lambda lib, x, t: lib.nn.functional.cross_entropy(x, t.softmax(1), label_smoothing=0.2),
                            [_randn(4, 3), _randn(4, 3, seed=1)]),
    "cross_entropy_spatial": (lambda lib, x: lib.nn.CrossEntropyLoss()(x, lib.tensor([[0, 2], [1, 1]])),
                              [_randn(2, 3, 2)]),
    "nll_loss": (lambda lib, x: lib.nn.functional.nll_loss(x.log_softmax(0), lib.tensor(2)), [_randn(4)]),
    "bce": (lambda lib, x, t: (lib.nn.functional.binary_cross_entropy(x.sigmoid(), t),
                               lib.nn.functional.binary_cross_entropy_with_logits(x, t, pos_weight=lib.tensor([2.0]))),
            [_randn(6), np.random.default_rng(3).uniform(0, 1, 6).astype(np.float32)]),
    "regression_losses": (lambda lib, x, y: (lib.nn.functional.mse_loss(x, y), lib.nn.functional.l1_loss(x, y),
                                             lib.nn.functional.smooth_l1_loss(x, y, beta=0.5)),
                          [_randn(5, 2), _randn(5, 2, seed=1)]),
    "embedding": (lambda lib, w: lib.nn.functional.embedding(lib.tensor([[1, 0], [3, 1]]), w, padding_idx=1),
                  [_randn(4, 3)]),
}


@pytest.mark.parametrize("name", list(PARITY_SNIPPETS))
def test_functional_matches_pytorch(name, torch_check):
    snippet, arrays = PARITY_SNIPPETS[name]
    torch_check(snippet, *arrays)


def test_module_state_dict_keys_and_forward_match_pytorch():
    torch = pytest.importorskip("torch")

    def build(lib):
        return lib.nn.Sequential(lib.nn.Linear(3, 4), lib.nn.LayerNorm(4), lib.nn.GELU(),
                                 lib.nn.ModuleList([lib.nn.Linear(4, 2)]), lib.nn.Embedding(3, 2))

    ours, theirs = build(tracegrad), build(torch)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert repr(ours) == repr(theirs)
    ours.load_state_dict({k: tracegrad.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    x = _randn(5, 3)
    expected = theirs[3][0](theirs[:3](torch.tensor(x))).detach().numpy()
    got = ours[3][0](ours[:3](tracegrad.tensor(x))).detach().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_clip_grad_norm_matches_pytorch():
    torch = pytest.importorskip("torch")
    grads = [_randn(3, 4), _randn(5, seed=1)]
    results = []
    for lib in (tracegrad, torch):
        params = [lib.zeros(g.shape, requires_grad=True) for g in grads]
        for p, g in zip(params, grads):
            p.grad = lib.tensor(g)
        total = lib.nn.utils.clip_grad_norm_(params, 0.5, norm_type=3.0)
        results.append([total.item()] + [p.grad.numpy().copy() for p in params])
    for got, expected in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_no_warnings_in_plain_training_step():
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        F.cross_entropy(model(tracegrad.ones(5, 3)), tracegrad.tensor([0, 1, 0, 1, 1])).backward()

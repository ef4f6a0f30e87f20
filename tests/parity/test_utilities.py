"""Printing, __format__, grad_fn class names and resumed training after save/load, against PyTorch."""
from __future__ import annotations

import io

import numpy as np
import pytest

import tracegrad

torch = pytest.importorskip("torch")

PRINTED = [
    lambda L: L.tensor([1.0, 2.0, 3.0]), lambda L: L.tensor([0.1, -2.5, 3.25]), lambda L: L.tensor([1e-5, 1.0]),
    lambda L: L.tensor([1e9, 1.0]), lambda L: L.tensor([1.0, 2000.0]), lambda L: L.tensor([1.5, 2000.0]),
    lambda L: L.tensor([123456789.0]), lambda L: L.tensor([0.0, -0.0]), lambda L: L.tensor(-0.0),
    lambda L: L.tensor([float("nan"), float("inf"), -float("inf"), 1.0]), lambda L: L.tensor([float("nan"), 1.5]),
    lambda L: L.tensor(3.14159), lambda L: L.tensor(5), lambda L: L.tensor([True, False]),
    lambda L: L.tensor([1, -20, 300]), lambda L: L.tensor([], dtype=L.int64), lambda L: L.zeros(0, 3),
    lambda L: L.tensor([]), lambda L: L.zeros(2, 0, dtype=L.float64), lambda L: L.tensor([1.0, 2.0], dtype=L.float64),
    lambda L: L.tensor([1, 2], dtype=L.int32), lambda L: L.tensor([1.5, 2.25], dtype=L.float16),
    lambda L: L.arange(2000.0), lambda L: L.arange(2000).reshape(40, 50), lambda L: L.arange(24.0).reshape(2, 3, 4) / 7,
    lambda L: L.arange(100.0) * 1.5, lambda L: L.tensor([[1e-8, 1.0], [3.0, -4.0]]),
    lambda L: L.tensor([1.0, 2.0], requires_grad=True), lambda L: L.tensor([1.0, 2.0], requires_grad=True) * 2,
    lambda L: L.arange(30.0).reshape(3, 10) * 1000.123, lambda L: L.tensor([[True, False], [False, True]]),
    lambda L: L.tensor([1.0, 2.0], dtype=L.float64, requires_grad=True) * 3, lambda L: L.tensor(1e-10),
    lambda L: L.tensor(12345678901.0), lambda L: L.tensor([1e10, 1e-10]), lambda L: L.tensor([0.0001, 0.001]),
    lambda L: L.arange(12).reshape(3, 4, 1).to(L.uint8), lambda L: L.arange(5000.0).reshape(50, 100) / 3,
]


def _printed(lib, make) -> str:
    return repr(make(lib)).replace("torch.", "tracegrad.")


@pytest.mark.parametrize("case", range(len(PRINTED)))
def test_repr_matches(case):
    assert _printed(tracegrad, PRINTED[case]) == _printed(torch, PRINTED[case])


@pytest.mark.parametrize("options", [dict(precision=2), dict(sci_mode=True), dict(sci_mode=False),
                                     dict(profile="short"), dict(threshold=5, edgeitems=1), dict(profile="full"),
                                     dict(linewidth=30)])
def test_print_options_match(options):
    try:
        for lib in (tracegrad, torch):
            lib.set_printoptions(**options)
        for make in (lambda L: L.arange(100.0).reshape(10, 10) / 7, lambda L: L.arange(30.0),
                     lambda L: L.tensor([1.23456, 2e-5])):
            assert _printed(tracegrad, make) == _printed(torch, make)
    finally:
        for lib in (tracegrad, torch):
            lib.set_printoptions(profile="default")


@pytest.mark.parametrize("spec", [".4f", ".2e", "", "8.3f", "g", "+.1f"])
def test_format_matches(spec):
    assert format(tracegrad.tensor(1.23456), spec) == format(torch.tensor(1.23456), spec)


def test_format_errors_match():
    for lib in (tracegrad, torch):
        with pytest.raises(TypeError):
            format(lib.tensor([1.0, 2.0]), ".4f")
        assert format(lib.tensor([1.0, 2.0]), "") == str(lib.tensor([1.0, 2.0]))


GRAD_FNS = {
    "mul": lambda L, x, v, m: x * 2, "add": lambda L, x, v, m: x + 1, "sub": lambda L, x, v, m: x - 1,
    "div": lambda L, x, v, m: x / 2, "neg": lambda L, x, v, m: -x, "pow": lambda L, x, v, m: x ** 2,
    "exp": lambda L, x, v, m: x.exp(), "log": lambda L, x, v, m: x.log(), "tanh": lambda L, x, v, m: x.tanh(),
    "sigmoid": lambda L, x, v, m: x.sigmoid(), "relu": lambda L, x, v, m: x.relu(),
    "sum": lambda L, x, v, m: x.sum(), "sum_dim": lambda L, x, v, m: x.sum(0), "mean": lambda L, x, v, m: x.mean(),
    "mean_dim": lambda L, x, v, m: x.mean(1), "max": lambda L, x, v, m: x.max(), "max_dim": lambda L, x, v, m: x.max(1)[0],
    "prod_dim": lambda L, x, v, m: x.prod(1), "mm": lambda L, x, v, m: x @ m, "mv": lambda L, x, v, m: x @ v,
    "dot": lambda L, x, v, m: v @ v, "linear": lambda L, x, v, m: L.nn.functional.linear(x, m.t(), v[:1].expand(5) * 1),
    "view": lambda L, x, v, m: x.view(12), "t": lambda L, x, v, m: x.t(), "transpose": lambda L, x, v, m: x.transpose(0, 1),
    "permute": lambda L, x, v, m: x.permute(1, 0), "unsqueeze": lambda L, x, v, m: x.unsqueeze(0),
    "squeeze": lambda L, x, v, m: x.unsqueeze(0).squeeze(), "expand": lambda L, x, v, m: v.expand(3, 4),
    "clone": lambda L, x, v, m: x.clone(), "to": lambda L, x, v, m: x.to(L.float64), "cat": lambda L, x, v, m: L.cat([x, x]),
    "stack": lambda L, x, v, m: L.stack([x, x]), "softmax": lambda L, x, v, m: x.softmax(1),
    "log_softmax": lambda L, x, v, m: x.log_softmax(1), "var": lambda L, x, v, m: x.var(), "std": lambda L, x, v, m: x.std(),
    "logsumexp": lambda L, x, v, m: x.logsumexp(1), "clamp": lambda L, x, v, m: x.clamp(0, 1),
    "masked_fill": lambda L, x, v, m: x.masked_fill(x > 0, 0.0), "where": lambda L, x, v, m: L.where(x > 0, x, x * 0),
}


@pytest.mark.parametrize("op", list(GRAD_FNS))
def test_grad_fn_class_names_match(op):
    names = []
    for lib in (tracegrad, torch):
        x, v, m = lib.randn(3, 4, requires_grad=True), lib.randn(4, requires_grad=True), lib.randn(4, 5, requires_grad=True)
        out = GRAD_FNS[op](lib, x, v, m)
        names.append((type(out.grad_fn).__name__, out.grad_fn.name(),
                      [type(n).__name__ for n, _ in out.grad_fn.next_functions if n is not None]))
    assert names[0][:2] == names[1][:2]
    if op in ("mul", "add", "exp", "sum", "mm", "t", "clone"):  # a leaf input: its AccumulateGrad
        assert names[0][2] == names[1][2]


def _train(lib, model, opt, batches):
    losses = []
    for x, y in batches:
        opt.zero_grad()
        loss = lib.nn.functional.cross_entropy(model(lib.tensor(x)), lib.tensor(y))
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _model(lib, weights):
    model = lib.nn.Sequential(lib.nn.Linear(4, 8), lib.nn.Tanh(), lib.nn.Linear(8, 3))
    with lib.no_grad():
        for p, w in zip(model.parameters(), weights):
            p.copy_(lib.tensor(w))
    return model, lib.optim.Adam(model.parameters(), lr=0.01)


def test_resumed_training_matches_pytorch():
    rng = np.random.default_rng(0)
    weights = [rng.standard_normal(s).astype(np.float32) * 0.3 for s in ((8, 4), (8,), (3, 8), (3,))]
    batches = [(rng.standard_normal((6, 4)).astype(np.float32), rng.integers(0, 3, 6)) for _ in range(8)]
    model, opt = _model(tracegrad, weights)
    _train(tracegrad, model, opt, batches[:4])
    buffer = io.BytesIO()
    tracegrad.save({"model": model.state_dict(), "opt": opt.state_dict()}, buffer)
    buffer.seek(0)
    saved = tracegrad.load(buffer)
    resumed, resumed_opt = _model(tracegrad, weights)
    resumed.load_state_dict(saved["model"])
    resumed_opt.load_state_dict(saved["opt"])
    ours = _train(tracegrad, resumed, resumed_opt, batches[4:])

    ref, ref_opt = _model(torch, weights)
    _train(torch, ref, ref_opt, batches[:4])
    for a, b in zip(saved["model"].values(), ref.state_dict().values()):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    theirs = _train(torch, ref, ref_opt, batches[4:])
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    for a, b in zip(resumed.parameters(), ref.parameters()):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_loading_a_pytorch_checkpoint_says_what_is_expected(tmp_path):
    path = tmp_path / "torch.pt"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(RuntimeError, match="PyTorch checkpoint.*tracegrad.save writes"):
        tracegrad.load(path)


def test_generator_api_matches():
    for lib in (tracegrad, torch):
        g = lib.Generator().manual_seed(7)
        assert g.initial_seed() == 7 and isinstance(g.get_state(), lib.Tensor) and g.get_state().dtype == lib.uint8
        a = lib.rand(4, generator=g)
        g.manual_seed(7)
        assert lib.equal(a, lib.rand(4, generator=g))
        assert isinstance(lib.manual_seed(1), lib.Generator)

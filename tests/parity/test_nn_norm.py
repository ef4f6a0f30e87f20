"""Parity of normalization layers (BatchNorm1d/2d, GroupNorm, LayerNorm), parameter containers and the
gradient utilities with PyTorch: outputs, input and parameter gradients, running statistics, state dicts,
reprs and errors."""
from __future__ import annotations

import collections

import numpy as np
import pytest

import tracegrad

from .harness import assert_same, check, check_error, randn, torch


def _batch_norm_snippet(training: bool, momentum: float, affine: bool):
    """F.batch_norm with running statistics made inside the snippet and returned (so they are compared)."""
    def snippet(lib, x, w, b):
        rm, rv = lib.linspace(-1, 1, x.shape[1]), lib.linspace(0.5, 2, x.shape[1])
        out = lib.nn.functional.batch_norm(x, rm, rv, w if affine else None, b if affine else None, training,
                                           momentum, 1e-3)
        return out, rm, rv
    return snippet


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (2, 3, 4, 5)])
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("affine", [True, False])
def test_functional_batch_norm(shape, training, affine):
    check(_batch_norm_snippet(training, 0.3, affine), randn(*shape) * 2 + 1, randn(3, seed=1), randn(3, seed=2))


def test_functional_batch_norm_without_running_statistics():
    check(lambda lib, x, w: lib.nn.functional.batch_norm(x, None, None, w, None, True), randn(5, 4, 2),
          randn(4, seed=1))


def test_functional_group_norm_and_layer_norm():
    check(lambda lib, x, w, b: (lib.nn.functional.group_norm(x, 3, w, b, 1e-3), lib.nn.functional.group_norm(x, 1),
                                lib.nn.functional.group_norm(x, 6)),
          randn(2, 6, 4) * 3, randn(6, seed=1), randn(6, seed=2))
    check(lambda lib, x: lib.nn.GroupNorm(2, 4)(x), randn(3, 4, 2, 3))
    check(lambda lib, x: lib.nn.GroupNorm(2, 6)(x), randn(3, 6))
    check(lambda lib, x: (lib.nn.LayerNorm(4)(x), lib.nn.LayerNorm((3, 4), elementwise_affine=False)(x)),
          randn(2, 3, 4))


def _models(lib, layer: str, kwargs: dict):
    """Linear -> BatchNorm (or GroupNorm) -> ReLU -> Linear, with the weights of a fixed seed."""
    norm = getattr(lib.nn, layer)(**kwargs)
    model = lib.nn.Sequential(lib.nn.Linear(3, 4), norm, lib.nn.ReLU(), lib.nn.Linear(4, 2))
    rng = np.random.default_rng(7)
    with lib.no_grad():
        for p in model.parameters():
            p.copy_(lib.tensor(rng.standard_normal(tuple(p.shape)).astype(np.float32)))
    return model


@pytest.mark.parametrize("kwargs", [dict(num_features=4), dict(num_features=4, momentum=None),
                                    dict(num_features=4, momentum=0.5, eps=1e-2, affine=False),
                                    dict(num_features=4, track_running_stats=False)])
def test_batch_norm1d_training_steps_running_statistics_and_eval(kwargs):
    """Several SGD steps in training mode, an eval forward in between, then eval outputs and gradients."""
    results = []
    for lib in (tracegrad, torch):
        model = _models(lib, "BatchNorm1d", kwargs)
        opt = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        trail = []
        for i in range(6):
            model.train(i != 3)
            x = lib.tensor(randn(8, 3, seed=i) * (i + 1))
            opt.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            opt.step()
            trail.append((loss.detach(), dict(model.state_dict()), [p.grad.clone() for p in model.parameters()]))
        model.eval()
        x = lib.tensor(randn(5, 3, seed=10), requires_grad=True)
        out = model(x)
        out.sum().backward()
        trail.append((out, x.grad))
        results.append(trail)
    assert_same(*results, where="steps", rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("shape,layer", [((4, 3, 6), "BatchNorm1d"), ((2, 3, 4, 5), "BatchNorm2d")])
def test_batch_norm_module_on_channel_inputs(shape, layer):
    def snippet(lib, x):
        norm = getattr(lib.nn, layer)(3, momentum=0.2)
        outs = [norm(x * k) for k in (1.0, 2.0, 3.0)]
        norm.eval()
        outs.append(norm(x))
        return outs, dict(norm.state_dict())
    check(snippet, randn(*shape) + 0.5)


def test_state_dict_keys_values_load_and_repr():
    def build(lib):
        model = lib.nn.Module()
        model.seq = lib.nn.Sequential(lib.nn.Linear(3, 4), lib.nn.BatchNorm1d(4), lib.nn.GroupNorm(2, 4),
                                  lib.nn.BatchNorm1d(4, affine=False, track_running_stats=False), lib.nn.Identity(),
                                  lib.nn.BatchNorm1d(4, bias=False), lib.nn.GroupNorm(1, 4, bias=False),
                                  lib.nn.LayerNorm(4, bias=False))
        model.extra = lib.nn.ModuleDict({"b": lib.nn.BatchNorm2d(2), "a": lib.nn.Identity()})
        return model
    ours, theirs = build(tracegrad), build(torch)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert repr(ours) == repr(theirs)
    for key, value in theirs.state_dict().items():
        if key.endswith(("running_var", "running_mean", "num_batches_tracked")):
            assert_same(ours.state_dict()[key], value, key)
    theirs.train().seq(torch.tensor(randn(6, 3)))
    ours.load_state_dict({k: tracegrad.tensor(v.numpy()) for k, v in theirs.state_dict().items()})
    assert_same(dict(ours.state_dict()), dict(theirs.state_dict()), "loaded")
    x = randn(5, 3, seed=3)
    ours.eval(), theirs.eval()
    assert_same(ours.seq[:2](tracegrad.tensor(x)), theirs.seq[:2](torch.tensor(x)), "eval output", 1e-5, 1e-6)


@pytest.mark.parametrize("snippet,shape", [
    (lambda lib, x: lib.nn.BatchNorm1d(3)(x), (2, 3, 4, 5)),
    (lambda lib, x: lib.nn.BatchNorm1d(3)(x), (3,)),
    (lambda lib, x: lib.nn.BatchNorm2d(3)(x), (2, 3, 4)),
    (lambda lib, x: lib.nn.BatchNorm1d(3)(x), (1, 3)),
    (lambda lib, x: lib.nn.BatchNorm1d(3)(x), (4, 5)),
    (lambda lib, x: lib.nn.BatchNorm1d(3, affine=False)(x), (4, 5)),
    (lambda lib, x: lib.nn.functional.batch_norm(x, None, None, training=False), (4, 3)),
    (lambda lib, x: lib.nn.functional.batch_norm(x, None, None, lib.ones(4), training=True), (4, 3)),
    (lambda lib, x: lib.nn.GroupNorm(3, 4), (1,)),
    (lambda lib, x: lib.nn.functional.group_norm(x, 4), (2, 6, 4)),
    (lambda lib, x: lib.nn.functional.group_norm(x, 3), (6,)),
    (lambda lib, x: lib.nn.GroupNorm(2, 4)(x), (2, 6)),
])
def test_errors(snippet, shape):
    check_error(snippet, randn(*shape))


def test_eval_mode_batch_norm_with_one_sample_works():
    check(lambda lib, x: lib.nn.BatchNorm1d(3).eval()(x), randn(1, 3))


def test_parameter_list_and_dict():
    def build(lib):
        model = lib.nn.Module()
        model.plist = lib.nn.ParameterList([lib.ones(2, 3), lib.nn.Parameter(lib.zeros(2))])
        model.plist.append(lib.full((1,), 2.0))
        model.plist += [lib.nn.Parameter(lib.ones(4), requires_grad=False)]
        model.pdict = lib.nn.ParameterDict({"b": lib.ones(1), "a": lib.zeros(2, 2)})
        model.pdict.update(collections.OrderedDict([("z", lib.ones(3)), ("c", lib.ones(1))]))
        model.pdict["y"] = lib.nn.Parameter(lib.ones(2))
        return model
    ours, theirs = build(tracegrad), build(torch)
    assert list(ours.state_dict()) == list(theirs.state_dict())
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert [p.requires_grad for p in ours.parameters()] == [p.requires_grad for p in theirs.parameters()]
    assert repr(ours).replace("tracegrad", "torch") == repr(theirs)
    for lib, model in ((tracegrad, ours), (torch, theirs)):
        assert isinstance(model.plist[-1], lib.nn.Parameter) and isinstance(model.pdict["b"], lib.nn.Parameter)
        assert len(model.plist) == 4 and len(model.plist[1:3]) == 2 and len(model.pdict) == 5
        assert list(model.pdict) == ["a", "b", "z", "c", "y"] and model.pdict.get("q") is None
        assert model.pdict.pop("c").shape == (1,) and "c" not in model.pdict
        assert model.pdict.popitem()[0] == "y"
        assert [k for k, _ in model.state_dict().items()][-1] == "pdict.z"
    assert_same(dict(ours.state_dict()), dict(theirs.state_dict()), "state_dict")


def test_parameter_list_gradients_through_a_forward():
    def snippet(lib, w0, w1):
        plist = lib.nn.ParameterList([w0, w1])
        out = plist[0] @ plist[-1]
        out.sum().backward()
        return out.detach(), [p.grad for p in plist]
    check(snippet, randn(2, 3), randn(3, 2, seed=1), backward=False)


@pytest.mark.parametrize("snippet", [
    lambda lib: lib.nn.ParameterList()[0],
    lambda lib: lib.nn.ParameterDict()[1],
    lambda lib: lib.nn.ParameterDict()["a"],
    lambda lib: lib.nn.ParameterList()(1),
    lambda lib: lib.nn.ParameterList().extend(lib.ones(2)),
    lambda lib: lib.nn.ParameterDict([("a", lib.ones(1), 3)]),
])
def test_container_errors(snippet):
    check_error(snippet)


def test_clip_grad_value_and_vector_conversions():
    def snippet(lib, a, b):
        w, v = lib.nn.Parameter(a.detach().clone()), lib.nn.Parameter(b.detach().clone())
        (w.sum() * 3 + (v * v).sum()).backward()
        lib.nn.utils.clip_grad_value_([w, v], 1.5)
        vec = lib.nn.utils.parameters_to_vector([a, b])
        vec.pow(2).sum().backward()
        lib.nn.utils.vector_to_parameters(vec.detach() * 2, [w, v])
        return vec, w.grad, v.grad, w.detach(), v.detach()
    check(snippet, randn(2, 3), randn(4, seed=1), backward=False)

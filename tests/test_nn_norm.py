"""Normalization layers (BatchNorm1d/2d, GroupNorm) against NumPy formulas, gradchecked in float64, and
compiled == eager over many calls with train/eval switches and load_state_dict; ParameterList and
ParameterDict registration; ModuleDict changes seen by compiled steps."""
import numpy as np
import pytest

import tracegrad as tg
from tracegrad import nn, optim
from tracegrad.autograd import gradcheck, gradgradcheck
from tracegrad.nn import functional as F

from test_compile_soundness import WARNINGS, run_both


def _f32(*shape, seed=0, scale=1.0, shift=0.0):
    return (np.random.default_rng(seed).standard_normal(shape) * scale + shift).astype(np.float32)


def _f64(*shape, seed=0):
    return tg.tensor(np.random.default_rng(seed).uniform(-1, 1, shape), dtype=tg.float64, requires_grad=True)


def _numpy_batch_norm(x, axes, eps, weight, bias):
    """NumPy reference: per-channel batch statistics (biased variance), then the affine map."""
    mean, var = x.mean(axes, keepdims=True), x.var(axes, keepdims=True)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return (x - mean) / np.sqrt(var + eps) * weight.reshape(shape) + bias.reshape(shape), mean.ravel(), var.ravel()


# ---- values ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("layer,shape", [(nn.BatchNorm1d, (6, 3)), (nn.BatchNorm1d, (4, 3, 5)),
                                         (nn.BatchNorm2d, (2, 3, 4, 5))])
def test_batch_norm_training_updates_running_statistics_like_the_formula(layer, shape):
    bn = layer(3, eps=1e-3, momentum=0.25)
    with tg.no_grad():
        bn.weight.copy_(tg.tensor([1.0, 2.0, -0.5]))
        bn.bias.copy_(tg.tensor([0.0, 1.0, 3.0]))
    axes = (0,) + tuple(range(2, len(shape)))
    n = np.prod([shape[a] for a in axes])
    mean_ref, var_ref = np.zeros(3), np.ones(3)
    for step in range(3):
        x = _f32(*shape, seed=step, scale=step + 1, shift=step)
        out = bn(tg.tensor(x))
        expected, mean, var = _numpy_batch_norm(x.astype(np.float64), axes, 1e-3, np.array([1.0, 2.0, -0.5]),
                                                np.array([0.0, 1.0, 3.0]))
        np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-4, atol=1e-5)
        mean_ref = 0.75 * mean_ref + 0.25 * mean
        var_ref = 0.75 * var_ref + 0.25 * var * n / (n - 1)
        np.testing.assert_allclose(bn.running_mean.numpy(), mean_ref, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(bn.running_var.numpy(), var_ref, rtol=1e-5, atol=1e-6)
        assert bn.num_batches_tracked.item() == step + 1 and bn.num_batches_tracked.dtype is tg.int64
    bn.eval()
    x = _f32(*shape, seed=9)
    shape_c = (1, -1) + (1,) * (len(shape) - 2)
    expected = ((x - mean_ref.reshape(shape_c)) / np.sqrt(var_ref.reshape(shape_c) + 1e-3)
                * np.array([1.0, 2.0, -0.5]).reshape(shape_c) + np.array([0.0, 1.0, 3.0]).reshape(shape_c))
    np.testing.assert_allclose(bn(tg.tensor(x)).detach().numpy(), expected, rtol=1e-4, atol=1e-5)
    assert bn.num_batches_tracked.item() == 3  # eval leaves the statistics alone


def test_momentum_none_is_the_cumulative_average_of_the_batch_statistics():
    bn = nn.BatchNorm1d(2, momentum=None)
    batches = [_f32(5, 2, seed=s, scale=s + 1, shift=s) for s in range(4)]
    for x in batches:
        bn(tg.tensor(x))
    np.testing.assert_allclose(bn.running_mean.numpy(), np.mean([x.mean(0) for x in batches], 0), rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), np.mean([x.var(0, ddof=1) for x in batches], 0), rtol=1e-5)


def test_without_running_statistics_batch_statistics_are_used_in_eval_too():
    bn = nn.BatchNorm1d(3, affine=False, track_running_stats=False).eval()
    assert bn.running_mean is None and bn.num_batches_tracked is None and list(bn.state_dict()) == []
    x = _f32(7, 3, seed=1)
    expected, _, _ = _numpy_batch_norm(x, (0,), 1e-5, np.ones(3), np.zeros(3))
    np.testing.assert_allclose(bn(tg.tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_batch_norm_modules_check_their_input():
    with pytest.raises(ValueError, match=r"expected 2D or 3D input \(got 4D input\)"):
        nn.BatchNorm1d(3)(tg.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"expected 4D input \(got 2D input\)"):
        nn.BatchNorm2d(3)(tg.zeros(2, 3))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        nn.BatchNorm1d(3)(tg.zeros(1, 3))
    with pytest.raises(RuntimeError, match="running_mean should contain 5 elements not 3"):
        nn.BatchNorm1d(3)(tg.zeros(4, 5))
    with pytest.raises(RuntimeError, match="must be defined in evaluation mode"):
        F.batch_norm(tg.zeros(4, 3), None, None)
    nn.BatchNorm1d(3).eval()(tg.zeros(1, 3))  # one sample is fine in eval mode


def test_reset_and_repr():
    bn = nn.BatchNorm2d(2, momentum=None, bias=False)
    bn(tg.randn(2, 2, 3, 3))
    bn.reset_running_stats()
    assert bn.running_mean.tolist() == [0, 0] and bn.running_var.tolist() == [1, 1]
    assert bn.num_batches_tracked.item() == 0 and bn.bias is None
    assert repr(bn) == "BatchNorm2d(2, eps=1e-05, momentum=None, affine=True, bias=False, track_running_stats=True)"
    assert repr(nn.GroupNorm(2, 4)) == "GroupNorm(2, 4, eps=1e-05, affine=True, bias=True)"


def test_group_norm_matches_the_formula_and_checks_its_input():
    gn = nn.GroupNorm(2, 6, eps=1e-4)
    with tg.no_grad():
        gn.weight.copy_(tg.arange(6.0))
        gn.bias.fill_(0.5)
    x = _f32(3, 6, 4, seed=2, scale=2.0, shift=1.0)
    grouped = x.astype(np.float64).reshape(3, 2, -1)
    normed = ((grouped - grouped.mean(-1, keepdims=True)) / np.sqrt(grouped.var(-1, keepdims=True) + 1e-4))
    expected = normed.reshape(x.shape) * np.arange(6.0).reshape(1, 6, 1) + 0.5
    np.testing.assert_allclose(gn(tg.tensor(x)).detach().numpy(), expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match=r"num_channels \(4\) must be divisible by num_groups \(3\)"):
        nn.GroupNorm(3, 4)
    with pytest.raises(RuntimeError, match="divisible by num_groups"):
        F.group_norm(tg.zeros(2, 6, 4), 4)
    with pytest.raises(RuntimeError, match="Expected weight to be a vector"):
        gn(tg.zeros(2, 4))


# ---- gradients (float64 gradcheck) --------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(5, 3), (3, 3, 4)])
def test_batch_norm_gradcheck_training(shape):
    x, w, b = _f64(*shape), _f64(3, seed=1), _f64(3, seed=2)
    assert gradcheck(lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), (x, w, b))
    assert gradgradcheck(lambda x: F.batch_norm(x, None, None, training=True), (x,))


def test_batch_norm_gradcheck_eval_and_module():
    rm, rv = tg.tensor([0.1, -0.2, 0.3], dtype=tg.float64), tg.tensor([0.5, 1.5, 2.0], dtype=tg.float64)
    assert gradcheck(lambda x, w, b: F.batch_norm(x, rm, rv, w, b, training=False),
                     (_f64(4, 3, 2), _f64(3, seed=1), _f64(3, seed=2)))
    bn = nn.BatchNorm2d(3).double()  # training: the running statistics change, the output does not depend on them
    assert gradcheck(bn, (_f64(2, 3, 2, 2),))
    assert gradcheck(bn.eval(), (_f64(2, 3, 2, 2),))


def test_group_norm_gradcheck():
    assert gradcheck(lambda x, w, b: F.group_norm(x, 2, w, b), (_f64(2, 4, 3), _f64(4, seed=1), _f64(4, seed=2)))
    assert gradgradcheck(lambda x: F.group_norm(x, 3), (_f64(2, 6),))


# ---- parameter containers -----------------------------------------------------------------------------------


def test_parameter_list_registers_and_indexes():
    plist = nn.ParameterList([tg.ones(2), nn.Parameter(tg.zeros(3))])
    plist.append(tg.ones(1))
    plist[0] = tg.full((2,), 4.0)
    assert all(isinstance(p, nn.Parameter) for p in plist) and len(plist) == 3
    assert list(plist.state_dict()) == ["0", "1", "2"] and len(list(plist.parameters())) == 3
    assert plist[-1] is plist[2] and plist[0].tolist() == [4.0, 4.0] and len(plist[:2]) == 2
    with pytest.raises(IndexError, match="index 3 is out of range"):
        plist[3]
    with pytest.raises(TypeError, match="iterable"):
        plist.extend(tg.ones(2))
    with pytest.raises(RuntimeError, match="should not be called"):
        plist(1)


def test_parameter_dict_registers_in_pytorch_order():
    pdict = nn.ParameterDict({"w": tg.ones(2), "b": tg.zeros(1)})  # a plain dict is sorted, as in PyTorch
    pdict["a"] = tg.ones(3)
    assert list(pdict) == ["b", "w", "a"] and list(pdict.state_dict()) == ["b", "w", "a"]
    assert isinstance(pdict["a"], nn.Parameter) and "w" in pdict and len(pdict) == 3
    assert pdict.pop("w").shape == (2,) and [k for k, _ in pdict.named_parameters()] == ["b", "a"]
    assert pdict.setdefault("c", tg.ones(1)) is pdict["c"] and pdict.get("zz", 5) == 5
    assert list(pdict.copy()) == ["b", "a", "c"] and pdict.popitem()[0] == "c"
    pdict.clear()
    assert len(pdict) == 0 and list(pdict.parameters()) == []
    with pytest.raises(TypeError, match="not a string"):
        pdict[0]
    with pytest.raises(ValueError, match="has length 3; 2 is required"):
        pdict.update([("a", tg.ones(1), 1)])


# ---- compiled == eager --------------------------------------------------------------------------------------


def _program(layers, x_shape: tuple, width: int):
    """A step training nn.Sequential(*layers(), Linear(width, 2)) with SGD momentum on inputs of x_shape; every
    parameter and buffer is compared after each call."""
    def make():
        model = nn.Sequential(*layers(), nn.Linear(width, 2))
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

        def step(x):
            opt.zero_grad()
            loss = model(x).pow(2).mean()
            loss.backward()
            opt.step()
            return loss
        return dict(step=step, args=lambda i: (tg.tensor(_f32(*x_shape, seed=i, scale=i + 1, shift=i)),),
                    opts=[opt], model=model, tensors=list(model.state_dict(keep_vars=True).values()))
    return make


def _switch_modes_and_reload(env, i):
    """Eval for calls 2 and 5; before call 4 a changed copy of the state dict is loaded into the model."""
    model = env["model"]
    model.train(i not in (2, 5))
    if i == 4:
        state = {k: v * 0.5 if v.is_floating_point() else v + 3 for k, v in model.state_dict().items()}
        model.load_state_dict(state)


@pytest.mark.parametrize("momentum", [0.1, None])
def test_compiled_batch_norm_mlp_equals_eager_across_modes_and_loads(backend, momentum):
    layers = lambda: [nn.Linear(3, 6), nn.BatchNorm1d(6, momentum=momentum), nn.ReLU()]  # noqa: E731
    compiled = run_both(_program(layers, (8, 3), 6), calls=8, between=_switch_modes_and_reload)
    info = compiled.cache_info()
    assert info.compiles == 2 and info.fallbacks == 0 and info.hits == 4, info  # one variant per mode
    assert not WARNINGS


@pytest.mark.parametrize("name", ["group_norm", "batch_norm1d_3d", "batch_norm2d"])
def test_compiled_norm_steps_equal_eager(backend, name):
    layers, shape, width = {
        "group_norm": (lambda: [nn.Linear(3, 6), nn.GroupNorm(2, 6), nn.ReLU()], (5, 3), 6),
        "batch_norm1d_3d": (lambda: [nn.BatchNorm1d(4, affine=False), nn.Flatten()], (5, 4, 3), 12),
        "batch_norm2d": (lambda: [nn.BatchNorm2d(3, momentum=None), nn.Flatten()], (2, 3, 2, 4), 24),
    }[name]
    compiled = run_both(_program(layers, shape, width), calls=8, between=_switch_modes_and_reload)
    info = compiled.cache_info()
    assert info.compiles == 2 and info.fallbacks == 0, info
    assert not WARNINGS


def test_compiled_step_sees_module_dict_deletions(backend):
    def make():
        table = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Linear(2, 2)})
        x = tg.ones(3, 2)

        def step(x):
            return sum(layer(x).sum() for layer in table.values())
        return dict(step=step, args=lambda i: (x,), table=table)

    def between(env, i):
        if i == 3:
            del env["table"]["b"]
        if i == 5:
            env["table"].pop("a")
            env["table"]["c"] = nn.Linear(2, 2)
    run_both(make, calls=7, between=between)

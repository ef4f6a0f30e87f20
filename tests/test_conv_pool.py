"""Convolution and pooling: float64 gradcheck of each op and configuration, and a small CNN trained compiled
(interpreter and Numba backends) against the same model trained eagerly."""
import warnings

import numpy as np
import pytest

import tracegrad
from tracegrad.autograd import gradcheck
from tracegrad.compiler import CompileWarning

F = tracegrad.nn.functional


def rand(*shape, seed=0):
    data = np.random.default_rng(seed).standard_normal(shape)
    return tracegrad.tensor(data, dtype=tracegrad.float64, requires_grad=True)


@pytest.mark.parametrize("options", [dict(), dict(stride=2, padding=1), dict(dilation=2, padding="same"),
                                     dict(groups=2, padding=(1, 0)), dict(stride=(1, 2), padding="valid")], ids=str)
def test_conv2d_gradcheck(options):
    groups = options.get("groups", 1)
    x, w, b = rand(2, 4, 5, 5), rand(4, 4 // groups, 3, 2, seed=1), rand(4, seed=2)
    assert gradcheck(lambda x, w, b: F.conv2d(x, w, b, **options), (x, w, b))
    assert gradcheck(lambda x, w: F.conv2d(x, w, **options), (x, w))  # no bias


@pytest.mark.parametrize("options", [dict(), dict(stride=2, padding=2, dilation=2), dict(groups=2)], ids=str)
def test_conv1d_gradcheck(options):
    x, w, b = rand(2, 4, 9), rand(6, 4 // options.get("groups", 1), 3, seed=1), rand(6, seed=2)
    assert gradcheck(lambda x, w, b: F.conv1d(x, w, b, **options), (x, w, b))


@pytest.mark.parametrize("pool", [
    lambda x: F.max_pool2d(x, 2), lambda x: F.max_pool2d(x, 3, 2, 1, ceil_mode=True),
    lambda x: F.max_pool2d(x, 2, 1, dilation=2),
    lambda x: F.avg_pool2d(x, 3, 2, 1, ceil_mode=True), lambda x: F.avg_pool2d(x, 3, 2, 1, count_include_pad=False),
    lambda x: F.adaptive_avg_pool2d(x, (2, 3)), lambda x: F.adaptive_avg_pool2d(x, 1)],
    ids=["max", "max-ceil", "max-dilated", "avg-ceil", "avg-no-pad", "adaptive", "global"])
def test_pool_gradcheck(pool):
    assert gradcheck(pool, (rand(2, 3, 5, 6),))


def test_conv_second_order():
    x, w = rand(1, 2, 4, 4), rand(3, 2, 2, 2, seed=1)
    assert tracegrad.autograd.gradgradcheck(lambda x, w: F.conv2d(x, w, padding=1), (x, w))


def make_cnn():
    nn = tracegrad.nn
    tracegrad.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 6, 3, padding="same"),
                         nn.AdaptiveAvgPool2d((2, 2)), nn.Flatten(), nn.Linear(24, 3))


def test_cnn_step_compiled_equals_eager(backend):
    rng = np.random.default_rng(0)
    x = tracegrad.from_numpy(rng.standard_normal((8, 1, 6, 6), dtype=np.float32))
    y = tracegrad.from_numpy(rng.integers(0, 3, 8))
    models = [make_cnn(), make_cnn()]
    optimizers = [tracegrad.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in models]

    def step_of(model, optimizer):
        def step(x, y):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
            return loss
        return step

    eager = step_of(models[0], optimizers[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileWarning)
        compiled = tracegrad.compile(step_of(models[1], optimizers[1]))
        for _ in range(5):
            np.testing.assert_allclose(compiled(x, y).item(), eager(x, y).item(), rtol=1e-5, atol=1e-6)
            for p, q in zip(models[1].parameters(), models[0].parameters()):
                np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6)
    info = compiled.cache_info()
    assert info.compiles == 1 and info.fallbacks == 0 and info.backend_fallbacks == 0 and info.hits == 3

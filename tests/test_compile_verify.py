"""Verify mode: every replay is checked against the eager step run from the same state."""
import random

import numpy as np
import pytest

import tracegrad as tg
from tracegrad import nn, optim

pytestmark = pytest.mark.usefixtures("backend")


def _program(noise=None):
    tg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    opt = optim.Adam(model.parameters(), lr=0.01)
    x, y = tg.randn(5, 3), tg.tensor([0, 1, 1, 0, 1])

    def step(x, y):
        opt.zero_grad()
        logits = model(x) if noise is None else model(x) * noise()
        loss = nn.functional.cross_entropy(logits, y)
        loss.backward()
        opt.step()
        return loss
    return step, model, x, y


def test_verified_replays_of_a_sound_step_pass_and_keep_the_eager_results():
    step, model, x, y = _program()
    eager_step, eager_model, _, _ = _program()
    compiled = tg.compile(step, verify=True)
    for _ in range(6):
        np.testing.assert_allclose(compiled(x, y).detach().numpy(), eager_step(x, y).detach().numpy(), rtol=1e-5)
    for p, q in zip(model.parameters(), eager_model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5)
    assert compiled.cache_info().hits == 4


def test_a_value_tracing_cannot_see_is_caught_naming_the_tensor_and_the_assumptions():
    step, _, x, y = _program(noise=lambda: 1.0 + random.random())  # Python's random: frozen by the trace
    compiled = tg.compile(step, verify=True)
    compiled(x, y)
    compiled(x, y)
    with pytest.raises(tg.CompileMismatch, match=r"step \(variant 0\) differs from the eager step: "
                                                 r"model\.\d\.(weight|bias).* after the replay, .* after the eager "
                                                 r"step\. The variant assumed: .*model is <Sequential object>"):
        compiled(x, y)


def test_the_environment_switches_verify_mode_on(monkeypatch):
    monkeypatch.setenv("TRACEGRAD_VERIFY", "1")
    step, _, x, y = _program(noise=lambda: 1.0 + random.random())
    compiled = tg.compile(step)
    with pytest.raises(tg.CompileMismatch):
        for _ in range(3):
            compiled(x, y)


def test_verify_mode_compares_grad_none_ness_and_returned_values():
    from tracegrad.compiler.verify_mode import _first_difference, _Saved, _value_difference
    t = tg.ones(2)
    with_grad = _Saved(t, np.ones(2, np.float32), tg.ones(2), np.ones(2, np.float32))
    without = _Saved(t, np.ones(2, np.float32), None, None)
    assert "w.grad is a tensor after the replay, None after the eager step" in _first_difference(["w"], [with_grad], [without])
    assert _value_difference("the return value", (tg.ones(2), 3), (tg.ones(2), 3)) == ""
    assert "the return value[1] is 4 after the replay, 3" in _value_difference("the return value", (tg.ones(2), 4), (tg.ones(2), 3))

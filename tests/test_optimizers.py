"""optim: SGD/Adam/AdamW/StepLR against NumPy references of PyTorch's update rules (and PyTorch itself)."""
import numpy as np
import pytest

import tracegrad as torch
from tracegrad import optim

W0 = np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32)
X = np.random.default_rng(1).standard_normal((8, 3)).astype(np.float32)


def loss_grad(w):
    """loss = sum(tanh(X @ w.T)^2) and its gradient, in NumPy."""
    h = np.tanh(X @ w.T)
    return (2 * h * (1 - h * h)).T @ X


def run_tracegrad(make_opt, steps=5, scheduler=None):
    w = torch.tensor(W0, requires_grad=True)
    opt = make_opt([w])
    sched = scheduler(opt) if scheduler else None
    for _ in range(steps):
        opt.zero_grad()
        (torch.tensor(X) @ w.t()).tanh().pow(2).sum().backward()
        opt.step()
        if sched:
            sched.step()
    return w.detach().numpy(), opt


def sgd_reference(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, steps=5):
    w, buf = W0.copy(), None
    for _ in range(steps):
        g = loss_grad(w) + weight_decay * w
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        w = w - lr * g
    return w


def adam_reference(lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False, amsgrad=False, steps=5):
    w, m, v, vmax = W0.astype(np.float64), 0.0, 0.0, 0.0
    for t in range(1, steps + 1):
        g = loss_grad(w.astype(np.float32)).astype(np.float64)
        if weight_decay and decoupled:
            w = w * (1 - lr * weight_decay)
        elif weight_decay:
            g = g + weight_decay * w
        m = betas[0] * m + (1 - betas[0]) * g
        v = betas[1] * v + (1 - betas[1]) * g * g
        vmax = np.maximum(vmax, v)
        denom = np.sqrt(vmax if amsgrad else v) / np.sqrt(1 - betas[1] ** t) + eps
        w = w - lr / (1 - betas[0] ** t) * m / denom
    return w


@pytest.mark.parametrize("kw", [dict(lr=0.1), dict(lr=0.1, momentum=0.9), dict(lr=0.05, momentum=0.9, nesterov=True),
                                dict(lr=0.1, momentum=0.5, dampening=0.3, weight_decay=0.01)])
def test_sgd_matches_reference(kw):
    got, _ = run_tracegrad(lambda p: optim.SGD(p, **kw))
    np.testing.assert_allclose(got, sgd_reference(**kw), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("cls,kw,decoupled", [(optim.Adam, dict(lr=0.01), False),
                                              (optim.Adam, dict(lr=0.01, weight_decay=0.1, amsgrad=True), False),
                                              (optim.AdamW, dict(lr=0.01, weight_decay=0.1), True)])
def test_adam_matches_reference(cls, kw, decoupled):
    got, opt = run_tracegrad(lambda p: cls(p, **kw))
    np.testing.assert_allclose(got, adam_reference(decoupled=decoupled, **kw), rtol=1e-4, atol=1e-6)
    state = next(iter(opt.state.values()))
    assert state["step"].item() == 5 and state["exp_avg"].shape == (4, 3)


def test_step_lr_schedule_and_state_dict():
    _, opt = run_tracegrad(lambda p: optim.SGD(p, lr=1.0), steps=5,
                           scheduler=lambda o: optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.25)
    w = torch.zeros(2, requires_grad=True)
    s = optim.lr_scheduler.StepLR(optim.SGD([w], lr=1.0), 3)
    for _ in range(3):
        s.step()
    assert s.get_last_lr() == [pytest.approx(0.1)]


def test_param_groups_subset_and_state_dict_round_trip():
    a, b, c = (torch.ones(2, requires_grad=True) for _ in range(3))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.9)
    (a.sum() + b.sum() + c.sum()).backward()
    opt.step()
    assert a.tolist() == pytest.approx([0.9, 0.9]) and b.tolist() == pytest.approx([0.5, 0.5])
    assert c.tolist() == [1.0, 1.0]  # not in the optimizer
    sd = opt.state_dict()
    assert sd["param_groups"][1]["params"] == [1] and "momentum_buffer" in sd["state"][0]
    fresh = optim.SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1, momentum=0.9)
    fresh.load_state_dict(sd)
    assert torch.equal(fresh.state[a]["momentum_buffer"], opt.state[a]["momentum_buffer"])


def test_zero_grad_and_bad_hyperparameters():
    w = torch.ones(2, requires_grad=True)
    opt = optim.Adam([w])
    w.sum().backward()
    opt.zero_grad()
    assert w.grad is None
    with pytest.raises(ValueError, match="Invalid learning rate: -1"):
        optim.SGD([w], lr=-1)
    with pytest.raises(ValueError, match="Invalid beta parameter at index 1"):
        optim.Adam([w], betas=(0.9, 1.5))
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)


@pytest.mark.parametrize("name,kw", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
                                     ("Adam", dict(lr=0.01, weight_decay=0.1)), ("AdamW", dict(lr=0.01, amsgrad=True))])
def test_matches_pytorch_when_installed(name, kw):
    real = pytest.importorskip("torch")
    results = []
    for lib in (real, torch):
        w = lib.tensor(W0, requires_grad=True)
        opt = getattr(lib.optim, name)([w], **kw)
        sched = lib.optim.lr_scheduler.StepLR(opt, 2, 0.5)
        for _ in range(6):
            opt.zero_grad()
            (lib.tensor(X) @ w.t()).tanh().pow(2).sum().backward()
            opt.step()
            sched.step()
        results.append(w.detach().numpy().copy())
    np.testing.assert_allclose(results[1], results[0], rtol=1e-5, atol=1e-6)

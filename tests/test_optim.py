"""optim: optimizers against NumPy references of PyTorch's single-tensor update rules, parameter groups,
state dicts, learning-rate schedulers, and (when installed) PyTorch itself."""
import math

import numpy as np
import pytest

import tracegrad
from tracegrad import optim
from tracegrad.optim import lr_scheduler

SHAPES = [(4, 3), (5,)]
STEPS = 6


def initial_values():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape).astype(np.float32) for shape in SHAPES]


def gradient(values: np.ndarray, step: int, index: int) -> np.ndarray | None:
    """A gradient that depends on the current parameter values; the second parameter skips step 2."""
    if index == 1 and step == 2:
        return None
    return (np.sin(values * (step + 1)) + 0.1 * values).astype(np.float32)


def train(lib, make_optimizer, steps=STEPS, make_scheduler=None):
    """Train lib's parameters on the scripted gradients; returns their values, the optimizer and the lrs seen."""
    params = [lib.tensor(v, requires_grad=True) for v in initial_values()]
    opt = make_optimizer(params)
    sched = make_scheduler(opt) if make_scheduler else None
    lrs = []
    for step in range(steps):
        opt.zero_grad()
        for i, p in enumerate(params):
            g = gradient(p.detach().numpy(), step, i)
            p.grad = None if g is None else lib.tensor(g)
        opt.step()
        if sched:
            sched.step()
            lrs.append(sched.get_last_lr())
    return [p.detach().numpy().copy() for p in params], opt, lrs


def run_tracegrad(make_optimizer, steps=STEPS):
    """Train tracegrad parameters with the scripted gradients; returns their values and the optimizer."""
    values, opt, _ = train(tracegrad, make_optimizer, steps)
    return values, opt


def lerp(start, end, weight):
    return start + weight * (end - start) if weight < 0.5 else end - (end - start) * (1 - weight)


def sgd_reference(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    values, buffers = initial_values(), [None] * len(SHAPES)
    for step in range(STEPS):
        for i, w in enumerate(values):
            g = gradient(w, step, i)
            if g is None:
                continue
            g = -g if maximize else g
            if weight_decay:
                g = g + weight_decay * w
            if momentum:
                if buffers[i] is None:
                    buffers[i] = g.copy()
                else:
                    buffers[i] = buffers[i] * momentum + (1 - dampening) * g
                g = g + momentum * buffers[i] if nesterov else buffers[i]
            values[i] = w + (-lr) * g
    return values


def adam_reference(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False,
                   decoupled=False):
    values = initial_values()
    zeros = [np.zeros_like(v) for v in values]
    exp_avg, exp_avg_sq, max_sq, steps = list(zeros), list(zeros), list(zeros), [0.0] * len(values)
    beta1, beta2 = betas
    for step in range(STEPS):
        for i, w in enumerate(values):
            g = gradient(w, step, i)
            if g is None:
                continue
            g = -g if maximize else g
            steps[i] += 1
            if weight_decay:
                if decoupled:
                    w = w * (1 - lr * weight_decay)
                else:
                    g = g + weight_decay * w
            exp_avg[i] = lerp(exp_avg[i], g, 1 - beta1)
            exp_avg_sq[i] = exp_avg_sq[i] * beta2 + (1 - beta2) * g * g
            bias_correction1 = 1 - beta1 ** steps[i]
            bias_correction2_sqrt = (1 - beta2 ** steps[i]) ** 0.5
            step_size = lr / bias_correction1
            if amsgrad:
                max_sq[i] = np.maximum(max_sq[i], exp_avg_sq[i])
            second = max_sq[i] if amsgrad else exp_avg_sq[i]
            denom = np.sqrt(second) / bias_correction2_sqrt + eps
            values[i] = w + (-step_size) * exp_avg[i] / denom
    return values


def assert_values_close(got, expected):
    for g, e in zip(got, expected):
        assert g.dtype == np.float32
        np.testing.assert_allclose(g, e, rtol=1e-6, atol=1e-7)


SGD_CONFIGS = [dict(lr=0.1), dict(lr=0.1, momentum=0.9), dict(lr=0.05, momentum=0.9, nesterov=True),
               dict(lr=0.1, momentum=0.5, dampening=0.3, weight_decay=0.01), dict(lr=0.1, weight_decay=0.1),
               dict(lr=0.1, momentum=0.8, maximize=True)]
ADAM_CONFIGS = [dict(lr=0.01), dict(lr=0.01, weight_decay=0.1), dict(lr=0.02, betas=(0.5, 0.9), amsgrad=True),
                dict(lr=0.01, maximize=True, eps=1e-3), dict(lr=0.01, betas=(0.3, 0.99))]


@pytest.mark.parametrize("kwargs", SGD_CONFIGS, ids=str)
def test_sgd_matches_reference(kwargs):
    got, _ = run_tracegrad(lambda p: optim.SGD(p, **kwargs))
    assert_values_close(got, sgd_reference(**kwargs))


@pytest.mark.parametrize("kwargs", ADAM_CONFIGS, ids=str)
def test_adam_matches_reference(kwargs):
    got, _ = run_tracegrad(lambda p: optim.Adam(p, **kwargs))
    assert_values_close(got, adam_reference(**kwargs))


@pytest.mark.parametrize("kwargs", [dict(lr=0.01), dict(lr=0.05, weight_decay=0.3, amsgrad=True)], ids=str)
def test_adamw_matches_reference_and_equals_adam_with_decoupled_decay(kwargs):
    got, _ = run_tracegrad(lambda p: optim.AdamW(p, **kwargs))
    assert_values_close(got, adam_reference(decoupled=True, **{"weight_decay": 0.01, **kwargs}))
    same, _ = run_tracegrad(lambda p: optim.Adam(p, decoupled_weight_decay=True, **{"weight_decay": 0.01, **kwargs}))
    for a, b in zip(got, same):
        np.testing.assert_array_equal(a, b)


def rmsprop_reference(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                      maximize=False):
    values = initial_values()
    square_avg, grad_avg, buf = ([np.zeros_like(v) for v in values] for _ in range(3))
    for step in range(STEPS):
        for i, w in enumerate(values):
            g = gradient(w, step, i)
            if g is None:
                continue
            g = -g if maximize else g
            g = g + weight_decay * w if weight_decay else g
            square_avg[i] = square_avg[i] * alpha + (1 - alpha) * g * g
            if centered:
                grad_avg[i] = lerp(grad_avg[i], g, 1 - alpha)
                avg = np.sqrt(square_avg[i] - grad_avg[i] * grad_avg[i]) + eps
            else:
                avg = np.sqrt(square_avg[i]) + eps
            if momentum:
                buf[i] = buf[i] * momentum + g / avg
                values[i] = w + (-lr) * buf[i]
            else:
                values[i] = w + (-lr) * (g / avg)
    return values


def adagrad_reference(lr=1e-2, lr_decay=0.0, weight_decay=0.0, initial_accumulator_value=0.0, eps=1e-10,
                      maximize=False):
    values = initial_values()
    sums = [np.full_like(v, initial_accumulator_value) for v in values]
    steps = [0] * len(values)
    for step in range(STEPS):
        for i, w in enumerate(values):
            g = gradient(w, step, i)
            if g is None:
                continue
            steps[i] += 1
            g = -g if maximize else g
            g = g + weight_decay * w if weight_decay else g
            clr = lr / (1 + (steps[i] - 1) * lr_decay)
            sums[i] = sums[i] + g * g
            values[i] = w + (-clr) * (g / (np.sqrt(sums[i]) + eps))
    return values


RMSPROP_CONFIGS = [dict(), dict(lr=0.02, alpha=0.9), dict(lr=0.01, momentum=0.9), dict(lr=0.01, centered=True),
                   dict(lr=0.01, centered=True, momentum=0.5, weight_decay=0.1, maximize=True, eps=1e-3)]
ADAGRAD_CONFIGS = [dict(), dict(lr=0.1, lr_decay=0.05), dict(lr=0.1, weight_decay=0.1, maximize=True),
                   dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-4)]


@pytest.mark.parametrize("kwargs", RMSPROP_CONFIGS, ids=str)
def test_rmsprop_matches_reference(kwargs):
    got, opt = run_tracegrad(lambda p: optim.RMSprop(p, **kwargs))
    for g, e in zip(got, rmsprop_reference(**kwargs)):  # sqrt(mean square) amplifies one rounding of it
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    state = opt.state[opt.param_groups[0]["params"][0]]
    expected = ["step", "square_avg"] + ["momentum_buffer"] * bool(kwargs.get("momentum")) + [
        "grad_avg"] * bool(kwargs.get("centered"))
    assert list(state) == expected and state["step"].item() == STEPS


@pytest.mark.parametrize("kwargs", ADAGRAD_CONFIGS, ids=str)
def test_adagrad_matches_reference(kwargs):
    got, opt = run_tracegrad(lambda p: optim.Adagrad(p, **kwargs))
    assert_values_close(got, adagrad_reference(**kwargs))
    assert [opt.state[p]["step"].item() for p in opt.param_groups[0]["params"]] == [STEPS, STEPS - 1]


def test_adagrad_state_exists_from_construction_and_for_groups_added_later():
    w, later = tracegrad.ones(2, requires_grad=True), tracegrad.ones(3, requires_grad=True)
    opt = optim.Adagrad([w], initial_accumulator_value=0.25)
    assert list(opt.state_dict()["state"][0]) == ["step", "sum"] and opt.state[w]["sum"].tolist() == [0.25] * 2
    opt.add_param_group({"params": [later], "initial_accumulator_value": 1.0})
    assert later not in opt.state
    later.grad = tracegrad.full((3,), 2.0)
    opt.step()
    assert opt.state[later]["sum"].tolist() == [5.0] * 3 and later.tolist() == pytest.approx([1 - 0.01 * 2 / 5 ** 0.5] * 3)


# ---- state and parameter groups -------------------------------------------------------------------------


def test_adam_state_layout():
    _, opt = run_tracegrad(lambda p: optim.Adam(p, amsgrad=True))
    first, second = opt.param_groups[0]["params"]
    state = opt.state[first]
    assert set(state) == {"step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq"}
    assert state["step"].dtype is tracegrad.float32 and state["step"].shape == () and state["step"].item() == STEPS
    assert opt.state[second]["step"].item() == STEPS - 1  # it had no gradient at one step
    assert state["exp_avg"].shape == first.shape and not state["exp_avg"].requires_grad


def test_parameters_without_gradients_are_untouched_and_get_no_state():
    used, unused = tracegrad.ones(2, requires_grad=True), tracegrad.ones(2, requires_grad=True)
    opt = optim.SGD([used, unused], lr=0.5, momentum=0.9, weight_decay=0.1)
    used.sum().backward()
    opt.step()
    assert unused.tolist() == [1.0, 1.0] and unused not in opt.state
    assert used.tolist() == pytest.approx([1 - 0.5 * 1.1] * 2)


def test_param_groups_have_their_own_hyperparameters_and_defaults_fill_the_rest():
    a, b, c = (tracegrad.ones(2, requires_grad=True) for _ in range(3))
    opt = optim.SGD([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": [c], "momentum": 0.0})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5, 0.1]
    assert [g["momentum"] for g in opt.param_groups] == [0.9, 0.9, 0.0]
    (a.sum() + b.sum() + c.sum()).backward()
    opt.step()
    assert a.tolist() == pytest.approx([0.9] * 2) and b.tolist() == pytest.approx([0.5] * 2)
    assert c.tolist() == pytest.approx([0.9] * 2) and "momentum_buffer" not in opt.state[c]
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})


def test_hyperparameters_are_python_numbers_a_scheduler_can_edit():
    w = tracegrad.ones(1, requires_grad=True)
    opt = optim.Adam([w], lr=0.1)
    assert isinstance(opt.param_groups[0]["lr"], float) and opt.param_groups[0]["betas"] == (0.9, 0.999)
    opt.param_groups[0]["lr"] = 0.0
    w.grad = tracegrad.ones(1)
    opt.step()
    assert w.item() == 1.0  # the edited lr is used by the next step


def test_zero_grad_modes():
    w = tracegrad.ones(2, requires_grad=True)
    opt = optim.SGD([w], lr=0.1)
    w.sum().backward()
    opt.zero_grad(set_to_none=False)
    assert w.grad is not None and w.grad.tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert w.grad is None


def test_step_with_closure_returns_the_loss():
    w = tracegrad.tensor([2.0], requires_grad=True)
    opt = optim.SGD([w], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with tracegrad.no_grad():  # the closure still records: step enables grad for it
        loss = opt.step(closure)
    assert loss.item() == 4.0 and w.item() == pytest.approx(1.0)


@pytest.mark.parametrize("make,message", [
    (lambda w: optim.SGD([w], lr=-1), "Invalid learning rate: -1"),
    (lambda w: optim.SGD([w], momentum=-0.5), "Invalid momentum value: -0.5"),
    (lambda w: optim.SGD([w], weight_decay=-1e-4), "Invalid weight_decay value: -0.0001"),
    (lambda w: optim.SGD([w], nesterov=True), "Nesterov momentum requires a momentum and zero dampening"),
    (lambda w: optim.Adam([w], lr=-0.1), "Invalid learning rate: -0.1"),
    (lambda w: optim.Adam([w], eps=-1.0), "Invalid epsilon value: -1.0"),
    (lambda w: optim.Adam([w], betas=(1.0, 0.999)), "Invalid beta parameter at index 0: 1.0"),
    (lambda w: optim.AdamW([w], betas=(0.9, -0.1)), "Invalid beta parameter at index 1: -0.1"),
    (lambda w: optim.AdamW([w], weight_decay=-1), "Invalid weight_decay value: -1"),
    (lambda w: optim.RMSprop([w], lr=-0.1), "Invalid learning rate: -0.1"),
    (lambda w: optim.RMSprop([w], alpha=-0.5), "Invalid alpha value: -0.5"),
    (lambda w: optim.RMSprop([w], momentum=-1), "Invalid momentum value: -1"),
    (lambda w: optim.Adagrad([w], lr_decay=-1), "Invalid lr_decay value: -1"),
    (lambda w: optim.Adagrad([w], initial_accumulator_value=-0.1), "Invalid initial_accumulator_value value: -0.1"),
    (lambda w: optim.Adagrad([w], eps=-1e-10), "Invalid epsilon value: -1e-10"),
    (lambda w: optim.SGD([], lr=0.1), "optimizer got an empty parameter list"),
    (lambda w: optim.SGD([w * 2], lr=0.1), "can't optimize a non-leaf Tensor"),
])
def test_bad_arguments_raise_value_errors(make, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make(tracegrad.ones(1, requires_grad=True))


def test_bad_parameter_types_raise_type_errors():
    w = tracegrad.ones(1, requires_grad=True)
    with pytest.raises(TypeError, match="iterable of Tensors or dicts"):
        optim.SGD(w, lr=0.1)
    with pytest.raises(TypeError, match="can only optimize Tensors"):
        optim.SGD([w, 3.0], lr=0.1)


# ---- state dicts -------------------------------------------------------------------------------------------


def test_state_dict_format_is_pytorchs():
    _, opt = run_tracegrad(lambda p: optim.SGD([{"params": p[:1]}, {"params": p[1:], "lr": 0.5}], lr=0.1,
                                               momentum=0.9))
    sd = opt.state_dict()
    assert set(sd) == {"state", "param_groups"}
    assert sorted(sd["state"]) == [0, 1] and list(sd["state"][0]) == ["momentum_buffer"]
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][1]["lr"] == 0.5 and sd["param_groups"][0]["momentum"] == 0.9


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
                                  lambda p: optim.Adam(p, lr=0.01, amsgrad=True),
                                  lambda p: optim.AdamW(p, lr=0.01)], ids=["SGD", "Adam", "AdamW"])
def test_resuming_from_a_state_dict_continues_exactly(make):
    straight, _ = run_tracegrad(make, steps=STEPS)
    params = [tracegrad.tensor(v, requires_grad=True) for v in initial_values()]
    first = make(params)
    for step in range(STEPS):
        if step == 3:  # swap in a fresh optimizer restored from the first one's state
            resumed = make(params)
            resumed.load_state_dict(first.state_dict())
            first = resumed
        first.zero_grad()
        for i, p in enumerate(params):
            g = gradient(p.detach().numpy(), step, i)
            p.grad = None if g is None else tracegrad.tensor(g)
        first.step()
    for a, b in zip(straight, params):
        np.testing.assert_array_equal(a, b.detach().numpy())


def test_load_state_dict_copies_casts_and_restores_hyperparameters():
    _, opt = run_tracegrad(lambda p: optim.Adam(p, lr=0.01))
    sd = opt.state_dict()
    params64 = [tracegrad.tensor(v, dtype=tracegrad.float64, requires_grad=True) for v in initial_values()]
    other = optim.Adam(params64, lr=0.5)
    other.load_state_dict(sd)
    loaded = other.state[params64[0]]
    assert other.param_groups[0]["lr"] == 0.01 and other.param_groups[0]["params"] == params64
    assert loaded["exp_avg"].dtype is tracegrad.float64 and loaded["step"].dtype is tracegrad.float32
    with tracegrad.no_grad():
        loaded["exp_avg"].add_(1.0)
    assert not np.allclose(sd["state"][0]["exp_avg"].numpy(), loaded["exp_avg"].numpy())


def test_load_state_dict_rejects_other_group_layouts():
    _, opt = run_tracegrad(lambda p: optim.SGD(p, lr=0.1))
    w = tracegrad.ones(1, requires_grad=True)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        optim.SGD([w], lr=0.1).load_state_dict(opt.state_dict())
    with pytest.raises(ValueError, match="different number of parameter groups"):
        optim.SGD([{"params": [w]}, {"params": [tracegrad.ones(1, requires_grad=True)]}],
                  lr=0.1).load_state_dict(opt.state_dict())


# ---- learning-rate schedulers ----------------------------------------------------------------------------


def scheduled_lrs(make_scheduler, epochs=12, lr=1.0):
    """The learning rate at epochs 0..epochs-1 (one optimizer step per epoch)."""
    w = tracegrad.ones(1, requires_grad=True)
    opt = optim.SGD([w], lr=lr)
    scheduler = make_scheduler(opt)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])
        assert scheduler.get_last_lr() == [lrs[-1]]
        opt.step()
        scheduler.step()
    return lrs


@pytest.mark.parametrize("make,closed_form", [
    (lambda o: lr_scheduler.StepLR(o, step_size=3, gamma=0.5), lambda e: 0.5 ** (e // 3)),
    (lambda o: lr_scheduler.MultiStepLR(o, milestones=[2, 5, 5], gamma=0.1),
     lambda e: 0.1 ** (int(e >= 2) + 2 * int(e >= 5))),
    (lambda o: lr_scheduler.ExponentialLR(o, gamma=0.9), lambda e: 0.9 ** e),
    (lambda o: lr_scheduler.LambdaLR(o, lambda e: 1 / (e + 1)), lambda e: 1 / (e + 1)),
    (lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=5, eta_min=0.1),
     lambda e: 0.1 + 0.9 * (1 + math.cos(math.pi * e / 5)) / 2),
], ids=["StepLR", "MultiStepLR", "ExponentialLR", "LambdaLR", "CosineAnnealingLR"])
def test_schedulers_follow_their_closed_forms(make, closed_form):
    assert scheduled_lrs(make) == pytest.approx([closed_form(e) for e in range(12)], rel=1e-12, abs=1e-12)


def _warm_restarts(e, T_0=2, T_mult=2, eta_min=0.1):
    T_i = T_0
    while e >= T_i:
        e, T_i = e - T_i, T_i * T_mult
    return eta_min + (1 - eta_min) * (1 + math.cos(math.pi * e / T_i)) / 2


def _one_cycle(e, total=10, pct=0.3, max_lr=1.0, initial=1.0 / 25, final=1.0 / 25 / 1e4):
    peak = pct * total - 1
    if e <= peak:
        return max_lr + (initial - max_lr) / 2 * (math.cos(math.pi * e / peak) + 1)
    return final + (max_lr - final) / 2 * (math.cos(math.pi * (e - peak) / (total - 1 - peak)) + 1)


@pytest.mark.parametrize("make,closed_form", [
    (lambda o: lr_scheduler.LinearLR(o, start_factor=0.25, total_iters=4), lambda e: 0.25 + 0.75 * min(e, 4) / 4),
    (lambda o: lr_scheduler.LinearLR(o, start_factor=1.0, end_factor=0.5, total_iters=6),
     lambda e: 1.0 - 0.5 * min(e, 6) / 6),
    (lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2, eta_min=0.1), _warm_restarts),
    (lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=3), lambda e: _warm_restarts(e, 3, 1, 0.0)),
    (lambda o: lr_scheduler.SequentialLR(o, [lr_scheduler.LinearLR(o, 0.5, total_iters=2),
                                             lr_scheduler.ExponentialLR(o, 0.5)], milestones=[4]),
     lambda e: 0.5 + 0.5 * min(e, 2) / 2 if e < 4 else 0.5 ** (e - 4)),
    (lambda o: lr_scheduler.OneCycleLR(o, max_lr=1.0, total_steps=12), lambda e: _one_cycle(e, total=12)),
    (lambda o: lr_scheduler.OneCycleLR(o, max_lr=1.0, epochs=4, steps_per_epoch=3, anneal_strategy="linear",
                                       pct_start=0.5, cycle_momentum=False),
     lambda e: 0.04 + 0.96 * e / 5 if e <= 5 else 1.0 + (0.04e-4 - 1.0) * (e - 5) / 6),
], ids=["LinearLR-up", "LinearLR-down", "WarmRestarts-mult", "WarmRestarts", "SequentialLR", "OneCycleLR",
        "OneCycleLR-linear"])
def test_new_schedulers_follow_their_closed_forms(make, closed_form):
    assert scheduled_lrs(make) == pytest.approx([closed_form(e) for e in range(12)], rel=1e-9, abs=1e-12)


def test_one_cycle_cycles_momentum_or_beta1_against_the_lr():
    w = tracegrad.ones(1, requires_grad=True)
    for opt, read in [(optim.SGD([w], lr=1.0, momentum=0.9), lambda g: g["momentum"]),
                      (optim.Adam([w], lr=1.0, betas=(0.9, 0.99)), lambda g: g["betas"][0])]:
        scheduler = lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=5, pct_start=0.4, anneal_strategy="linear")
        seen = []
        for _ in range(4):
            seen.append((opt.param_groups[0]["lr"], read(opt.param_groups[0])))
            opt.step()
            scheduler.step()
        low = 0.04e-4  # max_lr / div_factor / final_div_factor
        expected = [0.04, 0.95, 1.0, 0.85, 1 - (1 - low) / 3, 0.85 + 0.1 / 3, 1 - (1 - low) * 2 / 3, 0.85 + 0.2 / 3]
        assert [x for pair in seen for x in pair] == pytest.approx(expected, rel=1e-12)
        assert "betas" not in opt.param_groups[0] or opt.param_groups[0]["betas"][1] == 0.99
    scheduler.step()  # step 5 of total_steps=5 is the last
    with pytest.raises(ValueError, match="Tried to step 6 times"):
        scheduler.step()


def test_reduce_lr_on_plateau_waits_for_patience_then_cools_down_and_stops_at_min_lr():
    w = tracegrad.ones(1, requires_grad=True)
    opt = optim.SGD([w], lr=1.0)
    scheduler = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1, cooldown=1, min_lr=0.2)
    lrs = []
    for metric in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]:
        scheduler.step(tracegrad.tensor(metric))
        lrs.append(scheduler.get_last_lr()[0])
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.2, 0.2, 0.2, 0.2, 0.2]
    assert scheduler.best == 0.5 and scheduler.last_epoch == 13
    resumed = lr_scheduler.ReduceLROnPlateau(opt, mode="max")
    resumed.load_state_dict(scheduler.state_dict())
    assert resumed._is_better(0.4, 0.5) and resumed.mode == "min"
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        lr_scheduler.ReduceLROnPlateau(opt, factor=1.0)
    with pytest.raises(ValueError, match="expected 1 min_lrs, got 2"):
        lr_scheduler.ReduceLROnPlateau(opt, min_lr=[0.1, 0.2])


def test_reduce_lr_on_plateau_modes_and_thresholds():
    w = tracegrad.ones(1, requires_grad=True)
    cases = [(dict(mode="max", patience=0), [1.0, 2.0, 2.0], [1.0, 1.0, 0.1]),
             (dict(threshold=0.1, patience=0), [1.0, 0.95, 0.85], [1.0, 0.1, 0.1]),  # 0.95 is no 10% better
             (dict(threshold=0.1, threshold_mode="abs", patience=0), [1.0, 0.85, 0.8], [1.0, 1.0, 0.1]),
             (dict(patience=0, factor=0.8, eps=0.5), [1.0, 1.0, 1.0], [1.0, 1.0, 1.0])]  # a change under eps is skipped
    for kwargs, metrics, expected in cases:
        opt = optim.SGD([w], lr=1.0)
        scheduler = lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
        lrs = []
        for metric in metrics:
            scheduler.step(metric)
            lrs.append(opt.param_groups[0]["lr"])
        assert lrs == pytest.approx(expected), kwargs


def test_step_with_an_epoch_warns_and_jumps_by_the_closed_form():
    w = tracegrad.ones(1, requires_grad=True)
    opt = optim.SGD([w], lr=1.0)
    scheduler = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    opt.step()
    with pytest.warns(UserWarning, match="epoch parameter"):
        scheduler.step(5)
    assert scheduler.get_last_lr() == [0.25] and scheduler.last_epoch == 5
    restarts = lr_scheduler.CosineAnnealingWarmRestarts(optim.SGD([w], lr=1.0), T_0=4)
    restarts.step(6.0)  # fractional epochs are its documented use: no warning
    assert restarts.get_last_lr() == [pytest.approx(0.5)] and restarts.T_cur == 2


def test_sequential_lr_state_dict_holds_its_schedulers():
    w = tracegrad.ones(1, requires_grad=True)
    opt = optim.SGD([w], lr=1.0)
    scheduler = lr_scheduler.SequentialLR(opt, [lr_scheduler.LinearLR(opt), lr_scheduler.StepLR(opt, 1)], [2])
    for _ in range(3):
        opt.step()
        scheduler.step()
    state = scheduler.state_dict()
    assert [s["last_epoch"] for s in state["_schedulers"]] == [1, 1] and state["last_epoch"] == 3
    assert "optimizer" not in state and "optimizer" not in state["_schedulers"][0]
    with pytest.raises(ValueError, match="one more than the number of milestone points"):
        lr_scheduler.SequentialLR(opt, [lr_scheduler.LinearLR(opt)], [2])


def test_scheduler_state_dict_resumes_the_schedule():
    w = tracegrad.ones(1, requires_grad=True)
    opt = optim.SGD([w], lr=1.0)
    scheduler = lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    for _ in range(3):
        opt.step()
        scheduler.step()
    saved, saved_opt = scheduler.state_dict(), opt.state_dict()
    assert "optimizer" not in saved and saved["last_epoch"] == 3
    opt2 = optim.SGD([w], lr=1.0)
    opt2.load_state_dict(saved_opt)
    resumed = lr_scheduler.StepLR(opt2, step_size=2, gamma=0.1, last_epoch=-1)
    resumed.load_state_dict(saved)
    opt.step()
    opt2.step()
    scheduler.step()
    resumed.step()
    assert resumed.get_last_lr() == scheduler.get_last_lr() == [pytest.approx(0.01)]


def test_scheduler_errors_and_order_warning():
    w = tracegrad.ones(1, requires_grad=True)
    with pytest.raises(KeyError, match="initial_lr"):
        lr_scheduler.StepLR(optim.SGD([w], lr=1.0), 2, last_epoch=4)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        lr_scheduler.StepLR(object(), 2)
    with pytest.raises(ValueError, match="Expected 1 lr_lambdas, but got 2"):
        lr_scheduler.LambdaLR(optim.SGD([w], lr=1.0), [abs, abs])
    with pytest.warns(UserWarning, match=r"lr_scheduler.step\(\)` before `optimizer.step\(\)"):
        lr_scheduler.StepLR(optim.SGD([w], lr=1.0), 2).step()


# ---- parity with PyTorch (when it is installed) ------------------------------------------------------------


def run_library(lib, name, kwargs, scheduler=None):
    """Train with lib's optimizer on the scripted gradients; returns the parameters and the state dict."""
    def make(params):
        return getattr(lib.optim, name)([{"params": params[:1]}, {"params": params[1:], "lr": 0.03}], **kwargs)
    values, opt, lrs = train(lib, make, STEPS, (lambda o: scheduler(lib, o)) if scheduler else None)
    return values, opt.state_dict(), lrs


@pytest.mark.parametrize("name,kwargs", [
    ("SGD", dict(lr=0.1)), ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.5, dampening=0.2, maximize=True)),
    ("Adam", dict(lr=0.01)), ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("Adam", dict(lr=0.01, betas=(0.2, 0.95), maximize=True)), ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.05, weight_decay=0.5, amsgrad=True)),
], ids=str)
def test_optimizers_match_pytorch(name, kwargs):
    torch = pytest.importorskip("torch")
    ours, our_state, _ = run_library(tracegrad, name, kwargs)
    theirs, their_state, _ = run_library(torch, name, kwargs)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert our_state["state"].keys() == their_state["state"].keys()
    for index, their_entry in their_state["state"].items():
        assert our_state["state"][index].keys() == their_entry.keys()
        for key, value in their_entry.items():
            np.testing.assert_allclose(our_state["state"][index][key].numpy(), value.numpy(), rtol=1e-6, atol=1e-7)
            assert str(our_state["state"][index][key].dtype).split(".")[-1] == str(value.dtype).split(".")[-1]
    for ours_group, theirs_group in zip(our_state["param_groups"], their_state["param_groups"]):
        shared = {k: v for k, v in theirs_group.items() if k in ours_group}
        assert {k: ours_group[k] for k in shared} == shared
        assert set(shared) >= {"lr", "params", "weight_decay"}


@pytest.mark.parametrize("make", [
    lambda lib, o: lib.optim.lr_scheduler.StepLR(o, 2, gamma=0.3),
    lambda lib, o: lib.optim.lr_scheduler.MultiStepLR(o, [1, 4], gamma=0.5),
    lambda lib, o: lib.optim.lr_scheduler.ExponentialLR(o, 0.8),
    lambda lib, o: lib.optim.lr_scheduler.LambdaLR(o, lambda e: 0.95 ** e),
    lambda lib, o: lib.optim.lr_scheduler.CosineAnnealingLR(o, T_max=2, eta_min=0.001),
], ids=["StepLR", "MultiStepLR", "ExponentialLR", "LambdaLR", "CosineAnnealingLR"])
def test_schedulers_match_pytorch(make):
    torch = pytest.importorskip("torch")
    ours, _, our_lrs = run_library(tracegrad, "Adam", dict(lr=0.1), make)
    theirs, _, their_lrs = run_library(torch, "Adam", dict(lr=0.1), make)
    np.testing.assert_allclose(np.array(our_lrs), np.array(their_lrs), rtol=1e-12)
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)

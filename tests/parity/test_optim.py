"""Optimizers and learning-rate schedulers against PyTorch: the same parameters and gradient sequence give
the same parameters, state_dict values and learning rates; bad arguments raise the same errors."""
import warnings

import numpy as np
import pytest

import tracegrad

torch = pytest.importorskip("torch")

LIBRARIES = (tracegrad, torch)
SHAPES = [(4, 3), (5,), (2, 2)]
STEPS = 6


def _gradient(values: np.ndarray, step: int, index: int) -> np.ndarray | None:
    """A gradient that depends on the current parameter values; the second parameter skips step 2."""
    if index == 1 and step == 2:
        return None
    return (np.sin(values * (step + 1)) + 0.1 * values).astype(np.float32)


def _params(lib) -> list:
    rng = np.random.default_rng(0)
    return [lib.tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True) for shape in SHAPES]


def _optimizer(lib, name: str, kwargs: dict, params: list):
    """Two parameter groups, the second with its own lr."""
    return getattr(lib.optim, name)([{"params": params[:2]}, {"params": params[2:], "lr": 0.03}], **kwargs)


def _steps(lib, opt, params: list, steps, scheduler=None) -> None:
    for step in steps:
        opt.zero_grad()
        for i, p in enumerate(params):
            g = _gradient(p.detach().numpy(), step, i)
            p.grad = None if g is None else lib.tensor(g)
        opt.step()
        if scheduler is not None:
            scheduler.step()


def _assert_same_state_dict(ours: dict, theirs: dict) -> None:
    assert ours["state"].keys() == theirs["state"].keys()
    for index, their_entry in theirs["state"].items():
        assert list(ours["state"][index]) == list(their_entry), index
        for key, value in their_entry.items():
            mine = ours["state"][index][key]
            np.testing.assert_allclose(mine.numpy(), value.numpy(), rtol=1e-5, atol=1e-6, err_msg=f"{index}/{key}")
            assert str(mine.dtype).split(".")[-1] == str(value.dtype).split(".")[-1], f"{index}/{key}"
    for ours_group, theirs_group in zip(ours["param_groups"], theirs["param_groups"], strict=True):
        unsupported = {"foreach", "capturable", "differentiable", "fused", "decoupled_weight_decay"}
        shared = {k: v for k, v in theirs_group.items() if k not in unsupported}
        assert {k: ours_group.get(k, "<missing>") for k in shared} == shared


OPTIMIZERS = [
    ("RMSprop", dict()), ("RMSprop", dict(lr=0.02, alpha=0.9)), ("RMSprop", dict(lr=0.01, momentum=0.9)),
    ("RMSprop", dict(lr=0.01, centered=True)), ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, eps=1e-3)),
    ("RMSprop", dict(lr=0.01, weight_decay=0.1, maximize=True)),
    ("RMSprop", dict(lr=0.01, momentum=0.8, centered=True, weight_decay=0.05, maximize=True)),
    ("Adagrad", dict()), ("Adagrad", dict(lr=0.1, lr_decay=0.05)), ("Adagrad", dict(lr=0.1, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.5, eps=1e-4)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.01, weight_decay=0.01, initial_accumulator_value=0.1, maximize=True)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.5, nesterov=True, weight_decay=0.1, maximize=True)),
    ("Adam", dict(lr=0.01, amsgrad=True)), ("Adam", dict(lr=0.02, betas=(0.5, 0.9), amsgrad=True, maximize=True)),
    ("Adam", dict(lr=0.01, amsgrad=True, weight_decay=0.1)), ("AdamW", dict(lr=0.01, amsgrad=True)),
]


@pytest.mark.parametrize("name,kwargs", OPTIMIZERS, ids=str)
def test_optimizer_steps_and_state_dict_match_pytorch(name, kwargs):
    results = []
    for lib in LIBRARIES:
        params = _params(lib)
        opt = _optimizer(lib, name, kwargs, params)
        before = opt.state_dict()
        _steps(lib, opt, params, range(STEPS))
        results.append((params, before, opt.state_dict()))
    (ours, our_before, our_after), (theirs, their_before, their_after) = results
    for a, b in zip(ours, theirs):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-6, atol=1e-7)
    _assert_same_state_dict(our_before, their_before)  # Adagrad's state exists from the start
    _assert_same_state_dict(our_after, their_after)


@pytest.mark.parametrize("name,kwargs", OPTIMIZERS[::2], ids=str)
def test_optimizer_resumed_from_its_state_dict_continues_as_pytorchs(name, kwargs):
    finals = []
    for lib in LIBRARIES:
        params = _params(lib)
        opt = _optimizer(lib, name, kwargs, params)
        _steps(lib, opt, params, range(3))
        resumed = _optimizer(lib, name, dict(kwargs, lr=0.5), params)  # the loaded lr replaces 0.5
        resumed.load_state_dict(opt.state_dict())
        _steps(lib, resumed, params, range(3, STEPS))
        finals.append((params, resumed.state_dict()))
    for a, b in zip(finals[0][0], finals[1][0]):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-6, atol=1e-7)
    _assert_same_state_dict(finals[0][1], finals[1][1])


BAD_OPTIMIZERS = [
    ("RMSprop", dict(lr=-0.1)), ("RMSprop", dict(eps=-1.0)), ("RMSprop", dict(momentum=-0.5)),
    ("RMSprop", dict(weight_decay=-1)), ("RMSprop", dict(alpha=-0.9)),
    ("Adagrad", dict(lr=-1)), ("Adagrad", dict(lr_decay=-0.1)), ("Adagrad", dict(weight_decay=-0.01)),
    ("Adagrad", dict(initial_accumulator_value=-1.0)), ("Adagrad", dict(eps=-1e-3)),
    ("SGD", dict(lr=0.1, nesterov=True)), ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.1, nesterov=True)),
    ("SGD", dict(lr=-0.1, momentum=0.9, nesterov=True)), ("Adam", dict(lr=-1e-3, amsgrad=True)),
]


@pytest.mark.parametrize("name,kwargs", BAD_OPTIMIZERS, ids=str)
def test_bad_optimizer_arguments_raise_pytorchs_errors(name, kwargs):
    raised = []
    for lib in LIBRARIES:
        with pytest.raises(Exception) as info:
            getattr(lib.optim, name)([lib.ones(2, requires_grad=True)], **kwargs)
        raised.append(info.value)
    assert type(raised[0]) is type(raised[1]) and str(raised[0]) == str(raised[1])


# ---- schedulers ------------------------------------------------------------------------------------------

def _momenta(opt) -> list:
    return [g["betas"][0] if "betas" in g else g.get("momentum") for g in opt.param_groups]


def _plain(value):
    """A state_dict value with tensors and functions left out (they differ in type between the libraries)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value if isinstance(value, (int, float, str, bool, type(None))) else "<object>"


def _schedule(lib, optimizer: str, make, steps: int, resume_at: int | None = None):
    """(lr of every group, momentum of every group) after construction and each step, and the final state_dict;
    resume_at: at that step move to a fresh optimizer and scheduler restored from state dicts."""
    params = _params(lib)
    kwargs = dict(lr=0.1, momentum=0.9) if optimizer == "SGD" else dict(lr=0.1)
    opt = _optimizer(lib, optimizer, kwargs, params)
    scheduler = make(lib, opt)
    trail = [(scheduler.get_last_lr(), [g["lr"] for g in opt.param_groups], _momenta(opt))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for step in range(steps):
            if step == resume_at:
                fresh = _optimizer(lib, optimizer, kwargs, params)
                fresh.load_state_dict(opt.state_dict())
                resumed = make(lib, fresh)
                resumed.load_state_dict(scheduler.state_dict())
                opt, scheduler = fresh, resumed
            _steps(lib, opt, params, [step], scheduler)
            trail.append((scheduler.get_last_lr(), [g["lr"] for g in opt.param_groups], _momenta(opt)))
    return trail, scheduler.state_dict(), [p.detach().numpy() for p in params]


def _one_cycle(**kwargs):
    return lambda lib, o: lib.optim.lr_scheduler.OneCycleLR(o, **kwargs)


def _sequential(lib, o):
    s = lib.optim.lr_scheduler
    return s.SequentialLR(o, [s.LinearLR(o, start_factor=0.1, total_iters=3), s.ExponentialLR(o, 0.8),
                              s.CosineAnnealingWarmRestarts(o, T_0=3)], milestones=[4, 8])


SCHEDULERS = {
    "LinearLR": (lambda lib, o: lib.optim.lr_scheduler.LinearLR(o), 9),
    "LinearLR-down": (lambda lib, o: lib.optim.lr_scheduler.LinearLR(o, 1.0, 0.05, total_iters=7), 10),
    "SequentialLR": (_sequential, 14),
    "SequentialLR-cosine-step": (lambda lib, o: lib.optim.lr_scheduler.SequentialLR(
        o, [lib.optim.lr_scheduler.CosineAnnealingLR(o, T_max=4), lib.optim.lr_scheduler.StepLR(o, 2, 0.5),
            lib.optim.lr_scheduler.MultiStepLR(o, [1, 3], 0.3)], milestones=[3, 6]), 12),
    "CosineAnnealingWarmRestarts": (lambda lib, o: lib.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        o, T_0=3, eta_min=0.001), 10),
    "CosineAnnealingWarmRestarts-mult": (lambda lib, o: lib.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        o, T_0=2, T_mult=2), 16),
    "OneCycleLR": (_one_cycle(max_lr=1.0, total_steps=12), 12),
    "OneCycleLR-linear": (_one_cycle(max_lr=[1.0, 0.5], epochs=3, steps_per_epoch=4, anneal_strategy="linear",
                                     pct_start=0.25, div_factor=10.0, final_div_factor=100.0), 12),
    "OneCycleLR-three-phase": (_one_cycle(max_lr=0.8, total_steps=15, three_phase=True, base_momentum=0.7,
                                          max_momentum=[0.9, 0.99]), 15),
    "OneCycleLR-no-momentum": (_one_cycle(max_lr=0.5, total_steps=8, cycle_momentum=False), 8),
}


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_lrs_momenta_and_state_dict_match_pytorch(name, optimizer):
    make, steps = SCHEDULERS[name]
    (ours, our_state, our_params), (theirs, their_state, their_params) = (
        _schedule(lib, optimizer, make, steps) for lib in LIBRARIES)
    assert len(ours) == len(theirs)
    for step, (mine, other) in enumerate(zip(ours, theirs)):
        for a, b in zip(mine, other):
            assert a == pytest.approx(b, rel=1e-12, abs=1e-15), f"step {step}: {mine} vs {other}"
    assert _plain(our_state).keys() == _plain(their_state).keys()
    for key, value in _plain(their_state).items():
        assert _plain(our_state)[key] == value or np.allclose(
            np.array(_plain(our_state)[key], dtype=float), np.array(value, dtype=float), rtol=1e-12), key
    for a, b in zip(our_params, their_params):  # lr up to 1 and momentum: float32 roundings grow
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_resumed_from_state_dicts_continues_as_pytorchs(name):
    make, steps = SCHEDULERS[name]
    (ours, our_state, _), (theirs, their_state, _) = (
        _schedule(lib, "SGD", make, steps, resume_at=steps // 2) for lib in LIBRARIES)
    for mine, other in zip(ours, theirs):  # (LinearLR's constructor changes the loaded lr in both libraries)
        for a, b in zip(mine, other):
            assert a == pytest.approx(b, rel=1e-12)
    assert _plain(our_state).keys() == _plain(their_state).keys()


def _plateau(lib, metrics, **kwargs):
    params = _params(lib)
    opt = _optimizer(lib, "SGD", dict(lr=1.0), params)
    scheduler = lib.optim.lr_scheduler.ReduceLROnPlateau(opt, **kwargs)
    trail = []
    for metric in metrics:
        opt.step()
        scheduler.step(lib.tensor(metric) if isinstance(metric, float) and metric < 0.5 else metric)
        trail.append((scheduler.get_last_lr(), scheduler.num_bad_epochs, scheduler.cooldown_counter,
                      scheduler.best, scheduler.last_epoch))
    return trail, _plain(scheduler.state_dict())


LOSSES = [1.0, 0.9, 0.9, 0.9, 0.95, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.79999, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7, 0.7,
          0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]
PLATEAUS = [
    dict(patience=2), dict(patience=1, factor=0.5, cooldown=2), dict(patience=0, factor=0.2, min_lr=0.05),
    dict(patience=1, factor=0.5, min_lr=[0.1, 0.3], cooldown=1), dict(patience=2, threshold=0.1),
    dict(patience=1, threshold=0.05, threshold_mode="abs"), dict(patience=0, factor=0.5, eps=0.2),
    dict(mode="max", patience=1, factor=0.3), dict(mode="max", patience=1, threshold=0.01, threshold_mode="abs"),
]


@pytest.mark.parametrize("kwargs", PLATEAUS, ids=str)
def test_reduce_lr_on_plateau_matches_pytorch(kwargs):
    metrics = [-m for m in LOSSES] if kwargs.get("mode") == "max" else LOSSES
    (ours, our_state), (theirs, their_state) = (_plateau(lib, metrics, **kwargs) for lib in LIBRARIES)
    assert ours == theirs
    assert our_state == their_state


def test_reduce_lr_on_plateau_state_dict_round_trip_matches_pytorch():
    finals = []
    for lib in LIBRARIES:
        params = _params(lib)
        opt = _optimizer(lib, "SGD", dict(lr=1.0), params)
        first = lib.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1, cooldown=1, factor=0.5)
        for metric in LOSSES[:8]:
            first.step(metric)
        resumed = lib.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max")
        resumed.load_state_dict(first.state_dict())
        for metric in LOSSES[8:]:
            resumed.step(metric)
        finals.append((resumed.get_last_lr(), _plain(resumed.state_dict())))
    assert finals[0] == finals[1]


BAD_SCHEDULERS = [
    lambda s, o: s.LinearLR(o, start_factor=0), lambda s, o: s.LinearLR(o, start_factor=1.5),
    lambda s, o: s.LinearLR(o, end_factor=-0.1),
    lambda s, o: s.SequentialLR(o, [], milestones=[]),
    lambda s, o: s.SequentialLR(o, [s.LinearLR(o), s.StepLR(o, 2)], milestones=[]),
    lambda s, o: s.SequentialLR(o, [s.LinearLR(o), s.ReduceLROnPlateau(o)], milestones=[2]),
    lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=0), lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=2.5),
    lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=0),
    lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=2, eta_min="0"),
    lambda s, o: s.CosineAnnealingWarmRestarts(o, T_0=2).step(-1),
    lambda s, o: s.OneCycleLR(o, max_lr=1.0), lambda s, o: s.OneCycleLR(o, max_lr=1.0, total_steps=0),
    lambda s, o: s.OneCycleLR(o, max_lr=1.0, epochs=0, steps_per_epoch=3),
    lambda s, o: s.OneCycleLR(o, max_lr=1.0, epochs=2, steps_per_epoch=1.5),
    lambda s, o: s.OneCycleLR(o, max_lr=1.0, total_steps=5, pct_start=1.5),
    lambda s, o: s.OneCycleLR(o, max_lr=1.0, total_steps=5, pct_start=1),
    lambda s, o: s.OneCycleLR(o, max_lr=1.0, total_steps=5, anneal_strategy="exp"),
    lambda s, o: s.OneCycleLR(o, max_lr=[1.0, 2.0, 3.0], total_steps=5),
    lambda s, o: (lambda one: [one.step() for _ in range(3)])(s.OneCycleLR(o, max_lr=1.0, total_steps=2)),
    lambda s, o: s.ReduceLROnPlateau(o, factor=1.0), lambda s, o: s.ReduceLROnPlateau(o, mode="avg"),
    lambda s, o: s.ReduceLROnPlateau(o, threshold_mode="rel2"), lambda s, o: s.ReduceLROnPlateau(o, min_lr=[0.1]),
    lambda s, o: s.ReduceLROnPlateau(object()), lambda s, o: s.OneCycleLR(object(), max_lr=1.0, total_steps=2),
]


@pytest.mark.parametrize("make", BAD_SCHEDULERS)
def test_bad_scheduler_arguments_raise_pytorchs_errors(make):
    raised = []
    for lib in LIBRARIES:
        opt = _optimizer(lib, "SGD", dict(lr=0.1, momentum=0.9), _params(lib))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(Exception) as info:
                make(lib.optim.lr_scheduler, opt)
        raised.append(info.value)
    assert type(raised[0]) is type(raised[1])
    assert str(raised[0]).split(" at ")[0] == str(raised[1]).split(" at ")[0]


def test_one_cycle_without_momentum_in_the_optimizer_raises_as_pytorch():
    raised = []
    for lib in LIBRARIES:
        opt = lib.optim.Adagrad(_params(lib), lr=0.1)
        with pytest.raises(ValueError) as info:
            lib.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=4)
        raised.append(str(info.value))
    assert raised[0] == raised[1]


@pytest.mark.parametrize("epoch", [0, 2, 5])
def test_step_with_an_epoch_uses_the_closed_form_as_pytorch(epoch):
    lrs = []
    for lib in LIBRARIES:
        opt = _optimizer(lib, "SGD", dict(lr=0.1), _params(lib))
        s = lib.optim.lr_scheduler
        schedulers = [s.StepLR(opt, 2, 0.5), s.MultiStepLR(opt, [1, 3, 3]), s.ExponentialLR(opt, 0.9),
                      s.CosineAnnealingLR(opt, 4), s.LinearLR(opt, 0.2, total_iters=4),
                      s.CosineAnnealingWarmRestarts(opt, T_0=2, T_mult=2)]
        got = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for scheduler in schedulers:
                opt.step()
                scheduler.step(epoch)
                got.append(scheduler.get_last_lr())
            scheduler.step(epoch + 0.5)
            got.append(scheduler.get_last_lr())
        lrs.append(got)
        assert any("epoch parameter" in str(w.message) for w in caught) or lib is torch
    assert np.allclose(lrs[0], lrs[1], rtol=1e-12, atol=0)

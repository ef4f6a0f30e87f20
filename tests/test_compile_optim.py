"""Compiled == eager for the optimizers and schedulers of issue 15: each optimizer variant's training step, and
schedulers changing lr (and momentum or beta1) between calls without a retrace, per backend."""
import numpy as np
import pytest

import tracegrad as tg
from tracegrad import nn, optim
from tracegrad.optim import lr_scheduler

from test_compile_soundness import WARNINGS, _training, run_both

pytestmark = pytest.mark.usefixtures("backend")

OPTIMIZERS = {
    "SGD-nesterov": lambda p: optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "SGD-nesterov-decay-maximize": lambda p: optim.SGD(p, lr=0.05, momentum=0.5, nesterov=True, weight_decay=0.1,
                                                       maximize=True),
    "Adam-amsgrad": lambda p: optim.Adam(p, lr=0.05, amsgrad=True),
    "AdamW-amsgrad": lambda p: optim.AdamW(p, lr=0.05, amsgrad=True, weight_decay=0.1),
    "RMSprop": lambda p: optim.RMSprop(p, lr=0.01),
    "RMSprop-momentum": lambda p: optim.RMSprop(p, lr=0.01, momentum=0.9),
    "RMSprop-centered": lambda p: optim.RMSprop(p, lr=0.01, centered=True, alpha=0.9),
    "RMSprop-centered-momentum-decay-maximize": lambda p: optim.RMSprop(p, lr=0.01, centered=True, momentum=0.5,
                                                                        weight_decay=0.1, maximize=True),
    "Adagrad": lambda p: optim.Adagrad(p, lr=0.1),
    "Adagrad-decay": lambda p: optim.Adagrad(p, lr=0.1, lr_decay=0.1, weight_decay=0.05,
                                             initial_accumulator_value=0.2, eps=1e-6),
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_step_compiled_equals_eager(name):
    def make():
        model = nn.Linear(3, 2)
        return _training(model, OPTIMIZERS[name](model.parameters()))
    info = run_both(make, calls=7).cache_info()
    assert info.compiles == 1 and info.hits == 5, info  # eager, trace, then replays
    assert not WARNINGS


def _step_scheduler(env, i):
    if i > 0:
        env["sched"].step()
    env["lrs"].append(env["opts"][0].param_groups[0]["lr"])


SCHEDULERS = {
    "LinearLR": lambda o: lr_scheduler.LinearLR(o, start_factor=0.2, total_iters=4),
    "SequentialLR": lambda o: lr_scheduler.SequentialLR(
        o, [lr_scheduler.LinearLR(o, 0.5, total_iters=2), lr_scheduler.ExponentialLR(o, 0.7),
            lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2)], milestones=[3, 5]),
    "CosineAnnealingWarmRestarts": lambda o: lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=2, T_mult=2,
                                                                                      eta_min=0.001),
    "OneCycleLR": lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.2, total_steps=9),
    "OneCycleLR-three-phase-linear": lambda o: lr_scheduler.OneCycleLR(o, max_lr=0.2, total_steps=9,
                                                                        three_phase=True, anneal_strategy="linear"),
}
SCHEDULED = {"SGD-momentum": lambda p: optim.SGD(p, lr=0.1, momentum=0.9), "Adam": lambda p: optim.Adam(p, lr=0.1),
             "RMSprop-momentum": lambda p: optim.RMSprop(p, lr=0.1, momentum=0.8)}


@pytest.mark.parametrize("opt_name", list(SCHEDULED))
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_a_scheduler_changing_lr_between_calls_never_retraces(name, opt_name):
    lrs = []

    def make():
        model = nn.Linear(3, 2)
        opt = SCHEDULED[opt_name](model.parameters())
        lrs.clear()
        return dict(_training(model, opt), sched=SCHEDULERS[name](opt), lrs=lrs)
    calls = 9
    info = run_both(make, calls=calls, between=_step_scheduler).cache_info()  # compares lr and betas per call
    assert info.compiles == 1 and info.hits == calls - 2, info
    assert not WARNINGS
    assert len(set(lrs)) >= 4, lrs  # the compiled copy's lrs: one compile served them all


@pytest.mark.parametrize("opt_name", list(SCHEDULED))
def test_reduce_lr_on_plateau_fed_the_loss_a_compiled_step_returns(opt_name):
    trails, lrs, infos = [], [], []
    for compile_it in (False, True):
        tg.manual_seed(0)
        model = nn.Linear(3, 2)
        opt = SCHEDULED[opt_name](model.parameters())
        scheduler = lr_scheduler.ReduceLROnPlateau(opt, patience=1, factor=0.5, threshold=0.5, cooldown=1)
        x = tg.randn(4, 3)

        def step(x):
            opt.zero_grad()
            loss = model(x).pow(2).sum()
            loss.backward()
            opt.step()
            return loss
        run = tg.compile(step) if compile_it else step
        trail = []
        for _ in range(10):
            loss = run(x)
            scheduler.step(loss)
            trail.append([loss.item(), opt.param_groups[0]["lr"], scheduler.num_bad_epochs, scheduler.best]
                         + [p.detach().numpy().copy() for p in model.parameters()])
        trails.append(trail)
        lrs.append([entry[1] for entry in trail])
        infos.append(run.cache_info() if compile_it else None)
    for i, (eager, compiled) in enumerate(zip(*trails)):
        assert eager[1:3] == compiled[1:3], f"call {i}"
        np.testing.assert_allclose(compiled[0], eager[0], rtol=1e-5)
        assert compiled[3] == pytest.approx(eager[3], rel=1e-5)
        for e, c in zip(eager[4:], compiled[4:]):
            np.testing.assert_allclose(c, e, rtol=1e-4, atol=1e-5, err_msg=f"call {i}")
    assert len(set(lrs[0])) >= 3, lrs[0]  # the lr was reduced at least twice
    assert infos[1].compiles == 1 and infos[1].hits == 8, infos[1]

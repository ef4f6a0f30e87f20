"""A compiled step is never silently wrong: every Python value it reads is guarded, every .grad it
touches is modelled, state it creates is traced again, and what it stores is stored again.

Each test runs one program twice, eagerly and compiled (per backend), applies the same change between
calls to both copies, and compares parameters, .grad (None included), optimizer state and the returned
values after every call.
"""
import math
import warnings

import numpy as np
import pytest

import tracegrad as tg
from tracegrad import nn, optim
from tracegrad.compiler import CompileWarning

pytestmark = pytest.mark.usefixtures("backend")


def _state(env: dict) -> list:
    """Copies of everything a step may change: parameters, their .grad, optimizer state and hyperparameters."""
    out = []
    for t in env.get("tensors", ()):
        out += [t.detach().numpy().copy(), None if t.grad is None else t.grad.numpy().copy()]
    for opt in env.get("opts", ()):
        for group in opt.param_groups:
            out.append({k: v for k, v in group.items() if k != "params"})
            for p in group["params"]:
                out += [p.detach().numpy().copy(), None if p.grad is None else p.grad.numpy().copy()]
                out += [v.numpy().copy() for v in opt.state.get(p, {}).values()]
    for value in env.get("values", lambda: ())():
        out.append(value.detach().numpy().copy() if isinstance(value, tg.Tensor) else value)
    return out


def _assert_same(eager: list, compiled: list, call: int) -> None:
    assert len(eager) == len(compiled), f"call {call}: the state has another structure"
    for k, (e, c) in enumerate(zip(eager, compiled)):
        if isinstance(e, (np.ndarray, np.generic)) and isinstance(c, (np.ndarray, np.generic)):
            np.testing.assert_allclose(c, e, rtol=1e-4, atol=1e-5, err_msg=f"call {call}, state entry {k}")
            assert c.dtype == e.dtype, f"call {call}, state entry {k}: {c.dtype} vs {e.dtype}"
        else:
            assert type(e) is type(c) and (e is None or e == c), f"call {call}, state entry {k}: {e!r} vs {c!r}"


_MODE = {"compiled": False}
WARNINGS: list = []  # the CompileWarnings of the last run_both's compiled run


def compiled_in_compiled_run(fn):
    """fn compiled in the compiled copy of a program, as it is in the eager copy."""
    return tg.compile(fn) if _MODE["compiled"] else fn


def run_both(make, calls: int = 7, between=None, compile_step: bool = True) -> tg.compiler.CompiledFunction:
    """Run make()'s step eagerly and compiled for ``calls`` calls, ``between(env, i)`` before call i;
    compare after every call. Returns the compiled step (``compile_step=False``: the step compiles
    functions of its own with compiled_in_compiled_run)."""
    trails = []
    compiled = None
    for compile_it in (False, True):
        tg.manual_seed(0)
        _MODE["compiled"] = compile_it
        env = make()
        step = tg.compile(env["step"]) if compile_it and compile_step else env["step"]
        compiled = step if compile_it else compiled
        trail = []
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", CompileWarning)
            for i in range(calls):
                if between is not None:
                    between(env, i)
                result = step(*env["args"](i))
                trail.append(_state(env) + [r.detach().numpy().copy() if isinstance(r, tg.Tensor) else r
                                            for r in (result if type(result) is tuple else (result,))])
        trails.append(trail)
        WARNINGS[:] = [str(w.message) for w in caught if w.category is CompileWarning]
    for i, (eager, got) in enumerate(zip(*trails)):
        _assert_same(eager, got, i)
    return compiled


def _training(model, opt, scale_input: bool = True) -> dict:
    """The program of a plain training step of model with opt (a squared-output loss)."""
    x = tg.randn(4, 3)

    def step(x):
        opt.zero_grad()
        loss = model(x).pow(2).sum()
        loss.backward()
        opt.step()
        return loss
    return dict(step=step, args=lambda i: (x * (i + 1) if scale_input else x,), opts=[opt], model=model)


def _linear_sgd():
    model = nn.Linear(3, 2)
    return _training(model, optim.SGD(model.parameters(), lr=0.1))


def _replays(compiled) -> None:
    assert compiled.cache_info().hits >= 2, compiled.cache_info()


# ---- .grad --------------------------------------------------------------------------------------------

def test_leaf_arguments_made_each_call_get_their_grad_on_every_replay():
    def make():
        w = tg.ones(3, requires_grad=True)
        made = []

        def step(x, w):
            (x * w * x).sum().backward()

        def args(i):
            made.append(tg.tensor([1.0, 2.0, float(i)], requires_grad=True))
            return made[-1], w
        return dict(step=step, args=args, tensors=[w], values=lambda: [made[-1].grad])
    _replays(run_both(make))


def test_a_grad_set_outside_the_step_is_accumulated_into():
    def between(env, i):
        model = env["model"]
        if i == 3:
            model.weight.grad = tg.ones(2, 3)  # set by hand
        if i == 5:
            model(tg.ones(1, 3)).sum().backward()  # an eager backward between calls
    def make():
        env = _linear_sgd()
        model, opt = env["model"], env["opts"][0]

        def step(x):  # no zero_grad: gradients accumulate into whatever .grad holds
            model(x).pow(2).sum().backward()
            opt.step()
        env["step"] = step
        return env
    _replays(run_both(make, calls=8, between=between))


def test_micro_steps_accumulate_across_calls_with_zero_grad_set_to_none_between_cycles():
    def between(env, i):
        if i % 3 == 0:
            env["opts"][0].step()
            env["opts"][0].zero_grad(set_to_none=True)

    def make():
        env = _linear_sgd()
        model = env["model"]
        env["step"] = lambda x: model(x).pow(2).sum().backward()
        return env
    _replays(run_both(make, calls=12, between=between))


def test_a_grad_written_by_another_compiled_step_is_read_by_this_one():
    def make():
        w = tg.ones(3, requires_grad=True)
        other = compiled_in_compiled_run(lambda x: (x * w * w).sum().backward())

        def step(x):
            with tg.no_grad():
                w.sub_(0.1 * w.grad)
            w.grad = None
            return w.sum()
        return dict(step=step, args=lambda i: (tg.ones(3) * (i + 1),), tensors=[w], other=other)
    _replays(run_both(make, calls=9, between=lambda env, i: env["other"](tg.ones(3) * (1 + i % 2))))


# ---- optimizer and scheduler state ------------------------------------------------------------------

UPDATE = {"on": False}


@pytest.mark.parametrize("make_opt", [lambda p: optim.Adam(p, lr=0.01), lambda p: optim.SGD(p, lr=0.1, momentum=0.9)])
def test_optimizer_state_created_while_tracing_is_not_frozen(make_opt):
    def between(env, i):
        UPDATE["on"] = i >= 1  # the first call (eager) does not reach opt.step(): the trace creates the state

    def make():
        model = nn.Linear(3, 2)
        opt = make_opt(model.parameters())
        x = tg.randn(4, 3)

        def step(x):
            opt.zero_grad()
            loss = model(x).pow(2).sum()
            loss.backward()
            if UPDATE["on"]:
                opt.step()
            return loss
        return dict(step=step, args=lambda i: (x,), opts=[opt])
    _replays(run_both(make, calls=8, between=between))


def test_a_scheduler_stepped_inside_the_step_changes_the_lr_of_every_call():
    def make():
        model = nn.Linear(3, 2)
        opt = optim.SGD(model.parameters(), lr=0.1)
        sched = optim.lr_scheduler.StepLR(opt, 1, 0.5)
        x = tg.randn(4, 3)

        def step(x):
            opt.zero_grad()
            loss = model(x).sum()
            loss.backward()
            opt.step()
            sched.step()
            return loss
        return dict(step=step, args=lambda i: (x,), opts=[opt], values=lambda: [sched.last_epoch])
    run_both(make, calls=6)
    assert any("changed Python values it reads" in w and "self._step_count" in w for w in WARNINGS), WARNINGS


# ---- Python values the step reads ---------------------------------------------------------------------

SCALE = 1.0


class _Config:
    scale = 1.0


class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.alpha = 1.0
        self.power = 2

    def forward(self, x):
        return (self.lin(x) * self.alpha).pow(self.power)


def _reading_step(read):
    def make():
        w = tg.ones(3, requires_grad=True)
        cfg, table, box = _Config(), {"s": 1.0, "p": 2}, [1.0]

        def step(x):
            loss = read(x * w, cfg, table, box).sum()
            loss.backward()
            with tg.no_grad():
                w.sub_(0.01 * w.grad)
                w.grad = None
            return loss
        return dict(step=step, args=lambda i: (tg.ones(3),), tensors=[w], cfg=cfg, table=table, box=box)
    return make


def _change(env, i):
    global SCALE
    SCALE = 1.0 + i % 3
    env["cfg"].scale = 1.0 + i % 2
    env["table"]["s"] = 0.5 * (1 + i % 3)
    env["table"]["p"] = 2 + i % 2
    env["box"][0] = 2.0 - i % 2


@pytest.mark.parametrize("read", [
    lambda h, cfg, table, box: h * SCALE,                # a global
    lambda h, cfg, table, box: h * box[0],               # a list entry in a closure
    lambda h, cfg, table, box: h * cfg.scale,            # an attribute of an object
    lambda h, cfg, table, box: h * table["s"],           # a dict entry
    lambda h, cfg, table, box: h.pow(table["p"]),        # an int exponent
], ids=["global", "closure-list", "attribute", "dict", "int-exponent"])
def test_python_values_the_step_reads_are_guarded(read):
    _replays(run_both(_reading_step(read), calls=9, between=_change))


def test_a_closure_float_rebound_between_calls_is_guarded():
    def make():
        scale = 1.0
        w = tg.ones(3, requires_grad=True)

        def step(x):
            loss = (x * w * scale).sum()
            loss.backward()
            with tg.no_grad():
                w.sub_(0.1 * w.grad)
                w.grad = None
            return loss

        def set_scale(value):
            nonlocal scale
            scale = value
        return dict(step=step, args=lambda i: (tg.ones(3),), tensors=[w], set_scale=set_scale)
    run_both(make, calls=8, between=lambda env, i: env["set_scale"](1.0 + i % 3))


def test_module_attributes_used_in_forward_are_guarded():
    def between(env, i):
        env["model"].alpha = 1.0 + i % 3
        env["model"].power = 1 + i % 2

    def make():
        model = _Scaled()
        return _training(model, optim.SGD(model.parameters(), lr=0.01), scale_input=False)
    run_both(make, calls=9, between=between)


def _hyper_change(change):
    def between(env, i):
        if i == 4:
            change(env)
    return between


@pytest.mark.parametrize("change", [
    lambda env: env["opts"][0].param_groups[0].__setitem__("betas", (0.5, 0.6)),
    lambda env: env["opts"][0].param_groups[0].__setitem__("weight_decay", 0.1),
    lambda env: env["opts"][0].param_groups[0].__setitem__("maximize", True),
], ids=["betas", "weight-decay", "maximize"])
def test_adam_hyperparameters_replaced_between_calls(change):
    def make():
        model = nn.Linear(3, 2)
        return _training(model, optim.Adam(model.parameters(), lr=0.01), scale_input=False)
    _replays(run_both(make, calls=8, between=_hyper_change(change)))


@pytest.mark.parametrize("change", [
    lambda env: env["opts"][0].param_groups[0].__setitem__("momentum", 0.9),
    lambda env: env["opts"][0].param_groups[0].update(momentum=0.9, nesterov=True),
    lambda env: env["opts"][0].param_groups[0].__setitem__("maximize", True),
], ids=["momentum-on", "nesterov", "maximize"])
def test_sgd_switches_changed_between_calls(change):
    _replays(run_both(_linear_sgd, calls=8, between=_hyper_change(change)))


def test_a_replaced_parameter_is_the_one_trained():
    def replace(env):
        model, opt = env["model"], env["opts"][0]
        model.weight = nn.Parameter(tg.ones(2, 3))
        opt.param_groups[0]["params"][0] = model.weight
    _replays(run_both(_linear_sgd, calls=8, between=_hyper_change(replace)))


def test_a_replaced_submodule_and_a_new_param_group_are_used():
    def make():
        model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
        return _training(model, optim.SGD(model.parameters(), lr=0.1), scale_input=False)

    def between(env, i):
        model, opt = env["model"], env["opts"][0]
        if i == 3:
            model[1] = nn.ReLU()
        if i == 5:
            model[2] = nn.Linear(4, 2)
            opt.add_param_group({"params": model[2].parameters(), "lr": 0.5})
    _replays(run_both(make, calls=9, between=between))


def test_requires_grad_toggled_and_train_eval_switched_between_calls():
    def between(env, i):
        env["model"].weight.requires_grad_(i % 4 < 2)
        env["model"].train(i % 3 != 0)
    run_both(_linear_sgd, calls=12, between=between)


# ---- what the step stores ---------------------------------------------------------------------------

def test_a_tensor_the_step_stores_on_a_module_is_the_new_one_after_every_replay():
    def make():
        env = _linear_sgd()
        model, opt = env["model"], env["opts"][0]

        def step(x):
            opt.zero_grad()
            out = model(x)
            model.last_output = out.detach()  # kept for inspection, like an attention map
            loss = out.pow(2).sum()
            loss.backward()
            opt.step()
            return loss
        env.update(step=step, values=lambda: [model.last_output])
        return env
    _replays(run_both(make))


def test_two_compiled_steps_sharing_parameters_leave_each_others_grad_alone():
    def make():
        shared = nn.Linear(3, 3)
        head = nn.Linear(3, 1)
        shared_opt = optim.Adam(shared.parameters(), lr=0.01)
        head_opt = optim.Adam(head.parameters(), lr=0.01)
        x = tg.randn(5, 3)
        first = compiled_in_compiled_run(lambda x: _update(shared_opt, head(shared(x)).sum()))
        second = compiled_in_compiled_run(lambda x: _update(head_opt, (head(shared(x)) - 1).pow(2).sum()))
        seen = []

        def step(x):  # the two compiled steps alternate; shared.weight.grad is read in between (eagerly)
            first(x)
            seen.append(shared.weight.grad.numpy().copy())
            second(x)
            return None
        return dict(step=step, args=lambda i: (x * (1 + i % 2),), opts=[shared_opt, head_opt],
                    values=lambda: [seen[-1].sum()])
    run_both(make, calls=8, compile_step=False)


def _update(opt, loss):
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss


# ---- saying why a step does not compile ----------------------------------------------------------------

def _lr_step(use):
    """A program whose step takes a float lr that changes at every call and uses it as ``use`` says."""
    def make():
        model = nn.Linear(3, 2)
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = tg.randn(4, 3)
        seen = {}

        def step(x, lr):
            for group in opt.param_groups:
                group["lr"] = lr  # the optimizer reads it at every call
            loss = model(x).pow(2).sum() * use(lr)
            opt.zero_grad()
            loss.backward()
            with tg.no_grad():
                model.bias.sub_(model.bias.grad, alpha=lr / 4)
            opt.step()
            seen["lr"] = lr * 2 - 0.01
            return loss, lr * 3, -lr
        return dict(step=step, args=lambda i: (x, 0.1 * 0.9 ** i), opts=[opt], model=model,
                    values=lambda: [seen.get("lr")])
    return make


@pytest.mark.parametrize("use", [lambda lr: 1.0 + lr, lambda lr: (lr + lr) * 0.5 - 2 * lr + 1, lambda lr: abs(-lr),
                                 lambda lr: tg.tensor(2.0) * lr, lambda lr: 1 - tg.tensor([0.5]).sum() / (lr * 4)],
                         ids=["add", "arithmetic", "abs", "tensor", "tensor_division"])
def test_a_float_argument_that_changes_every_call_is_a_graph_input(use):
    compiled = run_both(_lr_step(use), calls=12)
    info = compiled.cache_info()
    assert (info.compiles, info.hits) == (1, 9), info  # two eager calls show it changes, one trace, then replays
    assert not WARNINGS


def test_a_float_keyword_argument_is_a_graph_input_too():
    trails = []
    for compile_it in (False, True):
        w = tg.ones(3, requires_grad=True)

        def step(x, *, lr):
            loss = (x * w).sum()
            loss.backward()
            with tg.no_grad():
                w.sub_(lr * w.grad)
                w.grad = None
            return loss, lr

        fn = tg.compile(step) if compile_it else step
        trail = []
        for i in range(8):
            loss, lr = fn(tg.ones(3), lr=0.1 / (i + 1))
            trail.append((float(loss), lr, w.detach().numpy().copy()))
        trails.append(trail)
    assert fn.cache_info().hits == 5
    for (l1, lr1, w1), (l2, lr2, w2) in zip(*trails):
        assert l1 == pytest.approx(l2) and type(lr2) is float and lr1 == lr2 and np.allclose(w1, w2)


@pytest.mark.parametrize("use, how", [
    (lambda lr: 0.5 if lr > 0.05 else 1.0, "comparison"), (lambda lr: math.exp(-lr), "float()"),
    (lambda lr: float(f"{lr:.3f}"), "formatting"), (lambda lr: 2.0 if type(lr) is float else 1.0, "type()"),
    (lambda lr: round(lr, 2), "round()"), (lambda lr: 1 / lr, "division by it"), (lambda lr: lr ** 2, "**"),
    (lambda lr: tg.tensor(lr), "conversion to an array"), (lambda lr: {lr: 1.0}[lr], "hashing")],
    ids=["comparison", "math", "format", "type", "round", "rdiv", "pow", "tensor", "hash"])
def test_a_float_argument_whose_value_the_step_reads_is_keyed_by_value(use, how):
    compiled = run_both(_lr_step(use), calls=7)
    assert compiled.cache_info().hits == 0  # each value is a new signature again
    assert len(WARNINGS) == 1 and f"argument 'lr' has had 4 different values and the step reads its value ({how}" \
        in WARNINGS[0], WARNINGS
    assert "test_compile_soundness.py" in WARNINGS[0]  # the line that reads it


def test_type_checks_see_a_float_and_other_uses_of_type_keep_it_a_graph_input():
    def use(lr):
        assert isinstance(lr, float) and not isinstance(lr, int) and isinstance(use, type(use))
        return 1.0 + lr if type(use).__name__ == "function" else 0.0  # type() of something else: no read of lr

    compiled = run_both(_lr_step(use), calls=8)
    assert compiled.cache_info().hits == 5 and not WARNINGS
    assert "type" not in globals()  # the module's own type() again after the trace


def test_a_float_argument_read_only_for_some_values_is_still_equal_to_eager():
    # lr > 0.05 is read (a comparison) only on the branch where it is reached: every variant is checked
    def make():
        env = _lr_step(lambda lr: 1.0)()
        step = env["step"]
        env["step"] = lambda x, lr: step(x, lr if lr > 0.06 else lr * 0.5)
        return env
    run_both(make, calls=9)


def test_a_float_argument_stored_inside_a_tuple_is_keyed_by_value():
    def make():
        env = _lr_step(lambda lr: 1.0)()
        step, table = env["step"], {}

        def stores(x, lr):
            table["pair"] = (lr, 2)  # a replay would store the same tuple again
            return step(x, lr)
        env["step"], env["values"] = stores, lambda: [table.get("pair")]
        return env
    compiled = run_both(make, calls=7)
    assert compiled.cache_info().hits == 0
    assert "stored in a tuple in table['pair']" in WARNINGS[0], WARNINGS


def test_an_int_argument_that_changes_every_call_is_named_in_a_warning_and_by_explain():
    w = tg.ones(3, requires_grad=True)

    def step(x, n):
        loss = (x * w).sum() * n
        loss.backward()
        with tg.no_grad():
            w.sub_(0.1 * w.grad)
            w.grad = None
        return loss

    compiled = tg.compile(step)
    with pytest.warns(CompileWarning, match=r"step's argument 'n' has had 4 different values.*pass it as a tensor"):
        for i in range(5):
            compiled(tg.ones(3), i + 1)
    assert "argument 'n' has had 4 different values" in str(tg.explain(compiled, tg.ones(3), 5))
    for i in range(4):  # as a tensor it is a graph input: one trace, then replays
        compiled(tg.ones(3), tg.tensor(float(i + 1)))
    assert compiled.cache_info().hits == 2


def test_an_exception_from_code_that_needs_an_exact_float_says_the_argument_was_traced():
    import json

    def step(x, lr):
        json.dumps(lr)  # a C-level type check: the stand-in is not a float
        return (x * lr).sum()

    compiled = tg.compile(step)
    for i in range(2):
        compiled(tg.ones(3), 0.1 * (i + 1))
    with pytest.raises(TypeError) as raised:
        compiled(tg.ones(3), 0.3)
    assert "traced lr of step as graph inputs" in "".join(getattr(raised.value, "__notes__", []))
    for i in range(4):  # from then on, plain floats again: no error
        assert float(compiled(tg.ones(3), 0.4 + i)) == pytest.approx(3 * (0.4 + i))


def test_a_tensor_with_history_from_outside_the_step_runs_eagerly_with_a_warning():
    lin = nn.Linear(3, 3)
    w = tg.ones(3, requires_grad=True)

    def step(h):
        loss = (h * w).sum()
        loss.backward()
        return loss

    compiled = tg.compile(step)
    compiled(lin(tg.ones(2, 3)))
    with pytest.warns(CompileWarning, match="autograd history from outside the step"):
        compiled(lin(tg.ones(2, 3)))
    lin.zero_grad()
    compiled(lin(tg.ones(2, 3)))
    assert lin.weight.grad is not None  # eager: the backward reached the layer outside


# ---- tensors sharing memory ----------------------------------------------------------------------------

def test_the_same_tensor_passed_twice_is_not_replayed_as_two():
    def make():
        a, b = tg.ones(3), tg.ones(3)

        def step(x, y):
            x.add_(1.0)
            return (y * 2).sum()
        return dict(step=step, args=lambda i: (a, a) if i % 2 else (a, b), tensors=[a, b])
    _replays(run_both(make, calls=9))


@pytest.mark.parametrize("through", [lambda p: p.detach(), lambda p: p.data], ids=["detach", "data"])
def test_an_in_place_write_through_detach_or_data_changes_the_parameter(through):
    def make():
        p = tg.ones(3, requires_grad=True)

        def step(x):
            through(p).add_(x)
            return (p * 1).sum()
        return dict(step=step, args=lambda i: (tg.ones(3) * i,), tensors=[p])
    _replays(run_both(make))


_GENERATOR = np.random.default_rng(0)


def _draw_random():
    import random
    return random.random()


def _draw_imported():
    from random import random
    return random()


@pytest.mark.parametrize("draw", [_draw_random, _draw_imported, lambda: np.random.rand(), lambda: _GENERATOR.normal()],
                         ids=["random.random", "imported", "np.random.rand", "generator.normal"])
def test_random_numbers_drawn_in_python_make_the_step_run_eagerly(draw):
    w = tg.ones(3, requires_grad=True)

    def step(x):
        loss = (x * w * draw()).sum()
        loss.backward()
        return loss

    compiled = tg.compile(step)
    compiled(tg.ones(3))
    with pytest.warns(CompileWarning, match=r"runs eagerly: random numbers drawn in Python \([\w.]+\(\)\) at "
                                            r"test_compile_soundness.py:\d+"):
        compiled(tg.ones(3))
    assert compiled.cache_info().fallbacks == 1


# ---- found by the differential test ----------------------------------------------------------------------

class _ClassScale:
    scale = 1.0  # read through instances that have no attribute of their own


def test_a_class_attribute_read_through_an_instance_is_guarded_on_the_class_and_the_instance():
    def between(env, i):
        if i == 3:
            _ClassScale.scale = 2.0
        if i == 5:
            env["cfg"].scale = 3.0  # an instance attribute shadowing the class's

    def make():
        _ClassScale.scale = 1.0
        cfg = _ClassScale()
        w = tg.ones(3, requires_grad=True)

        def step(x):
            loss = (x * w * cfg.scale).sum()
            loss.backward()
            with tg.no_grad():
                w.sub_(0.1 * w.grad)
                w.grad = None
            return loss
        return dict(step=step, args=lambda i: (tg.ones(3),), tensors=[w], cfg=cfg)
    try:
        run_both(make, calls=8, between=between)
    finally:
        _ClassScale.scale = 1.0


def test_a_forward_replaced_on_a_module_instance_is_used():
    def between(env, i):
        if i == 3:
            layer = env["model"][0]
            layer.forward = lambda x: nn.functional.linear(x, layer.weight, layer.bias) * 0.5

    def make():
        model = nn.Sequential(nn.Linear(3, 2))
        return _training(model, optim.SGD(model.parameters(), lr=0.1))
    _replays(run_both(make, calls=7, between=between))


def test_a_hook_registered_on_a_parameter_between_calls_runs():
    handles = []

    def between(env, i):
        if i == 3:
            handles.append(env["model"].weight.register_hook(lambda g: g * 0.5))
        if i == 5:
            handles.pop().remove()
    _replays(run_both(_linear_sgd, calls=8, between=between))


def test_a_value_the_step_stores_before_its_optimizer_reads_it_is_stored_by_every_replay():
    def between(env, i):
        if i == 3:
            env["opts"][0].param_groups[0]["lr"] = 0.025  # a scheduler, say: the step overwrites it anyway

    def make():
        env = _linear_sgd()
        model, opt = env["model"], env["opts"][0]

        def step(x, lr):
            opt.zero_grad()
            model(x).pow(2).sum().backward()
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
        env.update(step=step, args=lambda i: (tg.ones(4, 3), 0.05))
        return env
    _replays(run_both(make, calls=6, between=between))


def test_an_attribute_with_a_class_default_stored_by_the_step_is_stored_again():
    class Stats:
        last = None

    def between(env, i):
        if i == 3:
            env["box"]["stats"] = Stats()  # a new epoch: no attribute of its own yet

    def make():
        env = _linear_sgd()
        model, opt = env["model"], env["opts"][0]
        box = {"stats": Stats()}

        def step(x):
            opt.zero_grad()
            loss = model(x).pow(2).sum()
            loss.backward()
            opt.step()
            box["stats"].last = loss.detach()
            return loss
        env.update(step=step, box=box, values=lambda: [box["stats"].last])
        return env
    _replays(run_both(make, calls=7, between=between))


def test_a_global_dict_rebound_to_another_with_the_same_keys_is_read_anew():
    def between(env, i):
        global _TABLE
        if i == 3:
            _TABLE = {"scale": 0.5}

    def make():
        global _TABLE
        _TABLE = {"scale": 1.0}
        w = tg.ones(3, requires_grad=True)

        def step(x):
            loss = (x * w * _TABLE["scale"]).sum()
            loss.backward()
            with tg.no_grad():
                w.sub_(0.1 * w.grad)
                w.grad = None
            return loss
        return dict(step=step, args=lambda i: (tg.ones(3),), tensors=[w])
    _replays(run_both(make, calls=7, between=between))


class _WithActivations(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.acts = ["tanh"]  # a list the forward indexes: changed in place between calls

    def forward(self, x):
        h = self.lin(x)
        return h.relu() if self.acts[0] == "relu" else h.tanh()


def test_a_list_held_by_a_module_and_changed_in_place_is_read_anew():
    def between(env, i):
        if i == 3:
            env["model"].acts[0] = "relu"

    def make():
        model = _WithActivations()
        return _training(model, optim.SGD(model.parameters(), lr=0.1))
    _replays(run_both(make, calls=7, between=between))


def test_tensors_the_step_makes_follow_the_default_dtype_of_each_call():
    def between(env, i):
        tg.set_default_dtype(tg.float64 if i >= 3 else tg.float32)

    def make():
        tg.set_default_dtype(tg.float32)
        w = tg.ones(3, requires_grad=True)
        x = tg.ones(3)

        def step(x):
            b = tg.zeros(3)  # made in the default dtype
            loss = ((x + b) * w).sum()
            loss.backward()
            with tg.no_grad():
                w.sub_(0.1 * w.grad)
                w.grad = None
            return loss + b.sum()
        return dict(step=step, args=lambda i: (x,), tensors=[w], values=lambda: [])
    try:
        compiled = run_both(make, calls=7, between=between)
    finally:
        tg.set_default_dtype(tg.float32)
    assert compiled(tg.ones(3)).dtype == tg.float32


# ---- constants ----------------------------------------------------------------------------------------

def test_graphs_that_differ_only_in_a_constant_array_get_their_own_kernel():
    """A kernel inlines an array constant of equal elements: two graphs equal but for its value must not
    share a kernel (they did: the graph's hash left array constants' values out)."""
    x = tg.ones(4)

    def make():
        def step(c):
            return x * tg.full((4,), c) + tg.tensor([c, 0.0, 1.0, 2.0])
        return dict(step=step, args=lambda i: (2.0 + (i // 3),), values=lambda: ())
    _replays(run_both(make, calls=9))

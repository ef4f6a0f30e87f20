"""The example scenarios compiled: N compiled steps leave parameters, optimizer state and .grad equal
to N eager steps (reference interpreter backend)."""
import warnings

import numpy as np
import pytest

import tracegrad as torch
from tracegrad import nn, optim
from tracegrad.compiler import CompileWarning
from tracegrad.utils.checkpoint import checkpoint

pytestmark = pytest.mark.usefixtures("backend")  # every test runs per compiling backend

RNG = np.random.default_rng(0)
BATCHES = [(torch.tensor(RNG.standard_normal((6, 4)).astype(np.float32)) * (1 if i % 3 else -1),
            torch.tensor(RNG.integers(0, 3, 6))) for i in range(12)]


def mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 3))


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * x * g


def freeze():
    model = mlp()
    model[0].requires_grad_(False)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step, [model], [opt]


def conditional_detach():
    model, opt = mlp(), None
    opt = optim.SGD(model.parameters(), lr=0.1)

    def step(x, y):
        opt.zero_grad()
        h = model[1](model[0](x))
        if h.mean() > 0:  # data-dependent: one variant per outcome
            h = h.detach()
        loss = nn.functional.cross_entropy(model[2](h), y)
        loss.backward()
        opt.step()
        return loss
    return step, [model], [opt]


def accumulate():
    model = mlp()
    opt = optim.Adam(model.parameters(), lr=1e-2)

    def step(x, y):
        opt.zero_grad()
        for part in range(2):
            sl = slice(3 * part, 3 * part + 3)
            (nn.functional.cross_entropy(model(x[sl]), y[sl]) / 2).backward()
        opt.step()
        return model[0].weight.grad.norm()
    return step, [model], [opt]


def loss_threshold():
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.5)

    def step(x, y):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        if loss.item() > 1.05:  # a guard on the exact value: falls back to eager, still right
            loss.backward()
            opt.step()
        return loss
    return step, [model], [opt]


def actor_critic():
    actor, critic = nn.Sequential(nn.Linear(4, 2), nn.Tanh()), nn.Linear(6, 1)
    opt_a, opt_c = optim.Adam(actor.parameters(), lr=1e-2), optim.Adam(critic.parameters(), lr=1e-2)

    def step(x, y):
        action = actor(x)
        q = critic(torch.cat([x, action.detach()], 1))
        critic_loss = ((q - y.float().unsqueeze(1)) ** 2).mean()
        opt_c.zero_grad()
        critic_loss.backward()
        opt_c.step()
        actor_loss = -critic(torch.cat([x, actor(x)], 1)).mean()
        opt_a.zero_grad()
        actor_loss.backward()
        opt_a.step()
        return critic_loss, actor_loss
    return step, [actor, critic], [opt_a, opt_c]


def subset_custom_checkpoint():
    model = mlp()
    opt = optim.SGD(list(model[2].parameters()), lr=0.1)

    def step(x, y):
        opt.zero_grad()
        model.zero_grad()
        h = checkpoint(lambda t: model[1](model[0](t)), x, use_reentrant=False)
        loss = nn.functional.cross_entropy(model[2](Square.apply(h)), y)
        loss.backward()
        opt.step()
        return loss
    return step, [model], [opt]


def higher_order():
    model = nn.Linear(4, 1)
    opt = optim.SGD(model.parameters(), lr=0.05)

    def step(x, y):
        opt.zero_grad()
        x = x.clone().requires_grad_()
        out = model(x).tanh().sum()
        (gx,) = torch.autograd.grad(out, x, create_graph=True)
        loss = out / 10 + (gx ** 2).mean()  # a gradient penalty
        loss.backward()
        opt.step()
        return loss
    return step, [model], [opt]


SCENARIOS = [freeze, conditional_detach, accumulate, loss_threshold, actor_critic, subset_custom_checkpoint,
             higher_order]


def _state(modules, optimizers):
    arrays = []
    for m in modules:
        for p in m.parameters():
            arrays.append(p.detach().numpy())
            arrays.append(None if p.grad is None else p.grad.numpy())
    for o in optimizers:
        for s in o.state.values():
            arrays.extend(v.numpy() for v in s.values())
    return arrays


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.__name__)
def test_compiled_steps_equal_eager_steps(scenario):
    torch.manual_seed(0)
    eager_step, eager_modules, eager_opts = scenario()
    torch.manual_seed(0)
    step, modules, opts = scenario()
    compiled = torch.compile(step)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CompileWarning)
        for x, y in BATCHES:
            expected, got = eager_step(x, y), compiled(x, y)
            for e, g in zip(expected if isinstance(expected, tuple) else (expected,),
                            got if isinstance(got, tuple) else (got,)):
                np.testing.assert_allclose(g.detach().numpy(), e.detach().numpy(), rtol=1e-5, atol=1e-6)
    for e, g in zip(_state(eager_modules, eager_opts), _state(modules, opts)):
        if e is None or g is None:
            assert e is None and g is None
        else:
            np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)
    info = compiled.cache_info()
    if scenario is loss_threshold:
        assert info.fallbacks == 1
    else:
        assert info.fallbacks == 0 and info.hits >= 4, info


def test_frozen_layer_has_no_adjoint_nodes_for_its_weights():
    step, (model,), _ = freeze()
    report = torch.explain(step, *BATCHES[0])
    graph = report.graphs[0]
    frozen = {v.id for v in graph.inputs if v.name.startswith("model.0.")}
    assert frozen  # the frozen weights are inputs of the forward...
    assert not [n for n in graph.nodes if n.adjoint and n.prim == "matmul" and
                any(o.id in frozen for o in n.operands) and n.out.type.shape == (8, 4)]
    assert report.pruned >= 2  # ...but the forward nodes before them get no adjoint

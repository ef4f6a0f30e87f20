"""Automatic dynamic dimensions: one Numba kernel generic in the batch size serves every later size,
and only where it runs exactly the code a literal-size kernel would (compared with eager after every call)."""
import numpy as np
import pytest

import tracegrad as tg
from tracegrad import nn
from tracegrad.backends.numba_cpu import generic


def _program(forward=None, seed: int = 0):
    """A small classifier trained with Adam; ``forward(model, x)`` replaces the plain forward."""
    tg.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 3))
    opt = tg.optim.Adam(model.parameters(), lr=1e-2)

    def step(x, y):
        opt.zero_grad()
        out = model(x) if forward is None else forward(model, x)
        loss = nn.functional.cross_entropy(out, y)
        loss.backward()
        opt.step()
        return loss
    step.opt = opt
    return step, model


def _run_both(sizes, forward=None, calls: int = 3):
    """Train eagerly and compiled (numba) over the batch sizes; compare after every call. Returns the
    compiled step."""
    rng = np.random.default_rng(0)
    eager, eager_model = _program(forward)
    compiled_fn, model = _program(forward)
    compiled = tg.compile(compiled_fn, backend="numba")
    for size in sizes:
        x = rng.standard_normal((size, 6), dtype=np.float32)
        y = rng.integers(0, 3, size)
        for call in range(calls):
            expected = eager(tg.tensor(x), tg.tensor(y))
            got = compiled(tg.tensor(x), tg.tensor(y))
            np.testing.assert_allclose(got.detach().numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-6,
                                       err_msg=f"batch {size}, call {call}")
            for p, q in zip(model.parameters(), eager_model.parameters()):
                np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5, atol=1e-6,
                                           err_msg=f"batch {size}, call {call}")
                assert (p.grad is None) == (q.grad is None), f"batch {size}, call {call}: .grad presence"
                if q.grad is not None:
                    np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-6,
                                               err_msg=f"batch {size}, call {call}: .grad")
                state, eager_state = compiled_fn.opt.state.get(p, {}), eager.opt.state.get(q, {})
                assert state.keys() == eager_state.keys(), f"batch {size}, call {call}: optimizer state"
                for name in eager_state:
                    np.testing.assert_allclose(_array(state[name]), _array(eager_state[name]), rtol=1e-5, atol=1e-6,
                                               err_msg=f"batch {size}, call {call}: {name}")
    return compiled


def _array(value) -> np.ndarray:
    """An optimizer state entry (a tensor or a Python number) as an array."""
    return value.detach().numpy() if isinstance(value, tg.Tensor) else np.asarray(value)


def _modules(compiled) -> set:
    """The distinct kernel modules the step's variants run."""
    return {id(v.execute.loaded) for variants in compiled._variants.values() for v in variants}


def _sources(compiled) -> list:
    return [v.kernel_source for variants in compiled._variants.values() for v in variants]


def test_forty_batch_sizes_share_one_generic_kernel():
    compiled = _run_both(range(5, 45))
    assert compiled.cache_info().entries == 40
    # the first size's literal kernel, then the generic one (only that, if an earlier test of this
    # process made the same step's generic kernel already)
    assert len(_modules(compiled)) <= 2
    generic_source = next(s for s in _sources(compiled) if "a size that varies" in s)
    assert "d0 = v" in generic_source and "range(d0)" in generic_source


def test_a_step_whose_python_code_branches_on_the_batch_size_gets_the_kernel_of_its_branch():
    """Past 20 rows the forward doubles its output: sizes on each side of the branch share a generic kernel
    of their own side, never the other side's (at most 2 kernels a side for 7 sizes)."""
    def forward(model, x):
        out = model(x)
        return out * 2.0 if x.shape[0] > 20 else out

    compiled = _run_both([10, 12, 22, 14, 24, 26, 16], forward=forward)
    sides = [{id(v.execute.loaded) for key, variants in compiled._variants.items() for v in variants
              if (key.leaves[0][1][0] > 20) == large} for large in (False, True)]
    assert not sides[0] & sides[1] and all(1 <= len(side) <= 2 for side in sides)


def test_sizes_of_one_run_a_literal_kernel():
    compiled = _run_both([4, 5, 1, 6])
    one = [v for key, variants in compiled._variants.items() for v in variants if key.leaves[0][1][0] == 1]
    assert one and "a size that varies" not in one[0].kernel_source


def test_generic_sources_only_replace_integers_that_vary_in_pairs():
    template = "ARG_IDS = (0,)\n@njit\ndef step(v0, o0):\n    for i in range({n}):\n        o0[i] = v0[i] * {k}\nENTRY = step\n"

    class FakeGraph:
        def __init__(self, n):
            self.inputs = [type("V", (), {"id": 0, "type": type("T", (), {"shape": (n,)})})()]
            self.outputs = [self.inputs[0]]
    a, b = template.format(n=8, k=3), template.format(n=9, k=3)
    found = generic.Generic.of(a, FakeGraph(8), b, FakeGraph(9))
    assert found is not None and "for i in range(d0):" in found.source and "d0 = v0.shape[0]" in found.source
    assert found.fits(template.format(n=30, k=3), FakeGraph(30))
    assert not found.fits(template.format(n=30, k=4), FakeGraph(30))  # another number elsewhere
    assert not found.fits(template.format(n=1, k=3), FakeGraph(1))  # a size of 1 may change the code
    # a number that varies but is no parameter's size: no generic source
    assert generic.Generic.of(template.format(n=8, k=3), FakeGraph(8), template.format(n=9, k=5), FakeGraph(9)) is None


@pytest.mark.parametrize("size", [3])
def test_a_derived_size_in_the_graph_keeps_literal_kernels(size):
    """A reshape to twice the batch rows: a size no input has, so each batch gets its own kernel."""
    def forward(model, x):
        halves = x.reshape(x.shape[0] * 2, 3)
        return model(halves.reshape(x.shape[0], 6))
    compiled = _run_both([size, size + 1, size + 2], forward=forward)
    assert compiled.cache_info().entries == 3


def test_a_family_whose_first_graph_is_collected_while_the_next_is_compiled(monkeypatch):
    """The first graph of a family is held weakly: a collection while the next size's source is generated
    must not lose it halfway (it did: an AttributeError from a step of the differential test)."""
    import gc

    from tracegrad import backends
    from tracegrad.backends import numba_cpu
    from tracegrad.compiler.compile import make_ir
    from tracegrad.ir.passes import optimize

    def graph(n: int):
        def f(x):
            return (x * 3.0).tanh().sum(1)
        g = make_ir(f)(tg.ones(n, 7))
        optimize(g)
        return g
    held = [graph(9)]
    backends.get("numba").compile(held[0])
    real = numba_cpu._generate

    def generate_then_collect(g, parallel):
        source = real(g, parallel)
        held.clear()  # the first graph's last holder lets go, and a collection runs
        gc.collect()
        return source
    monkeypatch.setattr(numba_cpu, "_generate", generate_then_collect)
    kernel = backends.get("numba").compile(graph(11))
    np.testing.assert_allclose(kernel([np.full((11, 7), 0.1, np.float32)])[0], np.tanh(np.float32(0.3)) * 7, rtol=1e-5)

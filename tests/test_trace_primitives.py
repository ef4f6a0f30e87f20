"""Every primitive, traced and run by the IR interpreter, gives the eager result (values and gradients)."""
import numpy as np
import pytest

import tracegrad as tg
from tracegrad.ir import run, verify
from tracegrad.primitives import REGISTRY

from primitive_cases import CASES, inputs


def test_every_primitive_has_a_case():
    assert set(REGISTRY) <= set(CASES), f"add trace cases for: {sorted(set(REGISTRY) - set(CASES))}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_traced_graph_matches_eager(name):
    def step(a, b, v):
        out = CASES[name](a, b, v)
        loss = (out.float() * out.float()).sum() if out.dtype.is_floating_point else out.float().sum()
        loss.backward()
        return out, a.grad, b.grad, v.grad

    eager = step(*inputs())
    traced_inputs = inputs()
    if name == "index":  # a boolean mask has a data-dependent shape: tracing must refuse, not guess
        with pytest.raises(Exception, match="data-dependent"):
            tg.make_ir(step)(*traced_inputs)
        return
    graph = tg.make_ir(step)(*traced_inputs)
    verify(graph)
    arrays = [x.detach().numpy().copy() for x in inputs()]
    by_name = dict(zip("abv", arrays))  # inputs are named after step's parameters
    got = run(graph, [v.const if v.role == "constant" else by_name[v.name] for v in graph.inputs])
    for e, g in zip([t for t in eager if t is not None], got):
        np.testing.assert_allclose(g, e.detach().numpy(), rtol=1e-6, atol=1e-6)

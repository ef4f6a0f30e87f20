"""Cases of the CUDA code generator, run under Numba's CUDA simulator (``tests/cudasim.py``, ``test_cuda_lowering.py``).

Each builds a traced step's optimized graph, runs ``numba_cuda.program.build(graph)`` on device copies of its
inputs and compares every output and every write-back with the interpreter (``tracegrad.ir.run``) on host
copies. Numba and the CUDA backend are imported inside the cases only: pytest imports this module to learn
their names, in a process where the simulator is off.
"""
import inspect

import numpy as np

import tracegrad as tg
from tracegrad.ir import run
from tracegrad.ir.passes import optimize

from primitive_cases import CASES as PRIMITIVES, inputs

BATCHES = 3
TRACEABLE = sorted(set(PRIMITIVES) - {"index"})  # boolean-mask indexing has a data-dependent shape: never traced
SCALAR_ROLES = ("hyper", "number", "constant")


def _graph_and_arrays(step, tensors):
    graph = tg.make_ir(step)(*tensors)
    optimize(graph)
    by_name = {name: t.detach().numpy().copy() for name, t in zip(inspect.signature(step).parameters, tensors)}
    arrays = [v.const if v.role == "constant" else by_name[v.name] for v in graph.inputs]
    return graph, arrays


def _device(graph, arrays):
    """The program's inputs: device copies, except host 0-d arrays for hyper/number inputs and constants."""
    from numba import cuda
    return [np.asarray(a).copy() if v.role in SCALAR_ROLES else cuda.to_device(np.ascontiguousarray(a))
            for v, a in zip(graph.inputs, arrays)]


def _host(graph, arrays):
    return [np.asarray(a).copy() if v.role in SCALAR_ROLES else a.copy_to_host() for v, a in zip(graph.inputs, arrays)]


def _compare(graph, arrays, rtol=2e-5, atol=2e-6):
    """Run the graph on the interpreter and as a CUDA program; compare outputs and write-backs. The program."""
    from tracegrad.backends.numba_cuda.program import build
    expected_inputs = [np.asarray(a).copy() for a in arrays]
    expected = run(graph, expected_inputs)
    program = build(graph)
    device = _device(graph, arrays)
    got = program(device)
    assert len(got) == len(expected)
    for g, e, v in zip(got, expected, graph.outputs):
        g = g.copy_to_host()
        assert g.dtype == e.dtype and g.shape == e.shape, f"%{v.id}: {g.dtype}{g.shape} vs {e.dtype}{e.shape}"
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=f"output %{v.id}")
    for v, g, e in zip(graph.inputs, _host(graph, device), expected_inputs):
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=f"input %{v.id} {v.name} after write-backs")
    return program, got, device


def _batched_step(names):
    def step(a, b, v):
        outs = [PRIMITIVES[name](a, b, v) for name in names]
        loss = sum((o.float() * o.float()).sum() if o.dtype.is_floating_point else o.float().sum() for o in outs)
        loss.backward()
        return outs, a.grad, b.grad, v.grad
    return step


def _primitives(batch):
    def case():
        graph, arrays = _graph_and_arrays(_batched_step(TRACEABLE[batch::BATCHES]), inputs())
        _compare(graph, arrays)
    return case


CASES = {f"primitives_{batch}": _primitives(batch) for batch in range(BATCHES)}

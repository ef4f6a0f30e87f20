"""Cases of the CUDA code generator, run under Numba's CUDA simulator (``tests/cudasim.py``, ``test_cuda_lowering.py``).

Each builds a traced step's optimized graph, runs ``numba_cuda.program.build(graph)`` on device copies of its
inputs and compares every output and every write-back with the interpreter (``tracegrad.ir.run``) on host
copies. Numba and the CUDA backend are imported inside the cases only: pytest imports this module to learn
their names, in a process where the simulator is off.
"""

import numpy as np

import tracegrad as tg
from tracegrad.ir import run
from tracegrad.ir.passes import optimize

from primitive_cases import inputs
from test_numba_lowering import TRACEABLE, _batched_step, _graph_and_arrays

BATCHES = 3
SCALAR_ROLES = ("hyper", "number", "constant")


def _device(graph, arrays):
    """The program's inputs: device copies, except host 0-d arrays for hyper/number inputs and constants."""
    from numba import cuda
    return [np.asarray(a).copy() if v.role in SCALAR_ROLES else cuda.to_device(np.ascontiguousarray(a))
            for v, a in zip(graph.inputs, arrays)]


def _host(graph, arrays):
    return [np.asarray(a).copy() if v.role in SCALAR_ROLES else a.copy_to_host() for v, a in zip(graph.inputs, arrays)]


def _assert_identical(got, expected, what):
    """Equal values, NaN where NaN, and the same sign of every zero (assert_array_equal takes -0.0 for 0.0)."""
    np.testing.assert_array_equal(got, expected, err_msg=what)
    np.testing.assert_array_equal(np.signbit(got), np.signbit(expected), err_msg=f"{what}: the sign of a zero")


def _compare(graph, arrays, rtol=2e-5, atol=2e-6):
    """Run the graph on the interpreter and as a CUDA program; compare outputs and write-backs (identical ones
    when rtol and atol are 0). The program."""
    from tracegrad.backends.numba_cuda.program import build
    def check(g, e, what):
        if rtol == atol == 0:
            _assert_identical(g, e, what)
        else:
            np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=what)
    expected_inputs = [np.asarray(a).copy() for a in arrays]
    expected = run(graph, expected_inputs)
    program = build(graph)
    device = _device(graph, arrays)
    got = program(device)
    assert len(got) == len(expected)
    for g, e, v in zip(got, expected, graph.outputs):
        g = g.copy_to_host()
        assert g.dtype == e.dtype and g.shape == e.shape, f"%{v.id}: {g.dtype}{g.shape} vs {e.dtype}{e.shape}"
        check(g, e, f"output %{v.id}")
    for v, g, e in zip(graph.inputs, _host(graph, device), expected_inputs):
        check(g, e, f"input %{v.id} {v.name} after write-backs")
    return program, got, device


def _primitives(batch):
    def case():
        graph, arrays = _graph_and_arrays(_batched_step(TRACEABLE[batch::BATCHES]), inputs())
        _compare(graph, arrays)
    return case


CASES = {f"primitives_{batch}": _primitives(batch) for batch in range(BATCHES)}


def _edge():
    """Broadcasting of size-1 dims and 0-d values, keepdim and negative-dim reductions, slices, strided matmuls."""
    from test_numba_lowering import _edge_step, _edge_tensors
    for dtype, tol in ((np.float32, 2e-5), (np.float64, 1e-12)):
        graph, arrays = _graph_and_arrays(_edge_step, _edge_tensors(dtype))
        _compare(graph, arrays, rtol=tol, atol=tol)


def _integers():
    def step(i, j):
        return (i * j + 3) // 2, (i > j).sum(), i.sum(0), (i % 3 == 0).any(), i.argmax(-1), i.amin(), i.T.reshape(20)
    rng = np.random.default_rng(0)
    i, j = (tg.tensor(rng.integers(-5, 9, (4, 5))) for _ in range(2))
    graph, arrays = _graph_and_arrays(step, [i, j])
    _compare(graph, arrays, rtol=0, atol=0)


def _special_values(dtype):
    """Rounding, sign, extrema, remainder, floor division and powers of +-0, +-inf, NaN, halves, magnitudes
    at and past the last fractional value and integral ones past 2**63, identical to NumPy's (signs of zeros
    too). The simulator's ``math`` raises on inf and NaN where the device does not, so exp, log and the like
    are left out; a power's exponent is an array, not a scalar 0.5, which NumPy computes as a square root
    (np.power(-0.0, 0.5) is -0.0 there, 0.0 in C's pow)."""
    def case():
        big = float(2 ** np.finfo(dtype).nmant)  # every value from here on is an integer
        x = np.array([0.0, -0.0, 0.4, -0.4, 0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 0.49999997, -0.49999997,
                      0.49999999999999994, big - 0.5, -(big - 0.5), big - 1.5, big, big + 2, -big - 2, 2.0 ** 63,
                      -(2.0 ** 64), 1e30, -1e30, np.inf, -np.inf, np.nan, 7.0, -7.0], np.float64).astype(dtype)
        y = np.roll(x[::-1], 3)  # pairs of zeros of either sign, NaNs and infs on both sides

        def step(x, y, base, power):
            rounded = [x.floor(), x.ceil(), x.trunc(), x.round(), x.sign(), x.abs(), x.relu()]
            pairs = [tg.maximum(x, y), tg.minimum(x, y), tg.maximum(y, x), tg.minimum(y, x), x % y, x // y]
            rows = x.reshape(4, 7)
            return rounded + pairs + [x.isnan(), x.isinf(), rows.amax(1), rows.amin(0), (y + 1).amax(),
                                      base[:, None] ** power]  # every base to every power
        # exact powers only: the simulator's scalar powf and NumPy's may differ in the last place elsewhere
        base = np.array([0.0, -0.0, 1.0, -1.0, 4.0, -4.0, 0.25, np.inf, -np.inf, np.nan], dtype)
        power = np.array([0.0, -0.0, 1.0, -1.0, 2.0, 3.0, -3.0, 0.5, -0.5, np.inf, -np.inf, np.nan], dtype)
        graph, arrays = _graph_and_arrays(step, [tg.tensor(x), tg.tensor(y), tg.tensor(base), tg.tensor(power)])
        _compare(graph, arrays, rtol=0, atol=0)
    return case


def _integer_rounding():
    """Rounding an integer tensor gives it back, the smallest int64 too."""
    def step(i):
        return i.floor(), i.ceil(), i.trunc(), i.round(), i.sign()
    i = np.array([0, 1, -1, 7, -7, np.iinfo(np.int64).max, np.iinfo(np.int64).min], np.int64)
    graph, arrays = _graph_and_arrays(step, [tg.tensor(i)])
    _compare(graph, arrays, rtol=0, atol=0)


def _batched_matmuls():
    def step(a, b, c, d):
        out = a @ b + (c @ d).sum(0)
        (out * out.tanh()).sum().backward()
        return out, a.grad, b.grad, c.grad, d.grad
    rng = np.random.default_rng(6)
    shapes = ((3, 2, 4), (4, 5), (2, 2, 3), (1, 3, 5))
    tensors = [tg.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in shapes]
    graph, arrays = _graph_and_arrays(step, tensors)
    _compare(graph, arrays)


def _training(make_optimizer):
    """A 2-layer MLP step with an optimizer: parameters and optimizer state are written back; its
    hyperparameters are hyper inputs (host 0-d arrays, passed to kernels by value)."""
    def case():
        rng = np.random.default_rng(0)
        params = [tg.tensor(rng.standard_normal(s).astype(np.float32) * 0.5, requires_grad=True)
                  for s in ((3, 5), (5,), (5, 2), (2,))]
        w1, b1, w2, b2 = params
        opt = make_optimizer(params)

        def step(x, y):
            opt.zero_grad()
            loss = (((x @ w1 + b1).relu() @ w2 + b2 - y) ** 2).mean()
            loss.backward()
            opt.step()
            return loss
        x, y = (tg.tensor(rng.standard_normal(s).astype(np.float32)) for s in ((4, 3), (4, 2)))
        step(x, y)  # the optimizer makes its state
        names = {"x": x, "y": y, "w1": w1, "b1": b1, "w2": w2, "b2": b2}
        before = {n: t.detach().numpy().copy() for n, t in names.items()}
        state = {f"opt.state.{k}.{key}": value.detach().numpy().copy() for k, p in enumerate(params)
                 for key, value in opt.state[p].items() if hasattr(value, "detach")}
        graph = tg.make_ir(step)(x, y)
        optimize(graph)
        assert graph.writebacks and any(v.role == "state" for v in graph.inputs)
        group = dict(opt.param_groups[0])
        if "betas" in group:
            group["beta1"], group["beta2"] = group["betas"]
        hyper = {name: np.array(value, np.float64) for name, value in group.items() if isinstance(value, (int, float))}
        assert any(v.role == "hyper" for v in graph.inputs)
        arrays = [v.const if v.role == "constant" else hyper[v.name] if v.role == "hyper" else
                  before.get(v.name, state.get(v.name)) for v in graph.inputs]
        assert all(a is not None for a in arrays), [v.name for v, a in zip(graph.inputs, arrays) if a is None]
        _compare(graph, arrays, rtol=1e-4, atol=1e-6)
    return case


def _guard_failure():
    """A failed guard raises GuardFailure as the CPU backend does, and nothing is written back."""
    from tracegrad.ir import GuardFailure

    def step(w, x):
        w.mul_(2)
        if (x.sum() > 0).item():
            return w * x
        return w - x
    graph, arrays = _graph_and_arrays(step, [tg.ones(2, 3), tg.ones(2, 3)])
    assert graph.guards and graph.writebacks
    from tracegrad.backends.numba_cuda.program import build
    program = build(graph)
    names = [v.name for v in graph.inputs]
    arrays[names.index("x")] = -np.ones((2, 3), np.float32)
    before = arrays[names.index("w")].copy()
    device = _device(graph, arrays)
    try:
        program(device)
    except GuardFailure as failure:
        assert "traced with True, now False" in str(failure), failure
    else:
        raise AssertionError("no GuardFailure")
    assert np.array_equal(device[names.index("w")].copy_to_host(), before)


def _index_out_of_range():
    """An out-of-range gather index raises the eager error, before the write-back of w."""
    def step(w, idx):
        w.mul_(2)
        return w.gather(1, idx)
    graph, arrays = _graph_and_arrays(step, [tg.ones(2, 3), tg.tensor([[0], [2]])])
    from tracegrad.backends.numba_cuda.program import build
    program = build(graph)
    names = [v.name for v in graph.inputs]
    before = arrays[names.index("w")].copy()
    for bad, message in (([[0], [3]], "index 3 is out of bounds for dimension 1 with size 3"),
                         ([[-1], [0]], "index -1 is out of bounds for dimension 1 with size 3")):
        arrays[names.index("idx")] = np.array(bad)
        device = _device(graph, arrays)
        try:
            program(device)
        except RuntimeError as error:
            assert str(error) == message, error
        else:
            raise AssertionError("no error")
        assert np.array_equal(device[names.index("w")].copy_to_host(), before)
    arrays[names.index("idx")] = np.array([[0], [2]])
    _compare(graph, arrays)


def _full_reduction():
    """Full reductions (sum, amax, prod, any) combine threads in shared memory and blocks in a fold kernel,
    over more elements than one launch has threads; a column sum in the same loop stays per thread."""
    from tracegrad.backends.numba_cuda import runtime
    from tracegrad.backends.numba_cuda.program import build, report

    def step(x):
        y = x * 1.5 - 0.25
        return y.sum(), y.amax(), (y * 0.01 + 1).prod(), (y > 5).any(), y.sum(0), y.amin()
    rng = np.random.default_rng(4)
    graph, arrays = _graph_and_arrays(step, [tg.tensor(rng.standard_normal((9, 7)).astype(np.float32))])
    source = report(graph).source
    assert "cuda.shared.array(THREADS" in source and "cuda.syncthreads()" in source
    assert 63 > runtime.THREADS * runtime.MAX_BLOCKS  # grid-stride: each thread handles several elements
    program, _, _ = _compare(graph, arrays)
    assert program.source == source and build(graph).source == source  # the second build: the disk cache


def _launches_and_report():
    """``launches`` counts every kernel launch; ``report`` counts kernels and loop nests without compiling."""
    from tracegrad.backends.numba_cuda.program import report
    graph, arrays = _graph_and_arrays(lambda a, b: ((a @ b.t()).relu().sum(1), (a * b).exp()), [tg.ones(3, 4)] * 2)
    program, _, _ = _compare(graph, arrays)
    per_call = program.launches
    assert per_call >= 3
    program(_device(graph, arrays))
    assert program.launches == 2 * per_call
    counts = report(graph)
    assert counts.kernels == counts.source.count("@cuda.jit") and 1 <= counts.loop_nests < counts.kernels + 1


def _unsupported():
    """Nodes no CUDA lowering knows raise backends.Unsupported naming the primitive (and, for an elementwise
    one spelled for Numba only, how to spell it for CUDA)."""
    from tracegrad.backends import Unsupported
    from tracegrad.backends.numba_cuda.program import build
    from tracegrad.ir.graph import Graph, Type
    from tracegrad.primitives import REGISTRY
    from tracegrad.primitives.base import Primitive, elementwise_shape, same_dtype
    declared = [Primitive("cuda_case_product", "linalg", lambda x: x, shape_rule=elementwise_shape,
                          dtype_rule=same_dtype),
                Primitive("cuda_case_double", "elementwise", lambda x: x * 2, shape_rule=elementwise_shape,
                          dtype_rule=same_dtype, lowerings={"numba": "{0} * {T}(2)"})]
    try:
        for prim, hint in zip(declared, ("", "lowerings={'cuda'")):
            graph = Graph()
            x = graph.add_input(Type.parse("f32[3]"), "data", "x")
            graph.outputs.append(graph.add_node(prim.name, [x], {}, Type.parse("f32[3]")))
            try:
                build(graph)
            except Unsupported as error:
                assert f"no CUDA lowering for primitive {prim.name!r}" in str(error) and hint in str(error), error
            else:
                raise AssertionError("no Unsupported")
    finally:
        for prim in declared:
            del REGISTRY[prim.name]


def _row_stack_shim():
    """numba-cuda 0.30.4 overloads np.row_stack, which NumPy 2.5 removed: the runtime puts it back first (checked
    in a fresh interpreter whose NumPy lacks it, as 2.5's does)."""
    import subprocess
    import sys
    script = ("import numpy as np\nif hasattr(np, 'row_stack'):\n    del np.row_stack\n"
              "from tracegrad.backends.numba_cuda import runtime\nassert np.row_stack is np.vstack")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _sort_ties():
    """argsort by ranks: ties keep their order (descending too), NaN sorts as the largest value."""
    import tracegrad as tg
    from test_numba_lowering import _graph_and_arrays
    x = np.array([[1.0, np.nan, 3.0, 1.0, -np.inf, 3.0], [2.0, 2.0, 2.0, 0.0, np.nan, np.nan]], np.float32)
    graph, arrays = _graph_and_arrays(lambda a: (a.argsort(1), a.argsort(1, descending=True), a.argsort(0),
                                                 a.sort(0, descending=True).values), [tg.tensor(x)])
    _compare(graph, arrays, rtol=0, atol=0)


CASES.update({"edge": _edge, "sort_ties": _sort_ties, "integers": _integers, "batched_matmuls": _batched_matmuls,
              "special_values_float32": _special_values(np.float32), "special_values_float64": _special_values(np.float64),
              "integer_rounding": _integer_rounding,
              "sgd_momentum": _training(lambda p: tg.optim.SGD(p, lr=0.1, momentum=0.9)),
              "adam": _training(lambda p: tg.optim.Adam(p, lr=0.01)),
              "guard_failure": _guard_failure, "index_out_of_range": _index_out_of_range,
              "full_reduction": _full_reduction, "launches_and_report": _launches_and_report,
              "unsupported": _unsupported, "row_stack_shim": _row_stack_shim})

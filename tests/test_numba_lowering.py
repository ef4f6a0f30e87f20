"""Every primitive's Numba lowering gives what the reference interpreter gives, forward and backward.

Cases are batched into a few graphs (each batch one kernel) because every kernel costs a Numba
compile; each case still gets its own output compared.
"""
import inspect
import re
import warnings

import numpy as np
import pytest

import tracegrad as tg
from tracegrad.backends import Unsupported
from tracegrad.backends.numba_cpu import compile_graph
from tracegrad.ir import run
from tracegrad.ir.passes import optimize

from primitive_cases import CASES, inputs

BATCHES = 4
TRACEABLE = sorted(set(CASES) - {"index"})  # boolean-mask indexing has a data-dependent shape: never traced


def _graph_and_arrays(step, tensors):
    graph = tg.make_ir(step)(*tensors)
    optimize(graph)
    by_name = {name: t.detach().numpy().copy() for name, t in zip(inspect.signature(step).parameters, tensors)}
    arrays = [v.const if v.role == "constant" else by_name[v.name] for v in graph.inputs]
    return graph, arrays


def _compare(graph, arrays, rtol=2e-6, atol=2e-6):
    expected = run(graph, [a.copy() for a in arrays])
    kernel = compile_graph(graph)
    got = kernel([a.copy() for a in arrays])
    assert len(got) == len(expected)
    for g, e, v in zip(got, expected, graph.outputs):
        assert g.dtype == e.dtype and g.shape == e.shape, f"%{v.id}: {g.dtype}{g.shape} vs {e.dtype}{e.shape}"
        np.testing.assert_allclose(g, e, rtol=rtol, atol=atol, err_msg=f"output %{v.id}")
    return kernel


def _batched_step(names):
    def step(a, b, v):
        outs = [CASES[name](a, b, v) for name in names]
        loss = sum((o.float() * o.float()).sum() if o.dtype.is_floating_point else o.float().sum() for o in outs)
        loss.backward()
        return outs, a.grad, b.grad, v.grad
    return step


@pytest.mark.parametrize("batch", range(BATCHES))
def test_lowered_primitives_match_the_interpreter(batch):
    names = TRACEABLE[batch::BATCHES]
    graph, arrays = _graph_and_arrays(_batched_step(names), inputs())
    _compare(graph, arrays)


def test_every_primitive_has_a_lowering_and_the_batches_reach_it():
    from tracegrad.backends.numba_cpu.lowerings import LOWERINGS
    from tracegrad.backends.numba_cpu.scalars import in_loop
    from tracegrad.primitives import REGISTRY
    lowered = {name for name, p in REGISTRY.items() if in_loop(p)} | set(LOWERINGS)
    assert lowered == set(REGISTRY), f"no lowering for: {sorted(set(REGISTRY) - lowered)}"
    reached = {n.prim for batch in range(BATCHES)
               for n in _graph_and_arrays(_batched_step(TRACEABLE[batch::BATCHES]), inputs())[0].nodes}
    assert set(REGISTRY) - reached == {"copy"}  # clone() then a new op: the passes drop the copy


def _edge_step(x, row, col, s, t):
    """Broadcasting of size-1 dims and 0-d values, keepdim and negative-dim reductions, strided views."""
    y = x * row + col * s                                  # (3,4) * (1,4) + (3,1) * ()
    z = y.t().contiguous() * 2 + t.t()                      # a transposed view read in a loop
    r1 = y.sum(-1, keepdim=True) * y                        # innermost reduction, broadcast back
    r2 = y.amax(0, keepdim=True) + y.amin(-2)               # outer-axis reductions
    r3 = y.mean() * s + y.prod(-1).sum()                    # full reductions to 0-d
    r4 = y[:, 1:3].sum(0) + y[::2].sum()                    # sliced views
    r5 = (y.reshape(2, 6).permute(1, 0) @ y.reshape(6, 2).t()).sum(-1)  # strided matmul operands
    loss = z.sum() + r1.sum() + r2.sum() + r3 + r4.sum() + r5.sum()
    loss.backward()
    return z, r1, r2, r3, r4, r5, x.grad, row.grad, col.grad, s.grad


def _edge_tensors(dtype=np.float32):
    rng = np.random.default_rng(3)
    shapes = [(3, 4), (1, 4), (3, 1), (), (3, 4)]
    return [tg.tensor(rng.uniform(0.5, 1.5, s).astype(dtype), requires_grad=i < 4) for i, s in enumerate(shapes)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_broadcasting_keepdim_negative_dims_and_views_match_the_interpreter(dtype):
    graph, arrays = _graph_and_arrays(_edge_step, _edge_tensors(dtype))
    tol = 2e-6 if dtype == np.float32 else 1e-12
    kernel = _compare(graph, arrays, rtol=tol, atol=tol)
    assert all(o.dtype == dtype for o in kernel(arrays))


def test_non_contiguous_and_size_zero_inputs():
    graph, arrays = _graph_and_arrays(_edge_step, _edge_tensors())
    kernel = compile_graph(graph)
    expected = run(graph, [a.copy() for a in arrays])
    # the same values, but the (3,4) inputs passed as transposed views of (4,3) buffers
    strided = [np.ascontiguousarray(a.T).T if a.ndim == 2 and a.shape == (3, 4) else a.copy() for a in arrays]
    assert not strided[[v.name for v in graph.inputs].index("x")].flags.c_contiguous
    for g, e in zip(kernel(strided), expected):
        np.testing.assert_allclose(g, e, rtol=2e-6, atol=2e-6)

    def empty_step(e, w):
        return (e * w).sum(0), (e * 2).amax(-1, keepdim=True) if e.shape[-1] else e.sum(-1)
    e, w = tg.ones(0, 3), tg.ones(3)
    graph, arrays = _graph_and_arrays(empty_step, [e, w])
    _compare(graph, arrays)


def test_float32_graphs_keep_float32_constants():
    def step(x):
        return (x * 0.5 + 1.25).relu().sigmoid() / 3
    graph, arrays = _graph_and_arrays(step, [tg.ones(8)])
    kernel = _compare(graph, arrays)
    body = kernel.source.split("def ", 1)[1]
    assert "float64" not in body
    literals = re.findall(r"(?<![\w.])\d+\.\d*(?:e-?\d+)?", body)
    wrapped = re.findall(r"np\.float32\((\d+\.\d*(?:e-?\d+)?)\)", body)
    assert literals and sorted(literals) == sorted(wrapped), "every float literal is a typed float32 constant"


def test_integer_and_boolean_graphs():
    def step(i, j):
        return (i * j + 3) // 2, (i > j).sum(), i.sum(0), (i % 3 == 0).any(), i.argmax(-1)
    rng = np.random.default_rng(0)
    i, j = (tg.tensor(rng.integers(-5, 9, (4, 5))) for _ in range(2))
    graph, arrays = _graph_and_arrays(step, [i, j])
    _compare(graph, arrays, rtol=0, atol=0)


@pytest.mark.parametrize("bad", [[[0], [7]], [[-1], [0]]])
def test_out_of_range_gather_index_raises_the_eager_error_instead_of_reading_memory(bad):
    def step(x, idx):
        return x.gather(1, idx)
    graph, arrays = _graph_and_arrays(step, [tg.ones(2, 3), tg.tensor([[0], [2]])])
    kernel = compile_graph(graph)
    arrays[[v.name for v in graph.inputs].index("idx")] = np.array(bad)
    message = f"^index {bad[0][0] or bad[1][0]} is out of bounds for dimension 1 with size 3$"
    with pytest.raises(RuntimeError, match=message):
        kernel(arrays)
    with pytest.raises(RuntimeError, match=message):  # what the eager op raises (and PyTorch)
        tg.ones(2, 3).gather(1, tg.tensor(bad))


def test_a_kernel_that_raises_on_an_index_has_written_nothing_back():
    def step(w, idx):
        w.mul_(2)  # a write-back whose loop comes before the gather's index check
        return w.gather(1, idx)
    graph, arrays = _graph_and_arrays(step, [tg.ones(2, 3), tg.tensor([[0], [2]])])
    kernel = compile_graph(graph)
    names = [v.name for v in graph.inputs]
    arrays[names.index("idx")] = np.array([[0], [3]])
    before = arrays[names.index("w")].copy()
    with pytest.raises(RuntimeError, match="index 3 is out of bounds"):
        kernel(arrays)
    assert np.array_equal(arrays[names.index("w")], before)


def test_a_graph_with_an_op_it_cannot_lower_is_reported_not_crashed(monkeypatch):
    from tracegrad.backends.numba_cpu import lowerings
    monkeypatch.delitem(lowerings.LOWERINGS, "cat")
    graph, _ = _graph_and_arrays(lambda a, b: tg.cat([a, b]) * 2, [tg.ones(2), tg.ones(3)])
    with pytest.raises(Unsupported, match="cat"):
        compile_graph(graph)


def test_parallel_kernels_match_the_interpreter_on_large_loops():
    def step(x, w, b):
        y = (x * w + b).tanh()                               # 1024 x 1025: above the parallel threshold
        loss = (y * y).mean() + y.sum(0).amax() + y.amax(-1, keepdim=True).sum() + y.exp().sum(1).log().sum()
        loss.backward()
        return loss, x.grad, w.grad, b.grad, y.amin(0), y.sum((0, 1), keepdim=True)
    rng = np.random.default_rng(5)
    # scaled so that tanh stays below 1: saturated elements would tie for the amax, and the vectorized
    # tanh and NumPy's may round a different set of them to exactly 1.0 (a different gradient split)
    tensors = [tg.tensor(0.3 * rng.standard_normal(s).astype(np.float32), requires_grad=True)
               for s in ((1024, 1025), (1025,), (1, 1025))]
    graph, arrays = _graph_and_arrays(step, tensors)
    expected = run(graph, [a.copy() for a in arrays])
    kernel = compile_graph(graph, parallel=True)
    assert "prange(" in kernel.source and "parallel=True" in kernel.source
    for g, e in zip(kernel([a.copy() for a in arrays]), expected):
        np.testing.assert_allclose(g, e, rtol=2e-5, atol=2e-6)
    assert kernel.llvm_opt == 3  # large loops get LLVM's full optimization


def test_a_parallel_kernel_without_a_large_loop_is_compiled_as_a_serial_one():
    """Numba's parallel passes cost compile time (~0.5 s for W1) even where no loop is a prange."""
    graph, arrays = _graph_and_arrays(_edge_step, _edge_tensors())
    kernel = compile_graph(graph, parallel=True)
    assert "prange(" not in kernel.source and "parallel=True" not in kernel.source
    for g, e in zip(kernel([a.copy() for a in arrays]), run(graph, [a.copy() for a in arrays])):
        np.testing.assert_allclose(g, e, rtol=2e-6, atol=2e-6)


def test_kernels_of_small_loops_compile_at_llvm_o1_and_leave_numbas_setting_alone():
    import numba
    from tracegrad.backends.numba_cpu import _llvm_optimization
    graph, arrays = _graph_and_arrays(_edge_step, _edge_tensors())
    assert compile_graph(graph).llvm_opt == 1
    before = numba.config.OPT
    with pytest.raises(KeyError):
        with _llvm_optimization(1):
            assert numba.config.OPT == min(1, before)
            raise KeyError("a failing compile")
    assert numba.config.OPT is before


def test_matmul_of_a_callers_transposed_or_strided_arrays():
    def step(x, w):
        x.requires_grad_()
        loss = (x @ w.t()).tanh().sum()
        loss.backward()
        return loss, x.grad
    rng = np.random.default_rng(4)
    x, w = (tg.tensor(rng.standard_normal(s).astype(np.float32)) for s in ((5, 4), (3, 4)))
    graph, arrays = _graph_and_arrays(step, [x, w])
    kernel = compile_graph(graph)
    expected = run(graph, [a.copy() for a in arrays])
    names = [v.name for v in graph.inputs]
    for layout in (np.asfortranarray, lambda a: np.repeat(a, 2, axis=-1)[..., ::2]):  # column-major, strided
        passed = [layout(a) if names[i] in ("x", "w") else a for i, a in enumerate(arrays)]
        assert all(not passed[names.index(n)].flags.c_contiguous for n in ("x", "w"))
        for g, e in zip(kernel(passed), expected):
            np.testing.assert_allclose(g, e, rtol=2e-6, atol=2e-6)


BATCHED_MATMULS = {  # name -> the shapes of a and b in a @ b
    "3-D @ 2-D": ((2, 3, 4), (4, 5)), "2-D @ 3-D": ((3, 4), (2, 4, 5)), "3-D @ 3-D": ((2, 3, 4), (2, 4, 5)),
    "3-D @ 3-D of batch 1": ((2, 3, 4), (1, 4, 5)), "3-D of batch 1 @ 3-D": ((1, 3, 4), (2, 4, 5)),
    "1-D @ 3-D": ((4,), (2, 4, 5)), "3-D @ 1-D": ((2, 3, 4), (4,)), "4-D @ broadcast 3-D": ((2, 1, 3, 4), (3, 4, 5)),
}


@pytest.mark.parametrize("shapes", BATCHED_MATMULS.values(), ids=BATCHED_MATMULS.keys())
def test_batched_and_broadcast_matmuls_and_their_gradients_match_the_interpreter_and_eager(shapes):
    def step(a, b):
        out = a @ b
        (out * out.tanh()).sum().backward()  # a cotangent that is not the product itself
        return out, a.grad, b.grad
    rng = np.random.default_rng(6)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    graph, graph_arrays = _graph_and_arrays(step, [tg.tensor(x, requires_grad=True) for x in arrays])
    kernel = _compare(graph, graph_arrays, rtol=1e-5, atol=1e-5)
    eager = step(*(tg.tensor(x, requires_grad=True) for x in arrays))
    for got, want in zip(kernel([a.copy() for a in graph_arrays]), eager):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-5, atol=1e-5)


def test_a_compiled_step_with_linear_on_a_3d_input_equals_eager():
    from tracegrad.compiler import CompileWarning

    def run(compiled: bool) -> list:
        tg.manual_seed(0)
        model = tg.nn.Sequential(tg.nn.Linear(4, 6), tg.nn.Tanh(), tg.nn.Linear(6, 3))
        opt = tg.optim.Adam(model.parameters(), lr=0.01)

        def step(x, y):
            opt.zero_grad()
            loss = ((model(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            return loss
        fn = tg.compile(step, backend="numba") if compiled else step
        rng = np.random.default_rng(7)
        losses = [float(fn(*(tg.tensor(rng.standard_normal(s).astype(np.float32)) for s in ((2, 5, 4), (2, 5, 3)))))
                  for _ in range(6)]
        return losses + [p.detach().numpy() for p in model.parameters()]

    expected = run(compiled=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error", CompileWarning)  # no variant falls back to the interpreter
        got = run(compiled=True)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matmul_helper_handles_every_layout(dtype):
    from tracegrad.backends.numba_cpu.runtime import dot
    rng = np.random.default_rng(2)
    base = rng.standard_normal((6, 10)).astype(dtype)
    operands = {"row-major": base[:, :4], "column-major": np.asfortranarray(base[:, :4]),
                "transposed": np.ascontiguousarray(base[:4, :6]).T, "empty": base[:, :0], "no rows": base[:0, :4]}
    right = rng.standard_normal((4, 3)).astype(dtype)
    for name, left in operands.items():
        r = right[: left.shape[1]]
        for b in (r, np.asfortranarray(r), r[::-1][::-1]):
            np.testing.assert_allclose(dot(left, b), left @ b, rtol=1e-5, atol=1e-5, err_msg=name)
    for strided in (base[:, ::2][:, :4], base[::-1, :4]):  # neither row- nor column-major: copied first
        np.testing.assert_allclose(dot(strided, right), strided @ right, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dot(right.T, strided.T), right.T @ strided.T, rtol=1e-5, atol=1e-5)


def test_a_step_with_an_op_numba_cannot_lower_runs_on_the_interpreter_with_a_warning(monkeypatch):
    from tracegrad.backends.numba_cpu import lowerings
    from tracegrad.compiler import CompileWarning
    monkeypatch.delitem(lowerings.LOWERINGS, "cat")
    w = tg.ones(7, requires_grad=True)

    def step(x):
        loss = (tg.cat([x, w]) * 7).sum()
        loss.backward()
        grad = w.grad.clone()
        w.grad = None
        return loss, grad
    compiled = tg.compile(step, backend="numba")
    x = tg.ones(2)
    with pytest.warns(CompileWarning, match="numba can't compile .*cat.*interpreter backend runs"):
        results = [compiled(x) for _ in range(3)]
    for loss, grad in results:
        assert float(loss) == 63.0 and np.array_equal(grad.numpy(), np.full(7, 7.0, np.float32))
    assert compiled.cache_info().compiles == 1


def test_output_buffers_are_reused_only_once_nothing_holds_them():
    def step(a, b):
        return (a * b).sum(1), a @ b.T, (a * 2).sum()

    graph, arrays = _graph_and_arrays(step, [tg.randn(4, 3), tg.randn(4, 3)])
    kernel = compile_graph(graph)
    expected = run(graph, [a.copy() for a in arrays])
    held = kernel(arrays)  # kept for the whole test, as a user keeping a step's results would
    snapshot = [h.copy() for h in held]
    seen = []
    last = None
    for _ in range(6):
        outputs = kernel(arrays)
        assert not any(o is h for o in outputs for h in held)
        for got, want in zip(outputs, expected):
            np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6)
        seen.append([id(o) for o in outputs])
        last = outputs  # the previous call's outputs stay held while the next call runs, like .grad
    for h, s in zip(held, snapshot):
        np.testing.assert_array_equal(h, s)  # never written again
    assert all(not set(seen[k]) & set(seen[k + 1]) for k in range(len(seen) - 1))  # a held set is never reused
    assert seen[-1] == seen[-3] and seen[-2] == seen[-4]  # the steady state: two sets alternate
    assert last is not None


def test_reshapes_that_add_or_drop_size_1_dims_are_read_through_their_source():
    def step(x, labels):
        picked = x.gather(1, labels.unsqueeze(1)).squeeze(1)  # cross-entropy's pattern
        return picked * 2, (x.reshape(1, 4, 3) + 1).sum(0), x.reshape(3, 4).sum(1)

    graph, arrays = _graph_and_arrays(step, [tg.randn(4, 3), tg.tensor([0, 2, 1, 2])])
    kernel = _compare(graph, arrays)
    assert kernel.source.count("read as %") == 3  # labels.unsqueeze, .squeeze and x.reshape(1, 4, 3)
    assert kernel.source.count(".reshape(") == 1  # x.reshape(3, 4) really moves elements

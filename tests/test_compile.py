"""The compiler front half with the reference interpreter: compiled steps equal eager steps."""
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import tracegrad as tg
from tracegrad.compiler import CompileWarning, TraceUnsupported
from tracegrad.ir import parse, verify

pytestmark = pytest.mark.usefixtures("backend")  # every test runs per compiling backend

RNG = np.random.default_rng(0)
X = tg.tensor(RNG.standard_normal((16, 3)).astype(np.float32))
Y = X @ tg.tensor([[1.0], [-2.0], [0.5]]) + 0.25


def _params():
    return tg.zeros(3, 1, requires_grad=True), tg.zeros(1, requires_grad=True)


def sgd_step(x, y, w, b):
    loss = ((x @ w + b - y) ** 2).mean()
    loss.backward()
    with tg.no_grad():
        w -= 0.1 * w.grad
        b -= 0.1 * b.grad
        w.grad.zero_()
        b.grad.zero_()
    return loss


def _run_both(step, n, *make_args):
    eager_args, compiled_args = make_args[0](), make_args[0]()
    compiled = tg.compile(step)
    for i in range(n):
        expected = step(*make_args[1](i), *eager_args)
        got = compiled(*make_args[1](i), *compiled_args)
        np.testing.assert_allclose(got.detach().numpy(), expected.detach().numpy(), rtol=1e-6, atol=1e-7)
    for a, b in zip(eager_args, compiled_args):
        np.testing.assert_allclose(a.detach().numpy(), b.detach().numpy(), rtol=1e-6, atol=1e-7)
        if a.grad is not None or b.grad is not None:
            np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy(), rtol=1e-6, atol=1e-7)
    return compiled


def test_compiled_steps_equal_eager_steps_and_trace_once():
    compiled = _run_both(sgd_step, 12, _params, lambda i: (X, Y))
    info = compiled.cache_info()
    assert (info.misses, info.compiles, info.fallbacks, info.entries) == (1, 1, 0, 1)
    assert info.hits == 10  # call 1 warms up eagerly, call 2 traces, the rest replay


def test_new_batch_size_retraces():
    w, b = _params()
    compiled = tg.compile(sgd_step)
    for n in (16, 16, 16, 8, 8, 8):
        compiled(X[:n], Y[:n], w, b)
    assert compiled.cache_info().misses == 2


def test_data_dependent_branch_compiles_one_variant_per_outcome():
    def step(x, w):
        h = x @ w
        if h.mean() > 0:  # a guard on the comparison's outcome
            h = h.detach()
        loss = (h * h).sum() + (w * w).sum()
        loss.backward()
        with tg.no_grad():
            w -= 0.01 * w.grad
            w.grad = None
        return loss

    def inputs(i):
        sign = 1.0 if i % 2 else -1.0
        return (tg.ones(4, 3) * sign,)

    compiled = _run_both(step, 10, lambda: (tg.ones(3, 2, requires_grad=True),), inputs)
    info = compiled.cache_info()
    assert info.entries == 2 and info.guard_failures > 0 and info.fallbacks == 0


def test_branch_on_item_stays_correct_and_falls_back_after_the_limit():
    def step(x, w):
        loss = ((x @ w) ** 2).mean()
        if loss.item() > 0.5:  # guards on the exact value: every step differs
            loss.backward()
            with tg.no_grad():
                w -= 0.05 * w.grad
                w.grad = None
        return loss

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = _run_both(step, 14, lambda: (tg.ones(3, 1, requires_grad=True),), lambda i: (X,))
    assert compiled.cache_info().fallbacks == 1
    assert any("recompile limit" in str(w.message) for w in caught if w.category is CompileWarning)


def test_untraceable_step_falls_back_with_the_cause_and_line():
    def step(x, w):
        noise = tg.randn(*x.shape)
        return ((x + noise) @ w).sum()

    compiled = tg.compile(step)
    w = tg.ones(3, 1)
    compiled(X, w)
    with pytest.warns(CompileWarning, match=r"random numbers \(randn\) at test_compile.py:\d+"):
        compiled(X, w)
    assert compiled.cache_info().fallbacks == 1


def test_fullgraph_raises_instead_of_falling_back():
    def step(x):
        return (x + tg.rand(*x.shape)).sum()

    compiled = tg.compile(step, fullgraph=True)
    compiled(X)
    with pytest.raises(TraceUnsupported, match="random numbers"):
        compiled(X)


def test_bad_input_gives_the_eager_error_and_leaves_parameters_untouched():
    w, b = _params()
    compiled = tg.compile(sgd_step)
    for _ in range(3):
        compiled(X, Y, w, b)
    before = w.detach().numpy().copy()
    with pytest.raises(RuntimeError, match="size of tensor"):
        compiled(X, Y[:5], w, b)
    np.testing.assert_array_equal(w.detach().numpy(), before)


def test_eager_backend_and_disable_variable_never_trace():
    compiled = tg.compile(sgd_step, backend="eager")
    w, b = _params()
    for _ in range(3):
        compiled(X, Y, w, b)
    assert compiled.cache_info().misses == 0
    script = ("import tracegrad as tg\nf = tg.compile(lambda x: x * 2)\n"
              "[f(tg.ones(2)) for _ in range(3)]\nprint(f.cache_info().misses)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "TRACEGRAD_DISABLE": "1"})
    assert out.stdout.strip() == "0"


def test_unknown_and_unavailable_backends_are_clear_errors():
    with pytest.raises(ValueError, match="unknown backend"):
        tg.compile(sgd_step, backend="tpu")
    from numba import cuda
    if cuda.is_available():
        pytest.skip("this machine has a GPU: backend='cuda' runs")
    with pytest.raises(RuntimeError, match="can't run here: numba.cuda finds no usable NVIDIA GPU.*backend='numba'"):
        tg.compile(sgd_step, backend="cuda")


def test_make_ir_text_round_trips_and_verifies():
    graph = tg.make_ir(sgd_step)(X, Y, *_params())
    verify(graph)
    text = graph.text()
    assert "matmul" in text and "writeback" in text and "# test_compile.py:" in text
    again = parse(text)
    assert again.text() == text and again.hash() == graph.hash()


def test_index_keys_print_as_subscripts_and_parse_back_equal():
    from tracegrad.primitives.index_key import IndexKey, IndexTensor, Integer, Mask, NewAxis, Rest, Slice

    def f(x, i):
        x2 = x.clone()
        x2[0] = 5.0
        return x[1:, i] * 2, x[None, ..., -1] + x.flip(0)[:, 1:3:2].sum() + x.narrow(1, 1, 2).sum(), x2

    graph = tg.make_ir(f)(tg.ones(3, 4), tg.tensor([0, 2]))
    text = graph.text()
    assert "{key=[1::,t0]}" in text and "{key=[None,...,-1]}" in text and "{key=[::-1,::]}" in text
    again = parse(text)
    assert again.text() == text and again.hash() == graph.hash()
    keys = [n.attrs["key"] for n in graph.nodes if "key" in n.attrs]
    assert [n.attrs["key"] for n in again.nodes if "key" in n.attrs] == keys
    key = IndexKey((Slice(1, None, 2), Integer(-1), NewAxis(), Rest(), IndexTensor(0), Mask(1)))
    assert IndexKey.parse(str(key)) == key and hash(IndexKey.parse(str(key))) == hash(key)
    assert str(key) == "[1::2,-1,None,...,t0,m1]" and key.has_mask and key.tensor_positions == (4,)
    assert IndexKey((Integer(0),)) != IndexKey((IndexTensor(0),))  # equal fields, other kinds


def test_golden_ir_of_a_small_graph():
    def f(x, w):
        return (x * w).sum(1)

    graph = tg.make_ir(f)(tg.ones(2, 3), tg.ones(3))
    assert graph.text(source_lines=False) == (
        "graph f(%0: f32[2,3] data 'x', %1: f32[3] data 'w') {\n"
        "  %2 = mul %0, %1 : f32[2,3]\n"
        "  %3 = sum %2 {axes=(1,) keepdim=False} : f32[2]\n"
        "  return %3\n"
        "}")


def test_passes_fold_simplify_cse_and_dce():
    from tracegrad.ir import Graph, Type
    from tracegrad.ir.passes import optimize
    f32 = tg.float32
    g = Graph("p")
    x = g.add_input(Type(f32, (3,)), "data")
    one = g.add_input(Type(f32, ()), "constant", const=np.array(1.0, np.float32))
    two = g.add_input(Type(f32, ()), "constant", const=np.array(2.0, np.float32))
    three = g.add_node("add", [one, two], {}, Type(f32, ()))          # folds to 3
    a = g.add_node("mul", [x, three], {}, Type(f32, (3,)))
    b = g.add_node("mul", [x, three], {}, Type(f32, (3,)))            # CSE with a
    c = g.add_node("mul", [b, one], {}, Type(f32, (3,)))              # x * 1 -> x
    g.add_node("exp", [x], {}, Type(f32, (3,)))                       # dead
    g.outputs = [g.add_node("add", [a, c], {}, Type(f32, (3,)))]
    report = optimize(g)
    verify(g)
    assert report == {"fold": 1, "simplify": 1, "cse": 1, "dce": 1}
    assert [n.prim for n in g.nodes] == ["mul", "add"]
    from tracegrad.ir import run
    np.testing.assert_allclose(run(g, [np.arange(3, dtype=np.float32), *[v.const for v in g.inputs[1:]]])[0],
                               np.arange(3) * 6)


def test_compiled_variant_graph_is_optimized():
    w, b = _params()
    compiled = tg.compile(sgd_step)
    for _ in range(3):
        compiled(X, Y, w, b)
    (variant,) = compiled._variants[next(iter(compiled._variants))]
    assert len(variant.trace.graph.nodes) < len(variant.traced.nodes)
    assert sum(variant.pass_report.values()) > 0


def test_hyperparameters_are_inputs_so_changing_lr_does_not_retrace():
    from tracegrad.compiler import hyperparameter
    group = {"lr": 0.1}

    def step(x, y, w):
        loss = ((x @ w - y) ** 2).mean()
        loss.backward()
        with tg.no_grad():
            w.sub_(w.grad * hyperparameter(group, "lr"))
            w.grad = None
        return loss

    w_eager, w_comp = tg.zeros(3, 1, requires_grad=True), tg.zeros(3, 1, requires_grad=True)
    compiled = tg.compile(step)
    for i in range(8):
        group["lr"] = 0.1 / (i + 1)  # a schedule
        step(X, Y, w_eager)
        compiled(X, Y, w_comp)
    np.testing.assert_allclose(w_comp.detach().numpy(), w_eager.detach().numpy(), rtol=1e-6)
    assert compiled.cache_info().misses == 1
    (variant,) = next(iter(compiled._variants.values()))
    assert [v.name for v in variant.trace.graph.inputs if v.role == "hyper"] == ["lr"]


def test_log_reports_signature_trace_compile_and_guard_misses():
    script = ("import tracegrad as tg\n"
              "f = tg.compile(lambda x: x * 2 if bool(x.sum() > 0) else x * 3)\n"
              "for s in (1, 1, 1, -1, -1, -1): f(tg.ones(2) * s)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "TRACEGRAD_LOG": "info"})
    log = out.stderr
    assert "new signature (tensors float32[2]" in log
    assert "traced in" in log and "compiled variant 0" in log and "compiled variant 1" in log
    assert "cache miss, guard at <string>:2: traced with True, now False" in log


def test_toggling_requires_grad_of_a_captured_parameter_retraces():
    w = tg.ones(3, 1, requires_grad=True)
    frozen_copy = w.detach().clone()

    def step(x):
        loss = (x @ w).sum()
        if loss.requires_grad:
            loss.backward()
            with tg.no_grad():
                w.sub_(0.1 * w.grad)
                w.grad = None
        return loss

    compiled = tg.compile(step)
    for _ in range(3):
        compiled(X)
    w.requires_grad_(False)
    before = w.detach().numpy().copy()
    for _ in range(3):
        compiled(X)
    np.testing.assert_array_equal(w.numpy(), before)  # frozen: no update replayed
    assert compiled.cache_info().misses == 2
    assert not np.array_equal(before, frozen_copy.numpy())


@pytest.mark.parametrize("bad", [X.double(), X.numpy(), "text"], ids=["dtype", "ndarray", "str"])
def test_wrong_argument_types_raise_like_eager_and_change_nothing(bad):
    w, b = _params()
    compiled = tg.compile(sgd_step)
    for _ in range(3):
        compiled(X, Y, w, b)
    before = w.detach().numpy().copy()
    with pytest.raises((RuntimeError, TypeError)) as compiled_error:
        compiled(bad, Y, w, b)
    with pytest.raises((RuntimeError, TypeError)) as eager_error:
        sgd_step(bad, Y, *_params())
    assert type(compiled_error.value) is type(eager_error.value)
    np.testing.assert_array_equal(w.detach().numpy(), before)


def test_golden_ir_of_a_step_with_backward_and_update():
    w = tg.ones(2, requires_grad=True)

    def g(x):
        loss = (x * w).sum()
        loss.backward()
        with tg.no_grad():
            w.sub_(w.grad)
        return loss

    graph = tg.make_ir(g)(tg.ones(2))
    assert graph.text(source_lines=False) == (
        "graph g(%0: f32[2] data 'x', %1: f32[2] parameter 'w', %4: f32[] constant =1.0) {\n"
        "  %2 = mul %0, %1 : f32[2]\n"
        "  %3 = sum %2 {axes=(0,) keepdim=False} : f32[]\n"
        "  %5 = reshape %4 {shape=(1,)} : f32[1]\n"
        "  %6 = expand %5 {shape=(2,)} : f32[2]\n"
        "  %7 = mul %6, %0 : f32[2]\n"
        "  %8 = sub %1, %7 : f32[2]\n"
        "  return %3, %7\n"
        "  writeback %1 <- %8\n"
        "}")


def test_fusion_groups_chain_elementwise_ops_and_end_at_their_reduction():
    from tracegrad.backends.numba_cpu.schedule import fusion_groups

    def softmax_loss(x):
        return x.softmax(1).mul(2).exp().sum()

    graph = tg.make_ir(softmax_loss)(tg.ones(4, 5))
    groups = [[n.prim for n in g] for g in fusion_groups(graph)]
    # exp(x - max) and its row sum fuse; the division needs the finished sum, so it starts a new group
    assert ["sub", "exp", "sum"] in groups
    assert ["div", "mul", "exp", "sum"] in groups
    report = tg.explain(softmax_loss, tg.ones(4, 5))
    assert "fusion group: sub -> exp -> sum" in str(report)



def test_a_relu_mask_is_computed_in_the_backward_loop_not_stored_by_the_forward_one():
    from tracegrad.backends.numba_cpu.schedule import schedule

    def step(x, w):
        y = (x @ w).relu()
        loss = ((y @ w.t()) ** 2).sum()  # y is read by a matmul (stored anyway), and so is its gradient
        loss.backward()
        return loss, w.grad

    w = tg.ones(4, 4, requires_grad=True)
    graph = tg.make_ir(step)(tg.ones(3, 4), w)
    groups = [[n.prim for n in g] for g in schedule(graph)]
    relu_loop = next(g for g in groups if "relu" in g)
    mask_loop = next(g for g in groups if "gt" in g)
    assert "gt" not in relu_loop and mask_loop[:2] == ["gt", "cast"] and "mul" in mask_loop
    compiled = tg.compile(step, backend="interpreter")
    x = tg.tensor(np.linspace(-1, 1, 12, dtype=np.float32).reshape(3, 4))
    for _ in range(3):
        w.grad = None
        loss, grad = compiled(x, w)
    w.grad = None
    expected_loss, expected_grad = step(x, w)
    np.testing.assert_allclose(grad.numpy(), expected_grad.numpy(), rtol=1e-6)


def test_rebinding_a_captured_global_retraces_instead_of_replaying_the_old_one():
    namespace = {"tg": tg}
    exec("w = tg.ones(3, 1)\n"
         "def step(x):\n"
         "    return (x @ w).sum()\n", namespace)
    compiled = tg.compile(namespace["step"])
    for _ in range(3):
        compiled(X)
    namespace["w"] = tg.ones(3, 1) * 2
    expected = namespace["step"](X).item()
    assert compiled(X).item() == pytest.approx(expected)
    assert compiled.cache_info().entries >= 1


def test_the_fast_path_of_the_last_variant_misses_whenever_the_signature_differs():
    """Each change below must reach a variant of its own (or eager), never replay the last one."""
    namespace = {"tg": tg}
    exec("scale = tg.ones(1)\n"
         "def make(model):\n"
         "    w = tg.full((3,), 0.5, requires_grad=True)\n"
         "    def step(x):\n"
         "        loss = (model(x * w) * scale).sum()\n"
         "        if tg.is_grad_enabled():\n"
         "            loss.backward()\n"
         "        return loss\n"
         "    def forget_w():\n"
         "        nonlocal w\n"
         "        del w\n"
         "    return step, forget_w\n", namespace)
    model = tg.nn.Dropout(0.5)
    step, forget_w = namespace["make"](model)
    compiled = tg.compile(step)
    x = tg.tensor(RNG.standard_normal((4, 3)).astype(np.float32))

    def same_as_eager(arg):
        expected = step(arg).item()
        assert compiled(arg).item() == pytest.approx(expected, rel=1e-6)

    model.eval()  # dropout off: the values are deterministic
    for _ in range(3):
        same_as_eager(x)
    assert compiled._fast is not None  # the last replay took the fast path
    hits = compiled.cache_info().hits
    for _ in range(3):  # each new signature twice: its first call runs eagerly, the second traces
        same_as_eager(x[:2])                        # another shape
        same_as_eager(x.to(tg.float64))             # another dtype
        same_as_eager(x.clone().requires_grad_())   # requires_grad of an argument
        with tg.no_grad():
            same_as_eager(x)                        # grad mode
        same_as_eager(x)
    assert compiled.cache_info().hits > hits and compiled.cache_info().misses == 1 + 4  # one trace each
    model.train()                                   # a module's training flag (dropout: runs eagerly)
    with pytest.warns(CompileWarning, match="random numbers"):
        compiled(x)
        compiled(x)
    assert compiled.cache_info().misses == 6
    model.eval()
    namespace["scale"] = tg.full((1,), 3.0)        # a rebound global
    same_as_eager(x)
    same_as_eager(x)
    assert compiled.cache_info().misses == 7
    forget_w()                                      # an emptied closure cell: eager raises, so must compiled
    with pytest.raises(NameError):
        step(x)
    with pytest.raises(NameError):
        compiled(x)


def test_replayed_results_are_inference_tensors_only_inside_inference_mode():
    compiled = tg.compile(lambda x: (x * 2).sum())
    x = tg.ones(3)
    with tg.inference_mode():
        inside = [compiled(x) for _ in range(4)]  # eager, trace, then replays
    outside = [compiled(x) for _ in range(4)]
    assert all(t.is_inference() for t in inside) and not any(t.is_inference() for t in outside)
    assert [t.item() for t in inside + outside] == [6.0] * 8

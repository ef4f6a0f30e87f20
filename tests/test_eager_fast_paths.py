"""Eager fast paths: each gives bit for bit what the general path gives, and is not taken where it must not be.

The fast paths: operators on a float tensor and a Python number (or two tensors of one float dtype), the
direct NumPy in-place update, the array VJPs of a backward that records nothing (matmul, relu, sum_to_shape),
the unrecorded max shift of the softmax family and the eager ignore_index test of nll_loss. Each test runs
the same computation with the fast path switched off (by patching its gate) and compares.
"""
import contextlib
import gc
import warnings

import numpy as np
import pytest

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad import surface
from tracegrad.primitives import base, elementwise, movement


def same(a: tg.Tensor, b: tg.Tensor) -> None:
    """Assert two tensors hold the same bits, shape and dtype."""
    assert a.dtype is b.dtype and a.shape == b.shape
    assert a.detach().numpy().tobytes() == b.detach().numpy().tobytes()


def data(*shape: int, dtype=np.float32, seed: int = 0, requires_grad: bool = False) -> tg.Tensor:
    """A tensor of standard-normal values (with some exact zeros, negatives and ties)."""
    values = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    values.reshape(-1)[::5] = 0
    return tg.tensor(values, requires_grad=requires_grad)


# ---- operators ------------------------------------------------------------------------------------

NUMBER_OPS = [("+", lambda t, n: t + n, lambda t, n: tg.add(t, n)),
              ("r+", lambda t, n: n + t, lambda t, n: tg.add(n, t)),
              ("-", lambda t, n: t - n, lambda t, n: tg.sub(t, n)),
              ("r-", lambda t, n: n - t, lambda t, n: tg.sub(n, t)),
              ("*", lambda t, n: t * n, lambda t, n: tg.mul(t, n)),
              ("/", lambda t, n: t / n, lambda t, n: tg.div(t, n)),
              ("r/", lambda t, n: n / t, lambda t, n: tg.div(n, t)),
              ("**", lambda t, n: t.abs() ** n, lambda t, n: tg.pow(t.abs(), n)),
              ("r**", lambda t, n: n ** t, lambda t, n: tg.pow(n, t)),
              (">", lambda t, n: t > n, lambda t, n: tg.gt(t, n)),
              ("==", lambda t, n: t == n, lambda t, n: tg.eq(t, n))]


@pytest.mark.parametrize("number", [0.3, 3, 0, 6e4], ids=["float", "int", "zero", "large"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("name,operator,function", NUMBER_OPS, ids=[n for n, _, _ in NUMBER_OPS])
def test_float_tensor_with_a_number_matches_the_promoting_function(name, operator, function, dtype, number):
    x = data(4, 5, dtype=dtype, requires_grad=True)
    fast, general = operator(x, number), function(x, number)
    same(fast, general)
    assert (fast.grad_fn is None) == (general.grad_fn is None)
    if fast.grad_fn is not None:
        assert fast.grad_fn.name() == general.grad_fn.name()
        grads = [tg.autograd.grad(out.sum(), x)[0] for out in (fast, general)]
        same(*grads)


def test_a_python_float_with_an_int_tensor_still_promotes():
    i = tg.tensor([1, 2, 3])
    assert (i * 0.5).dtype is tg.float32 and (i * 0.5).tolist() == [0.5, 1.0, 1.5]
    assert (i / 2).dtype is tg.float32 and (i + 2).dtype is tg.int64


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_two_float_tensors_of_one_dtype_subtract_and_divide_like_the_functions(dtype):
    a, b = data(3, 4, dtype=dtype, requires_grad=True), data(3, 4, dtype=dtype, seed=1) + 2
    same(a - b, tg.sub(a, b))
    same(a / b, tg.div(a, b))
    assert (a - b).grad_fn.name() == "SubBackward0" and (a / b).grad_fn.name() == "DivBackward0"


def test_integer_and_bool_tensors_keep_their_rules():
    i, j = tg.tensor([3, 4]), tg.tensor([2, 2])
    assert (i / j).dtype is tg.float32 and (i / j).tolist() == [1.5, 2.0]
    with pytest.raises(RuntimeError, match="Subtraction"):
        tg.tensor([True]) - tg.tensor([False])


@pytest.mark.parametrize("left,right", [(np.float32, np.bool_), (np.float32, np.int64), (np.float64, np.float32),
                                        (np.int32, np.int64), (np.bool_, np.int8)])
def test_two_tensors_of_different_dtypes_promote_like_result_type(left, right):
    a = tg.tensor(np.arange(6).reshape(2, 3).astype(left))
    b = tg.tensor((np.arange(6).reshape(2, 3) % 2).astype(right))
    expected = tg._result_type(a, b)
    product = a * b
    assert product.dtype is expected
    assert product.tolist() == (a.to(expected) * b.to(expected)).tolist()


# ---- in-place updates -----------------------------------------------------------------------------

IN_PLACE = [("add_ number", lambda x, o: x.add_(0.7)), ("add_ tensor", lambda x, o: x.add_(o)),
            ("add_ alpha", lambda x, o: x.add_(o, alpha=-0.01)), ("add_ row", lambda x, o: x.add_(o[0], alpha=3)),
            ("sub_ tensor", lambda x, o: x.sub_(o)), ("sub_ alpha", lambda x, o: x.sub_(o, alpha=0.3)),
            ("mul_ number", lambda x, o: x.mul_(0.9)), ("mul_ tensor", lambda x, o: x.mul_(o)),
            ("div_ number", lambda x, o: x.div_(0.3)), ("div_ tensor", lambda x, o: x.div_(o + 3)),
            ("pow_ tensor", lambda x, o: x.abs_().pow_(o))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name,update", IN_PLACE, ids=[n for n, _ in IN_PLACE])
def test_direct_in_place_update_matches_the_general_path(name, update, dtype, monkeypatch):
    results = []
    for direct in (True, False):
        if not direct:
            monkeypatch.setattr(surface, "plain_float", lambda t: False)
        x, other = data(3, 4, dtype=dtype), data(3, 4, dtype=dtype, seed=1)
        with tg.no_grad():
            out = update(x, other)
        assert out is x
        results.append((x, x._version))
    (fast, fast_version), (general, general_version) = results
    same(fast, general)
    assert fast_version == general_version


def test_in_place_updates_that_autograd_must_see_do_not_take_the_direct_path():
    w = data(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        w.add_(data(3, seed=1))
    with tg.no_grad():
        view = w[:2]
    with pytest.raises(RuntimeError, match="view of a leaf Variable"):
        view.add_(1.0)
    with pytest.raises(RuntimeError, match="view of a leaf Variable"):
        view.mul_(data(2, seed=2))
    with tg.inference_mode():
        frozen = data(3)
    with pytest.raises(RuntimeError, match="Inplace update to inference tensor"):
        frozen.add_(data(3, seed=1))
    with pytest.raises(RuntimeError, match="expanded"):
        data(1, 3).expand(2, 3).add_(data(2, 3))
    with pytest.raises(RuntimeError, match="can't be cast"):
        tg.tensor([1, 2]).add_(tg.tensor([0.5, 0.5]))


def test_an_in_place_update_of_a_non_leaf_is_recorded():
    w = data(3, requires_grad=True)
    h = w * 2
    h.add_(data(3, seed=1), alpha=0.5)
    assert h.grad_fn.name() == "AddBackward0"
    h.sum().backward()
    assert w.grad.tolist() == [2.0, 2.0, 2.0]


# ---- array VJPs -----------------------------------------------------------------------------------

def mlp_gradients(x: tg.Tensor, params: list, hook_log: list | None = None) -> list:
    """Gradients of a ReLU MLP's loss (with a broadcast bias, a keepdim sum and a retained grad)."""
    w1, b1, w2, b2, scale = [p.detach().requires_grad_() for p in params]
    hidden = (x @ w1.t() + b1).relu()
    if hook_log is not None:
        hidden.register_hook(lambda g: hook_log.append(g.detach().numpy().copy()))
    hidden.retain_grad()
    logits = hidden @ w2.t() + b2
    loss = F.cross_entropy(logits * scale, tg.tensor([0, 2, 1, 0, 2])) + (logits - logits.mean(1, keepdim=True)).sum()
    loss.backward()
    return [w1.grad, b1.grad, w2.grad, b2.grad, scale.grad, hidden.grad]


MLP_PARAMS = [data(6, 4, seed=1), data(6, seed=2), data(3, 6, seed=3), data(3, seed=4), data(1, 3, seed=5)]


def test_array_vjps_give_the_tensor_rules_gradients(monkeypatch):
    x = data(5, 4)
    fast_log, general_log = [], []
    fast = mlp_gradients(x, MLP_PARAMS, fast_log)
    for module in (base, elementwise, movement):
        monkeypatch.setattr(module, "records_nothing", lambda: False)
    general = mlp_gradients(x, MLP_PARAMS, general_log)
    for a, b in zip(fast, general):
        same(a, b)
    assert np.array_equal(fast_log[0], general_log[0])


def test_array_vjps_run_only_when_the_backward_records_nothing():
    assert base.records_nothing() is False  # grad mode on: ops record nodes
    with tg.no_grad():
        assert base.records_nothing() is True


def test_create_graph_uses_the_tensor_rules_so_gradients_have_history():
    x, w = data(5, 4), data(3, 4, seed=1, requires_grad=True)
    (g,) = tg.autograd.grad((x @ w.t()).relu().pow(2).sum(), w, create_graph=True)
    assert g.grad_fn is not None
    g.sum().backward()
    # d/dw of sum(2 relu(z).T @ x), z = x @ w.T: 2 (z > 0).T @ (x.sum(1) x)
    xs, z = x.numpy(), x.numpy() @ w.detach().numpy().T
    expected = 2 * (z > 0).T.astype(np.float32) @ (xs.sum(1, keepdims=True) * xs)
    np.testing.assert_allclose(w.grad.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_batched_matmul_takes_the_tensor_rule():
    a, b = data(2, 3, 4, requires_grad=True), data(4, 5, seed=1, requires_grad=True)
    (a @ b).sum().backward()
    ones = np.ones((2, 3, 5), np.float32)
    np.testing.assert_allclose(b.grad.numpy(), np.einsum("bij,bik->jk", a.detach().numpy(), ones), rtol=1e-5)
    np.testing.assert_allclose(a.grad.numpy(), ones @ b.detach().numpy().T, rtol=1e-5)


@pytest.mark.parametrize("modify", ["relu output", "matmul input"])
def test_array_vjps_still_check_saved_versions(modify):
    x, w = data(5, 4, requires_grad=True), data(3, 4, seed=1, requires_grad=True)
    h = x * 1
    out = (h @ w.t()).relu()
    with tg.no_grad():
        (out if modify == "relu output" else h).add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()


def test_a_traced_backward_records_the_tensor_rules():
    def step(x, w):
        (x @ w.t()).relu().sum().backward()
        return w.grad

    graph = tg.make_ir(step)(data(5, 4), data(3, 4, seed=1, requires_grad=True))
    prims = [n.prim for n in graph.nodes]
    assert {"gt", "cast", "permute"} <= set(prims) and prims.count("matmul") == 2


# ---- softmax family and nll_loss --------------------------------------------------------------------

def shifted_by_detached_max(x: tg.Tensor) -> tuple:
    """log_softmax, softmax and logsumexp over dim 1, the same ops with a recorded-then-detached shift."""
    shifted = x - x.amax(1, keepdim=True).detach()
    log_softmax = shifted - shifted.exp().sum(1, keepdim=True).log()
    exps = (x - x.amax(1, keepdim=True).detach()).exp()
    softmax = exps / exps.sum(1, keepdim=True)
    shift = x.amax(1, keepdim=True).detach()
    shift = tg.where(shift.isinf(), 0.0, shift)
    logsumexp = ((x - shift).exp().sum(1, keepdim=True).log() + shift).squeeze(1)
    return log_softmax, softmax, logsumexp


def test_the_unrecorded_shift_gives_the_detached_shifts_values_and_gradients():
    x = data(4, 6, requires_grad=True)
    for mine, reference in zip((x.log_softmax(1), x.softmax(1), x.logsumexp(1)), shifted_by_detached_max(x)):
        same(mine, reference)
        weights = data(*mine.shape, seed=7)
        same(tg.autograd.grad((mine * weights).sum(), x)[0], tg.autograd.grad((reference * weights).sum(), x)[0])


@pytest.mark.parametrize("fn", [lambda t: t.log_softmax(1), lambda t: t.softmax(1), lambda t: t.logsumexp(1)],
                         ids=["log_softmax", "softmax", "logsumexp"])
def test_the_softmax_family_leaves_no_reference_cycle_after_backward(fn):
    x = data(4, 6, requires_grad=True)
    while gc.collect():  # garbage of earlier tests (a freed kernel's finalizer releases more)
        pass
    gc.disable()
    try:
        fn(x).sum().backward()
        assert gc.collect() == 0  # a detached shift's node kept itself and the graph alive until collected
    finally:
        gc.enable()


@pytest.mark.parametrize("ignore_index", [-100, 2, 2.0], ids=["absent", "present", "float"])
def test_nll_loss_ignore_index_test(ignore_index):
    logits = data(5, 3, requires_grad=True)
    target = tg.tensor([0, 2, 1, 2, 0])
    loss = F.cross_entropy(logits, target, ignore_index=ignore_index)
    keep = (target != ignore_index).numpy()
    log_probs = logits.detach().log_softmax(1).numpy()
    expected = -log_probs[np.arange(5), target.numpy()][keep].mean()
    np.testing.assert_allclose(loss.item(), expected, rtol=1e-6)


@pytest.mark.parametrize("update", [lambda x: x.log_(), lambda x: x.sqrt_(), lambda x: x.div_(0.0),
                                    lambda x: x.div_(tg.zeros(3)), lambda x: x.pow_(tg.tensor([-1.0, 0.5, 2.0])),
                                    lambda x: x.add_(float("inf")).sub_(float("inf"))],
                         ids=["log_", "sqrt_", "div_ number", "div_ tensor", "pow_", "inf - inf"])
def test_in_place_ops_are_as_quiet_as_their_functions(update):
    """inf and nan are values, not warnings (as in PyTorch), whichever path an in-place op takes."""
    for requires_grad in (False, True):
        x = tg.tensor([-1.0, 0.0, 4.0])
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            with tg.no_grad() if not requires_grad else contextlib.nullcontext():
                update(x.clone().requires_grad_(requires_grad) * 1 if requires_grad else x)

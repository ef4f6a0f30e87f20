"""The everyday ops (sort, argsort, topk, cumprod, roll, baddbmm, logaddexp, einsum, linalg norms, tensor-bound
clamp, elu, huber_loss, kl_div): values against NumPy, gradcheck in float64, and compiled == eager in a
training step on every compiling backend, in one compile without fallback."""
import math

import numpy as np
import pytest

import tracegrad as tg
from tracegrad import nn, optim
from tracegrad.autograd import gradcheck
from tracegrad.nn import functional as F

from test_compile_soundness import WARNINGS, run_both


def _f64(*shape, seed=0, low=-1.0, high=1.0):
    return tg.tensor(np.random.default_rng(seed).uniform(low, high, shape), requires_grad=True)


# ---- values ---------------------------------------------------------------------------------------------


def test_sort_is_stable_in_both_directions_and_puts_nan_last_ascending():
    x = tg.tensor([[3.0, math.nan, 1.0, 1.0, -math.inf, 3.0]])
    assert x.sort().indices.tolist() == [[4, 2, 3, 0, 5, 1]]
    assert x.sort(descending=True).indices.tolist() == [[1, 0, 5, 2, 3, 4]]
    assert tg.argsort(x, descending=True).tolist() == [[1, 0, 5, 2, 3, 4]]
    values, indices = tg.topk(tg.tensor([1.0, 5.0, 2.0, 4.0]), 2, largest=False)
    assert values.tolist() == [1.0, 2.0] and indices.tolist() == [0, 2]
    assert tg.sort(tg.tensor(2.0)).indices.item() == 0
    with pytest.raises(RuntimeError, match="selected index k out of range"):
        tg.topk(tg.ones(3), 4)


def test_cumprod_roll_logaddexp_baddbmm_values():
    a = np.random.default_rng(0).uniform(-2, 2, (3, 5))
    np.testing.assert_allclose(tg.tensor(a).cumprod(1).numpy(), np.cumprod(a, 1), rtol=1e-12)
    assert tg.tensor([1, 2, 3], dtype=tg.int32).cumprod(0).dtype is tg.int64
    np.testing.assert_array_equal(tg.tensor(a).roll((1, -2), (0, 1)).numpy(), np.roll(a, (1, -2), (0, 1)))
    np.testing.assert_array_equal(tg.tensor(a).roll(4).numpy(), np.roll(a, 4))
    b = np.array([1.0, -math.inf, math.inf, 1000.0])
    np.testing.assert_allclose(tg.logaddexp(tg.tensor(b), tg.tensor(b)).numpy(), np.logaddexp(b, b))
    nan = tg.full((2, 3, 3), math.nan)
    out = tg.baddbmm(nan, tg.ones(2, 3, 4), tg.ones(2, 4, 3), beta=0, alpha=0.5)
    assert out.tolist() == tg.full((2, 3, 3), 2.0).tolist()


@pytest.mark.parametrize("equation,shapes", [("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk", [(2, 3, 4), (2, 4, 5)]),
                                             ("ii->i", [(3, 3)]), ("...ij->...ji", [(2, 3, 4)]),
                                             ("i,j->ij", [(3,), (4,)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)])])
def test_einsum_matches_numpy(equation, shapes):
    arrays = [np.random.default_rng(k).standard_normal(s) for k, s in enumerate(shapes)]
    got = tg.einsum(equation, *[tg.tensor(a) for a in arrays])
    np.testing.assert_allclose(got.numpy(), np.einsum(equation, *arrays), rtol=1e-12, atol=1e-12)


def test_linalg_norms_match_numpy():
    a = np.random.default_rng(0).standard_normal((3, 4))
    for ord_ in (2, 1, math.inf, -math.inf, 0, 3.5):
        np.testing.assert_allclose(tg.linalg.vector_norm(tg.tensor(a), ord_, 1).numpy(),
                                   np.linalg.norm(a, ord_, axis=1), rtol=1e-12)
    for ord_ in ("fro", 1, -1, math.inf, -math.inf):
        np.testing.assert_allclose(tg.linalg.matrix_norm(tg.tensor(a), ord_).numpy(), np.linalg.norm(a, ord_),
                                   rtol=1e-12)
        np.testing.assert_allclose(tg.linalg.norm(tg.tensor(a), ord_).numpy(), np.linalg.norm(a, ord_), rtol=1e-12)
    with pytest.raises(NotImplementedError, match="SVD"):
        tg.linalg.matrix_norm(tg.tensor(a), "nuc")


# ---- gradients --------------------------------------------------------------------------------------------

GRADCHECKED = {
    "sort": (lambda x: x.sort(1, descending=True).values, [(3, 5)]),
    "sort-0": (lambda x: tg.sort(x, 0).values * 2, [(4, 2)]),
    "topk": (lambda x: x.topk(2, 0).values, [(4, 3)]),
    "topk-smallest": (lambda x: x.topk(3, largest=False, sorted=True)[0], [(2, 5)]),
    "cumprod": (lambda x: x.cumprod(1), [(2, 7)]),
    "cumprod-zeros": (lambda x: (x * tg.tensor([1.0, 0.0, 1.0, 0.0, 1.0], dtype=tg.float64)).cumprod(-1), [(5,)]),
    "roll": (lambda x: x.roll((1, 2), (0, 1)) * tg.arange(12, dtype=tg.float64).reshape(3, 4), [(3, 4)]),
    "baddbmm": (lambda c, a, b: tg.baddbmm(c, a, b, beta=0.5, alpha=2.0), [(1, 3, 2), (2, 3, 4), (2, 4, 2)]),
    "logaddexp": (lambda a, b: tg.logaddexp(a, b * 3), [(3, 4), (4,)]),
    "einsum-matmul": (lambda a, b: tg.einsum("bij,bjk->bik", a, b), [(2, 3, 4), (2, 4, 2)]),
    "einsum-diag-outer": (lambda a, b: tg.einsum("ii,j->ij", a, b), [(3, 3), (2,)]),
    "einsum-three": (lambda a, b, c: tg.einsum("ij,jk,k->i", a, b, c), [(2, 3), (3, 4), (4,)]),
    "vector_norm": (lambda x: [tg.linalg.vector_norm(x, o, 1) for o in (2, 1, math.inf, 3)], [(3, 4)]),
    "matrix_norm": (lambda x: [tg.linalg.matrix_norm(x, o) for o in ("fro", 1, -1, math.inf, -math.inf)], [(2, 3, 4)]),
    "linalg.norm": (lambda x: tg.linalg.norm(x, dim=(0, 1), keepdim=True), [(3, 4)]),
    "clamp-tensors": (lambda x, lo, hi: tg.clamp(x, min=lo - 0.5, max=hi + 0.5), [(3, 4), (4,), (3, 1)]),
    "elu": (lambda x: F.elu(x * 3, alpha=0.7), [(3, 4)]),
    "huber": (lambda x, y: [F.huber_loss(x, y, delta=0.4), F.huber_loss(x, y, "none", 2.0)], [(3, 4), (3, 4)]),
    "kl_div": (lambda x, y: [F.kl_div(x, y.abs(), reduction="batchmean"), F.kl_div(x, y, reduction="sum",
                                                                                 log_target=True)], [(3, 4), (3, 4)]),
}


@pytest.mark.parametrize("name", sorted(GRADCHECKED))
def test_gradcheck(name):
    fn, shapes = GRADCHECKED[name]
    inputs = [_f64(*s, seed=k) for k, s in enumerate(shapes)]

    def total(*xs):
        out = fn(*xs)
        return tg.stack([o.sum() for o in out]) if isinstance(out, list) else out
    assert gradcheck(total, inputs)


def test_elu_and_norm_gradients_at_their_kinks_follow_pytorch():
    x = tg.tensor([0.0, 0.0], requires_grad=True)
    F.elu(x, alpha=0.5).sum().backward()
    assert x.grad.tolist() == [0.5, 0.5]  # the exponential branch at 0, as PyTorch's elu_backward
    x = tg.zeros(3, requires_grad=True)
    tg.linalg.vector_norm(x).backward()
    assert x.grad.tolist() == [0.0, 0.0, 0.0]
    count = tg.linalg.vector_norm(tg.tensor([0.0, 2.0, -1.0], requires_grad=True), 0)
    assert count.item() == 2.0 and count.requires_grad


# ---- compiled == eager ----------------------------------------------------------------------------------

LOSSES = {
    "sort-topk": lambda h: h.sort(1, descending=True).values[:, :2].sum() + h.topk(3, 1).values.pow(2).mean()
    + h.argsort(0).float().mean(),
    "cumprod-roll": lambda h: (h.tanh().cumprod(1) + h.roll(1, 0)).pow(2).mean(),
    "einsum-baddbmm": lambda h: tg.einsum("bi,bj->ij", h, h).mean()
    + tg.baddbmm(h.unsqueeze(1), h.unsqueeze(1), tg.ones(4, 6, 6), beta=0.5).pow(2).mean(),
    "norms-logaddexp": lambda h: tg.linalg.vector_norm(h, 2, 1).mean() + tg.linalg.matrix_norm(h, 1)
    + tg.logaddexp(h, -h).mean() + h.clamp(min=h.mean(0), max=h.amax(0) - 0.1).sum(),
    "elu-huber-kl": lambda h: F.elu(h).mean() + F.huber_loss(h, h.detach() * 0.5, delta=0.3)
    + F.kl_div(h.log_softmax(1), h.softmax(1).detach(), reduction="batchmean"),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_compiled_step_equals_eager(backend, name):
    def make():
        model = nn.Linear(3, 6)
        opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)

        def step(x):
            opt.zero_grad()
            loss = LOSSES[name](model(x))
            loss.backward()
            opt.step()
            return loss
        data = lambda i: (tg.tensor(np.random.default_rng(i).standard_normal((4, 3)).astype(np.float32)),)  # noqa: E731
        return dict(step=step, args=data, opts=[opt], model=model,
                    tensors=list(model.state_dict(keep_vars=True).values()))
    compiled = run_both(make, calls=5)
    info = compiled.cache_info()
    assert info.compiles == 1 and info.fallbacks == 0, (info, WARNINGS)
    assert not WARNINGS

"""Parity of the everyday ops with PyTorch: sort/argsort/topk, cumsum/cumprod, roll, baddbmm/addmm, logaddexp,
einsum, linalg norms, tensor-bound clamp and the nn.functional forms (values, gradients, dtypes, errors)."""
from __future__ import annotations

import math

import numpy as np
import pytest

from .harness import check, check_error, randn

X, Y = randn(4, 5), randn(4, 5, seed=1)
TARGETS = (Y > 0).astype(np.float32)


def _distinct(*shape):
    """Values without ties (tie order among equal values is unspecified in PyTorch's unstable sorts)."""
    return np.random.default_rng(3).permutation(np.arange(math.prod(shape), dtype=np.float32)).reshape(shape) / 7


@pytest.mark.parametrize("descending", [False, True])
def test_sort_argsort_topk(descending):
    x = _distinct(3, 6)
    check(lambda L, a: (L.sort(a, 1, descending), a.sort(dim=0, descending=descending),
                        a.argsort(descending=descending), L.topk(a, 2, 1, largest=not descending), a.topk(3, 0)), x)
    ties = np.array([[3.0, np.nan, 1.0, 1.0, -np.inf, 3.0], [2.0, 2.0, 2.0, 0.0, np.nan, np.nan]], np.float32)
    check(lambda L, a: (L.sort(a, stable=True, dim=1, descending=descending),
                        L.argsort(a, dim=0, stable=True, descending=descending)), ties)
    check(lambda L, a: (L.sort(a), L.argsort(a), L.topk(a, 1)), np.float32(2.5))


def test_sort_errors():
    check_error(lambda L, a: L.topk(a, 6), _distinct(5))
    check_error(lambda L, a: L.sort(a, 2), _distinct(5))


def test_cumsum_cumprod_roll():
    z = X.copy()
    z[1, 2] = z[3, 0] = 0.0
    check(lambda L, a: (a.cumprod(1), L.cumprod(a, 0), a.cumsum(-1), L.cumprod(a, 0, dtype=L.float64)), z)
    check(lambda L: (L.tensor([1, 5, 9], dtype=L.int32).cumsum(0), L.tensor([True, False, True]).cumprod(0),
                     L.tensor([2, 3], dtype=L.int16).cumprod(0)))
    check(lambda L, a: (a.roll(1), L.roll(a, (2, -1), (0, 1)), a.roll(-7, 1), L.roll(a, 0, 0)), X)
    check_error(lambda L, a: L.roll(a, (1, 2), 0), X)


def test_baddbmm_addmm_outer():
    check(lambda L, c, a, b: (L.baddbmm(c, a, b), c.baddbmm(a, b, beta=0.5, alpha=-2.0)), randn(2, 3, 4, seed=1),
          randn(2, 3, 5, seed=2), randn(2, 5, 4, seed=3))
    nan = np.full((3, 4), np.nan, np.float32)
    check(lambda L, c, a, b: (L.addmm(c, a, b, beta=0), L.baddbmm(c.expand(2, 3, 4), a.expand(2, 3, 5),
                                                                    b.expand(2, 5, 4), beta=0, alpha=3)),
          nan, randn(3, 5, seed=2), randn(5, 4, seed=3))
    check_error(lambda L, c, a, b: L.baddbmm(c, a, b), randn(2, 3, 4), randn(2, 3, 5), randn(3, 5, 4))


def test_logaddexp():
    check(lambda L, a, b: (L.logaddexp(a, b), a.logaddexp(b * 30), L.logaddexp(a, b[0])), X, Y)
    check(lambda L: L.logaddexp(L.tensor([1.0, -math.inf, math.inf, 3.0]),
                                L.tensor([2.0, -math.inf, math.inf, 3.0])))
    check_error(lambda L: L.logaddexp(L.tensor([1, 2]), L.tensor([3, 4])))


EQUATIONS = [("ij,jk->ik", [(3, 4), (4, 5)]), ("bij,bjk", [(2, 3, 4), (2, 4, 5)]), ("ii->i", [(3, 3)]),
             ("ii", [(3, 3)]), ("ij->", [(3, 4)]), ("i,j->ij", [(3,), (4,)]), ("i,i->", [(3,), (3,)]),
             ("...ij,...jk->...ik", [(2, 1, 3, 4), (5, 4, 2)]), ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]),
             ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 5)]), ("iij->j", [(3, 3, 2)]), ("Ab,bA->", [(3, 4), (4, 3)]),
             ("i...->...", [(2, 3, 4)]), ("ij,ij->ij", [(3, 1), (1, 4)]),
             ("bn,anm,bm->ba", [(2, 3), (5, 3, 4), (2, 4)]),
             ("ij , jk -> ki", [(3, 4), (4, 5)]), (",i->i", [(), (3,)])]


@pytest.mark.parametrize("equation,shapes", EQUATIONS, ids=[e for e, _ in EQUATIONS])
def test_einsum(equation, shapes):
    check(lambda L, *xs: L.einsum(equation, *xs), *[randn(*s, seed=k) for k, s in enumerate(shapes)], rtol=1e-4,
          atol=1e-5)


def test_einsum_list_form_and_errors():
    check(lambda L, a, b: L.einsum("ij,jk", [a, b]), randn(2, 3), randn(3, 2))
    for equation, shapes in [("ij,jk->ik", [(3, 4), (5, 5)]), ("ij->k", [(3, 4)]), ("ij,jk", [(3, 4)]),
                             ("ijk", [(3, 4)]), ("i1->i", [(3, 4)]), ("ij->ii", [(3, 4)])]:
        check_error(lambda L, *xs: L.einsum(equation, *xs), *[randn(*s) for s in shapes])


@pytest.mark.parametrize("ord_", [2, 1, math.inf, -math.inf, 0, 3.0, 0.5])
def test_vector_norm(ord_):
    z = X.copy()
    z[0] = 0.0
    check(lambda L, a: (L.linalg.vector_norm(a, ord_), L.linalg.vector_norm(a, ord_, 1),
                        L.linalg.vector_norm(a, ord_, (0, 1), keepdim=True), L.linalg.norm(a[1], ord_),
                        L.norm(a, ord_, 0)), z if ord_ >= 1 else X, rtol=1e-4,
          backward=ord_ != 0)  # ord 0: PyTorch's result requires grad but leaves .grad None (ours: zeros)


@pytest.mark.parametrize("ord_", ["fro", 1, -1, math.inf, -math.inf])
def test_matrix_norm(ord_):
    check(lambda L, a: (L.linalg.matrix_norm(a, ord_), L.linalg.matrix_norm(a, ord_, (0, 2), keepdim=True),
                        L.linalg.norm(a[0], ord_), L.linalg.norm(a, ord_, (-1, -2))), randn(2, 3, 4), rtol=1e-4)


def test_norm_defaults_and_errors():
    check(lambda L, a: (L.linalg.norm(a), L.linalg.norm(a, dim=1), L.norm(a), a.norm(dim=(0, 1)),
                        L.norm(a, "fro", 1)), X)
    check_error(lambda L: L.linalg.vector_norm(L.tensor([1, 2])))
    check_error(lambda L, a: L.linalg.matrix_norm(a), randn(3))
    check_error(lambda L, a: L.linalg.matrix_norm(a, 3), X)
    check_error(lambda L, a: L.linalg.norm(a, 1), randn(2, 3, 4))


def test_clamp_with_tensor_bounds():
    check(lambda L, a, lo, hi: (L.clamp(a, min=lo, max=hi), a.clamp(lo), a.clamp(max=hi[0]), L.clip(a, lo, hi)), X,
          Y - 0.5, Y + 0.5)
    check(lambda L: (L.clamp(L.tensor([1, 5, 9]), min=L.tensor([2.0, 2.0, 2.0])), L.clamp(L.tensor([1, 5]), max=3)))


def _functional(name):
    return lambda L, *args, **kwargs: getattr(L.nn.functional, name)(*args, **kwargs)


def test_activations():
    F = _functional
    check(lambda L, a: (F("elu")(L, a), F("elu")(L, a * 3, 0.5), L.nn.ELU(2.0)(a), F("silu")(L, a),
                        F("softplus")(L, a * 10, beta=2, threshold=5), F("softplus")(L, a, beta=0.5),
                        F("leaky_relu")(L, a, 0.2), F("gelu")(L, a), F("gelu")(L, a, approximate="tanh")), X)
    check(lambda L, a: (F("elu")(L, a * 0), F("leaky_relu")(L, a * 0), F("normalize")(L, a * 0)), X)


def test_layer_norm_embedding_one_hot_normalize():
    F = _functional
    check(lambda L, a, w, b: (F("layer_norm")(L, a, (5,), w, b), F("layer_norm")(L, a, (4, 5))), X, randn(5, seed=3),
          randn(5, seed=4))
    idx = [[0, 2, 1], [2, 2, 3]]
    check(lambda L, w: (F("embedding")(L, L.tensor(idx), w, padding_idx=2), F("embedding")(L, L.tensor(idx), w, -1)), X)
    check(lambda L: (F("one_hot")(L, L.tensor([0, 3, 5, 1]), 6), F("one_hot")(L, L.tensor([[0, 3], [2, 1]]))))
    check(lambda L, a: (F("normalize")(L, a), F("normalize")(L, a, p=1, dim=0), F("normalize")(L, a, 3.0, -1)), X)


def test_regression_losses():
    F = _functional
    check(lambda L, a, b: (F("smooth_l1_loss")(L, a, b, beta=0.5),
                           F("smooth_l1_loss")(L, a, b, beta=0.0, reduction="none"),
                           F("huber_loss")(L, a, b), F("huber_loss")(L, a, b, "sum", 0.3),
                           F("huber_loss")(L, a, b, "none", 2.0), L.nn.HuberLoss(delta=0.5)(a, b)), X, Y)
    check_error(lambda L, a, b: F("huber_loss")(L, a, b, delta=0.0), X, Y)
    check_error(lambda L, a, b: F("smooth_l1_loss")(L, a, b, beta=-1.0), X, Y)


@pytest.mark.parametrize("reduction", ["batchmean", "sum", "none", "mean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(reduction, log_target):
    target = np.abs(Y) / np.abs(Y).sum(1, keepdims=True)
    target[0, 1] = 0.0
    if log_target:
        target = np.log(target + 0.1)
    check(lambda L, a: (L.nn.functional.kl_div(a.log_softmax(1), L.tensor(target), reduction=reduction,
                                               log_target=log_target),
                        L.nn.KLDivLoss(reduction=reduction, log_target=log_target)(a, L.tensor(target))), X)
    # A target requiring grad (not at 0, where PyTorch's gradient is NaN and ours finite)
    check(lambda L, a, t: L.nn.functional.kl_div(a, t.abs() + 0.1, reduction=reduction, log_target=log_target), X, Y)


def test_binary_cross_entropy_with_logits_pos_weight():
    bce = _functional("binary_cross_entropy_with_logits")
    check(lambda L, a: (bce(L, a, L.tensor(TARGETS), pos_weight=L.tensor(np.abs(randn(5, seed=5)))),
                        bce(L, a * 30, L.tensor(TARGETS), weight=L.tensor(randn(4, 1, seed=6)),
                            pos_weight=L.tensor(np.abs(randn(4, 1, seed=5))), reduction="sum"),
                        L.nn.BCEWithLogitsLoss(pos_weight=L.tensor(np.full(5, 3.0, np.float32)))(a, L.tensor(TARGETS))),
          X, atol=1e-5)  # the composite's gradient rounds differently from PyTorch's fused kernel at large logits


def _weight(L, classes=5):
    return L.tensor(np.abs(randn(classes, seed=2)) + 0.1)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_label_smoothing_and_weights(reduction):
    ce = _functional("cross_entropy")
    check(lambda L, a: (ce(L, a, L.tensor([0, 4, 2, 1]), label_smoothing=0.2, reduction=reduction),
                        ce(L, a, L.tensor([0, 4, 2, 1]), weight=_weight(L), reduction=reduction),
                        ce(L, a, L.tensor([0, 4, 2, 1]), weight=_weight(L), label_smoothing=0.3, reduction=reduction),
                        ce(L, a, L.tensor([0, 3, 2, 3]), weight=_weight(L), label_smoothing=0.3, ignore_index=3,
                           reduction=reduction),
                        ce(L, a, L.tensor([0, -100, 2, 1]), label_smoothing=0.1, reduction=reduction),
                        ce(L, a, L.tensor(Y).softmax(1), weight=_weight(L), label_smoothing=0.3, reduction=reduction)),
          X)
    check(lambda L, a: ce(L, a, L.tensor([[[0, 1], [2, 2]], [[1, 0], [0, 2]]]), weight=_weight(L, 3),
                          label_smoothing=0.1, reduction=reduction), randn(2, 3, 2, 2))


def test_cross_entropy_with_every_target_ignored_has_zero_gradient():
    ce = _functional("cross_entropy")
    check(lambda L, a: (ce(L, a, L.tensor([-100] * 4), label_smoothing=0.1), ce(L, a, L.tensor([-100] * 4)),
                        L.nn.functional.nll_loss(a, L.tensor([1] * 4), weight=_weight(L), ignore_index=1)), X)

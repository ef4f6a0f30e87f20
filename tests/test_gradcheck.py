"""Finite-difference gradient checks (float64) for every primitive, across broadcasting, dims and edge
shapes, plus second-order checks for the differentiable elementwise and matmul set."""
import numpy as np
import pytest

import tracegrad as tg
from tracegrad.autograd import gradcheck, gradgradcheck
from tracegrad.primitives import REGISTRY

from primitive_cases import CASES, inputs


def test_every_primitive_is_gradchecked():
    assert set(REGISTRY) <= set(CASES)


@pytest.mark.parametrize("name", sorted(set(CASES) - {"cast"}))
def test_primitive_gradcheck(name):
    case = CASES[name]
    assert gradcheck(lambda a, b, v: case(a, b, v).double(), inputs(np.float64))


def test_cast_gradient_comes_back_in_the_input_dtype():
    # float32 rounding makes finite differences of a cast meaningless; its VJP is exact: cast back
    x = t64((2, 3))
    (x.float() * 3).sum().backward()
    assert x.grad.dtype == tg.float64 and x.grad.tolist() == [[3.0] * 3] * 2


def t64(shape, seed=0, low=0.5, high=2.0):
    return tg.tensor(np.random.default_rng(seed).uniform(low, high, shape), dtype=tg.float64, requires_grad=True)


BINARY = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y,
          "div": lambda x, y: x / y, "pow": lambda x, y: x ** y, "maximum": tg.maximum, "minimum": tg.minimum,
          "remainder": lambda x, y: x % (y + 2), "where": lambda x, y: tg.where(x > 1.2, x, y)}
SHAPES = [((3, 1), (1, 4)), ((2, 3), (3,)), ((), (2, 3)), ((2, 1, 3), (4, 1)), ((1,), ()), ((0, 3), (1, 3))]


@pytest.mark.parametrize("name", sorted(BINARY))
@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_binary_broadcasting_gradcheck(name, shapes):
    x, y = t64(shapes[0]), t64(shapes[1], seed=1)
    out = BINARY[name](x, y)
    assert tuple(out.shape) == np.broadcast_shapes(*shapes)
    assert gradcheck(BINARY[name], (x, y))
    out.sum().backward()
    assert x.grad.shape == x.shape and y.grad.shape == y.shape


REDUCTIONS = {"sum": lambda x, d, k: x.sum(d, keepdim=k), "amax": lambda x, d, k: x.amax(d, keepdim=k),
              "amin": lambda x, d, k: x.amin(d, keepdim=k), "prod": lambda x, d, k: x.prod(d, keepdim=k),
              "mean": lambda x, d, k: x.mean(d, keepdim=k), "var": lambda x, d, k: x.var(d, keepdim=k),
              "logsumexp": lambda x, d, k: x.logsumexp(d, keepdim=k), "norm": lambda x, d, k: x.norm(dim=d, keepdim=k)}


@pytest.mark.parametrize("name", sorted(REDUCTIONS))
@pytest.mark.parametrize("dim", [0, -1, (0, 2), None], ids=str)
@pytest.mark.parametrize("keepdim", [False, True])
def test_reduction_gradcheck(name, dim, keepdim):
    x = t64((2, 3, 4))
    if dim is None and name in ("amax", "amin", "logsumexp", "norm"):
        fn = {"amax": lambda x: x.amax(), "amin": lambda x: x.amin(), "logsumexp": lambda x: x.logsumexp((0, 1, 2)),
              "norm": lambda x: x.norm()}[name]
    else:
        fn = lambda x: REDUCTIONS[name](x, dim, keepdim)  # noqa: E731
    assert gradcheck(fn, (x,))


@pytest.mark.parametrize("shape", [(), (1,), (1, 1), (3, 1, 1)], ids=str)
def test_edge_shapes_gradcheck(shape):
    x = t64(shape)
    assert gradcheck(lambda x: (x.exp() * x).sum(0 if x.ndim else None) if x.ndim else x.exp() * x, (x,))
    assert gradcheck(lambda x: x.reshape(-1).unsqueeze(0).expand(2, -1) * 3, (x,))


def test_size_zero_dims():
    x = tg.zeros(0, 3, dtype=tg.float64, requires_grad=True)
    s = x.sum(0)
    assert s.tolist() == [0.0, 0.0, 0.0]
    (s * 2).sum().backward()
    assert x.grad.shape == (0, 3)
    y = tg.zeros(2, 0, requires_grad=True)
    (y.exp() @ tg.ones(0, 4)).sum().backward()
    assert y.grad.shape == (2, 0)
    with pytest.raises(IndexError):
        tg.zeros(0, 3).amax(0)


def test_prod_with_zeros_gradcheck():
    x = tg.tensor([[0.0, 2.0, 3.0], [0.0, 0.0, 4.0], [1.5, 2.0, 0.5]], dtype=tg.float64, requires_grad=True)
    assert gradcheck(lambda x: x.prod(1), (x,))


UNARY_SECOND_ORDER = ["exp", "log", "log1p", "expm1", "sqrt", "sin", "cos", "tanh", "sigmoid", "erf", "neg",
                      "abs", "relu"]


@pytest.mark.parametrize("name", UNARY_SECOND_ORDER)
def test_unary_second_order(name):
    x = t64((3, 2), low=0.3, high=1.5)
    assert gradgradcheck(lambda x: getattr(x, name)(), (x,))


@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_second_order(name):
    assert gradgradcheck(BINARY[name], (t64((2, 3)), t64((3,), seed=1)))


@pytest.mark.parametrize("shapes", [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 2)), ((2, 3), (3, 4)),
                                    ((2, 2, 3), (3, 4)), ((2, 1, 2, 3), (3, 3, 2))], ids=str)
def test_matmul_first_and_second_order(shapes):
    a, b = t64(shapes[0]), t64(shapes[1], seed=1)
    assert gradcheck(lambda a, b: a @ b, (a, b))
    assert gradgradcheck(lambda a, b: a @ b, (a, b))


def test_movement_and_indexing_second_order():
    x = t64((3, 4))
    idx = tg.tensor([2, 0, 2])
    assert gradgradcheck(lambda x: (x.t()[1:, idx] ** 2).sum(1), (x,))
    assert gradgradcheck(lambda x: tg.cat([x, x * x], 0).gather(1, tg.tensor([[0], [3], [1], [2], [0], [1]])), (x,))
    assert gradgradcheck(lambda x: x.softmax(1), (x,))

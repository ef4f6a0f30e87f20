"""Data-dependent ops in a compiled step: a graph node, a guard or an eager fallback, never a frozen constant.

Each step runs eagerly and compiled side by side on inputs whose values change between calls; results
(or the errors raised), parameters and their gradients are compared after every call.
"""
import inspect
import re
import warnings

import numpy as np
import pytest

import tracegrad as tg
import tracegrad.nn.functional as F
from tracegrad.compiler import CompileWarning, TraceUnsupported

pytestmark = pytest.mark.usefixtures("backend")  # every test runs per compiling backend

RNG = np.random.default_rng(0)


def vector(*values) -> tg.Tensor:
    """A float32 vector of the given values."""
    return tg.tensor(np.array(values, dtype=np.float32))


def random_vectors(calls: int, size: int = 6) -> list:
    """One standard-normal vector per call (the signs, hence the masks, change from call to call)."""
    return [(tg.tensor(RNG.standard_normal(size).astype(np.float32)),) for _ in range(calls)]


def weights() -> tuple:
    """The parameters of every step here: one vector of six weights."""
    return (tg.tensor(np.linspace(-1.0, 1.0, 6, dtype=np.float32), requires_grad=True),)


def train(loss: tg.Tensor, w: tg.Tensor) -> tg.Tensor:
    """Backward and an SGD update of w; w.grad keeps this step's gradient."""
    w.grad = None
    loss.backward()
    with tg.no_grad():
        w -= 0.1 * w.grad
    return loss


def line_of(fn, text: str) -> str:
    """'file.py:LINE' of the line of fn's source that contains text (what a CompileWarning names)."""
    lines, first = inspect.getsourcelines(fn)
    return f"test_compile_data_dependent.py:{first + next(i for i, s in enumerate(lines) if text in s)}"


def outcome(fn, args: tuple):
    """fn(*args), or the exception it raised."""
    try:
        return fn(*args)
    except Exception as error:  # the compiled step must raise what the eager one raises
        return error


def assert_same(got, expected) -> None:
    """Equal tensors (shape, dtype, values), errors (type, message), or nested structures of them."""
    if isinstance(expected, Exception):
        assert type(got) is type(expected) and str(got) == str(expected), (got, expected)
    elif isinstance(expected, tg.Tensor):
        assert isinstance(got, tg.Tensor) and got.shape == expected.shape and got.dtype is expected.dtype, (got, expected)
        np.testing.assert_allclose(got.detach().numpy(), expected.detach().numpy(), rtol=1e-6, atol=1e-7)
    elif isinstance(expected, (tuple, list)):
        assert type(got) is type(expected) and len(got) == len(expected)
        for g, e in zip(got, expected):
            assert_same(g, e)
    else:
        assert got is expected or got == expected, (got, expected)


def side_by_side(step, calls: list, make_params=weights, **options):
    """Call step eagerly and compiled (on twin parameters) with each argument tuple of calls, comparing
    results, parameters and .grad after every call; returns (the compiled step, CompileWarning messages)."""
    assert len(calls) >= 6
    eager_params, compiled_params = make_params(), make_params()
    compiled = tg.compile(step, **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for args in calls:
            expected = outcome(step, args + eager_params)
            assert_same(outcome(compiled, args + compiled_params), expected)
            for got, want in zip(compiled_params, eager_params):
                assert_same(got, want)
                assert_same(got.grad, want.grad)
    return compiled, [str(w.message) for w in caught if issubclass(w.category, CompileWarning)]


def assert_stays_compiled(compiled, messages: list, variants: int = 1) -> None:
    """No fallback to eager, and the given number of traced variants."""
    info = compiled.cache_info()
    assert not [m for m in messages if "runs eagerly" in m], messages
    assert (info.fallbacks, info.compiles) == (0, variants) and info.hits > 0, info


# ---- results of a data-dependent shape: the step falls back to eager, naming the op and the line ----------

def nonzero_step(x, w):
    picked = tg.nonzero(x > 0)[:, 0]
    return train((w[picked] * x[picked]).sum(), w)


def where_step(x, w):
    picked = tg.where(x > 0)[0]
    return train((w[picked] * x[picked]).sum(), w)


def masked_select_step(x, w):
    kept = tg.masked_select(w * x, x > 0)
    return train(kept.sum() * kept.shape[0], w)


def mask_index_step(x, w):
    kept = (w * x)[x > 0]
    return train(kept.sum() * kept.shape[0], w)


@pytest.mark.parametrize("step,marker,what", [
    (nonzero_step, "tg.nonzero", "nonzero"),
    (where_step, "tg.where", r"where\(condition\) with one argument"),
    (masked_select_step, "tg.masked_select", "masked_select"),
    (mask_index_step, "[x > 0]", "boolean-mask indexing"),
], ids=["nonzero", "where", "masked_select", "mask_index"])
def test_a_data_dependent_shape_falls_back_naming_the_op_and_line(step, marker, what):
    compiled, messages = side_by_side(step, random_vectors(7))
    expected = rf"runs eagerly: {what} \(its result has a data-dependent shape\) at {line_of(step, marker)}$"
    assert len(messages) == 1 and re.search(expected, messages[0]), messages
    assert compiled.cache_info().fallbacks == 1


def test_fullgraph_refuses_a_data_dependent_shape():
    compiled = tg.compile(nonzero_step, fullgraph=True)
    x, (w,) = random_vectors(1)[0][0], weights()
    compiled(x, w)
    with pytest.raises(TraceUnsupported, match=rf"nonzero .* at {line_of(nonzero_step, 'tg.nonzero')}"):
        compiled(x, w)


# ---- data-dependent values of a static shape: graph nodes, and the step stays compiled -------------------

def argmax_index_step(x, w):
    best = x.argmax()
    return train(w[best] * x[best], w)


def max_along_dim_step(x, w):
    values, indices = (w * x).reshape(2, 3).max(1)
    return train(values.sum() + w[indices].sum(), w)


def masked_write_step(x, w):
    y = x.clone()
    y[x < 0] = 0.0
    return train((w * y).sum(), w)


def tensor_of_a_tensor_step(x, w):
    y = tg.tensor(x, dtype=tg.float64)
    return train((w * y.float()).sum(), w), y


def as_tensor_step(x, w):
    y = tg.as_tensor(x, dtype=tg.float64)
    return train((w * y.float()).sum(), w), y


def fill_with_a_tensor_step(x, w):
    filled = tg.zeros(6).fill_(x.mean())
    return train((w * filled).sum(), w), filled


@pytest.mark.parametrize("step", [argmax_index_step, max_along_dim_step, masked_write_step, tensor_of_a_tensor_step,
                                  as_tensor_step, fill_with_a_tensor_step], ids=lambda s: s.__name__)
def test_values_feeding_a_static_shape_stay_in_the_graph(step):
    assert_stays_compiled(*side_by_side(step, random_vectors(7)))


def isclose_step(x, y, w):
    close = tg.isclose(x, y, rtol=1e-3, atol=1e-2, equal_nan=True)
    return train((w * close.float()).sum(), w), close, tg.isclose(x, y)


def test_isclose_is_numpys_formula_in_the_graph():
    inf, nan = float("inf"), float("nan")
    pairs = [(vector(1, inf, nan, 0, -inf, 2), vector(1.0005, inf, nan, 0.005, inf, inf)),
             (vector(inf, 1, nan, 3, 0, 1e-9), vector(inf, 1.1, 1, 3, 0.02, 0)),
             (vector(-inf, 5, 1, nan, 1, 1), vector(-inf, 5.001, 1.002, nan, 1.00001, 0.99)),
             (vector(1, 2, 3, 4, 5, 6), vector(1, 2.01, 3, 4.1, 5, 6.0001)),
             (vector(0, 0, 0, 0, 0, 0), vector(0.01, -0.01, 0.011, inf, nan, 0)),
             (vector(nan, nan, 1, 1, 2, 2), vector(nan, 1, nan, 1, 2.002, 2.003))]
    assert_stays_compiled(*side_by_side(isclose_step, pairs))  # eagerly isclose is np.isclose itself


def test_isclose_of_integers_and_mixed_dtypes_matches_numpy():
    def step(a, b):
        return tg.isclose(a, b, rtol=0.1, atol=1), tg.isclose(b, a.double(), rtol=0.1, atol=1)

    calls = [(tg.tensor([k, 10, -3, 2 ** 40]), tg.tensor([k + 1.0, 11.5, -1.0, 2.0 ** 40 + 1], dtype=tg.float32))
             for k in range(6)]
    assert_stays_compiled(*side_by_side(step, calls, make_params=tuple))  # eagerly: np.isclose


def equal_branch_step(x, y, w):
    scale = 2.0 if tg.equal(x, y) else -1.0
    return train((w * x).sum() * scale, w)


def allclose_branch_step(x, y, w):
    scale = 2.0 if tg.allclose(x, y, atol=1e-3) else -1.0
    return train((w * x).sum() * scale, w)


@pytest.mark.parametrize("step", [equal_branch_step, allclose_branch_step], ids=["equal", "allclose"])
def test_a_branch_on_a_comparison_compiles_one_variant_per_outcome(step):
    calls = []
    for i in range(8):
        x = tg.tensor(RNG.standard_normal(6).astype(np.float32))
        calls.append((x, x.clone() if i % 2 else x + 1.0))
    compiled, messages = side_by_side(step, calls)
    assert_stays_compiled(compiled, messages, variants=2)
    assert compiled.cache_info().guard_failures > 0


# ---- checks that raise: guards that hold while the values pass and send a failing call to eager ----------

def integer_division_step(op):
    def step(a, b, w):
        q = op(a, b)
        return train((w * q.float()).sum(), w), q
    return step


DIVISIONS = {"floor_divide": lambda a, b: a // b, "remainder": lambda a, b: a % b,
             "div_floor": lambda a, b: tg.div(a, b, rounding_mode="floor"),
             "div_trunc": lambda a, b: tg.div(a, b, rounding_mode="trunc"),
             "remainder_": lambda a, b: a.clone().remainder_(b)}


@pytest.mark.parametrize("name", DIVISIONS)
def test_an_integer_division_by_zero_raises_compiled_as_eagerly(name):
    op = DIVISIONS[name]
    divisors = [[1, 2, 3, 4, 5, 6], [2, 3, -1, 5, 7, 1], [3, 0, 1, 2, 2, 2], [1, 1, 2, 2, 3, 3],
                [-2, 4, 4, 1, 9, 2], [0, 0, 1, 1, 1, 1], [5, 5, 5, 5, 5, 5]]
    calls = [(tg.tensor([7, -8, 9, 10, -11, 12]) * (i + 1), tg.tensor(d)) for i, d in enumerate(divisors)]
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        op(*calls[2])
    assert_stays_compiled(*side_by_side(integer_division_step(op), calls))


def index_select_step(x, index, w):
    return train((w.index_select(0, index) * x.index_select(0, index)).sum(), w)


def gather_step(x, index, w):
    return train((w * x).reshape(2, 3).gather(1, index.reshape(2, 1)).sum(), w)


def cross_entropy_step(x, target, w):
    return train(F.cross_entropy((w * x).reshape(2, 3), target), w)


@pytest.mark.parametrize("step", [index_select_step, gather_step, cross_entropy_step], ids=lambda s: s.__name__)
def test_an_index_out_of_range_raises_compiled_as_eagerly(step):
    # A negative index raises eagerly (like PyTorch) but the compiled gather would wrap it.
    indices = [[0, 2], [1, 1], [2, 0], [-1, 0], [0, 1], [2, 3], [1, 2], [0, -3]]
    calls = [(x, tg.tensor(index)) for (x,), index in zip(random_vectors(len(indices)), indices)]
    assert_stays_compiled(*side_by_side(step, calls))


# ---- values that pick shapes or Python values: guards on the exact value -------------------------------

def prefix_step(x, n, w):
    k = int(n)
    return train((w[:k] * x[:k]).sum() + tg.arange(n).sum(), w)


def one_hot_step(x, label, w):
    return train((w * x).sum() * F.one_hot(label).sum(), w)


def argmax_as_int_step(x, w):
    return train(w[int(x.argmax())] * 2.0, w)


@pytest.mark.parametrize("step,values", [(prefix_step, [tg.tensor(3), tg.tensor(5)]),
                                         (one_hot_step, [tg.tensor([0, 2]), tg.tensor([1, 4])])],
                         ids=["prefix", "one_hot"])
def test_a_value_that_picks_a_shape_guards_on_it(step, values):
    calls = [(x, values[i % 2]) for i, (x,) in enumerate(random_vectors(8))]
    assert_stays_compiled(*side_by_side(step, calls), variants=2)


def test_argmax_read_as_a_python_int_guards_on_its_value():
    calls = [(tg.tensor(np.eye(6, dtype=np.float32)[i % 3]),) for i in range(9)]
    assert_stays_compiled(*side_by_side(argmax_as_int_step, calls), variants=3)


# ---- new tensors built from the values of others ---------------------------------------------------------

def tensor_of_scalars_step(x, w):
    stats = tg.tensor([x.sum(), x.max()])
    return train((w * x).sum() * stats.sum(), w)


def test_a_tensor_of_scalar_tensors_guards_on_their_values():
    compiled, messages = side_by_side(tensor_of_scalars_step, random_vectors(6))
    info = compiled.cache_info()
    assert not messages and info.guard_failures > 0 and info.fallbacks == 0, (info, messages)


def tensor_of_vectors_step(x, w):
    pair = tg.tensor([x, x * 2])
    return train((w * pair).sum(), w)


def legacy_constructor_step(x, w):
    copy = tg.Tensor(x)
    return train((w * copy).sum(), w)


@pytest.mark.parametrize("step,marker", [(tensor_of_vectors_step, "tg.tensor(["), (legacy_constructor_step, "tg.Tensor(")],
                         ids=["tensor", "legacy_constructor"])
def test_a_tensor_of_non_scalar_tensors_falls_back_naming_the_line(step, marker):
    compiled, messages = side_by_side(step, random_vectors(6))
    assert messages == [f"tracegrad.compile: {step.__name__} runs eagerly: conversion to a new tensor of a 6-element "
                        f"tensor (its values leave the graph) at {line_of(step, marker)}"]


def data_assignment_step(x, w):
    loss = (w * x).sum()
    w.grad = None
    loss.backward()
    w.data = w.data - 0.1 * w.grad  # the legacy form of an SGD update
    return loss


def test_assigning_data_rebinds_the_tensor_in_the_graph():
    assert_stays_compiled(*side_by_side(data_assignment_step, random_vectors(6)))


def data_reshaping_step(x, w):
    buffer = tg.zeros(6)
    buffer.data = x.reshape(2, 3)
    return train((w * buffer.reshape(6)).sum(), w)


def test_assigning_data_of_another_shape_falls_back_naming_the_line():
    messages = side_by_side(data_reshaping_step, random_vectors(6))[1]
    assert messages == ["tracegrad.compile: data_reshaping_step runs eagerly: assigning a float32[2, 3] tensor to "
                        ".data of a float32[6] one (compiled buffers keep their shape and dtype) at "
                        f"{line_of(data_reshaping_step, 'buffer.data =')}"]

"""One table drives the surface: an op declared in one place works everywhere, and nothing else names it.

A new elementwise primitive (implementation, VJP, surface) declared at run time gets its function,
methods and in-place method, eager autograd, the tracer, the interpreter and the Numba backend, with
no other file touched. The regular elementwise family is declared only in the primitive table, and each
generated in-place method agrees with its function for every dtype.
"""
import ast
import pathlib

import numpy as np
import pytest

import tracegrad as tg
from tracegrad import surface
from tracegrad.autograd import gradcheck
from tracegrad.primitives import REGISTRY, Primitive, lax
from tracegrad.primitives.base import Surface, elementwise_shape, same_dtype

PACKAGE = pathlib.Path(tg.__file__).parent
NAME = "sinh_declared_here"


@pytest.fixture
def sinh():
    """sinh, declared the way a user extends the table (and forgotten again afterwards)."""
    prim = Primitive(NAME, "elementwise", np.sinh, shape_rule=elementwise_shape, dtype_rule=same_dtype,
                     saves=(0,), ufunc=np.sinh, surface=Surface("Hyperbolic sine, elementwise.", promote="float"))

    @prim.defvjp
    def _sinh_vjp(node, g):  # cosh(x) = (e^x + e^-x) / 2
        x = node.saved(0)
        return (lax.mul(g, lax.mul(lax.add(lax.exp(x), lax.exp(lax.neg(x))), 0.5)),)
    yield prim
    del REGISTRY[NAME]
    for namespace in (tg, tg.ops, tg.Tensor):
        delattr(namespace, NAME)
    delattr(tg.Tensor, NAME + "_")


def test_a_primitive_declared_at_run_time_gets_its_function_methods_and_in_place_method(sinh):
    x = tg.tensor([0.5, -1.0, 2.0])
    expected = np.sinh(x.numpy())
    np.testing.assert_allclose(getattr(tg, NAME)(x).numpy(), expected, rtol=1e-6)
    np.testing.assert_allclose(getattr(x, NAME)().numpy(), expected, rtol=1e-6)
    y = x.clone()
    assert getattr(y, NAME + "_")() is y
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6)
    assert getattr(tg, NAME)(tg.tensor([1, 2])).dtype == tg.float32  # "float": integers compute in floats
    with pytest.raises(RuntimeError, match="result type Float can't be cast to the desired output type Long"):
        getattr(tg.tensor([1, 2]), NAME + "_")()


def test_a_primitive_declared_at_run_time_differentiates_eagerly(sinh):
    x = tg.tensor([0.3, -0.7, 1.1], dtype=tg.float64, requires_grad=True)
    assert gradcheck(lambda t: getattr(tg, NAME)(t) * 2, (x,))
    (g,) = tg.autograd.grad(getattr(tg, NAME)(x).sum(), x, create_graph=True)  # a VJP of lax ops: differentiable
    np.testing.assert_allclose(g.detach().numpy(), np.cosh(x.detach().numpy()))
    (gg,) = tg.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(gg.numpy(), np.sinh(x.detach().numpy()))


@pytest.mark.parametrize("backend", ["interpreter", "numba"])
def test_a_primitive_declared_at_run_time_is_traced_and_compiled(sinh, backend):
    def make():
        w = tg.tensor([0.2, -0.4, 0.6], requires_grad=True)

        def step(x):
            loss = getattr(tg, NAME)(x * w).sum()
            loss.backward()
            with tg.no_grad():
                w.sub_(0.1 * w.grad)
                w.grad = None
            return loss
        return step, w

    eager_step, eager_w = make()
    step, w = make()
    compiled = tg.compile(step, backend=backend)
    for i in range(5):
        x = tg.tensor([1.0, 2.0, 3.0]) * (i + 1) / 5
        np.testing.assert_allclose(compiled(x).detach().numpy(), eager_step(x).detach().numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(w.detach().numpy(), eager_w.detach().numpy(), rtol=1e-4, atol=1e-6)
    assert compiled.cache_info().hits == 3
    graph = tg.make_ir(step)(tg.ones(3))
    assert NAME in {n.prim for n in graph.nodes}


# ---- the regular family is declared in the table alone -------------------------------------------------

def _bound_names(path: pathlib.Path) -> set:
    """Names a module defines, assigns, imports or lists as method names (the strings of _SAME_NAME)."""
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
            names.update(a.name for a in node.names)
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            names.update(node.value.value.split())  # a list of method names in a string
    return names


def test_the_regular_elementwise_family_is_declared_only_in_the_primitive_table():
    generated = set(surface.generated())
    assert {"exp", "sigmoid", "mul", "eq", "bitwise_xor"} <= generated
    aliases = {a for name in generated for a in REGISTRY[name].surface.aliases}
    for module in ("ops.py", "tensor_methods.py", "__init__.py"):
        declared = (generated | aliases) & _bound_names(PACKAGE / module)
        assert not declared, f"{module} declares generated ops again: {sorted(declared)}"


def test_the_primitive_table_imports_no_layer_above_it():
    for path in (PACKAGE / "primitives").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                modules = [node.module or ""] + [f"{node.module or ''}.{a.name}" for a in node.names]
                assert not any(m.split(".")[0] in ("ops", "tensor_methods", "surface", "backends") or
                               m.lstrip(".").startswith(("ops", "tensor_methods", "backends")) for m in modules), \
                    f"{path.name} imports {modules}"


DTYPES = [tg.bool, tg.uint8, tg.int32, tg.int64, tg.float32, tg.float64]


def _sample(dtype) -> tg.Tensor:
    values = np.array([[0.0, 1.5, -2.0], [3.0, -0.5, 2.0]])
    return tg.tensor(values).to(dtype) if dtype is not tg.bool else tg.tensor(values > 0)


def _outcome(fn):
    try:
        return fn(), None
    except (RuntimeError, TypeError, ValueError) as error:
        return None, type(error)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("name", [n for n in surface.generated() if REGISTRY[n].surface.inplace])
def test_every_generated_in_place_method_agrees_with_its_function(name, dtype):
    binary = REGISTRY[name].surface.promote in ("common", "integral")
    other = (_sample(dtype).flip(0),) if binary else ()
    expected, error = _outcome(lambda: getattr(tg, name)(_sample(dtype), *other))
    x = _sample(dtype)
    got, in_place_error = _outcome(lambda: getattr(x, name + "_")(*other))
    if error is not None:
        assert in_place_error is error, f"{name}_ on {dtype.name}: {in_place_error} where {name} raised {error}"
    elif expected.dtype.category > dtype.category:
        assert in_place_error is RuntimeError, f"{name}_ on {dtype.name} wrote a {expected.dtype.name} result"
    else:
        assert in_place_error is None and got is x and x.dtype is dtype, f"{name}_ on {dtype.name}: {in_place_error}"
        np.testing.assert_array_equal(x.numpy(), expected.to(dtype).numpy())


def test_a_primitive_is_spelled_for_the_numba_backend_in_one_place_and_its_kernels_are_keyed_by_that():
    from tracegrad.backends.numba_cpu import cache, scalars
    both = [name for name, prim in REGISTRY.items() if "numba" in prim.lowerings and
            (name in scalars.ELEMENTWISE or name in scalars.REDUCTIONS)]
    assert not both, f"spelled both in the declaration and in backends/numba_cpu/scalars.py: {both}"
    # the kernel cache hashes how the backend spells ops (its folder), not the primitive table's files
    folder = PACKAGE / "backends" / "numba_cpu"
    assert cache.hashed_files() and all(f.parent == folder for f in cache.hashed_files())


def test_a_declared_spelling_is_part_of_the_kernel_key(sinh):
    from tracegrad.backends.numba_cpu.scalars import spelled_elsewhere
    graph = tg.make_ir(lambda x: getattr(tg, NAME)(x) * 2)(tg.ones(3))
    derived = spelled_elsewhere(graph)
    assert "np.sinh({0})" in derived  # spelled as its ufunc
    sinh.lowerings["numba"] = "({T}(0.5) * (fm.exp({0}) - fm.exp(-{0})))"
    assert spelled_elsewhere(graph) != derived and "fm.exp" in spelled_elsewhere(graph)


# ---- a backend is a folder with a small interface ---------------------------------------------------------

def test_a_backend_added_by_the_recipe_compiles_steps(monkeypatch):
    """docs/ARCHITECTURE.md's recipe, walked: a folder module providing a backend, listed in _FOLDERS."""
    import sys
    import types

    from tracegrad import backends
    from tracegrad.backends.interpreter import Interpreted
    from tracegrad.ir import run

    compiled_graphs = []

    class Counting:
        """The interpreter, counting the graphs it compiles."""

        name = "counting"
        fallback = "interpreter"

        def unavailable(self):
            return None

        def compile(self, graph):
            compiled_graphs.append(graph.name)
            return Interpreted(run, graph)

        def kernel_report(self, graph):
            return None

    folder = types.ModuleType("tracegrad.backends.counting")
    folder.PROVIDES = {"counting": Counting()}
    monkeypatch.setitem(sys.modules, folder.__name__, folder)
    monkeypatch.setitem(backends._FOLDERS, "counting", "counting")

    w = tg.ones(3, requires_grad=True)

    def step(x):
        loss = (x * w).sum()
        loss.backward()
        with tg.no_grad():
            w.sub_(0.1 * w.grad)
            w.grad = None
        return loss

    compiled = tg.compile(step, backend="counting")
    losses = [float(compiled(tg.ones(3) * i)) for i in range(5)]
    assert compiled_graphs == ["step"] and compiled.cache_info().hits == 3
    expected, v = [], np.ones(3, dtype=np.float32)
    for i in range(5):  # the same step in NumPy
        expected.append(float((np.ones(3, np.float32) * i * v).sum()))
        v = v - np.float32(0.1) * (np.ones(3, np.float32) * i)
    np.testing.assert_allclose(losses, expected, rtol=1e-6)
    np.testing.assert_allclose(w.detach().numpy(), v, rtol=1e-6)


def test_generated_binary_ops_take_their_second_operand_by_pytorchs_keyword():
    x = tg.tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(tg.pow(x, exponent=2).numpy(), [1.0, 4.0, 9.0])
    np.testing.assert_array_equal(x.pow(exponent=3).numpy(), x.pow(3).numpy())
    np.testing.assert_array_equal(tg.mul(x, other=2).numpy(), [2.0, 4.0, 6.0])
    with pytest.raises(TypeError, match="pow\\(\\) takes input and exponent"):
        tg.pow(x, 2, exponent=3)

"""The primitive table: each primitive declared once, read by eager mode, autograd and the compiler.

A primitive has
  * ``impl(*arrays, **attrs) -> ndarray``: the NumPy implementation,
  * ``shape_rule(in_shapes, **attrs) -> shape`` and ``dtype_rule(in_dtypes, **attrs) -> dtype``:
    abstract evaluation, used to check graphs without running them,
  * ``lowerings``: ``{backend: template}`` for a primitive declared outside the library whose
    backend spelling can't be derived (a backend spells the library's own primitives in its
    folder, and a NumPy ufunc as itself: ``backends/numba_cpu/scalars.py``),
  * ``vjp(node, g) -> tuple``: the vector-Jacobian product, written with tracegrad ops so it
    works on tensors (eager backward, ``create_graph=True``) and on traced values alike.
    ``node.saved(i)`` gives input ``i`` and ``node.saved_output()`` the result, when the
    primitive declared it saves them; ``node.needs_input_grad[i]`` says which cotangents are
    wanted (return None for the others). Where ``records_nothing()``, the hottest rules run the
    same primitives' impls on the arrays instead, wrapping only their results.
Everything else (softmax, losses, layers, optimizers) is composed from these.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..autograd.grad_mode import STATE
from ..tensor import TRACE, Tensor

REGISTRY: dict[str, "Primitive"] = {}


def records_nothing() -> bool:
    """True when ops record neither graph nodes nor a trace: a backward without create_graph, not compiled.

    A VJP may then call the primitives' impls on the arrays (the values its tensor ops give, bit for
    bit) and wrap only its results: the intermediate tensors it skips would be seen by no one, and
    their dispatch is most of an eager backward's cost.
    """
    return not STATE.grad_enabled and TRACE.tracer is None


class Primitive:
    """One entry of the primitive table."""

    __slots__ = ("name", "kind", "impl", "vjp", "saves", "saves_output", "shape_rule",
                 "dtype_rule", "ufunc", "node_name", "lowerings", "reads_values")

    def __init__(self, name: str, kind: str, impl: Callable, *, shape_rule: Callable,
                 dtype_rule: Callable, saves: tuple[int, ...] | slice = (), saves_output: bool = False,
                 ufunc: np.ufunc | None = None, lowerings: dict | None = None, reads_values: bool = True) -> None:
        if name in REGISTRY:
            raise ValueError(f"primitive {name!r} is declared twice")
        self.name = name
        self.kind = kind  # elementwise | reduce | movement | index | linalg
        self.impl = impl
        self.vjp: Callable | None = None  # None: not differentiable (integer or boolean result)
        self.saves = saves
        self.saves_output = saves_output
        self.shape_rule = shape_rule
        self.dtype_rule = dtype_rule
        self.ufunc = ufunc  # lets in-place ops write straight into the destination
        self.lowerings = dict(lowerings or {})
        self.reads_values = reads_values  # False: the result depends on the operands' shapes alone
        self.node_name = "".join(p.capitalize() for p in name.split("_")) + "Backward0"
        REGISTRY[name] = self

    @property
    def saves_first_input(self) -> bool:
        """True when the VJP needs input 0 as it was (in-place ops must then keep a copy)."""
        return isinstance(self.saves, tuple) and 0 in self.saves

    def defvjp(self, vjp: Callable) -> Callable:
        """Attach the VJP rule (used as a decorator)."""
        self.vjp = vjp
        return vjp

    def __repr__(self) -> str:
        return f"<primitive {self.name}>"


def _errors_ignored():
    """A context-variable setter that turns NumPy's floating-point warnings off cheaply, if available."""
    try:
        from numpy._core._ufunc_config import _extobj_contextvar  # NumPy 2
    except ImportError:
        return None
    with np.errstate(all="ignore"):
        ignore_all = _extobj_contextvar.get()
    return _extobj_contextvar, ignore_all


_ERRSTATE = _errors_ignored()


def quiet(fn: Callable) -> Callable:
    """NumPy's floating-point warnings off: like PyTorch, inf and nan are values, not warnings.

    np.errstate costs about a microsecond per call; setting NumPy's error-state context variable
    directly (the same thing errstate does) costs a tenth of that, and this runs once per op.
    """
    if _ERRSTATE is None:
        def impl(*args, **kwargs):
            with np.errstate(all="ignore"):
                return fn(*args, **kwargs)
    else:
        var, ignore_all = _ERRSTATE

        def impl(*args, **kwargs):
            token = var.set(ignore_all)
            try:
                return fn(*args, **kwargs)
            finally:
                var.reset(token)
    impl.__name__ = getattr(fn, "__name__", "impl")
    return impl


# ---- shared shape and dtype rules -------------------------------------------------------

def broadcast_shapes(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """NumPy broadcasting of shapes; RuntimeError naming both sizes on mismatch."""
    ndim = max(len(s) for s in shapes)
    out = []
    for axis in range(-ndim, 0):
        size = 1
        for s in shapes:
            if -axis <= len(s) and s[axis] != 1:
                if size != 1 and s[axis] != size:
                    raise RuntimeError(
                        f"The size of tensor a ({size}) must match the size of tensor b ({s[axis]}) "
                        f"at non-singleton dimension {ndim + axis}; shapes were "
                        f"{' and '.join(str(list(x)) for x in shapes)}")
                size = s[axis]
        out.append(size)
    return tuple(out)


def same_dtype(in_dtypes, **attrs):
    """Dtype rule: the first input's dtype."""
    return in_dtypes[0]


def bool_dtype(in_dtypes, **attrs):
    """Dtype rule: bool (comparisons, predicates)."""
    from .. import dtypes
    return dtypes.bool_


def elementwise_shape(in_shapes, **attrs):
    """Shape rule: the broadcast of the input shapes."""
    return broadcast_shapes(*in_shapes)


def reduced_shape(in_shapes, axes, keepdim, **attrs):
    """Shape rule of reductions: the axes removed, or kept as size 1."""
    shape = in_shapes[0]
    if keepdim:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def sum_to_shape(g, shape: tuple[int, ...]):
    """Reduce a broadcast cotangent back to an input's shape (the VJP of broadcasting)."""
    g_shape = g._data.shape
    if g_shape == shape:
        return g
    lead = len(g_shape) - len(shape)
    ones = tuple(lead + i for i, s in enumerate(shape) if s == 1 and g_shape[lead + i] != 1)
    if records_nothing() and (lead or ones):  # the sum (and reshape) below, on the array
        total = REGISTRY["sum"].impl(g._data, axes=tuple(range(lead)) + ones, keepdim=bool(ones))
        return Tensor._make(total if total.shape == shape else REGISTRY["reshape"].impl(total, shape=shape))
    if not ones:  # only leading axes were added: one sum gives the shape directly
        return g.sum(tuple(range(lead)))
    g = g.sum(tuple(range(lead)) + ones, keepdim=True)
    return g.reshape(shape) if g._data.shape != shape else g

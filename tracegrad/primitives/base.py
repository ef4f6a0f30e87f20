"""The primitive table: each primitive declared once, read by eager mode, autograd and the compiler.

A primitive has
  * ``impl(*arrays, **attrs) -> ndarray``: the NumPy implementation,
  * ``shape_rule(in_shapes, **attrs) -> shape`` and ``dtype_rule(in_dtypes, **attrs) -> dtype``:
    abstract evaluation, used to check graphs without running them,
  * ``surface``: for the regular elementwise family, how the op appears to users (``Surface``): the
    function ``tracegrad.<name>`` (also ``Tensor.<name>``) and the in-place method ``Tensor.<name>_``
    are generated from it (``tracegrad/surface.py``), with one promotion rule for all three,
  * ``lowerings``: ``{backend: template}`` for a primitive declared outside the library whose
    backend spelling can't be derived (a backend spells the library's own primitives in its
    folder, and a NumPy ufunc as itself: ``backends/numba_cpu/scalars.py``),
  * ``vjp(node, g) -> tuple``: the vector-Jacobian product, written with the primitive-level
    functions of ``lax.py`` so it works on tensors (eager backward, ``create_graph=True``) and on
    traced values alike.
    ``node.saved(i)`` gives input ``i`` and ``node.saved_output()`` the result, when the
    primitive declared it saves them; ``node.needs_input_grad[i]`` says which cotangents are
    wanted (return None for the others). Where ``records_nothing()``, the hottest rules run the
    same primitives' impls on the arrays instead, wrapping only their results.
Everything else (softmax, losses, layers, optimizers) is composed from these.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..autograd.engine import node_class
from ..autograd.grad_mode import STATE
from ..tensor import TRACE

REGISTRY: dict[str, "Primitive"] = {}
# Called with every primitive declared from now on (the surface generator installs its functions and methods)
ON_DECLARE: list[Callable[["Primitive"], None]] = []


@dataclass(frozen=True)
class Surface:
    """How a regular elementwise primitive appears to users.

    ``promote`` is the one promotion rule its function, method and in-place method share: "float"
    (integer and bool inputs compute in the default float dtype), "same" (inputs as they are),
    "common" (two operands promoted to their common dtype, PyTorch's rule) or "integral" (the same,
    refusing floating-point operands). ``inplace``: whether ``Tensor.<name>_`` exists. ``aliases``:
    other names of the function and methods (``multiply`` for ``mul``). ``operand``: PyTorch's keyword
    for the second operand of a binary op (``exponent`` for ``pow``).
    """

    doc: str
    promote: str = "same"
    inplace: bool = True
    aliases: tuple = ()
    operand: str = "other"


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
                 "dtype_rule", "ufunc", "write", "_node_name", "node_class", "surface", "lowerings",
                 "reads_values")

    def __init__(self, name: str, kind: str, impl: Callable, *, shape_rule: Callable,
                 dtype_rule: Callable, saves: tuple[int, ...] | slice = (), saves_output: bool = False,
                 ufunc: np.ufunc | None = None, surface: Surface | None = None, lowerings: dict | None = None,
                 reads_values: bool = True) -> None:
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
        # the ufunc with NumPy's floating-point warnings off, as the out-of-place ops run (``write(x, y, out=x)``)
        self.write = None if ufunc is None else quiet(ufunc)
        self.surface = surface
        self.lowerings = dict(lowerings or {})
        self.reads_values = reads_values  # False: the result depends on the operands' shapes alone
        self.node_name = "".join(p.capitalize() for p in name.split("_")) + "Backward0"
        REGISTRY[name] = self
        for hook in ON_DECLARE:
            hook(self)

    @property
    def node_name(self) -> str:
        """The class name of this primitive's autograd nodes (PyTorch's, e.g. 'MulBackward0')."""
        return self._node_name

    @node_name.setter
    def node_name(self, name: str) -> None:
        self._node_name = name
        self.node_class = node_class(name)  # the class itself, read once per recorded op

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

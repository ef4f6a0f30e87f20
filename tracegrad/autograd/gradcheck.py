"""Finite-difference checks of first and second derivatives (use float64 inputs)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np


class GradcheckError(RuntimeError):
    """Analytical and numerical derivatives disagree."""


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _differentiable_outputs(func: Callable, inputs: tuple) -> list:
    return [o for o in _as_tuple(func(*inputs)) if o.requires_grad or o.is_floating_point()]


def _numerical_jacobian(func: Callable, inputs: tuple, wrt: list, eps: float) -> list:
    """d outputs / d input as (n_outputs_total, n_input) blocks by central differences."""
    columns = []
    for x in wrt:
        if not x._data.flags.c_contiguous:
            raise ValueError("gradcheck needs contiguous inputs; pass .contiguous() tensors")
        flat = x._data.reshape(-1)
        cols = []
        for k in range(flat.size):
            orig = flat[k]
            flat[k] = orig + eps
            plus = [o._data.astype(np.float64).ravel() for o in _differentiable_outputs(func, inputs)]
            flat[k] = orig - eps
            minus = [o._data.astype(np.float64).ravel() for o in _differentiable_outputs(func, inputs)]
            flat[k] = orig
            cols.append(np.concatenate([(p - m) / (2 * eps) for p, m in zip(plus, minus)]))
        columns.append(np.stack(cols, axis=1) if cols else None)
    return columns


def _analytical_jacobian(func: Callable, inputs: tuple, wrt: list) -> list:
    from . import grad as autograd_grad
    from ..creation import zeros_like
    outputs = _differentiable_outputs(func, inputs)
    rows = [[] for _ in wrt]
    for out in outputs:
        for m in range(out.numel()):
            seed = zeros_like(out)
            seed._data.reshape(-1)[m] = 1
            if out.requires_grad:
                grads = autograd_grad(out, wrt, seed, retain_graph=True, allow_unused=True)
            else:
                grads = [None] * len(wrt)
            for i, (g, x) in enumerate(zip(grads, wrt)):
                rows[i].append(np.zeros(x.numel()) if g is None else g._data.astype(np.float64).ravel())
    return [np.stack(r, axis=0) if r else np.zeros((0, x.numel())) for r, x in zip(rows, wrt)]


def gradcheck(func: Callable, inputs, *, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3,
              raise_exception: bool = True, **unused) -> bool:
    """Compare autograd's Jacobian of func with central finite differences at inputs."""
    from ..tensor import Tensor
    inputs = _as_tuple(inputs)
    wrt = [x for x in inputs if isinstance(x, Tensor) and x.requires_grad]
    if not wrt:
        raise ValueError("gradcheck expects at least one input tensor to require gradient, but none of them have requires_grad=True.")
    numerical = _numerical_jacobian(func, inputs, wrt, eps)
    analytical = _analytical_jacobian(func, inputs, wrt)
    for i, (a, n) in enumerate(zip(analytical, numerical)):
        if n is None:
            continue
        if a.shape != n.shape or not np.allclose(a, n, rtol=rtol, atol=atol):
            if raise_exception:
                raise GradcheckError(f"Jacobian mismatch for output 0 with respect to input {i},\n"
                                     f"numerical:{n}\nanalytical:{a}\n")
            return False
    return True


def gradgradcheck(func: Callable, inputs, grad_outputs: Sequence | None = None, *, eps: float = 1e-6,
                  atol: float = 1e-5, rtol: float = 1e-3, raise_exception: bool = True, **unused) -> bool:
    """Check second derivatives: gradcheck of the (create_graph) gradient of func."""
    from ..tensor import Tensor
    from ..creation import randn_like
    from . import grad as autograd_grad
    inputs = _as_tuple(inputs)
    outputs = _as_tuple(func(*inputs))
    if grad_outputs is None:
        grad_outputs = [randn_like(o).requires_grad_() for o in outputs]
    grad_outputs = list(_as_tuple(grad_outputs))
    n_in = len(inputs)

    def first_derivative(*args):
        ins, gos = args[:n_in], args[n_in:]
        outs = _as_tuple(func(*ins))
        diff = [x for x in ins if isinstance(x, Tensor) and x.requires_grad]
        grads = autograd_grad(outs, diff, gos, create_graph=True, allow_unused=True)
        return tuple(g for g in grads if g is not None)

    return gradcheck(first_derivative, tuple(inputs) + tuple(grad_outputs), eps=eps, atol=atol, rtol=rtol,
                     raise_exception=raise_exception)

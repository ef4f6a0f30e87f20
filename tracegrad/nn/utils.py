"""Gradient utilities: clipping by norm and by value."""
from __future__ import annotations

from typing import Iterable

from .. import ops
from ..autograd.grad_mode import no_grad
from ..tensor import Tensor


def _grads(parameters) -> list:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters: Iterable[Tensor] | Tensor, max_norm: float, norm_type: float = 2.0,
                    error_if_nonfinite: bool = False) -> Tensor:
    """Scale gradients in place so their total norm is at most max_norm; returns the total norm."""
    grads = _grads(parameters)
    if not grads:
        return ops.zeros(())
    with no_grad():
        norms = ops.stack([g.norm(norm_type) for g in grads])
        total = norms.amax() if norm_type == float("inf") else norms.norm(norm_type)
        if error_if_nonfinite and not bool(total.isfinite()):
            raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
                               f"so it cannot be clipped. To disable this error and scale the gradients by the "
                               f"non-finite norm anyway, set `error_if_nonfinite=False`")
        scale = (max_norm / (total + 1e-6)).clamp(max=1.0)
        for g in grads:
            g.mul_(scale.to(g.dtype))
    return total


def clip_grad_value_(parameters: Iterable[Tensor] | Tensor, clip_value: float) -> None:
    """Clamp every gradient element to [-clip_value, clip_value] in place."""
    with no_grad():
        for g in _grads(parameters):
            g.clamp_(-clip_value, clip_value)


def zero_grad_(parameters: Iterable[Tensor], set_to_none: bool = True) -> None:
    """Reset the gradients of parameters: to None (default), or to zeros in place."""
    for p in parameters:
        if p.grad is None:
            continue
        if set_to_none:
            p.grad = None
        else:
            p.grad.detach_()
            p.grad.zero_()

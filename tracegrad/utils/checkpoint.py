"""Activation checkpointing: run a function without keeping its intermediates, recompute them in backward."""
from __future__ import annotations

from .. import autograd, creation
from ..autograd.grad_mode import enable_grad
from ..tensor import Tensor


class _Checkpoint(autograd.Function):
    @staticmethod
    def forward(ctx, function, preserve_rng_state, kwargs, *args):
        ctx.function, ctx.kwargs = function, kwargs
        ctx.rng_state = creation.get_rng_state() if preserve_rng_state else None
        ctx.save_for_backward(*[a for a in args if isinstance(a, Tensor)])
        ctx.args = args
        return function(*args, **kwargs)  # runs under no_grad: no intermediates are kept

    @staticmethod
    def backward(ctx, *grad_outputs):
        tensors = iter(ctx.saved_tensors)
        inputs = [next(tensors).detach().requires_grad_(a.requires_grad) if isinstance(a, Tensor) else a
                  for a in ctx.args]
        if ctx.rng_state is not None:  # replay the same random numbers (dropout) as the forward
            saved = creation.get_rng_state()
            creation.set_rng_state(ctx.rng_state)
        with enable_grad():
            outputs = ctx.function(*inputs, **ctx.kwargs)
        if ctx.rng_state is not None:
            creation.set_rng_state(saved)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        pairs = [(o, g) for o, g in zip(outputs, grad_outputs)
                 if isinstance(o, Tensor) and o.requires_grad and g is not None]
        # Parameters used inside the function get their gradients accumulated here, as in eager.
        autograd.backward([o for o, _ in pairs], [g for _, g in pairs])
        return (None, None, None) + tuple(x.grad if isinstance(x, Tensor) and x.requires_grad else None
                                          for x in inputs)


def checkpoint(function, *args, use_reentrant: bool | None = None, preserve_rng_state: bool = True, **kwargs):
    """function(*args, **kwargs), recomputed during backward instead of storing its activations."""
    return _Checkpoint.apply(function, preserve_rng_state, kwargs, *args)

"""Activation checkpointing: run a function without keeping its intermediates, recompute them in backward.

Both variants are built on one custom autograd Function whose backward reruns the function with
gradients enabled and backpropagates through the rerun. Gradients of parameters used inside the
function are accumulated into their .grad by that inner backward, as the eager graph would have done.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

from .. import autograd, creation
from ..autograd.grad_mode import enable_grad, is_grad_enabled
from ..tensor import Tensor


class _Recompute(autograd.Function):
    """forward: function(*args) with no graph; backward: rerun it with a graph and backpropagate."""

    @staticmethod
    def forward(ctx, function: Callable, preserve_rng_state: bool, kwargs: dict, *args):
        """Run function, remembering what the rerun needs: the inputs and the generator state."""
        ctx.function, ctx.kwargs = function, kwargs
        ctx.rng_state = creation.get_rng_state() if preserve_rng_state else None
        ctx.save_for_backward(*[a for a in args if isinstance(a, Tensor)])
        ctx.args = args
        return function(*args, **kwargs)  # Function.apply runs this under no_grad: nothing is kept

    @staticmethod
    def backward(ctx, *grad_outputs):
        """Rerun function with a graph, backpropagate grad_outputs through it, return the inputs' gradients."""
        saved = iter(ctx.saved_tensors)
        inputs = [next(saved).detach().requires_grad_(a.requires_grad) if isinstance(a, Tensor) else a
                  for a in ctx.args]
        with _rng_state(ctx.rng_state), enable_grad():
            outputs = ctx.function(*inputs, **ctx.kwargs)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        pairs = [(out, grad) for out, grad in zip(outputs, grad_outputs)
                 if isinstance(out, Tensor) and out.requires_grad and grad is not None]
        if pairs:
            autograd.backward([out for out, _ in pairs], [grad for _, grad in pairs])
        input_grads = tuple(x.grad if isinstance(x, Tensor) and x.requires_grad else None for x in inputs)
        return (None, None, None) + input_grads


class _rng_state:
    """Context manager: run the block from a saved generator state, then restore the current one."""

    def __init__(self, state: Tensor | None) -> None:
        self.state = state

    def __enter__(self) -> None:
        if self.state is not None:
            self.outer_state = creation.get_rng_state()
            creation.set_rng_state(self.state)

    def __exit__(self, *exc) -> None:
        if self.state is not None:
            creation.set_rng_state(self.outer_state)


def _may_use_trainable_tensors(function: Callable) -> bool:
    """False only when function is (a method of) a module none of whose parameters requires grad."""
    from ..nn import Module
    module = function if isinstance(function, Module) else getattr(function, "__self__", None)
    if isinstance(module, Module):
        return any(p.requires_grad for p in module.parameters())
    return True  # a plain function may use any tensor it can reach


def checkpoint(function: Callable, *args, use_reentrant: bool | None = None, preserve_rng_state: bool = True,
               **kwargs: Any):
    """function(*args, **kwargs), with its activations recomputed during backward instead of stored.

    Gradients reach the tensor arguments and the parameters used inside function. With
    preserve_rng_state the recomputation replays the same random numbers (e.g. dropout masks).
    use_reentrant=False (recommended) also gives parameter gradients when no argument requires grad;
    use_reentrant=True behaves like PyTorch's reentrant variant (no gradients then, with a warning).
    """
    if use_reentrant is None:
        warnings.warn("tracegrad.utils.checkpoint: the use_reentrant parameter should be passed explicitly. "
                      "use_reentrant=False is recommended; the default is use_reentrant=True.", stacklevel=2)
        use_reentrant = True
    if use_reentrant and kwargs:
        raise ValueError("Unexpected keyword arguments: " + ",".join(kwargs))
    any_input_requires_grad = any(isinstance(a, Tensor) and a.requires_grad for a in args)
    if is_grad_enabled() and not any_input_requires_grad:
        if use_reentrant:
            warnings.warn("None of the inputs have requires_grad=True. Gradients will be None", stacklevel=2)
        elif _may_use_trainable_tensors(function):
            # An extra input that requires grad makes the output part of the graph, so that backward
            # reaches the recomputation and with it the parameters used inside function.
            args = args + (creation.empty(0, requires_grad=True),)
            function = _dropping_last_argument(function)
    return _Recompute.apply(function, preserve_rng_state, kwargs, *args)


def _dropping_last_argument(function: Callable) -> Callable:
    """function, called without the extra graph-anchoring argument."""
    def call(*args, **kwargs):
        return function(*args[:-1], **kwargs)
    return call

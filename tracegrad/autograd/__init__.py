"""Automatic differentiation: backward, grad, custom Functions, gradcheck and grad modes."""
from __future__ import annotations

from typing import Sequence

from . import grad_mode
from .engine import AccumulateGrad, Node, _edge, run_backward
from .function import Function, FunctionCtx
from .grad_mode import (enable_grad, inference_mode, is_grad_enabled, is_inference_mode_enabled, no_grad,
                        set_grad_enabled)
from .gradcheck import GradcheckError, gradcheck, gradgradcheck

__all__ = ["backward", "grad", "Function", "FunctionCtx", "gradcheck", "gradgradcheck", "GradcheckError",
           "no_grad", "enable_grad", "inference_mode", "set_grad_enabled", "is_grad_enabled",
           "is_inference_mode_enabled", "Node", "AccumulateGrad"]


def _as_tuple(x) -> tuple:
    if x is None:
        return ()
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _root_grads(outputs: tuple, grad_outputs: tuple) -> list:
    """The seed cotangent of each output: given, or 1 for scalars."""
    from ..creation import ones_like
    from ..tensor import Tensor
    if grad_outputs and len(grad_outputs) != len(outputs):
        raise RuntimeError(f"grad can be implicitly created only for scalar outputs; got {len(grad_outputs)} "
                           f"gradients for {len(outputs)} outputs")
    seeds = []
    for i, out in enumerate(outputs):
        if not isinstance(out, Tensor):
            raise TypeError(f"expected Tensors as outputs, got {type(out).__name__}")
        g = grad_outputs[i] if grad_outputs else None
        if not out._requires_grad:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have a grad_fn")
        if g is None:
            if out.numel() != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            g = ones_like(out)
        elif not isinstance(g, Tensor):
            raise TypeError(f"gradients must be Tensors or None, got {type(g).__name__}")
        elif g.shape != out.shape:
            raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of {g.shape} and output[{i}] "
                               f"has a shape of {out.shape}.")
        seeds.append(g)
    return seeds


def backward(tensors, grad_tensors=None, retain_graph: bool | None = None, create_graph: bool = False,
             grad_variables=None, inputs=None) -> None:
    """Accumulate gradients of tensors into the .grad of the leaves (or only of ``inputs``)."""
    outputs = _as_tuple(tensors)
    seeds = _root_grads(outputs, _as_tuple(grad_tensors if grad_tensors is not None else grad_variables))
    retain = create_graph if retain_graph is None else retain_graph
    if inputs is None:
        run_backward(outputs, seeds, retain_graph=retain, create_graph=create_graph)
        return
    inputs = _as_tuple(inputs)
    if not inputs:
        raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    edges = _input_edges(inputs)
    grads = run_backward(outputs, seeds, retain_graph=retain, create_graph=create_graph, capture=edges)
    for t, g in zip(inputs, grads):  # leaves were accumulated by the engine; non-leaves here
        if g is not None and t.grad_fn is not None:
            t._grad = g if t._grad is None else t._grad + g


def _input_edges(inputs: tuple) -> list:
    for t in inputs:
        if not t._requires_grad:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    return [_edge(t) for t in inputs]


def grad(outputs, inputs, grad_outputs=None, retain_graph: bool | None = None, create_graph: bool = False,
         only_inputs: bool = True, allow_unused: bool | None = None, is_grads_batched: bool = False,
         materialize_grads: bool = False) -> tuple:
    """The gradients of outputs with respect to inputs, returned instead of accumulated."""
    outputs = _as_tuple(outputs)
    inputs = _as_tuple(inputs)
    seeds = _root_grads(outputs, _as_tuple(grad_outputs))
    retain = create_graph if retain_graph is None else retain_graph
    grads = run_backward(outputs, seeds, retain_graph=retain, create_graph=create_graph,
                         capture=_input_edges(inputs), accumulate=False)
    result = []
    for t, g in zip(inputs, grads):
        if g is None:
            if materialize_grads:
                from ..creation import zeros_like
                g = zeros_like(t)
            elif not allow_unused:
                raise RuntimeError("One of the differentiated Tensors appears to not have been used in the graph. "
                                   "Set allow_unused=True if this is the desired behavior.")
        elif not create_graph:
            g = g.detach()
        result.append(g)
    return tuple(result)

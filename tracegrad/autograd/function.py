"""Custom differentiable functions: subclass Function with forward(ctx, ...) and backward(ctx, ...)."""
from __future__ import annotations

import weakref
from typing import Any

from .engine import Node
from .grad_mode import STATE, no_grad


class FunctionCtx:
    """The ``ctx`` passed to forward and backward: saved tensors and flags."""

    def __init__(self, needs_input_grad: tuple) -> None:
        self.needs_input_grad = needs_input_grad
        self._to_save: tuple = ()
        self._node: Node | None = None
        self._non_differentiable: set = set()
        self.materialize_grads = True

    def save_for_backward(self, *tensors) -> None:
        """Keep tensors for backward; modifying them in place afterwards is an error."""
        self._to_save = tensors

    @property
    def saved_tensors(self) -> tuple:
        """The tensors given to save_for_backward."""
        if self._node is None:
            return self._to_save
        return self._node.saved_tensors()

    def mark_non_differentiable(self, *tensors) -> None:
        """Declare outputs that get no gradient (e.g. indices)."""
        self._non_differentiable.update(id(t) for t in tensors)

    def mark_dirty(self, *tensors) -> None:
        """Declare inputs modified in place by forward (accepted for compatibility)."""

    def set_materialize_grads(self, value: bool) -> None:
        """Whether missing output gradients reach backward as zeros (True) or None."""
        self.materialize_grads = value


_NODE_CLASSES: "weakref.WeakKeyDictionary[type, type]" = weakref.WeakKeyDictionary()


def _node_class(fn: type) -> type:
    """The node class of a Function, named as PyTorch's (``MyFnBackward``), made once per Function."""
    cls = _NODE_CLASSES.get(fn)
    if cls is None:
        cls = _NODE_CLASSES[fn] = type(f"{fn.__name__}Backward", (FunctionNode,), {"__module__": __name__})
    return cls


class FunctionNode(Node):
    """The graph node of one Function.apply call."""

    def __init__(self, fn, ctx: FunctionCtx, args: tuple) -> None:
        from ..tensor import Tensor
        super().__init__([a if isinstance(a, Tensor) else None for a in args])
        self.fn, self.ctx = fn, ctx
        self.inputs_meta = [(a._data.shape, a.dtype) if isinstance(a, Tensor) else None for a in args]
        self.outputs_meta: list = []

    def num_outputs(self) -> int:
        return len(self.outputs_meta)

    def backward(self, grads: list) -> tuple:
        if self.ctx.materialize_grads and any(g is None for g in grads):
            from ..creation import zeros
            grads = [zeros(shape, dtype=dt) if g is None else g for g, (shape, dt) in zip(grads, self.outputs_meta)]
        result = self.fn.backward(self.ctx, *grads)
        result = result if isinstance(result, tuple) else (result,)
        n = len(self.next_functions)
        if len(result) < n or any(r is not None for r in result[n:]):
            raise RuntimeError(f"function {self.name()} returned an incorrect number of gradients "
                               f"(expected {n}, got {len(result)})")
        result = result[:n]
        for i, (g, meta) in enumerate(zip(result, self.inputs_meta)):
            if g is not None and meta is not None and tuple(g.shape) != tuple(meta[0]):
                raise RuntimeError(f"Function {self.name()} returned an invalid gradient at index {i} - "
                                   f"got {list(g.shape)} but expected shape compatible with {list(meta[0])}")
        return result


class Function:
    """Base class for custom autograd operations (override the static forward and backward)."""

    @staticmethod
    def forward(ctx: FunctionCtx, *args: Any, **kwargs: Any):
        """Compute the outputs from the inputs (runs without recording a graph)."""
        raise NotImplementedError("You must implement the forward function for custom autograd.Function.")

    @staticmethod
    def backward(ctx: FunctionCtx, *grad_outputs):
        """Gradients of the inputs (one per forward argument; None for non-tensors)."""
        raise NotImplementedError("You must implement either the backward or vjp method for your custom "
                                  "autograd.Function to use it with backward mode AD.")

    @classmethod
    def apply(cls, *args, **kwargs):
        """Run forward and, when gradients are needed, record backward in the graph."""
        from ..tensor import Tensor
        needs = tuple(isinstance(a, Tensor) and a._requires_grad for a in args)
        ctx = FunctionCtx(needs)
        with no_grad():
            outputs = cls.forward(ctx, *args, **kwargs)
        if not (STATE.grad_enabled and any(needs)):
            return outputs
        single = not isinstance(outputs, tuple)
        outs = list((outputs,) if single else outputs)
        node = _node_class(cls)(cls, ctx, args)
        for i, out in enumerate(outs):
            if not isinstance(out, Tensor):
                continue
            if any(out is a for a in args):  # an input returned as is becomes a new output tensor
                out = outs[i] = out.detach()
            node.outputs_meta.append((out._data.shape, out.dtype))
            if id(out) in ctx._non_differentiable or out._data.dtype.kind != "f":
                continue
            out.grad_fn, out._output_nr, out._requires_grad = node, i, True
        node.save(ctx._to_save)
        ctx._node = node
        return outs[0] if single else tuple(outs)

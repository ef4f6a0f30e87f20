"""The eager autograd graph (nodes recorded by ops) and the reverse-mode engine that runs it."""
from __future__ import annotations

import weakref
from typing import Callable, Sequence

from .grad_mode import STATE, set_grad_enabled

_FREED_MESSAGE = (
    "Trying to backward through the graph a second time (or directly access saved tensors after "
    "they have already been freed). Saved intermediate values of the graph are freed when you call "
    ".backward() or autograd.grad(). Specify retain_graph=True if you need to backward through the "
    "graph a second time or if you need to access saved tensors after calling backward.")


# Counts every hook registered on or removed from a node (Tensor.register_hook included): a compiled step
# re-checks the hooks of the tensors it reads only when the count moved.
HOOK_CHANGES = [0]


def _hooks_changed() -> None:
    HOOK_CHANGES[0] += 1


class RemovableHandle:
    """Returned by hook registration; ``remove()`` unregisters the hook."""

    def __init__(self, hooks: list, hook: Callable, on_remove: Callable[[], None] = _hooks_changed) -> None:
        self._hooks, self._hook, self._on_remove = hooks, hook, on_remove

    def remove(self) -> None:
        """Unregister the hook (idempotent)."""
        if self._hook in self._hooks:
            self._hooks.remove(self._hook)
            self._on_remove()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class Node:
    """A recorded backward step: maps cotangents of its outputs to cotangents of its inputs."""

    # Class-level defaults keep node creation (once per recorded op) cheap.
    _saved = ()
    _versions = ()
    _freed = False
    _tensor_hooks = None  # output index -> hooks registered on that output tensor
    _retained = None      # output index -> weakref of a tensor that retains its grad
    _hooks = None         # post hooks: fn(grad_inputs, grad_outputs)

    def __init__(self, inputs: Sequence) -> None:
        edges = [_edge(t) for t in inputs]
        self.next_functions = tuple(edges)
        self.needs_input_grad = tuple([e[0] is not None for e in edges])

    @property
    def metadata(self) -> dict:
        """A dict for users to attach information to the node."""
        if "_metadata" not in self.__dict__:
            self._metadata = {}
        return self._metadata

    def save(self, tensors: Sequence) -> None:
        """Keep tensors for the backward; their version is checked when they are used."""
        versions = []
        for t in tensors:
            if t is None:
                versions.append(None)
                continue
            if t._inference:
                raise RuntimeError(
                    "Inference tensors cannot be saved for backward. To work around you can make a "
                    "clone to get a normal tensor and use it in autograd.")
            versions.append(t._vc[0])
        self._saved = tuple(tensors)
        self._versions = tuple(versions)

    def saved_tensors(self) -> tuple:
        """The saved tensors, checked against in-place modification and release."""
        if self._freed:
            raise RuntimeError(_FREED_MESSAGE)
        for t, v in zip(self._saved, self._versions):
            if t is not None and t._vc[0] != v:
                self._raise_modified(t, v)
        return self._saved

    def _saved_at(self, k: int):
        """Saved tensor number k, checked like saved_tensors() (a VJP reading one input checks that one)."""
        if self._freed:
            raise RuntimeError(_FREED_MESSAGE)
        t = self._saved[k]
        if t is not None and t._vc[0] != self._versions[k]:
            self._raise_modified(t, self._versions[k])
        return t

    def _raise_modified(self, t, version: int) -> None:
        raise RuntimeError(
            f"one of the variables needed for gradient computation has been modified by an "
            f"inplace operation: [{t.type()} {list(t.shape)}], which is used by "
            f"{self.name()}, is at version {t._vc[0]}; expected version {version} instead. "
            f"Hint: avoid modifying the tensor in place, or clone() it before the op.")

    def release(self) -> None:
        """Free the saved tensors after a backward without retain_graph."""
        if self._saved:
            self._saved = ()
            self._freed = True

    def name(self) -> str:
        """The node's name, e.g. 'MulBackward0'."""
        return type(self).__name__

    def register_hook(self, fn: Callable) -> RemovableHandle:
        """Register fn(grad_inputs, grad_outputs), called after this node ran."""
        if self._hooks is None:
            self._hooks = []
        self._hooks.append(fn)
        _hooks_changed()
        return RemovableHandle(self._hooks, fn)

    def add_tensor_hook(self, output_nr: int, fn: Callable) -> RemovableHandle:
        """Register a hook on the gradient of output ``output_nr`` (Tensor.register_hook)."""
        if self._tensor_hooks is None:
            self._tensor_hooks = {}
        hooks = self._tensor_hooks.setdefault(output_nr, [])
        hooks.append(fn)
        _hooks_changed()
        return RemovableHandle(hooks, fn)

    def retain(self, output_nr: int, tensor) -> None:
        """Store the gradient of output ``output_nr`` in ``tensor.grad`` (Tensor.retain_grad)."""
        if self._retained is None:
            self._retained = {}
        self._retained[output_nr] = weakref.ref(tensor)

    def num_outputs(self) -> int:
        """How many outputs the recorded op had."""
        return 1

    def backward(self, grads: list) -> tuple:
        """Cotangents of the inputs given cotangents of the outputs."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{self.name()} object>"


class PrimitiveNode(Node):
    """The backward of one primitive application; runs the primitive's VJP rule."""

    def __init__(self, prim, inputs: Sequence, attrs: dict, out) -> None:
        # One loop builds the edges, the flags and the shapes: this runs once per recorded op.
        edges, needs, shapes = [], [], []
        for t in inputs:
            shapes.append(t._data.shape)
            if not t._requires_grad:
                edges.append(_NO_EDGE)
                needs.append(False)
                continue
            if t._base is not None and t._base.grad_fn is not t._base_history:
                from .views import refresh  # the base was written in place after this view was taken
                refresh(t)
            if t.grad_fn is not None:
                edges.append((t.grad_fn, t._output_nr))
            else:
                edges.append((t._accumulator(), 0))
            needs.append(True)
        self.next_functions = tuple(edges)
        self.needs_input_grad = tuple(needs)
        self.prim = prim
        self.attrs = attrs
        self.in_shapes = tuple(shapes)
        saves = prim.saves
        if saves or prim.saves_output:
            saved = list(inputs[saves]) if isinstance(saves, slice) else [inputs[i] for i in saves]
            if prim.saves_output:
                saved.append(out)
            self.save(saved)

    @property
    def display_name(self) -> str:
        """The node's name; setting it (a composite op naming its last node, e.g. 'MeanBackward0') changes
        the node's class to the cached class of that name."""
        return type(self).__name__

    @display_name.setter
    def display_name(self, name: str) -> None:
        self.__class__ = node_class(name)

    def saved(self, i: int):
        """Input ``i`` as it was when the op ran (the primitive must declare it in ``saves``)."""
        return self._saved_at(self.prim.saves.index(i))

    def saved_output(self):
        """The op's result (the primitive must declare ``saves_output``)."""
        return self._saved_at(-1)

    def backward(self, grads: list) -> tuple:
        return self.prim.vjp(self, grads[0])


_NODE_CLASSES: dict[str, type] = {}


def name_node(out, name: str):
    """Give the node that made ``out`` (a new tensor) the class PyTorch records for the op, e.g. 'SumBackward1'."""
    if out.grad_fn is not None:
        out.grad_fn.display_name = name
    return out


def node_class(name: str) -> type:
    """The PrimitiveNode subclass named as PyTorch's node class (``MulBackward0``), made once per name."""
    cls = _NODE_CLASSES.get(name)
    if cls is None:
        cls = _NODE_CLASSES[name] = type(name, (PrimitiveNode,), {
            "__doc__": f"The backward of an op PyTorch records as {name} (a PrimitiveNode).",
            "__module__": __name__})
    return cls


class AccumulateGrad(Node):
    """The sink for a leaf tensor that requires grad: adds incoming gradients to ``.grad``."""

    _post_hooks = None  # fn(tensor) called after the leaf's .grad was updated (register_post_accumulate_grad_hook)

    def __init__(self, variable) -> None:
        super().__init__(())
        self.variable = variable

    def add_post_hook(self, fn: Callable) -> RemovableHandle:
        """Register fn(leaf), called after a gradient was accumulated into the leaf's ``.grad``."""
        if self._post_hooks is None:
            self._post_hooks = []
        self._post_hooks.append(fn)
        _hooks_changed()
        return RemovableHandle(self._post_hooks, fn)

    def accumulate(self, grad, create_graph: bool, shared: set) -> None:
        """Add ``grad`` to the leaf's ``.grad`` like PyTorch: first stored, later added in place.

        The first gradient's buffer is adopted when no one else can see it (``shared`` holds the ids
        of buffers already given to a leaf, a hook or a retained grad in this backward pass);
        otherwise it is copied, so that in-place updates of one ``.grad`` never change another.
        """
        var = self.variable
        if var._grad is None:
            if create_graph:
                var._grad = grad
                return
            data = grad._data
            adopt = (data.flags.owndata and data.flags.writeable and id(data) not in shared
                     and not self._tensor_hooks)
            var._grad = grad.detach() if adopt else grad.detach()._owned_copy()
            shared.add(id(data))
        elif create_graph or var._grad.requires_grad:
            var._grad = var._grad + grad
        else:
            var._grad.add_(grad)


_NO_EDGE = (None, 0)

def _edge(t) -> tuple:
    """Where a gradient for tensor t must go: (its grad_fn or its AccumulateGrad, output index)."""
    if t is None or not t._requires_grad:
        return _NO_EDGE
    if t.grad_fn is not None:
        return (t.grad_fn, t._output_nr)
    return (t._accumulator(), 0)


# ---- the engine -----------------------------------------------------------------------------

def _run_tensor_hooks(node: Node, nr: int, grad, shared: set):
    hooks = node._tensor_hooks.get(nr) if node._tensor_hooks else None
    shared.add(id(grad._data))  # a hook or a retained grad may keep this buffer
    for hook in hooks or ():
        result = hook(grad)
        if result is not None:
            if tuple(result.shape) != tuple(grad.shape):
                raise RuntimeError(f"hook '{getattr(hook, '__name__', hook)}' has changed the size of "
                                   f"value: expected {list(grad.shape)}, got {list(result.shape)}")
            grad = result
    if node._retained and nr in node._retained:
        tensor = node._retained[nr]()
        if tensor is not None:
            tensor._grad = grad.detach() if tensor._grad is None else tensor._grad + grad.detach()
    shared.add(id(grad._data))
    return grad


def _collect(roots: list) -> dict:
    """Count, for every node reachable from the roots, how many edges point at it."""
    deps: dict = {}
    stack = [n for n in roots]
    seen = set(stack)
    while stack:
        node = stack.pop()
        for child, _ in node.next_functions:
            if child is None:
                continue
            deps[child] = deps.get(child, 0) + 1
            if child not in seen:
                seen.add(child)
                stack.append(child)
    return deps


def _needed_nodes(roots: list, targets: set) -> set:
    """Nodes from which some target node can be reached (the only ones worth running)."""
    needed: set = set()
    visiting: dict = {}
    order = []
    stack = [(n, False) for n in roots]
    while stack:
        node, done = stack.pop()
        if done:
            order.append(node)
            continue
        if node in visiting:
            continue
        visiting[node] = True
        stack.append((node, True))
        for child, _ in node.next_functions:
            if child is not None and child not in visiting:
                stack.append((child, False))
    for node in order:  # post-order: children first
        if node in targets or any(c in needed for c, _ in node.next_functions if c is not None):
            needed.add(node)
    return needed


class _BackwardState:
    """How many backward passes are running (the tracer marks the nodes they record as adjoint)."""

    depth = 0


BACKWARD = _BackwardState()


def run_backward(roots: Sequence, grad_roots: Sequence, *, retain_graph: bool, create_graph: bool,
                 capture: Sequence | None = None, accumulate: bool = True) -> list | None:
    """Propagate cotangents from ``roots`` through the graph.

    With ``capture`` (a list of edges), returns the total gradient reaching each edge instead of
    accumulating into leaves' ``.grad`` when ``accumulate`` is False (autograd.grad); with
    ``accumulate`` and ``capture`` it accumulates only into the captured leaves (backward(inputs=)).
    """
    buffers: dict = {}
    shared = {id(g._data) for g in grad_roots}  # the caller's seed tensors are never adopted
    root_nodes = []
    for t, g in zip(roots, grad_roots):
        node, nr = _edge(t)
        if node is None:
            raise RuntimeError("element 0 of tensors does not require grad and does not have a grad_fn")
        slot = buffers.setdefault(node, {})
        slot[nr] = g if nr not in slot else slot[nr] + g
        if node not in root_nodes:
            root_nodes.append(node)
    deps = _collect(root_nodes)
    targets = None
    captured: dict = {}
    if capture is not None:
        capture_set = set(capture)
        targets = {node for node, _ in capture}
        needed = _needed_nodes(root_nodes, targets)
    ready = [n for n in root_nodes if deps.get(n, 0) == 0]
    BACKWARD.depth += 1  # the tracer marks what it records meanwhile as adjoint nodes
    try:
        with set_grad_enabled(create_graph):
            while ready:
                node = ready.pop()
                grads = buffers.pop(node, None)
                if grads is not None and (node._tensor_hooks or node._retained or targets is not None):
                    for nr in list(grads):
                        if node._tensor_hooks or node._retained:
                            grads[nr] = _run_tensor_hooks(node, nr, grads[nr], shared)
                        if targets is not None and (node, nr) in capture_set:
                            captured[(node, nr)] = grads[nr]
                if type(node) is AccumulateGrad:
                    if grads and (targets is None or (accumulate and node in targets)):
                        node.accumulate(grads[0], create_graph, shared)
                        for hook in node._post_hooks or ():
                            hook(node.variable)
                    continue
                run = grads is not None and (targets is None or node in needed)
                if run:
                    full = [grads.get(i) for i in range(node.num_outputs())] if len(grads) > 1 or 0 not in grads \
                        or node.num_outputs() > 1 else [grads[0]]
                    grad_inputs = node.backward(full)
                    if len(grad_inputs) != len(node.next_functions):
                        raise RuntimeError(f"function {node.name()} returned an incorrect number of gradients "
                                           f"(expected {len(node.next_functions)}, got {len(grad_inputs)})")
                    if node._hooks:
                        for hook in node._hooks:
                            hook(grad_inputs, full)
                    for (child, nr), g in zip(node.next_functions, grad_inputs):
                        if child is None:
                            continue
                        if g is not None:
                            slot = buffers.get(child)
                            if slot is None:
                                buffers[child] = {nr: g}
                            else:
                                slot[nr] = g if nr not in slot else slot[nr] + g
                        deps[child] -= 1
                        if deps[child] == 0:
                            ready.append(child)
                else:
                    for child, _ in node.next_functions:
                        if child is not None:
                            deps[child] -= 1
                            if deps[child] == 0:
                                ready.append(child)
                if not retain_graph:
                    node.release()
        if capture is None:
            return None
        return [captured.get(edge) for edge in capture]
    finally:
        BACKWARD.depth -= 1

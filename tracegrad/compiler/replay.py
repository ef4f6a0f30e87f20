"""A variant's replay as one generated Python function, straight-line code with no lookups.

A replay reads the step's inputs (arguments, captured tensors, hyperparameters), checks what the
trace assumed of them, runs the backend, and hands back the results: version counters bumped,
``.grad`` set, the return value built. Written as loops over the trace's tables this cost ~14 us
per W1 step (a third of the whole step); generated once per variant as straight-line code (each
captured tensor a name of its own) it costs a few. ``source`` is kept for ``tracegrad dump``.

The generated function raises GuardFailure, before anything is modified, when an assumption fails.
"""
from __future__ import annotations

import numpy as np

from ..autograd.grad_mode import is_grad_enabled
from ..ir import GuardFailure
from ..tensor import Tensor, _make_plain, plain_make_allowed
from .tracer import Trace, _OutputSlot, fill_outputs, output_slots

MISS = object()  # what a fast path returns when a call does not have the signature of its variant


class Replay:
    """The generated replay of one traced graph; call it with the step's leaf arguments."""

    def __init__(self, trace: Trace, execute, fresh_outputs: bool) -> None:
        self.trace = trace
        self.env: dict = {"execute": execute, "make_any": Tensor._make, "make_plain": _make_plain,
                          "plain": plain_make_allowed, "copy": np.array, "fill": fill_outputs, "np": np,
                          "replay": self}
        graph, sources = trace.graph, trace.sources
        self.refs: list = []  # (tensor, graph input value, traced requires_grad) of each captured tensor
        self.seen: list = []  # the captured arrays whose types were checked last (refs' order)
        lines = ["def run(leaves):"]
        emit = lines.append
        for k, (container, key, expected) in enumerate(trace.flag_guards):
            emit(f"    if bool({self._const(container)}[{key!r}]) is not {bool(expected)}:")
            emit(f"        replay.flag_failed({k})")
        inputs = []
        for value in graph.inputs:
            if value.const is not None:
                inputs.append(self._const(value.const))
                continue
            kind, src = sources[value.id]
            if kind == "arg":
                inputs.append(f"leaves[{src}]._data")
            elif kind == "hyper":
                inputs.append(self._hyper(emit, src, value.type.dtype.np))
            else:
                inputs.append(f"d{len(self.refs)}")
                self.refs.append((src, value, src._requires_grad))
        if self.refs:
            for k, (tensor, value, _) in enumerate(self.refs):
                self.env[f"r{k}"] = tensor
                emit(f"    d{k} = r{k}._data  # {value.name or value}")
            # arrays checked last time are the same objects: the type check runs only when one was replaced
            same = " and ".join(f"d{k} is seen[{k}]" for k in range(len(self.refs)))
            emit(f"    if not (len(seen) == {len(self.refs)} and {same}):")
            emit(f"        replay.check_types([{', '.join(f'd{k}' for k in range(len(self.refs)))}])")
            flags = " and ".join(f"r{k}._requires_grad is {flag}" for k, (_, _, flag) in enumerate(self.refs))
            emit(f"    if not ({flags}):")
            emit("        replay.flags_failed()")
            self.env["seen"] = self.seen
        emit(f"    out = execute([{', '.join(inputs)}])")
        emit("    make = make_plain if plain() else make_any  # new tensors: inference mode and tracers mark them")
        writes = [sources[dst.id] for dst, _ in graph.writebacks]
        for kind, src in writes:
            emit(f"    {f'leaves[{src}]' if kind == 'arg' else self._ref(src)}._vc[0] += 1")
        # A kernel returns fresh arrays, the interpreter's may alias inputs or each other; two .grad
        # tensors never share a buffer.
        grad_outputs = [g[1] for _, g in trace.grads if g is not None and g[0] != "keep"]
        for tensor, grad in trace.grads:
            if grad is None:
                value = "None"
            elif grad[0] == "keep":
                value = self._const(grad[1])
            else:
                fresh = fresh_outputs and grad_outputs.count(grad[1]) == 1
                value = f"make(out[{grad[1]}]{'' if fresh else '.copy()'})"
            emit(f"    {self._ref(tensor)}._grad = {value}")
        emit(f"    return {self._result(trace, fresh_outputs, grad_outputs)}")
        self.source = "\n".join(lines) + "\n"
        self.run = self._define(self.source, f"<replay of {graph.name}>", "run")

    def add_fast_path(self, tensors: list, grad_mode: bool, cells: tuple, captured: list, globals_: dict,
                      names: tuple, modules: list) -> None:
        """Make ``self.fast(args)``: ``run`` behind inline checks of the whole signature of the variant.

        A call with positional tensor arguments usually repeats the last call's signature; checking
        that attribute by attribute costs far less than building the signature and looking it up.
        ``fast`` returns MISS where the signature differs (the caller then looks it up).
        """
        env = self.env
        env.update(is_grad_enabled=is_grad_enabled, MISS=MISS, Tensor=Tensor, g=globals_)
        checks = [f"len(args) == {len(tensors)}", f"is_grad_enabled() is {grad_mode}"]
        for k, t in enumerate(tensors):
            checks += [f"type(args[{k}]) is Tensor", f"args[{k}]._requires_grad is {t._requires_grad}",
                       f"args[{k}]._data.shape == {t._data.shape}", f"args[{k}]._data.dtype == {self._const(t._data.dtype)}"]
        for name, obj in zip(names, captured[len(cells):]):
            checks.append(f"g.get({name!r}) is {self._const(obj)}")
        checks += [f"{self._const(m)}.training is {m.training}" for m in modules]
        lines = ["def fast(args):"]
        if cells:
            same = " and ".join(f"{self._const(c)}.cell_contents is {self._const(o)}" for c, o in zip(cells, captured))
            lines += ["    try:", f"        if not ({same}):", "            return MISS",
                      "    except ValueError:  # a closure cell was emptied", "        return MISS"]
        lines += ["    if not (" + "\n            and ".join(checks) + "):", "        return MISS", "    return run(args)"]
        self.fast_source = "\n".join(lines) + "\n"
        self.fast = self._define(self.fast_source, f"<signature check of {self.trace.graph.name}>", "fast")

    def _define(self, source: str, filename: str, name: str):
        """Run generated source in the replay's namespace; the function it defines."""
        exec(compile(source, filename, "exec"), self.env)
        return self.env[name]

    def _const(self, obj) -> str:
        """A name in the function's globals bound to obj."""
        name = f"k{len(self.env)}"
        self.env[name] = obj
        return name

    def _ref(self, tensor: Tensor) -> str:
        """The name of a tensor the step touches (a captured input's own name when it is one)."""
        for k, (ref, _, _) in enumerate(self.refs):
            if ref is tensor:
                return f"r{k}"
        return self._const(tensor)

    def _hyper(self, emit, source: tuple, dtype: np.dtype) -> str:
        """Statements reading a hyperparameter; the name of its array (made anew only when it changed)."""
        container, key = source
        last = self._const([None, None])  # the value last seen and its array
        emit(f"    n = {self._const(container)}[{key!r}]  # hyperparameter")
        emit(f"    if n != {last}[0] or {last}[1] is None:")
        emit(f"        {last}[0], {last}[1] = n, np.array(n, dtype={self._const(dtype)})")
        return f"{last}[1]"

    def _result(self, trace: Trace, fresh_outputs: bool, grad_outputs: list) -> str:
        """The return value: a returned output becomes a tensor (a copy unless it belongs to nobody else)."""
        tree = trace.output_tree
        returned = output_slots(tree)
        fresh = frozenset(k for k in returned if fresh_outputs and returned.count(k) == 1 and k not in grad_outputs)
        if isinstance(tree, _OutputSlot):
            return f"make(out[{tree.index}])" if tree.index in fresh else f"make(copy(out[{tree.index}], copy=True))"
        if not returned:
            return self._const(tree) if tree is not None else "None"
        return f"fill({self._const(tree)}, out, {self._const(fresh)})"

    # ---- the messages of failed assumptions (off the fast path) ---------------------------------------

    def flag_failed(self, k: int) -> None:
        """Raise GuardFailure for the hyperparameter flag guard ``k``."""
        _, key, expected = self.trace.flag_guards[k]
        raise GuardFailure(f"the hyperparameter flag {key!r}", expected, not expected)

    def check_types(self, current: list) -> None:
        """Check the captured arrays against the traced types; remember them when they pass."""
        for (tensor, value, _), data in zip(self.refs, current):
            if data.shape != value.type.shape or data.dtype != value.type.dtype.np:
                raise GuardFailure(f"the type of captured tensor {value.name or value}", str(value.type),
                                   f"{tensor.dtype}{list(tensor.shape)}")
        self.seen[:] = current

    def flags_failed(self) -> None:
        """Raise GuardFailure for the first captured tensor whose requires_grad changed since the trace."""
        for tensor, value, traced in self.refs:
            if tensor._requires_grad != traced:
                raise GuardFailure(f"requires_grad of captured tensor {value.name or value}", traced,
                                   tensor._requires_grad)

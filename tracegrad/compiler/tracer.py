"""The tracer: records every primitive a step runs (forward, backward, optimizer) into an IR graph.

Tracing runs the real code: ops compute their values as in eager mode, and ``tensor.apply`` also
hands each application to the active tracer. Tensors the step did not create (arguments,
parameters, optimizer state, gradient buffers) become graph inputs; in-place updates rebind a
tensor to a new SSA value and become write-backs; Python code reading a value becomes a guard.
"""
from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field

import numpy as np

from .. import dtypes
from ..autograd.engine import BACKWARD
from ..ir import Graph, Type
from ..tensor import TRACE, Tensor
from .numbers import EXACT_TYPE, TracedFloat, names_in
from .reads import MISSING, ReadRecorder, hooks_read

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TraceUnsupported(Exception):
    """The step did something tracing can't capture (the reason says what and where)."""


def user_line() -> str:
    """'file.py:LINE' of the innermost frame outside tracegrad (the user's line)."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return ""
    return f"{os.path.basename(frame.f_code.co_filename)}:{frame.f_lineno}"


# Where a replay finds a tensor: ("arg", leaf index) | ("ref", tensor) (a captured tensor, by identity) |
# ("grad", source of its owner) (whatever tensor the owner's .grad holds when the replay starts).
Source = tuple


@dataclass
class GradSlot:
    """The ``.grad`` of one tensor the step touched: what the trace assumed of it, and what it ends as."""

    owner: Source
    initial: bool | None  # None: .grad was None when the trace began; else the requires_grad of the tensor it held
    final: tuple          # ("none",) | ("same",) (the initial tensor, updated in place) | ("output", k) | ("source", Source)


@dataclass
class Trace:
    """What one traced call produced: the graph and how to connect it to Python objects."""

    graph: Graph
    sources: dict                 # input id -> Source | ("hyper", (container, key, index)) | ("number", leaf index)
    output_tree: object           # the return value with tensors replaced by output indices
    grads: list = field(default_factory=list)   # GradSlot of every tensor whose .grad the step may touch
    pruned: int = 0               # primal nodes that got no adjoint (off every gradient path)
    flag_guards: list = field(default_factory=list)  # (container, key, truth value) of hyperparameter flags
    reads: list = field(default_factory=list)   # reads.Read: Python values that must hold at every replay
    writes: list = field(default_factory=list)  # (reads.Slot, ("output", k) | ("source", Source) | ("object", value))


def output_slots(tree) -> list:
    """The output indices a return value refers to (with repeats)."""
    if isinstance(tree, _OutputSlot):
        return [tree.index]
    if isinstance(tree, (tuple, list)):
        return [i for o in tree for i in output_slots(o)]
    if isinstance(tree, dict):
        return [i for o in tree.values() for i in output_slots(o)]
    return []


class _OutputSlot:
    """Placeholder for the i-th graph output inside the returned structure."""

    def __init__(self, index: int) -> None:
        self.index = index


class _NumberSlot(_OutputSlot):
    """Placeholder for a Python float computed from traced float arguments: the i-th output, as a float."""


class Tracer:
    """Records primitive applications into a Graph while the step runs eagerly."""

    def __init__(self, name: str, args: list, fullgraph: bool = False, names: dict | None = None,
                 functions: tuple = (), roots: tuple = ()) -> None:
        self.graph = Graph(re.sub(r"\W", "_", name))
        self.fullgraph = fullgraph
        self.values: dict[int, object] = {}   # id(tensor) -> current Value
        self.keep: list = []                  # every tensor seen: keeps ids unique while tracing
        self.born: set[int] = set()           # ids of tensors created during the trace
        self.sources: dict = {}
        self.lifted: dict[int, tuple] = {}    # id(external tensor) -> (tensor, its input Value)
        self.rebound: dict[int, Tensor] = {}  # external tensors whose value an in-place op changed
        self.same_buffer: dict[int, list] = {}  # id(tensor) -> the tensors sharing its buffer (detach, .data)
        self.grad_initial: dict[int, tuple] = {}  # id(tensor) -> (tensor, its .grad when the trace first saw it)
        self.grad_of: dict[int, Tensor] = {}        # id(initial .grad tensor) -> its owner
        self.arg_index = {id(t): i for i, t in enumerate(args)}
        self.names = names or {}  # id(tensor) -> readable name for captured tensors
        self.keep.extend(args)
        self.failure: str | None = None
        self.pruned = 0
        self.backward_seen = False
        self.flag_guards: list = []
        self.numbers: dict[int, str] = {}   # leaf index -> name of each float argument traced as a graph input
        self.value_reads: list = []         # (argument names, how, where) of each read of such a number's value
        self.type_patched: list = []        # module globals given EXACT_TYPE while this trace runs
        # functions: the step itself (whose closure cells it reads); roots: objects that outlive the step
        self.recorder = ReadRecorder(functions, roots, on_random=self.unsupported, on_type=self.type_loaded)

    # ---- activation ------------------------------------------------------------------------

    def __enter__(self) -> "Tracer":
        if TRACE.tracer is not None:
            raise RuntimeError("a compiled function was called while another one is being traced; "
                               "compile the outer function only")
        TRACE.tracer = self
        self.recorder.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.recorder.__exit__(*exc)
        TRACE.tracer = None
        for globals_ in self.type_patched:
            if globals_.get("type") is EXACT_TYPE:
                del globals_["type"]

    def unsupported(self, what: str) -> None:
        """Stop tracing (the step goes on eagerly) or, with fullgraph=True, raise."""
        reason = f"{what} at {user_line() or 'an unknown line'}"
        TRACE.tracer = None
        self.recorder.stop()
        self.failure = reason
        if self.fullgraph:
            raise TraceUnsupported(f"can't compile the whole step: {reason}; remove it from the step or "
                                   f"use fullgraph=False to run it eagerly")

    def data_dependent_shape(self, what: str) -> None:
        """An op whose result shape depends on values: graphs have static shapes, so tracing stops."""
        self.unsupported(f"{what} (its result has a data-dependent shape)")

    # ---- hooks called by the core ----------------------------------------------------------------

    def born_tensor(self, t: Tensor) -> None:
        """A tensor created during the trace (its value is a constant of the graph unless bound)."""
        self.born.add(id(t))
        self.keep.append(t)

    def value(self, t: Tensor):
        """The SSA value a tensor holds now, lifting it to a graph input the first time."""
        v = self.values.get(id(t))
        return v if v is not None else self._lift(t)

    def _lift(self, t: Tensor):
        type_ = Type(t.dtype, t._data.shape)
        if id(t) in self.born:
            v = self.graph.add_input(type_, "constant", const=t._data.copy())
        else:
            if t._requires_grad and t.grad_fn is not None:
                self.unsupported("a tensor with autograd history from outside the step (a replay can't "
                                 "differentiate into it; detach it, or compute it inside the step)")
            source = self.source_of(t)
            if source[0] == "arg":
                role, name = "parameter" if t._requires_grad else "data", self.names.get(id(t), f"arg{source[1]}")
            elif source[0] == "grad":
                role, name = "grad", f"{self._name(source[1])}.grad"
            else:
                role, name = "parameter" if t._requires_grad else "state", self.names.get(id(t), "")
            v = self.graph.add_input(type_, role, name)
            self.sources[v.id] = source
            self.lifted[id(t)] = (t, v)
            if t._requires_grad:
                self.grad_seen(t)
                if t.grad_fn is None:
                    self.recorder.add(hooks_read(t, name or self._name(source)))
        self.values[id(t)] = v
        self.keep.append(t)
        return v

    def source_of(self, t: Tensor) -> Source:
        """How a replay finds the tensor that stands where t stood in this trace."""
        index = self.arg_index.get(id(t))
        if index is not None:
            return ("arg", index)
        owner = self.grad_of.get(id(t))
        if owner is not None:
            return ("grad", self.source_of(owner))
        return ("ref", t)

    def _name(self, source: Source) -> str:
        if source[0] == "arg":
            return self.names.get(id(self.keep[source[1]]), f"arg{source[1]}")
        if source[0] == "grad":
            return f"{self._name(source[1])}.grad"
        return self.names.get(id(source[1]), "tensor")

    def record(self, prim, inputs, attrs: dict, out: Tensor) -> None:
        """One primitive application: a node whose result the output tensor now holds."""
        if prim.name == "index" and attrs["key"].has_mask:
            self.data_dependent_shape("boolean-mask indexing")
            return
        operands = [self.value(t) for t in inputs]
        if self.numbers and any(map(names_in, attrs.values())):  # its value, fixed in the node
            self.value_read(frozenset().union(*map(names_in, attrs.values())), f"an attribute of {prim.name}")
        type_ = Type(out.dtype, out._data.shape)
        adjoint = BACKWARD.depth > 0
        self.backward_seen = self.backward_seen or adjoint
        if not self.backward_seen and not out._requires_grad:
            self.pruned += 1  # a forward node off every gradient path: the autodiff pass skips it
        self.values[id(out)] = self.graph.add_node(prim.name, operands, attrs, type_, user_line(), adjoint)
        self.keep.append(out)

    def alias(self, new: Tensor, src: Tensor) -> None:
        """new holds src's value (detach, .data, a copy): the same SSA value. When the two share one
        buffer (detach, .data), an in-place write through either changes both."""
        self.values[id(new)] = self.value(src)
        self.keep.append(new)
        if new._data is src._data:
            group = self.same_buffer.setdefault(id(src), [src])
            group.append(new)
            self.same_buffer[id(new)] = group

    def rebind(self, t: Tensor, result: Tensor) -> None:
        """An in-place op stored result's value into t (and so into every tensor sharing t's buffer)."""
        self.value(t)  # lift first, so the buffer is an input that can be written back
        new = self.value(result)
        for member in self.same_buffer.get(id(t), (t,)):
            self.values[id(member)] = new
            if id(member) in self.lifted:
                self.rebound[id(member)] = member

    def data_assigned(self, t: Tensor, value: Tensor) -> None:
        """Python code set t.data = value: t holds value's values from now on (a write-back if t is an input)."""
        if (t._data.shape, t._data.dtype) != (value._data.shape, value._data.dtype):
            self.unsupported(f"assigning a {value.dtype.name}{list(value.shape)} tensor to .data of a "
                             f"{t.dtype.name}{list(t.shape)} one (compiled buffers keep their shape and dtype)")
            return
        self.rebind(t, value)

    def hyper(self, container, key, dtype, name: str, index: int | None = None) -> Tensor:
        """A hyperparameter (container[key], or container[key][index], e.g. an optimizer's lr or a beta)
        as a graph input read at every call."""
        value = container[key] if index is None else container[key][index]
        standin = self.standin(value)
        if standin is not None:  # the step stored a float argument there
            return standin
        if self.recorder.stored(container, key):
            # the step set it itself (e.g. from its lr argument): a replay stores the same value again, so
            # it is a constant of this variant, not a value read at every call
            return Tensor._make(np.array(value, dtype=dtype.np))
        t = Tensor._make(np.array(value, dtype=dtype.np))
        v = self.graph.add_input(Type(dtype, ()), "hyper", name)
        self.sources[v.id] = ("hyper", (container, key, index))
        self.values[id(t)] = v
        self.keep.append(t)
        return t

    def number(self, value: float, index: int, name: str) -> TracedFloat:
        """A float argument as a graph input, read at every call (numbers.py)."""
        t = Tensor._make(np.array(value, dtype=np.float64))
        v = self.graph.add_input(Type(dtypes.float64, ()), "number", name)
        self.sources[v.id] = ("number", index)
        self.values[id(t)] = v
        self.keep.append(t)
        self.numbers[index] = name
        return TracedFloat(value, t, self, frozenset([name]))

    def standin(self, value) -> Tensor | None:
        """The 0-d float64 tensor a traced float argument (or arithmetic on one) stands for, else None."""
        return value.tensor if type(value) is TracedFloat and value.tracer is self else None

    def value_read(self, names: frozenset, how: str) -> None:
        """Python code used the value of a traced float argument itself: this trace holds for that value only."""
        self.value_reads.append((names, how, user_line()))

    def type_loaded(self, frame, where: str, by_name: bool) -> None:
        """Followed code is about to load the builtin type. Where it names it, its module sees EXACT_TYPE
        until the trace ends (a traced float's type is float there); reached another way, it might be
        applied to a traced float: the trace is taken as specific to their values."""
        if not self.numbers:
            return
        if by_name:
            if "type" not in frame.f_globals:
                frame.f_globals["type"] = EXACT_TYPE
                self.type_patched.append(frame.f_globals)
        else:
            self.value_reads.append((frozenset(self.numbers.values()), "type()", where))

    def grad_seen(self, t: Tensor) -> None:
        """The step reads or sets t.grad (call it before a new value is set): remember what it held first."""
        if id(t) not in self.grad_initial:
            self.grad_initial[id(t)] = (t, t._grad)
            if t._grad is not None:
                self.grad_of.setdefault(id(t._grad), t)
            self.keep.append(t)

    def observe(self, t: Tensor, how: str) -> None:
        """Python code reads a value: a scalar becomes a guard, anything larger stops tracing."""
        if t._data.size != 1:
            self.unsupported(f"{how} of a {t._data.size}-element tensor (its values leave the graph)")
            return
        self.graph.guards.append((self.value(t), t._data.reshape(()).item(), user_line()))

    # ---- result ---------------------------------------------------------------------------

    def finish(self, result) -> Trace:
        """Close the graph: outputs, write-backs, the final .grad of every tensor involved, and the
        Python values the step read and stored."""
        outputs: list = []
        tree = _replace_tensors(result, lambda t: self._output(t, outputs))
        self.graph.outputs = outputs
        for tid, t in self.rebound.items():
            self.graph.writebacks.append((self.lifted[tid][1], self.values[tid]))
        grads = []
        for t, initial in self.grad_initial.values():
            g = t._grad
            if g is None:
                final = ("none",)
            elif g is initial:
                final = ("same",)  # write-backs update it in place
            else:
                final = self._placed(g, outputs)
            grads.append(GradSlot(self.source_of(t), None if initial is None else initial._requires_grad, final))
        writes = [(w.slot, self._placed(value, outputs)) for w, value in self._python_writes()]
        trace = Trace(self.graph, self.sources, tree, grads, self.pruned, self.flag_guards,
                      self.recorder.guards(), writes)
        # The tracer sits in reference cycles (its recorder calls back into it): let go of the step's tensors
        # now rather than at the next garbage collection. A buffer someone else holds is one a compiled CUDA
        # step can't keep on the device (backends/numba_cuda/memory.py).
        for table in (self.keep, self.values, self.lifted, self.rebound, self.same_buffer, self.grad_initial,
                      self.grad_of):
            table.clear()
        return trace

    def _placed(self, value, outputs: list) -> tuple:
        """How a replay produces a value the step left somewhere: a graph output, a tensor from before
        the step (by its source), a float computed from traced float arguments, or the same Python object."""
        if self.standin(value) is not None:
            return ("number", self._output(value, outputs).index)
        if not isinstance(value, Tensor):
            return ("object", value)
        if id(value) in self.lifted or (id(value) not in self.values and id(value) not in self.born):
            return ("source", self.source_of(value))
        return ("output", self._output(value, outputs).index)

    def _python_writes(self) -> list:
        """(Write, value now) for every slot the step stored into: a replay stores it again, even where the
        traced run stored what was there already (a replay may start from another value)."""
        changed = []
        for write in self.recorder.writes.values():
            now = write.slot.get()
            if now is MISSING and write.before is MISSING:
                continue
            if isinstance(now, (list, tuple, dict)) and _holds_step_tensors(now, self.born):
                self.unsupported(f"storing a {type(now).__name__} of tensors computed in the step in "
                                 f"{write.slot.label} (at {write.where}; a replay can't rebuild it: return it instead)")
            changed.append((write, now))
            if type(now) is TracedFloat:
                write.slot.set(now.value)  # the traced run leaves a float there, as eager does
            elif held := names_in(now):  # a container holding traced floats: a replay would store the same one
                self.value_read(held, f"stored in a {type(now).__name__} in {write.slot.label}")
        return changed

    def _output(self, t, outputs: list) -> _OutputSlot | float:
        if type(t) is TracedFloat:
            if self.standin(t) is None:  # left over from another trace: a plain float now
                return t.value
            outputs.append(self.value(t.tensor))
            return _NumberSlot(len(outputs) - 1)
        outputs.append(self.value(t))
        return _OutputSlot(len(outputs) - 1)


def plain_numbers(result):
    """The return value of a traced run as eager gives it: floats where it holds traced ones."""
    return _replace_tensors(result, lambda x: x.value if type(x) is TracedFloat else x)


def _holds_step_tensors(obj, born: set) -> bool:
    """Whether a list, tuple or dict holds a tensor created by the traced step."""
    values = obj.values() if isinstance(obj, dict) else obj
    return any(isinstance(v, Tensor) and id(v) in born for v in values)


def _replace_tensors(obj, fn):
    """Map fn over the tensors (and traced floats) of a nested tuple/list/dict structure."""
    if isinstance(obj, Tensor) or type(obj) is TracedFloat:
        return fn(obj)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_replace_tensors(o, fn) for o in obj)
    if isinstance(obj, dict):
        return {k: _replace_tensors(v, fn) for k, v in obj.items()}
    return obj


def fill_outputs(tree, arrays: list, fresh: frozenset, tensor, number=float):
    """The return value of a replayed step: output slots replaced by new tensors.

    ``tensor(array, copied)`` makes an output's tensor; arrays whose index is in ``fresh`` belong to nobody
    else and need no copy. ``number`` makes a traced float's Python float."""
    if type(tree) is _NumberSlot:
        return number(arrays[tree.index])
    if isinstance(tree, _OutputSlot):
        return tensor(arrays[tree.index], tree.index not in fresh)
    if isinstance(tree, (tuple, list)):
        return type(tree)(fill_outputs(o, arrays, fresh, tensor, number) for o in tree)
    if isinstance(tree, dict):
        return {k: fill_outputs(v, arrays, fresh, tensor, number) for k, v in tree.items()}
    return tree

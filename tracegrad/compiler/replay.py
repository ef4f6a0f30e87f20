"""A variant's replay as one generated Python function, straight-line code with no lookups.

A replay reads the step's inputs (arguments, captured tensors, hyperparameters), checks what the
trace assumed of them, runs the backend, and hands back the results: version counters bumped,
``.grad`` set, the return value built. Written as loops over the trace's tables this cost ~14 us
per W1 step (a third of the whole step); generated once per variant as straight-line code (each
captured tensor a name of its own) it costs a few. ``source`` is kept for ``tracegrad dump``.

The generated function raises GuardFailure, before anything is modified, when an assumption fails.
"""
from __future__ import annotations

import collections

import numpy as np

from ..autograd.grad_mode import is_grad_enabled
from ..dtypes import get_default_dtype
from ..ir import GuardFailure
from ..tensor import Tensor, _make_plain, plain_make_allowed
from .reads import _ANY, MISSING, Read, Shown, Slot, _Same
from .tracer import Trace, _NumberSlot, _OutputSlot, fill_outputs, output_slots

MISS = object()  # what a fast path returns when a call does not have the signature of its variant


def _counted(counter: list) -> str:
    """What a change counter counts, for comments in generated code."""
    from ..autograd.engine import HOOK_CHANGES
    from ..nn.module import CHANGES
    from ..optim.optimizer import STATE_CHANGES
    names = {id(CHANGES): "a module", id(STATE_CHANGES): "optimizer state", id(HOOK_CHANGES): "an autograd hook"}
    return names.get(id(counter), "something counted")


class Replay:
    """The generated replay of one traced graph; call it with the step's leaf arguments."""

    def __init__(self, trace: Trace, execute, fresh_outputs: bool) -> None:
        self.trace = trace
        self.env: dict = {"execute": execute, "make_any": Tensor._make, "make_plain": _make_plain,
                          "plain": plain_make_allowed, "copy": np.array, "fill": fill_outputs, "np": np,
                          "replay": self, "MISSING": MISSING, "number": float}
        # A resident backend (CUDA) keeps tensors' values on its device: it is given the tensors, not their
        # arrays (reading ``_data`` would copy them back), checks their types itself, and returns device
        # arrays that become tensors whose values stay there (backends/numba_cuda/memory.py).
        self.resident = getattr(execute, "resident", False)
        if self.resident:
            from ..backends.numba_cuda import memory
            self.env.update(on_device=memory.resident, copy=memory.copy, number=memory.number)
        graph, sources = trace.graph, trace.sources
        self.refs: list = []  # (source, graph input value, traced requires_grad) of each tensor not an argument
        self.seen: list = []  # the arrays of refs whose types were checked last (refs' order)
        self._ref_names: dict = {}  # id(captured tensor) -> its name in the generated code
        lines = ["def run(leaves):"]
        emit = lines.append
        self._check_reads(emit)
        if trace.flag_guards:
            flags = " and ".join(f"bool({self._const(container)}[{key!r}]) is {bool(expected)}"
                                 for container, key, expected in trace.flag_guards)
            emit(f"    if not ({flags}):")
            emit("        replay.flags_changed()")
        self._check_grads(emit)
        inputs = []
        for value in graph.inputs:
            if value.const is not None:
                inputs.append(self._const(value.const))
                continue
            source = sources[value.id]
            if source[0] == "arg":
                inputs.append(f"leaves[{source[1]}]{'' if self.resident else '._data'}")
            elif source[0] == "hyper":
                inputs.append(self._hyper(emit, source[1], value.type.dtype.np))
            elif source[0] == "number":
                inputs.append(f"np.array(leaves[{source[1]}], dtype=np.float64)")
            else:
                inputs.append(f"d{len(self.refs)}")
                self.refs.append((source, value, value.role == "parameter"))
        if self.refs:
            for k, (source, value, _) in enumerate(self.refs):
                emit(f"    d{k} = {self._tensor(source)}{'' if self.resident else '._data'}  # {value.name or value}")
            if not self.resident:
                # arrays checked last time are the same objects: the type check runs only when one was replaced
                same = " and ".join(f"d{k} is seen[{k}]" for k in range(len(self.refs)))
                emit(f"    if not (len(seen) == {len(self.refs)} and {same}):")
                emit(f"        replay.check_types([{', '.join(f'd{k}' for k in range(len(self.refs)))}])")
            flags = " and ".join(f"{self._tensor(source)}._requires_grad is {flag}"
                                 for source, _, flag in self.refs if source[0] == "ref")
            if flags:
                emit(f"    if not ({flags}):")
                emit("        replay.flags_failed()")
            self.env["seen"] = self.seen
        emit(f"    out = execute([{', '.join(inputs)}])")
        emit("    make = make_plain if plain() else make_any  # new tensors: inference mode and tracers mark them")
        for dst, _ in graph.writebacks:
            emit(f"    {self._tensor(sources[dst.id])}._vc[0] += 1")
        uses = self._output_uses(trace)
        self._copied = {k for k, n in uses.items() if n > 1 or not fresh_outputs}
        for slot in trace.grads:
            if slot.final[0] != "same":
                emit(f"    {self._tensor(slot.owner)}._grad = {self._placed(slot.final)}")
        for slot, placed in trace.writes:
            emit(f"    {self._store(slot, placed)}  # the step stored into {slot.label}")
        emit(f"    return {self._result(trace)}")
        self.source = "\n".join(lines) + "\n"
        self.run = self._define(self.source, f"<replay of {graph.name}>", "run")

    # ---- what a replay checks before it runs -------------------------------------------------------------

    def _check_reads(self, emit) -> None:
        """The Python values the traced run read must hold. Reads of a module's attributes, registries and
        hooks are re-checked only when the module's change count moved since they last held; the others
        are checked inline, one expression, every call."""
        self.counters = list({id(r.counter): r.counter for r in self.trace.reads if r.counter}.values())
        self.checked_at = [c[0] for c in self.counters]  # each count when the reads it covers last held
        for k, counter in enumerate(self.counters):
            emit(f"    if {self._const(counter)}[0] != checked_at[{k}]:  # {_counted(counter)} changed since the reads held")
            emit(f"        replay.check_counted_reads({k})")
        self.env["checked_at"] = self.checked_at
        checks = [f"{self._read_check(read)}  # {read.slot.label} ({read.where})"
                  for read in self.trace.reads if read.counter is None]
        if checks:
            emit("    try:")
            emit("        held = (" + "\n                and ".join(checks) + "\n        )")
            emit("    except ValueError:  # an emptied closure cell")
            emit("        held = False")
            emit("    if not held:")
            emit("        replay.reads_failed()")

    def _read_check(self, read: Read) -> str:
        """An expression that is true when the slot holds what the traced run read (at most one walrus, v)."""
        slot, expect = read.slot, read.expect
        if slot.kind == "item":
            get = f"{self._const(slot.container)}.get({self._key(slot.key)}, MISSING)"
        elif slot.kind == "cell":
            get = f"{self._const(slot.container)}.cell_contents"
        else:
            get = f"{self._const(slot.get)}()"
        if expect.kind == "missing":
            return f"{get} is MISSING"
        if expect.kind == "is" or (expect.kind == "eq" and (expect.value is None or type(expect.value) is bool)):
            return f"{get} is {self._const(expect.value)}"
        if expect.kind == "eq" and type(expect.value) in (int, float, str) and expect.value == expect.value:
            return f"type(v := {get}) is {type(expect.value).__name__} and v == {expect.value!r}"
        if expect.kind == "items" and len(expect.value[1]) <= 8 and all(
                type(e) is _Same or e is _ANY or type(e) in (int, float, str, bool, type(None)) for _, e in expect.value[1]):
            kind, entries, same = expect.value
            parts = [f"(v := {get}) is {self._const(same)}" if same is not None else f"type(v := {get}) is {kind.__name__}",
                     f"len(v) == {len(entries)}"]
            for key, entry in entries:  # a dict's entries by key: the same keys, in any order
                item = f"v[{self._key(key)}]" if kind is list else f"v.get({self._key(key)}, MISSING)"
                if type(entry) is _Same:
                    parts.append(f"{item} is {self._const(entry.obj)}")
                elif entry is _ANY:
                    parts.append(f"{item} is not MISSING")
                elif entry is None or type(entry) is bool:
                    parts.append(f"{item} is {entry}")
                else:
                    parts.append(f"type({item}) is {type(entry).__name__} and {item} == {entry!r}")
            return " and ".join(parts)
        return f"{self._const(expect)}.holds({get})"

    def _key(self, key) -> str:
        return repr(key) if type(key) in (str, int) else self._const(key)

    def _check_grads(self, emit) -> None:
        """Each .grad the step touches is None, or set, as it was when the step was traced."""
        checks = []
        for slot in self.trace.grads:
            grad = f"{self._tensor(slot.owner)}._grad"
            checks.append(f"{grad} is None" if slot.initial is None else
                          f"{grad} is not None and {grad}._requires_grad is {slot.initial}")
        if checks:
            emit("    if not (" + "\n            and ".join(checks) + "):")
            emit("        replay.grads_failed(leaves)")

    # ---- naming what a replay touches --------------------------------------------------------------------

    def _tensor(self, source: tuple) -> str:
        """An expression for the tensor a source names at replay time."""
        kind, what = source
        if kind == "arg":
            return f"leaves[{what}]"
        if kind == "grad":
            return f"{self._tensor(what)}._grad"
        return self._ref(what)

    def _output_uses(self, trace: Trace) -> dict:
        """How many times each output is handed out (a .grad, a stored value, the return value)."""
        uses = collections.Counter(output_slots(trace.output_tree))
        uses.update(s.final[1] for s in trace.grads if s.final[0] == "output")
        uses.update(p[1] for _, p in trace.writes if p[0] == "output")
        return uses

    def _placed(self, placed: tuple) -> str:
        """A value the step leaves somewhere: a new tensor of an output, a tensor found by its source, an object."""
        if placed == ("none",):
            return "None"
        kind, what = placed
        if kind == "output":
            if self.resident:
                return f"on_device(make, {f'copy(out[{what}])' if what in self._copied else f'out[{what}]'})"
            return f"make(out[{what}]{'.copy()' if what in self._copied else ''})"
        if kind == "number":
            return f"number(out[{what}])"
        if kind == "source":
            return self._tensor(what)
        return self._const(what)

    def _store(self, slot: Slot, placed: tuple) -> str:
        """A statement storing what the step stored into a Python slot."""
        if placed == ("object", MISSING):
            return f"{self._const(slot.set)}(MISSING)"
        if slot.kind == "item":
            return f"{self._const(slot.container)}[{self._key(slot.key)}] = {self._placed(placed)}"
        return f"{self._const(slot.set)}({self._placed(placed)})"

    def add_fast_path(self, leaves: list, grad_mode: bool, cells: tuple, captured: list, globals_: dict,
                      names: tuple, modules: list) -> None:
        """Make ``self.fast(args)``: ``run`` behind inline checks of the whole signature of the variant.

        A call with positional tensor (or float) arguments usually repeats the last call's signature; checking
        that attribute by attribute costs far less than building the signature and looking it up.
        ``fast`` returns MISS where the signature differs (the caller then looks it up).
        """
        env = self.env
        env.update(is_grad_enabled=is_grad_enabled, default_dtype=get_default_dtype, MISS=MISS, Tensor=Tensor,
                   g=globals_)
        checks = [f"len(args) == {len(leaves)}", f"is_grad_enabled() is {grad_mode}",
                  f"default_dtype() is {self._const(get_default_dtype())}"]
        for k, t in enumerate(leaves):
            if not isinstance(t, Tensor):
                checks.append(f"type(args[{k}]) is float")  # a float argument traced as a graph input
                continue
            checks += [f"type(args[{k}]) is Tensor", f"args[{k}]._requires_grad is {t._requires_grad}",
                       f"args[{k}]._data.shape == {t._data.shape}", f"args[{k}]._data.dtype == {self._const(t._data.dtype)}"]
        tensors = [k for k, t in enumerate(leaves) if isinstance(t, Tensor)]
        if len(tensors) > 1:  # distinct memory, as when traced (an aliased call has another signature)
            checks.append(f"len({{{', '.join(f'id(args[{k}]._vc)' for k in tensors)}}}) == {len(tensors)}")
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
        """The name of a captured tensor: r0, r1, ... in the order the replay first names them."""
        name = self._ref_names.get(id(tensor))
        if name is None:
            name = self._ref_names[id(tensor)] = f"r{len(self._ref_names)}"
            self.env[name] = tensor
        return name

    def _hyper(self, emit, source: tuple, dtype: np.dtype) -> str:
        """Statements reading a hyperparameter; the name of its array (made anew only when it changed)."""
        container, key, index = source
        last = self._const([None, None])  # the value last seen and its array
        emit(f"    n = {self._const(container)}[{key!r}]{'' if index is None else f'[{index}]'}  # hyperparameter")
        emit(f"    if n != {last}[0] or {last}[1] is None:")
        emit(f"        {last}[0], {last}[1] = n, np.array(n, dtype={self._const(dtype)})")
        return f"{last}[1]"

    def _result(self, trace: Trace) -> str:
        """The return value: a returned output becomes a tensor (a copy unless it belongs to nobody else)."""
        tree = trace.output_tree
        if isinstance(tree, _OutputSlot):
            return self._placed(("number" if type(tree) is _NumberSlot else "output", tree.index))
        if not output_slots(tree):
            return self._const(tree) if tree is not None else "None"
        fresh = frozenset(k for k in output_slots(tree) if k not in self._copied)
        return f"fill({self._const(tree)}, out, {self._const(fresh)}, {self._const(self._tensor_of_output)}, number)"

    def _tensor_of_output(self, array, copied: bool) -> Tensor:
        """A returned output as a new tensor (``copied``: the output is handed out elsewhere too)."""
        env = self.env
        make = env["make_plain"] if plain_make_allowed() else env["make_any"]
        if self.resident:
            return env["on_device"](make, env["copy"](array) if copied else array)
        return make(np.array(array, copy=True) if copied else array)

    # ---- the messages of failed assumptions (off the fast path) ---------------------------------------

    def flags_changed(self) -> None:
        """Raise GuardFailure for the first hyperparameter flag whose truth value changed."""
        for container, key, expected in self.trace.flag_guards:
            if bool(container[key]) is not bool(expected):
                raise GuardFailure(f"the hyperparameter flag {key!r}", expected, not expected)

    def reads_failed(self) -> None:
        """Raise GuardFailure for the first Python value read while tracing that no longer holds."""
        for read in self.trace.reads:
            if not read.holds():
                raise GuardFailure(f"{read.slot.label} ({read.where})", Shown(read.expect.describe()), Shown(read.now()))
        raise AssertionError("reads_failed called while every read holds")

    def check_counted_reads(self, k: int) -> None:
        """Counter k moved since the reads it covers last held: check them (GuardFailure), then remember the
        count they held at."""
        counter = self.counters[k]
        for read in self.trace.reads:
            if read.counter is counter and not read.holds():
                raise GuardFailure(f"{read.slot.label} ({read.where})", Shown(read.expect.describe()), Shown(read.now()))
        self.checked_at[k] = counter[0]

    def grads_failed(self, leaves) -> None:
        """Raise GuardFailure for the first .grad that is not (or is) None as it was when traced."""
        for slot in self.trace.grads:
            grad = eval(self._tensor(slot.owner) + "._grad", self.env, {"leaves": leaves})
            if (grad is None) != (slot.initial is None) or (grad is not None and grad._requires_grad is not slot.initial):
                expected = "None" if slot.initial is None else f"a tensor (requires_grad={slot.initial})"
                got = "None" if grad is None else f"a tensor (requires_grad={grad._requires_grad})"
                raise GuardFailure(f".grad of {self._describe(slot.owner)}", Shown(expected), Shown(got))
        raise AssertionError("grads_failed called while every .grad is as traced")

    def _describe(self, source: tuple) -> str:
        kind, what = source
        if kind == "arg":
            return f"argument {what}"
        if kind == "grad":
            return f".grad of {self._describe(what)}"
        value = next((v for s, v, _ in self.refs if s[0] == "ref" and s[1] is what), None)
        return (value.name if value is not None and value.name else None) or f"a captured {what.dtype} tensor {list(what.shape)}"

    def check_types(self, current: list) -> None:
        """Check the captured arrays against the traced types; remember them when they pass."""
        for (source, value, _), data in zip(self.refs, current):
            if data.shape != value.type.shape or data.dtype != value.type.dtype.np:
                raise GuardFailure(f"the type of {value.name or value}", str(value.type),
                                   f"{data.dtype}{list(data.shape)}")
        self.seen[:] = current

    def flags_failed(self) -> None:
        """Raise GuardFailure for the first captured tensor whose requires_grad changed since the trace."""
        for source, value, traced in self.refs:
            if source[0] == "ref" and source[1]._requires_grad != traced:
                raise GuardFailure(f"requires_grad of captured tensor {value.name or value}", traced,
                                   source[1]._requires_grad)

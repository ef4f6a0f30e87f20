"""Which frames the read recorder follows, and where their chains of loads start.

A *chain of loads* is what Python code does to read a value out of long-lived state: a global, a
closure cell or a local, then attributes and subscripts (``self.cfg.scale``, ``group["params"]``,
``state.get("momentum_buffer")``), possibly stored into (``self.n += 1``, ``table[k] = v``) or
called (``random.random()``). ``chains(code)`` finds them in a code object's bytecode (Python 3.10 to
3.13); a follower calls back at the instruction where each starts, in frames of user code and of
this library's ``nn``, ``optim`` and ``utils`` (not its core, NumPy or the standard library): with
``sys.settrace``'s opcode events up to Python 3.11, with ``sys.monitoring`` from 3.12.
"""
from __future__ import annotations

import dis
import os
import sys
import threading
import types
from dataclasses import dataclass

import numpy as np

_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Library code that only reads its arguments, or whose reads are modelled here (Module.__getattr__).
_CORE = tuple(os.path.join(_PACKAGE, p) for p in (
    "tensor.py", "tensor_methods.py", "surface.py", "ops.py", "shapes.py", "einsum.py", "linalg.py", "dtypes.py",
    "creation.py", "primitives", "autograd" + os.sep + "engine.py",
    "autograd" + os.sep + "grad_mode.py", "autograd" + os.sep + "views.py", "compiler", "ir", "backends"))
_STDLIB = os.path.dirname(os.__file__)
_THIRD_PARTY = tuple(os.path.dirname(m.__file__) for m in (np,))

_ROOTS = {"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_DEREF", "LOAD_GLOBAL", "LOAD_CLASSDEREF"}
_ATTRIBUTE_LOADS = {"LOAD_ATTR", "LOAD_METHOD"}
_KEY_LOADS = {"LOAD_CONST", "LOAD_FAST", "LOAD_FAST_CHECK"}


UNFOLLOWED: set = set()  # code of library functions whose reads are modelled here, not followed


def unfollowed(fn):
    """Mark a library function as one the recorder does not follow: bookkeeping whose effect on what a
    replay may assume is modelled here (Module.__getattr__, the counters of module and state changes)."""
    UNFOLLOWED.add(fn.__code__)
    return fn


@dataclass(frozen=True)
class Chain:
    """A chain of loads at one offset of a code object."""

    root: tuple          # ("local" | "free" | "global", name)
    steps: tuple         # ("attr", name) | ("item", key) | ("item_local", name) | ("get", key)
    store: tuple | None  # ("attr", name) | ("item", key) | ("item_local", name): the chain is a store target
    #                      (with "_updated" after the kind: an augmented assignment, which reads it first)
    line: int
    whole: bool          # the value is used all together (.items(), .values(), ** unpacking)
    call: str | None     # "" when the value is called, a method's name when one of its methods is


_WHOLE_USES = {"DICT_MERGE", "DICT_UPDATE", "LIST_EXTEND"}
_WHOLE_METHODS = {"items", "values", "copy"}


def _instructions(code: types.CodeType) -> list:
    """code's instructions without those that never matter to a chain; Python 3.13's LOAD_FAST_LOAD_FAST
    as the two LOAD_FASTs it stands for (both at its offset)."""
    out = []
    for i in dis.get_instructions(code):
        if i.opname == "LOAD_FAST_LOAD_FAST":
            out += [i._replace(opname="LOAD_FAST", argval=name) for name in i.argval]
        elif i.opname not in ("CACHE", "PRECALL", "EXTENDED_ARG", "PUSH_NULL"):
            out.append(i)
    return out


def chains(code: types.CodeType) -> dict:
    """{offset: [Chain]} for the chains of loads that start at each offset of ``code``."""
    ins = _instructions(code)
    chains, line = {}, code.co_firstlineno
    for n, first in enumerate(ins):
        line = first.starts_line or line  # (a bool from Python 3.13: its line is in positions)
        if getattr(first, "positions", None) is not None and first.positions.lineno:
            line = first.positions.lineno
        if first.opname not in _ROOTS:
            continue
        if first.opname == "LOAD_DEREF":
            if first.argval not in code.co_freevars:  # a cell of this frame: a local
                root = ("local", first.argval)
            else:
                root = ("free", first.argval)
        elif first.opname == "LOAD_GLOBAL":
            root = ("global", first.argval)
        else:
            root = ("local", first.argval)
        steps, k, store = [], n + 1, None
        while k < len(ins):
            i = ins[k]
            nxt = ins[k + 1] if k + 1 < len(ins) else None
            if i.opname in _ATTRIBUTE_LOADS:
                if i.opname == "LOAD_METHOD" or "NULL|self" in (i.argrepr or ""):
                    call = ins[k + 2] if k + 2 < len(ins) else None
                    if i.argval == "get" and nxt is not None and nxt.opname == "LOAD_CONST" and call is not None \
                            and call.opname in ("CALL", "CALL_METHOD") and call.arg == 1:
                        steps.append(("get", nxt.argval))
                    break  # a method call: what it returns is not a chain of loads
                steps.append(("attr", i.argval))
                k += 1
            elif (i.opname == "COPY" and i.arg == 1 or i.opname == "DUP_TOP") and nxt is not None \
                    and nxt.opname == "LOAD_ATTR":
                store = ("attr_updated", nxt.argval)  # obj.name += ...: read, then stored
                break
            elif i.opname in _KEY_LOADS and nxt is not None and (nxt.opname == "COPY" and k + 3 < len(ins)
                                                                and ins[k + 3].opname == "BINARY_SUBSCR"
                                                                or nxt.opname == "DUP_TOP_TWO"):
                store = ("item_updated" if i.opname == "LOAD_CONST" else "item_local_updated", i.argval)  # d[k] += ...
                break
            elif i.opname in _KEY_LOADS and nxt is not None and nxt.opname in ("BINARY_SUBSCR", "STORE_SUBSCR"):
                key = ("item", i.argval) if i.opname == "LOAD_CONST" else ("item_local", i.argval)
                if nxt.opname == "STORE_SUBSCR":
                    store = key
                    break
                steps.append(key)
                k += 2
            elif i.opname == "STORE_ATTR":
                store = ("attr", i.argval)
                break
            else:
                break
        after = ins[k] if k < len(ins) else None
        call = _call_after(after)
        if root[0] != "local" or steps or store or call is not None:
            whole = after is not None and (after.opname in _WHOLE_USES or after.opname in _ATTRIBUTE_LOADS
                                           and after.argval in _WHOLE_METHODS)
            chains.setdefault(first.offset, []).append(Chain(root, tuple(steps), store, line, whole, call))
    return chains


def _call_after(after) -> str | None:
    """What the instruction after a chain calls on its value: "" (the value), a method's name, or None."""
    if after is None:
        return None
    if after.opname in ("CALL", "CALL_FUNCTION"):  # (CALL_FUNCTION: Python 3.10)
        return ""
    if after.opname == "LOAD_METHOD" or after.opname == "LOAD_ATTR" and "NULL|self" in (after.argrepr or ""):
        return after.argval
    return None


# ---- following frames ------------------------------------------------------------------------------

def followed(code: types.CodeType) -> bool:
    """Whether the recorder follows frames of this code: user code and this library's nn, optim and
    utils; not its core, NumPy or the standard library."""
    filename = code.co_filename
    if filename.startswith(_PACKAGE):
        return not filename.startswith(_CORE)
    if filename.startswith(_THIRD_PARTY) or filename.startswith("<frozen") or filename == "<string>":
        return False  # NumPy, the standard library, generated methods (a dataclass's __init__)
    return not filename.startswith(_STDLIB) or "-packages" in filename[len(_STDLIB):]


class SettraceFollower:
    """Calls on_chain(frame, chain) where a followed frame of this thread starts a chain (sys.settrace's
    opcode events; up to Python 3.11)."""

    def __init__(self, chains_of, on_chain) -> None:
        self.chains_of, self.on_chain = chains_of, on_chain

    def start(self) -> None:
        self.saved = sys.gettrace()
        sys.settrace(self._call)

    def stop(self) -> None:
        sys.settrace(self.saved)

    def _call(self, frame, event, arg):
        chains = self.chains_of(frame.f_code) if event == "call" else None
        if not chains:
            return None
        frame.f_trace_opcodes = True

        def opcode(frame, event, arg):
            if event == "opcode":
                for chain in chains.get(frame.f_lasti, ()):
                    self.on_chain(frame, chain)
            return opcode
        return opcode


class MonitoringFollower:
    """The same with sys.monitoring (Python 3.12 and later): there, settrace's opcode events miss code that
    ran before tracing began. Its events reach every thread: those of other threads are ignored."""

    def __init__(self, chains_of, on_chain) -> None:
        self.chains_of, self.on_chain = chains_of, on_chain
        self.thread = threading.get_ident()
        self.followed: dict = {}  # code -> its chains, for the code objects with instruction events on

    def start(self) -> None:
        monitoring = sys.monitoring
        free = [t for t in range(6) if monitoring.get_tool(t) is None]
        if not free:
            raise RuntimeError("tracegrad.compile needs a sys.monitoring tool id to trace a step, and all six "
                               "are in use (debuggers, coverage, profilers); stop one of them")
        self.tool = free[-1]
        monitoring.use_tool_id(self.tool, "tracegrad")
        monitoring.register_callback(self.tool, monitoring.events.PY_START, self._start)
        monitoring.register_callback(self.tool, monitoring.events.INSTRUCTION, self._instruction)
        monitoring.set_events(self.tool, monitoring.events.PY_START)

    def stop(self) -> None:
        monitoring = sys.monitoring
        monitoring.set_events(self.tool, 0)
        for code in self.followed:
            monitoring.set_local_events(self.tool, code, 0)
        monitoring.register_callback(self.tool, monitoring.events.PY_START, None)
        monitoring.register_callback(self.tool, monitoring.events.INSTRUCTION, None)
        monitoring.free_tool_id(self.tool)

    def _start(self, code, offset) -> None:
        if code in self.followed or threading.get_ident() != self.thread:
            return
        chains = self.chains_of(code)
        if chains:
            self.followed[code] = chains
            sys.monitoring.set_local_events(self.tool, code, sys.monitoring.events.INSTRUCTION)

    def _instruction(self, code, offset) -> None:
        starting = self.followed[code].get(offset)
        if starting and threading.get_ident() == self.thread:
            for chain in starting:
                self.on_chain(sys._getframe(1), chain)

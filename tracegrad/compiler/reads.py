"""The Python values a traced step reads and writes: recorded while it is traced, checked at every replay.

A replay runs no Python code of the step, so every Python value the traced run read must still hold
when a replay starts: a global or closure float multiplied into a tensor, a module attribute that
picks a branch, the list of an optimizer's parameter groups, the parameter a module attribute names.
While a step is traced, ``ReadRecorder`` follows each frame of user code, ``nn`` and ``optim``
(``frames.py``). Where an instruction starts a chain of loads (``self.cfg.scale``,
``group["params"]``, ``state.get("momentum_buffer")``, a global, a closure cell), it evaluates the
chain itself, without running any Python code (no properties, no ``__getattr__``: their own frames
are followed instead; a module's registries are looked up as ``Module.__getattr__`` does; an
attribute found on the class is guarded on the class and as absent from the object), and records a
``Read`` for each step: which container (a dict, a cell, a list, a slotted object) holds which key,
and what was found there. A chain that is stored into is a ``Write``: the replay stores the same
value again. The hooks of each leaf tensor the step lifts are a read too, and a chain that draws
Python or NumPy random numbers stops tracing.

Tensor contents are not Python values: the tracer makes them graph inputs. The library's core
(tensor ops, primitives, autograd, the compiler itself) only reads its arguments and is not followed.
"""
from __future__ import annotations

import gc
import os
import random
import sys
import types
from dataclasses import dataclass, field

import numpy as np

from .frames import UNFOLLOWED, Chain, MonitoringFollower, SettraceFollower, followed
from .frames import chains as chains_of_code
from .numbers import EXACT_TYPE

MISSING = type("Missing", (), {"__repr__": lambda self: "<missing>"})()  # an absent key, attribute or empty cell

_STABLE_MODULES = frozenset(sys.stdlib_module_names) | {"tracegrad", "numpy", "numba", "scipy"}
_SCALARS = (bool, int, float, complex, str, bytes, type(None), np.generic)


def is_scalar(value) -> bool:
    """Python values compared by equality (numbers, strings, None, tuples of them)."""
    if isinstance(value, tuple):
        return all(map(is_scalar, value))
    return isinstance(value, _SCALARS)


def _same_scalar(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is tuple:
        return len(a) == len(b) and all(map(_same_scalar, a, b))
    return a == b or (a != a and b != b)  # NaN equals NaN here: the same value was read


class Shown(str):
    """A description that messages show as it is (repr without quotes)."""

    def __repr__(self) -> str:
        return str(self)


@dataclass(frozen=True)
class Expect:
    """What a read found: ``kind`` 'is' (the same object), 'eq' (an equal scalar of the same type),
    'items' (the same list or dict, with the same entries: scalars equal, other objects the same),
    'array' (a NumPy array with equal contents), 'missing'."""

    kind: str
    value: object

    @staticmethod
    def of(value, whole: bool = True, same: bool = True) -> "Expect":
        """How a value read now is checked later. A dict's numbers count only when ``whole`` (its values
        are used all together): a dict handed on is read key by key, and those reads are guarded themselves
        (an optimizer's hyperparameters are read as graph inputs, never guarded). A list or dict must be
        the same object too unless ``same`` is false (a list made anew at each read)."""
        if value is MISSING:
            return Expect("missing", None)
        if is_scalar(value):
            return Expect("eq", value)
        if type(value) in (list, dict):
            items = value.items() if type(value) is dict else enumerate(value)
            loose = type(value) is dict and not whole
            return Expect("items", (type(value), tuple(
                (k, (_ANY if loose else v) if is_scalar(v) else _Same(v)) for k, v in items), value if same else None))
        if type(value) is np.ndarray:
            return Expect("array", value.copy())
        return Expect("is", value)

    def holds(self, value) -> bool:
        """Whether ``value`` is what was read."""
        if self.kind == "is":
            return value is self.value
        if self.kind == "eq":
            return _same_scalar(value, self.value)
        if self.kind == "missing":
            return value is MISSING
        if self.kind == "array":
            return (type(value) is np.ndarray and value.dtype == self.value.dtype
                    and value.shape == self.value.shape and bool(np.array_equal(value, self.value, equal_nan=True)))
        kind, entries, same = self.value
        if (value is not same if same is not None else type(value) is not kind) or len(value) != len(entries):
            return False  # the same list or dict (or one of the same kind), with the same entries
        items = value.items() if kind is dict else enumerate(value)
        return all(k == ek and (v is ev.obj if type(ev) is _Same else ev is _ANY and is_scalar(v) or _same_scalar(v, ev))
                   for (k, v), (ek, ev) in zip(items, entries))

    def describe(self) -> str:
        """The expected value, for messages."""
        if self.kind == "missing":
            return "absent"
        if self.kind == "items":
            return f"{self.value[0].__name__} of {len(self.value[1])} entries"
        return _short(self.value)


_ANY = Shown("any number")  # a dict entry whose value (a number) is not guarded


class _Same:
    """A list or dict entry compared by identity."""

    __slots__ = ("obj",)

    def __init__(self, obj) -> None:
        self.obj = obj


def _short(value) -> str:
    text = repr(value) if is_scalar(value) else f"<{type(value).__name__} object>"
    return text if len(text) <= 60 else text[:57] + "..."


@dataclass(frozen=True)
class Slot:
    """A place that holds a Python value: ``container[key]`` of a dict ('item'), a list ('index'),
    a closure cell ('cell', key None), a slot of an object ('attr'), or the autograd hooks of a tensor
    that requires grad ('hooks', the tensor as container)."""

    kind: str
    container: object = field(compare=False)
    key: object
    label: str = field(compare=False)  # how the code named it: 'self.cfg.scale'
    # A one-element list counting every change of the container, where its class keeps one
    # (``_tracegrad_changes``: modules, optimizer state): a replay re-checks the slot only when it moved.
    counter: list | None = field(compare=False, default=None)

    def get(self):
        """The value held now (MISSING when absent); runs no Python code of the user's."""
        c = self.container
        if self.kind == "item":
            return c.get(self.key, MISSING)  # dict.get: a defaultdict does not create the entry
        if self.kind == "cell":
            try:
                return c.cell_contents
            except ValueError:
                return MISSING
        if self.kind == "index":
            return c[self.key] if -len(c) <= self.key < len(c) else MISSING
        if self.kind == "hooks":
            return _hooks_of(c)
        return getattr(c, self.key, MISSING)

    def set(self, value) -> None:
        """Store ``value`` here (MISSING deletes it)."""
        c = self.container
        if self.kind == "cell":
            if value is MISSING:
                del c.cell_contents
            else:
                c.cell_contents = value
        elif self.kind == "attr":
            if value is MISSING:
                delattr(c, self.key)
            else:
                setattr(c, self.key, value)
        elif value is MISSING:
            del c[self.key]
        else:
            c[self.key] = value

    def identity(self) -> tuple:
        """What makes two slots the same place."""
        return (self.kind, id(self.container), self.key if _hashable(self.key) else id(self.key))


def _hashable(key) -> bool:
    try:
        hash(key)
    except TypeError:
        return False
    return True


@dataclass
class Read:
    """A slot the traced run read, and what it found there (at its first read)."""

    slot: Slot
    expect: Expect
    where: str  # the line that read it: 'model.py:12'
    persistent: bool = True  # the container outlives the step (else it may be the step's own scratch object)

    def holds(self) -> bool:
        """Whether the slot still holds what was read."""
        return self.expect.holds(self.slot.get())

    @property
    def counter(self) -> list | None:
        """The change counter that says when this read must be checked again, or None (checked at every
        call). A counter counts changes of the slot's container, not of a list or array found there, unless
        the library keeps it (a module's registries and hooks, optimizer state: changed through methods)."""
        counter = self.slot.counter
        if counter is None or self.expect.kind not in ("items", "array"):
            return counter
        if self.slot.kind == "hooks" or isinstance(self.slot.key, str) and self.slot.key.startswith("_") \
                or getattr(type(self.slot.get()), "_tracegrad_changes", None) is counter:
            return counter
        return None

    def now(self) -> str:
        """What the slot holds now, for messages."""
        return _short_value(self.slot.get())

    def assumption(self) -> str:
        """What a replay assumes of the slot, for messages."""
        return f"{self.slot.label} is {self.expect.describe()} ({self.where})"

    def message(self) -> str:
        """What changed, for messages."""
        return f"{self.slot.label} (read at {self.where}): traced with {self.expect.describe()}, now {self.now()}"


def _short_value(value) -> str:
    if value is MISSING:
        return "absent"
    if type(value) in (list, dict):
        return f"{type(value).__name__} of {len(value)} entries"
    return _short(value)


@dataclass
class Write:
    """A slot the traced run stored into, and what it held before."""

    slot: Slot
    before: object
    where: str


# ---- chains of loads in a code object --------------------------------------------------------------

def random_source(value, call: str | None) -> str:
    """'random.random' when calling value (or its method ``call``) draws Python or NumPy random numbers:
    a value no read can guard (else '')."""
    if call is None:
        return ""
    if call:
        if isinstance(value, types.ModuleType) and (value.__name__ == "random" or value.__name__.startswith("numpy.random")):
            return "" if call in _SEEDING else f"{value.__name__}.{call}"
        if isinstance(value, _RANDOM_STATES):
            return "" if call in _SEEDING else f"{type(value).__name__}.{call}"
        return ""
    owner = getattr(value, "__self__", None)
    if isinstance(owner, _RANDOM_STATES) and getattr(value, "__name__", "") not in _SEEDING:
        return f"{type(owner).__name__}.{value.__name__}"
    return ""


_RANDOM_STATES = (random.Random, np.random.Generator, np.random.RandomState, np.random.BitGenerator)
_SEEDING = {"seed", "getstate", "setstate", "get_state", "set_state", "bit_generator", ""}


class ReadRecorder:
    """Records the reads and writes of Python values while a step is traced on this thread."""

    def __init__(self, functions=(), roots=(), on_random=lambda reason: None, on_type=lambda frame, where, by_name: None) -> None:
        self.reads: dict = {}   # Slot.identity() -> Read
        self.writes: dict = {}  # Slot.identity() -> Write
        # Objects that outlive the step (its arguments, what it reaches through globals and closures, and
        # whatever chains of loads reach from them): only their stores are repeated by a replay, not those
        # into objects the step creates and drops (an autograd Function's ctx).
        self.persistent: dict = {id(o): o for o in roots}
        self.on_random = on_random  # told when the step draws random numbers outside tracegrad
        self.on_type = on_type  # told where followed code loads the builtin type (numbers.py)
        self._chains: dict = {}
        self._cells: dict = {}  # (code, ids of the free values) -> the cells of the function running it
        self._functions: dict = {}
        for fn in functions:
            fn = getattr(fn, "__func__", fn)
            if isinstance(fn, types.FunctionType):
                self._functions.setdefault(fn.__code__, []).append(fn)
        self._follower = None

    def __enter__(self) -> "ReadRecorder":
        from ..nn.module import Module
        self._module_type = Module
        follower = MonitoringFollower if hasattr(sys, "monitoring") else SettraceFollower
        self._follower = follower(self._chains_of, self._follow)
        self._follower.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop following frames (at the end, or when tracing gave up: nothing recorded matters any more)."""
        if self._follower is not None:
            self._follower.stop()
            self._follower = None

    def stored(self, container, key) -> bool:
        """Whether the step stored into container[key] so far."""
        return ("item", id(container), key) in self.writes

    def add(self, read: Read) -> None:
        """Record a read the tracer makes itself (the hooks of a tensor it lifts)."""
        self.reads.setdefault(read.slot.identity(), read)

    def changed(self) -> list:
        """The reads of objects that outlive the step that no longer hold (the traced run changed them)."""
        return [r for r in self.reads.values() if r.persistent and not r.holds()]

    def guards(self) -> list:
        """The reads a replay checks: not those of the step's own scratch objects that it changed (a
        list it appended to), nor entries that a check of their whole container already covers."""
        reads = [r for r in self.reads.values() if r.persistent or r.holds()]
        snapshots = {id(r.slot.get()) for r in reads if r.expect.kind == "items"
                     and all(v is not _ANY for _, v in r.expect.value[1])}
        return [r for r in reads if not (r.slot.kind in ("item", "index") and id(r.slot.container) in snapshots)]

    def _chains_of(self, code: types.CodeType) -> dict:
        """The chains of loads of code, by offset ({} for code that is not followed)."""
        if code in UNFOLLOWED or not followed(code):
            return {}
        chains = self._chains.get(code)
        if chains is None:
            chains = self._chains[code] = chains_of_code(code)
        return chains

    # ---- evaluating a chain --------------------------------------------------------------------------

    def _follow(self, frame, chain: Chain) -> None:
        where = f"{os.path.basename(frame.f_code.co_filename)}:{chain.line}"
        kind, name = chain.root
        if kind == "local":
            value, label = frame.f_locals.get(name, MISSING), name
            persistent = id(value) in self.persistent
        elif kind == "global":
            globals_ = frame.f_globals
            if name not in globals_ or globals_[name] is EXACT_TYPE:  # a builtin: assumed never shadowed between calls
                if name == "type":
                    self.on_type(frame, where, True)
                return
            value, label, persistent = globals_[name], name, True
            if not isinstance(value, types.ModuleType):  # an imported module: assumed never rebound
                self._read(Slot("item", globals_, name, name), where, not chain.steps and chain.whole, True)
        else:
            (value, label), persistent = self._free(frame, name, where, not chain.steps and chain.whole), True
        for n, step in enumerate(chain.steps, 1):
            if persistent:
                self.persistent.setdefault(id(value), value)
            if value is MISSING:
                return
            if step[0] == "attr" and _found_on_class(value, step[1]):
                value, label = self._class_attribute_read(value, step[1], label, where, persistent)
                continue
            slot = self._slot(value, step, frame, label)
            if slot is None:
                return
            value, label = self._read(slot, where, n == len(chain.steps) and chain.whole, persistent)
        if value is MISSING:
            return
        if value is type:  # the builtin type, reached by another name
            self.on_type(frame, where, False)
        if chain.call and isinstance(value, self._module_type):  # a module's method: not replaced on it
            self._class_attribute_read(value, chain.call, label, where, persistent)
        unseen = random_source(value, chain.call)
        if unseen:
            self.on_random(f"random numbers drawn in Python ({unseen}())")
        store = chain.store
        if store is not None and store[0].endswith("_updated"):  # an augmented assignment reads the slot first
            store = (store[0][:-len("_updated")], store[1])
            slot = self._slot(value, store, frame, label)
            if slot is not None:
                self._read(slot, where, False, persistent)
        if persistent:
            self.persistent.setdefault(id(value), value)
            if store is not None:
                self._write(value, store, frame, label, where)

    def _class_attribute_read(self, obj, name: str, label: str, where: str, persistent: bool) -> tuple:
        """obj.name found on obj's class: guarded as absent from obj itself, and (a value, not a method)
        as it is on the class."""
        instance_dict = getattr(obj, "__dict__", None)
        counter = getattr(type(obj), "_tracegrad_changes", None)
        if type(instance_dict) is dict:
            self._read(Slot("item", instance_dict, name, f"{label}.{name}", counter), where, False, persistent)
        value, klass = _class_attribute(type(obj), name)
        if klass is not None and not callable(value) and not hasattr(type(value), "__get__"):
            self._read(Slot("item", vars(klass), name, f"{klass.__name__}.{name}"), where, False, True)
        return value, f"{label}.{name}"

    def _write(self, obj, store: tuple, frame, label: str, where: str) -> None:
        """Remember what a slot of an object that outlives the step held before the step stored into it."""
        if store[0] == "attr" and not isinstance(obj, (type, types.ModuleType)):
            slot = _attribute_slot(obj, store[1], f"{label}.{store[1]}", self._module_type, new=True)
        else:
            slot = self._slot(obj, store, frame, label)
        if slot is not None and slot.identity() not in self.writes:
            self.writes[slot.identity()] = Write(slot, slot.get(), where)

    def _read(self, slot: Slot, where: str, whole: bool, persistent: bool) -> tuple:
        value = slot.get()
        key = slot.identity()
        read = self.reads.get(key)
        if read is None:
            if not _stable_module_entry(slot):
                self.reads[key] = Read(slot, Expect.of(value, whole), where, persistent)
        elif whole and read.expect.kind == "items" and read.expect.value[0] is dict:
            read.expect = Expect.of(value, whole)  # now used whole: its numbers count too
        return value, slot.label

    def _free(self, frame, name: str, where: str, whole: bool) -> tuple:
        """A closure variable: read through the cell of the function whose frame this is."""
        cell = self._cell(frame, name)
        if cell is None:
            return frame.f_locals.get(name, MISSING), name  # no cell found: treated as a local
        return self._read(Slot("cell", cell, name, name), where, whole, True)

    def _cell(self, frame, name: str):
        code = frame.f_code
        values = frame.f_locals
        free = tuple(id(values.get(n)) for n in code.co_freevars)
        key = (code, free)
        if key not in self._cells:
            candidates = self._functions.get(code) or [f for f in gc.get_referrers(code)
                                                       if isinstance(f, types.FunctionType) and f.__code__ is code]
            self._cells[key] = None
            for fn in candidates:
                cells = dict(zip(code.co_freevars, fn.__closure__ or ()))
                try:
                    if all(cells[n].cell_contents is values.get(n) for n in code.co_freevars):
                        self._cells[key] = cells
                        break
                except (ValueError, KeyError):
                    continue
        cells = self._cells[key]
        return None if cells is None else cells.get(name)

    def _slot(self, obj, step: tuple, frame, label: str) -> Slot | None:
        """Where ``obj.<step>`` is held, or None when it is not a plain place (a property, a tensor index...)."""
        kind, key = step
        if kind == "item_local":
            key = frame.f_locals.get(key, MISSING)
            if key is MISSING or not _hashable(key):
                return None
            kind = "item"
        if kind in ("item", "get"):
            text = f"{label}[{key!r}]" if is_scalar(key) else f"{label}[<{type(key).__name__}>]"
            if isinstance(obj, dict) and type(obj).__getitem__ is dict.__getitem__ and _hashable(key):
                return Slot("item", obj, key, text, getattr(type(obj), "_tracegrad_changes", None))
            if type(obj) is list and type(key) is int:
                return Slot("index", obj, key, text)
            return None
        return _attribute_slot(obj, key, f"{label}.{key}", self._module_type)


def _attribute_slot(obj, name: str, label: str, module_type, new: bool = False) -> Slot | None:
    """Where ``obj.name`` is held when Python finds it without running code of the object's class
    (``new``: where an assignment puts it, when it does not exist yet)."""
    if name == "__dict__" or isinstance(obj, _tensor_type()):
        return None  # a tensor's state is the tracer's: its values are graph inputs, its flags checked apart
    if isinstance(obj, type):  # a class's own attribute (Config.scale)
        klass = _class_attribute(obj, name)[1]
        return None if klass is None else Slot("item", vars(klass), name, label)
    cls = type(obj)
    owner = obj if isinstance(obj, module_type) else None
    counter = getattr(cls, "_tracegrad_changes", None)
    if cls.__getattribute__ is not object.__getattribute__ and not isinstance(obj, (type, types.ModuleType)):
        return None
    static = _class_attribute(cls, name)[0]
    if static is not MISSING and _is_data_descriptor(static):
        if type(static) is types.MemberDescriptorType:  # __slots__
            return Slot("attr", obj, name, label, counter)
        return None  # a property: its getter's frame is followed itself
    instance_dict = getattr(obj, "__dict__", None)
    if type(instance_dict) is dict and name in instance_dict:
        return Slot("item", instance_dict, name, label, counter)
    if new and type(instance_dict) is dict:
        return Slot("item", instance_dict, name, label, counter)  # assigned: an attribute of its own from now on
    if static is not MISSING:
        return None  # a method or class constant: read through the class (ReadRecorder._class_attribute_read)
    if owner is not None and type(instance_dict) is dict:
        for registry in ("_parameters", "_buffers", "_modules"):  # what Module.__getattr__ looks up
            entries = instance_dict.get(registry)
            if entries is not None and name in entries:
                return Slot("item", entries, name, label, counter)
    return None


def _hooks_of(tensor) -> list:
    """The hooks that run when a gradient reaches a leaf tensor (a replay runs none of them)."""
    node = tensor._acc
    if node is None:
        return []
    return [*(node._tensor_hooks.get(tensor._output_nr, ()) if node._tensor_hooks else ()), *(node._hooks or ()),
            *(node._post_hooks or ())]


def hooks_read(tensor, label: str) -> Read:
    """The hooks of a leaf tensor the step lifts: they must be the same at every replay (checked when
    the count of hook changes moved), and a step that registers one is traced again."""
    from ..autograd.engine import HOOK_CHANGES
    slot = Slot("hooks", tensor, None, f"the hooks of {label}", HOOK_CHANGES)
    return Read(slot, Expect.of(slot.get(), same=False), "registered hooks")


def _found_on_class(obj, name: str) -> bool:
    """Whether obj.name is a plain attribute of obj's class (a value or a method), not of obj itself."""
    if isinstance(obj, (type, types.ModuleType, _tensor_type())):
        return False
    instance_dict = getattr(obj, "__dict__", None)
    if type(instance_dict) is not dict or name in instance_dict:
        return False
    static = _class_attribute(type(obj), name)[0]
    return static is not MISSING and not _is_data_descriptor(static)


def _tensor_type() -> type:
    from ..tensor import Tensor
    return Tensor


def _class_attribute(cls: type, name: str) -> tuple:
    """(the attribute, the class of cls's MRO that defines it), or (MISSING, None)."""
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name], klass
    return MISSING, None


def _is_data_descriptor(attr) -> bool:
    kind = type(attr)
    return hasattr(kind, "__set__") or hasattr(kind, "__delete__")


def _stable_module_entry(slot: Slot) -> bool:
    """A name of the standard library's, NumPy's or this library's modules (never guarded: read
    through ``torch.float32``, ``np.pi``, ``nn.functional.relu``)."""
    if slot.kind != "item" or type(slot.container) is not dict:
        return False
    name = slot.container.get("__name__")
    return isinstance(name, str) and slot.container.get("__spec__", MISSING) is not MISSING and \
        name.partition(".")[0] in _STABLE_MODULES

"""Float arguments that stay graph inputs: ``step(x, y, lr)`` with a new ``lr`` at every call.

A float argument whose value changes between calls is traced as a ``TracedFloat``: a stand-in that
behaves as the float it holds, and whose arithmetic (``+ - *``, ``/`` by a non-zero number, mixing
with tensors) is recorded in the graph, so the variant serves every value. Python code that reads
the value itself (a comparison, ``float()``, ``math.exp``, formatting, hashing, ``type()``) makes the
trace value-specific: ``Tracer.value_reads`` says where, and the compiled function then keys that
argument by value again. Every way C code or NumPy reads a number goes through one of the methods
below (``__float__``, ``__index__``, ``__array__``...), so no read goes unseen.

What a stand-in can't be is an exact float: ``isinstance(x, float)`` holds (``__class__``), and code
the trace follows that names ``type`` sees ``EXACT_TYPE`` (``type(x)`` is float) until the trace ends;
C code that insists on an exact float (``json.dumps``) raises, and the compiled function adds a note
and goes back to plain floats for that argument.
"""
from __future__ import annotations

import math
import operator

import numpy as np

from ..tensor import TRACE

EXACT_INT = 2 ** 53  # ints up to this size convert to float exactly, in Python and in NumPy alike


class TracedFloat:
    """A float argument (or arithmetic on one) while a step is traced; a plain float once it is not."""

    __slots__ = ("value", "tensor", "tracer", "names")

    def __init__(self, value: float, tensor, tracer, names: frozenset) -> None:
        self.value, self.tensor, self.tracer, self.names = value, tensor, tracer, names

    @property
    def __class__(self):  # isinstance(x, float) holds, as it does for the float this stands for
        return float

    def live(self) -> bool:
        """Whether the trace that made this number is still recording in this thread."""
        return self.tracer is TRACE.tracer and self.tracer is not None

    def read(self, how: str) -> float:
        """The value itself, for code that uses it as a number: the trace becomes specific to it."""
        if self.live():
            self.tracer.value_read(self.names, how)
        return self.value

    # ---- recorded arithmetic ------------------------------------------------------------------------

    def _arithmetic(self, other, op, record, reflected: bool = False):
        if type(other) is TracedFloat:
            other_value, other_tensor, names = other.value, other.tensor, self.names | other.names
        elif type(other) in (int, float, bool):
            other_value, other_tensor, names = other, other, self.names
            if type(other) is int and not -EXACT_INT <= other <= EXACT_INT:  # a huge int: Python may raise where NumPy would not
                mine = self.read("arithmetic with a huge number")
                return op(other, mine) if reflected else op(mine, other)
        else:
            return NotImplemented  # a tensor's or array's own method takes it (a tensor records it)
        a, b = (other_value, self.value) if reflected else (self.value, other_value)
        value = op(a, b)  # raises where the float would
        if not self.live():
            return value
        x, y = (other_tensor, self.tensor) if reflected else (self.tensor, other_tensor)
        return TracedFloat(value, record(x, y), self.tracer, names)

    def __add__(self, other):
        return self._arithmetic(other, operator.add, _ops().add)

    def __radd__(self, other):
        return self._arithmetic(other, operator.add, _ops().add, reflected=True)

    def __sub__(self, other):
        return self._arithmetic(other, operator.sub, _ops().sub)

    def __rsub__(self, other):
        return self._arithmetic(other, operator.sub, _ops().sub, reflected=True)

    def __mul__(self, other):
        return self._arithmetic(other, operator.mul, _ops().mul)

    def __rmul__(self, other):
        return self._arithmetic(other, operator.mul, _ops().mul, reflected=True)

    def __truediv__(self, other):
        if type(other) is TracedFloat:  # a replay could divide by zero where Python raises
            return self.read("division") / other.read("division")
        return self._arithmetic(other, operator.truediv, _ops().div)  # by 0: raises now, as the float does

    def __rtruediv__(self, other):
        if type(other) in (int, float, bool):
            return other / self.read("division by it")
        return NotImplemented

    def __neg__(self):
        return TracedFloat(-self.value, _ops().neg(self.tensor), self.tracer, self.names) if self.live() else -self.value

    def __pos__(self):
        return self

    def __abs__(self):
        return TracedFloat(abs(self.value), _ops().abs(self.tensor), self.tracer, self.names) if self.live() \
            else abs(self.value)

    # ---- everything else reads the value ----------------------------------------------------------------

    def __float__(self) -> float:
        return self.read("float()")

    def __int__(self) -> int:
        return int(self.read("int()"))

    def __index__(self):
        self.read("use as an index")
        raise TypeError("'float' object cannot be interpreted as an integer")

    def __complex__(self) -> complex:
        return complex(self.read("complex()"))

    def __bool__(self) -> bool:
        return bool(self.read("truth test"))

    def __hash__(self) -> int:
        return hash(self.read("hashing"))

    def __repr__(self) -> str:
        return repr(self.read("repr()"))

    def __str__(self) -> str:
        return str(self.read("str()"))

    def __format__(self, spec: str) -> str:
        return format(self.read("formatting"), spec)

    def __round__(self, ndigits=None):
        return round(self.read("round()"), ndigits)

    def __trunc__(self):
        return int(self.read("math.trunc()"))

    def __floor__(self):
        return math.floor(self.read("math.floor()"))

    def __ceil__(self):
        return math.ceil(self.read("math.ceil()"))

    def __array__(self, dtype=None, copy=None):
        return np.array(self.read("conversion to an array"), dtype=dtype)

    def __reduce_ex__(self, protocol):
        return float, (self.read("pickling or copying"),)

    def __getattr__(self, name: str):
        if name.startswith("__") or not hasattr(float, name):
            raise AttributeError(f"'float' object has no attribute {name!r}")
        return getattr(self.read(f".{name}"), name)


def _reading(op, how: str, reflected: bool = False):
    """A method that reads the value (comparisons, //, %, **): numbers only, as float's own methods."""
    def method(self, other):
        if type(other) is TracedFloat:
            other = other.read(how)
        elif type(other) not in (int, float, bool):
            return NotImplemented  # a tensor's own method records it; anything else, as for a float
        mine = self.read(how)
        return op(other, mine) if reflected else op(mine, other)
    method.__name__ = f"__{'r' if reflected else ''}{op.__name__.strip('_')}__"
    return method


for _op, _how in ((operator.eq, "comparison"), (operator.ne, "comparison"), (operator.lt, "comparison"),
                  (operator.le, "comparison"), (operator.gt, "comparison"), (operator.ge, "comparison")):
    setattr(TracedFloat, f"__{_op.__name__}__", _reading(_op, _how))
for _op, _how in ((operator.floordiv, "//"), (operator.mod, "%"), (divmod, "divmod()"), (pow, "**")):
    _name = _op.__name__.strip("_")
    setattr(TracedFloat, f"__{_name}__", _reading(_op, _how))
    setattr(TracedFloat, f"__r{_name}__", _reading(_op, _how, reflected=True))


def names_in(obj) -> frozenset:
    """The arguments behind the traced floats in obj, or in the tuples, lists and dicts it holds."""
    if type(obj) is TracedFloat:
        return obj.names
    if isinstance(obj, (tuple, list)):
        return frozenset().union(*map(names_in, obj))
    if isinstance(obj, dict):
        return frozenset().union(*map(names_in, obj.values()))
    return frozenset()


class _ExactType:
    """The builtin ``type`` as code that names it sees it while float arguments are traced: the same,
    except that a traced float's type is float (and the trace becomes specific to its value)."""

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and not kwargs and type(args[0]) is TracedFloat:
            return type(args[0].read("type()"))
        return type(*args, **kwargs)

    def __instancecheck__(self, obj) -> bool:
        return isinstance(obj, type)

    def __subclasscheck__(self, cls) -> bool:
        return issubclass(cls, type)

    def __getattr__(self, name: str):
        return getattr(type, name)

    def __repr__(self) -> str:
        return repr(type)


EXACT_TYPE = _ExactType()


def _ops():
    from .. import ops  # imported late: ops asks the tracer about traced numbers
    return ops

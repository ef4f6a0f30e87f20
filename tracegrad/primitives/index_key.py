"""The key of ``x[key]`` as a node attribute: a static, hashable template of index items.

Index tensors are not part of a key: they are extra inputs of the node (after the data), and the items
``IndexTensor(k)`` (integers) and ``Mask(k)`` (booleans) stand for the k-th of them. The other items are
``Slice(start, stop, step)``, ``Integer(n)``, ``NewAxis()`` and ``Rest()`` (the Ellipsis). A key prints as
Python subscript text in brackets, without spaces (``[::,1:3:,None,...,t0,m1]``: ``tK`` is index tensor K,
``mK`` mask K), the form the IR text shows and ``IndexKey.parse`` reads back; equal keys print, compare
and hash equally.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True, slots=True)
class Slice:
    """start:stop:step (None: the default); ``Slice()`` is the full slice."""

    start: int | None = None
    stop: int | None = None
    step: int | None = None

    def numpy(self, arrays) -> slice:
        """The NumPy index item."""
        return slice(self.start, self.stop, self.step)

    def __str__(self) -> str:
        return ":".join("" if x is None else str(x) for x in (self.start, self.stop, self.step))


@dataclass(frozen=True, slots=True)
class Integer:
    """One position (negative ones count from the end); the dim is dropped."""

    value: int

    def numpy(self, arrays) -> int:
        """The NumPy index item."""
        return self.value

    def __str__(self) -> str:
        return str(self.value)


@dataclass(frozen=True, slots=True)
class _Fixed:
    """An item without fields: the same NumPy item and text every time."""

    numpy_item = None
    text = ""

    def numpy(self, arrays) -> object:
        """The NumPy index item."""
        return self.numpy_item

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True, slots=True)
class NewAxis(_Fixed):
    """None: a new dim of size 1."""

    text = "None"


@dataclass(frozen=True, slots=True)
class Rest(_Fixed):
    """Ellipsis: every dim the other items leave out."""

    numpy_item, text = Ellipsis, "..."


@dataclass(frozen=True, slots=True)
class _Tensor:
    """An item standing for the ``position``-th index tensor."""

    position: int
    letter = ""  # the text form's prefix

    def numpy(self, arrays) -> np.ndarray:
        """The NumPy index item: the index array itself."""
        return arrays[self.position]

    def __str__(self) -> str:
        return f"{self.letter}{self.position}"


@dataclass(frozen=True, slots=True)
class IndexTensor(_Tensor):
    """An index tensor of integer positions (it gathers a copy)."""

    letter = "t"


@dataclass(frozen=True, slots=True)
class Mask(_Tensor):
    """A boolean mask: the result's size depends on its values."""

    letter = "m"


_ITEM = re.compile(r"(-?\d*):(-?\d*):(-?\d*)|(-?\d+)|(None)|(\.\.\.)|t(\d+)|m(\d+)")


def _parse_item(text: str):
    """One item from its text form."""
    m = _ITEM.fullmatch(text)
    if m is None:
        raise ValueError(f"bad index key item {text!r}; expected start:stop:step, an integer, None, ..., tK or mK")
    if m.group(4) is not None:
        return Integer(int(m.group(4)))
    if m.group(5):
        return NewAxis()
    if m.group(6):
        return Rest()
    if m.group(7) is not None:
        return IndexTensor(int(m.group(7)))
    if m.group(8) is not None:
        return Mask(int(m.group(8)))
    return Slice(*(int(x) if x else None for x in m.group(1, 2, 3)))


@dataclass(frozen=True)
class IndexKey:
    """x[key]'s template (see the module's docstring): ``items`` in subscript order."""

    items: tuple
    # the NumPy index of a key without index tensors, made at its first use (a step indexes with the same
    # few keys every time, and building it costs as much as the indexing)
    _view: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __str__(self) -> str:
        return "[" + ",".join(map(str, self.items)) + "]"

    @staticmethod
    def parse(text: str) -> "IndexKey":
        """Read a key's text form ('[::,t0]') back."""
        if not (text.startswith("[") and text.endswith("]")):
            raise ValueError(f"bad index key {text!r}; expected e.g. [::,1:3:,t0]")
        inner = text[1:-1]
        return IndexKey(tuple(_parse_item(item) for item in inner.split(",")) if inner else ())

    @property
    def has_mask(self) -> bool:
        """Whether some item is a boolean mask (the result's shape then depends on its values)."""
        return Mask in map(type, self.items)

    @property
    def has_tensors(self) -> bool:
        """Whether some item is an index tensor or a mask (the result is then a copy, not a view)."""
        return any(isinstance(item, _Tensor) for item in self.items)

    @property
    def tensor_positions(self) -> tuple:
        """Where the integer index tensors stand among the items."""
        return tuple(k for k, item in enumerate(self.items) if type(item) is IndexTensor)

    @property
    def selects_all(self) -> bool:
        """Whether the key is ``...`` alone: every element, in place (``x[...] = v``)."""
        return self == EVERYTHING

    def numpy_index(self, arrays) -> tuple:
        """The NumPy index, with ``arrays`` (one per index tensor) in the tensors' places."""
        return tuple([item.numpy(arrays) for item in self.items])

    def numpy_view_index(self) -> tuple:
        """The NumPy index of a key without index tensors, ending in an Ellipsis (``_viewed``)."""
        if self._view is None:
            object.__setattr__(self, "_view", tuple([item.numpy(()) for item in self._viewed()]))
        return self._view

    def subscript(self) -> str:
        """A key without index tensors as Python subscript text, ending in ``...`` (``_viewed``)."""
        return ", ".join(map(str, self._viewed()))

    def _viewed(self) -> tuple:
        """The items with a trailing Ellipsis when they have none: NumPy then returns a 0-d view where it would
        return a scalar copy (``x[0]`` of a vector)."""
        return self.items if Rest in map(type, self.items) else self.items + (REST,)

    def dims(self, arrays, ndim: int) -> list:
        """Per item, how many dims of an array of ``ndim`` dims it indexes (a mask as many as it has, the
        Ellipsis those no other item takes, None none)."""
        widths = [arrays[item.position].ndim if type(item) is Mask else 0 if type(item) in (NewAxis, Rest) else 1
                  for item in self.items]
        rest = ndim - sum(widths)
        return [rest if type(item) is Rest else width for item, width in zip(self.items, widths)]

    def integer_indices(self, arrays) -> list:
        """Per item, the integer positions it picks (an Integer's value, an index tensor's array), else None."""
        indices = []
        for item in self.items:
            if type(item) is Integer:
                indices.append(np.asarray(item.value))
            else:
                indices.append(arrays[item.position] if type(item) is IndexTensor else None)
        return indices


# Items and keys made by the front end, kept: building a frozen dataclass costs more than indexing does.
slice_item = functools.lru_cache(maxsize=1024)(Slice)
integer_item = functools.lru_cache(maxsize=1024)(Integer)
index_key = functools.lru_cache(maxsize=1024)(IndexKey)
index_tensor_item = functools.lru_cache(maxsize=64)(IndexTensor)
mask_item = functools.lru_cache(maxsize=64)(Mask)

FULL = Slice()  # ``:``
NEW_AXIS, REST = NewAxis(), Rest()
EVERYTHING = IndexKey((REST,))  # ``x[...]``

"""``tracegrad.save`` / ``tracegrad.load``: state dicts and tensors in a zip archive that runs no code when loaded.

The archive holds ``tracegrad.json`` (the object: nested dicts, lists and tuples of tensors, Python numbers,
strings, None and bools, described as JSON) and one ``storages/<n>.npy`` per memory block, read back with
``allow_pickle=False``. Nothing in a file names a Python type to import or a function to call: a file that
describes anything else is refused. Tensors that shared memory when saved share it again when loaded.
"""
from __future__ import annotations

import collections
import io
import json
import os
import zipfile
from typing import Any, Callable

import numpy as np

from . import dtypes
from .tensor import Tensor

FORMAT = "tracegrad.save"
VERSION = 1
_DESCRIPTION = "tracegrad.json"
_EXPECTED = (f"tracegrad.load reads the zip archives tracegrad.save writes (a {_DESCRIPTION} description with .npy "
             f"arrays), which run no code when loaded")
_DTYPES = {d.name: d for d in dtypes._FROM_NP.values()}  # every dtype a tensor can have, by name
_NUMPY_SCALARS = {"bool", "int8", "int16", "int32", "int64", "uint8", "float16", "float32", "float64"}


def save(obj: Any, f) -> None:
    """Write a state dict, a tensor, or nested dicts/lists/tuples of them and plain values to a path or file."""
    writer = _Writer()
    description = {"format": FORMAT, "version": VERSION, "object": writer.encode(obj)}
    text = json.dumps(description)
    with _open(f, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(_DESCRIPTION, text)
        for n, array in enumerate(writer.storages):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, array, allow_pickle=False)
            archive.writestr(f"storages/{n}.npy", buffer.getvalue())


def load(f, map_location=None, *, weights_only: bool | None = None) -> Any:
    """Read what tracegrad.save wrote; no code runs whatever ``weights_only`` says.

    ``map_location``: None, "cpu", a device, a dict mapping saved locations ("cpu") to devices, or a callable
    ``fn(tensor, "cpu")`` whose result (a tensor) replaces each loaded tensor unless it returns None.
    """
    relocate = _relocation(map_location)
    with _open(f, "rb") as raw:
        head = raw.read(4)
        raw.seek(0)
        if head[:1] == b"\x80":
            raise RuntimeError(f"this file is a Python pickle (PyTorch's legacy torch.save format); {_EXPECTED}. "
                               f"Load it with PyTorch, convert the tensors to NumPy arrays and build tracegrad "
                               f"tensors from them, then tracegrad.save them")
        if not zipfile.is_zipfile(raw):
            raise RuntimeError(f"this file is not a zip archive; {_EXPECTED}")
        with zipfile.ZipFile(raw) as archive:
            names = set(archive.namelist())
            if _DESCRIPTION not in names:
                pytorch = any(name.endswith("/data.pkl") for name in names)
                raise RuntimeError(
                    f"this zip archive has no {_DESCRIPTION}" + (" (it is a PyTorch checkpoint, a pickle inside a "
                                                                   "zip, which tracegrad never unpickles)" if pytorch else "")
                    + f"; {_EXPECTED}. Load a PyTorch checkpoint with PyTorch, convert its tensors with .numpy() and "
                      f"build tracegrad tensors from them, then tracegrad.save them")
            description = json.loads(archive.read(_DESCRIPTION))
            if not isinstance(description, dict) or description.get("format") != FORMAT:
                raise RuntimeError(f"{_DESCRIPTION} does not describe a tracegrad.save file; {_EXPECTED}")
            if description.get("version") != VERSION:
                raise RuntimeError(f"this file has format version {description.get('version')!r}; this tracegrad "
                                   f"reads version {VERSION}: load it with the tracegrad that wrote it")
            return _Reader(archive, relocate).decode(description.get("object"))


def _open(f, mode: str):
    """A binary file for a path (closed afterwards) or the caller's file object (left open)."""
    if isinstance(f, (str, os.PathLike)):
        return open(f, mode)
    if not hasattr(f, "write" if "w" in mode else "read"):
        raise TypeError(f"expected a path or a binary file object, got {type(f).__name__}")
    return _Borrowed(f)


class _Borrowed:
    """A caller's file object in a with statement, not closed at the end."""

    def __init__(self, f) -> None:
        self.f = f

    def __enter__(self):
        return self.f

    def __exit__(self, *exc) -> None:
        pass


def _relocation(map_location) -> Callable[[Tensor], Tensor]:
    """What to do with each loaded tensor, from map_location (a device other than the CPU raises here)."""
    from . import device
    if callable(map_location):
        def relocate(t: Tensor) -> Tensor:
            moved = map_location(t, "cpu")
            return t if moved is None else moved
        return relocate
    if isinstance(map_location, dict):
        map_location = map_location.get("cpu", "cpu")
    if map_location is not None:
        device(map_location)  # tensors live in host memory: "cpu" (or cpu:N) is the only place they can go
    return lambda t: t


# ---- writing ------------------------------------------------------------------------------------------

class _Writer:
    """Encodes an object as JSON, collecting the memory blocks of its tensors."""

    def __init__(self) -> None:
        self.storages: list[np.ndarray] = []
        self.storage_of: dict[int, int] = {}  # id of a root ndarray -> storage number
        self.roots: list[np.ndarray] = []     # keeps the roots alive, so their ids stay unique
        self.tensors: dict[int, int] = {}     # id of a tensor -> its number (a tensor saved twice loads as one)

    def encode(self, obj) -> Any:
        if obj is None or type(obj) in (bool, int, float, str):
            return obj
        if isinstance(obj, Tensor):
            return {"tensor": self.tensor(obj)}
        if isinstance(obj, np.generic) and obj.dtype.name in _NUMPY_SCALARS:
            return {"numpy": obj.dtype.name, "value": obj.item()}
        if type(obj) in (list, tuple):
            return {type(obj).__name__: [self.encode(v) for v in obj]}
        if type(obj) in (dict, collections.OrderedDict):
            return {type(obj).__name__.lower(): [[self.encode(k), self.encode(v)] for k, v in obj.items()]}
        if isinstance(obj, dtypes.dtype):
            return {"dtype": obj.name}
        raise TypeError(f"tracegrad.save can't store a {type(obj).__module__}.{type(obj).__qualname__}: it stores "
                        f"tensors, Python numbers, strings, None, bools, dtypes and dicts, lists and tuples of them "
                        f"(a state_dict()); convert other objects to these first")

    def tensor(self, t: Tensor) -> dict:
        if id(t) in self.tensors:
            return {"same_as": self.tensors[id(t)]}
        self.tensors[id(t)] = len(self.tensors)
        arr = t._data
        root = arr
        while isinstance(root.base, np.ndarray):
            root = root.base
        offset = _element_offset(arr, root)
        if offset is None:  # not a plain strided view of a row-major block of its own dtype: saved on its own
            root, offset = np.ascontiguousarray(arr), 0
            strides = [s // arr.itemsize for s in root.strides]
        else:
            strides = [s // arr.itemsize for s in arr.strides]
        storage = self.storage_of.get(id(root))
        if storage is None:
            storage = self.storage_of[id(root)] = len(self.storages)
            self.storages.append(root.reshape(-1))
            self.roots.append(root)
        from .nn.parameter import Parameter
        return {"storage": storage, "offset": offset, "shape": list(arr.shape), "strides": strides,
                "dtype": t.dtype.name, "requires_grad": t.requires_grad, "parameter": isinstance(t, Parameter)}


def _element_offset(arr: np.ndarray, root: np.ndarray) -> int | None:
    """arr's start in root, in elements, when arr is a strided view of root's row-major memory, else None."""
    if root.dtype != arr.dtype or not root.flags.c_contiguous or any(s % arr.itemsize for s in arr.strides):
        return None
    delta = arr.__array_interface__["data"][0] - root.__array_interface__["data"][0]
    return delta // arr.itemsize if delta % arr.itemsize == 0 else None


# ---- reading ------------------------------------------------------------------------------------------

class _Reader:
    """Decodes the JSON description, building tensors over the archive's memory blocks."""

    def __init__(self, archive: zipfile.ZipFile, relocate: Callable[[Tensor], Tensor]) -> None:
        self.archive, self.relocate = archive, relocate
        self.storages: dict[int, np.ndarray] = {}
        self.tensors: list[Tensor] = []

    def decode(self, obj) -> Any:
        if obj is None or type(obj) in (bool, int, float, str):
            return obj
        if not isinstance(obj, dict) or not obj:
            raise self.refuse(obj)
        if "tensor" in obj:
            return self.tensor(obj["tensor"])
        if "numpy" in obj and obj["numpy"] in _NUMPY_SCALARS:
            return np.dtype(obj["numpy"]).type(obj["value"])
        if "dtype" in obj and obj["dtype"] in _DTYPES:
            return _DTYPES[obj["dtype"]]
        kind, items = next(iter(obj.items()))
        if len(obj) != 1 or not isinstance(items, list):
            raise self.refuse(obj)
        if kind in ("list", "tuple"):
            values = [self.decode(v) for v in items]
            return values if kind == "list" else tuple(values)
        if kind in ("dict", "ordereddict") and all(isinstance(p, list) and len(p) == 2 for p in items):
            pairs = [(self.decode(k), self.decode(v)) for k, v in items]
            return dict(pairs) if kind == "dict" else collections.OrderedDict(pairs)
        raise self.refuse(obj)

    @staticmethod
    def refuse(obj) -> RuntimeError:
        return RuntimeError(f"refusing an entry of {_DESCRIPTION}: {json.dumps(obj)[:200]}; {_EXPECTED}, holding "
                            f"only tensors, numbers, strings, None, bools, dtypes and dicts, lists and tuples of them")

    def tensor(self, spec: dict) -> Tensor:
        if "same_as" in spec:
            return self.tensors[spec["same_as"]]
        try:
            dtype = _DTYPES[spec["dtype"]]
            arr = self.view(self.storage(int(spec["storage"]), dtype), int(spec["offset"]),
                            tuple(int(s) for s in spec["shape"]), tuple(int(s) for s in spec["strides"]))
            requires_grad, parameter = bool(spec["requires_grad"]), bool(spec["parameter"])
        except (KeyError, TypeError, ValueError) as e:
            raise RuntimeError(f"a tensor entry of {_DESCRIPTION} is damaged ({type(e).__name__}: {e}); "
                               f"{_EXPECTED}") from None
        if parameter:
            from .nn.parameter import Parameter
            t = Parameter(Tensor._make(arr), requires_grad=requires_grad)
        else:
            t = Tensor._make(arr, requires_grad)
        t = self.relocate(t)
        self.tensors.append(t)
        return t

    def storage(self, n: int, dtype: dtypes.dtype) -> np.ndarray:
        if n not in self.storages:
            with self.archive.open(f"storages/{n}.npy") as member:
                array = np.lib.format.read_array(member, allow_pickle=False)
            self.storages[n] = array.reshape(-1)
        array = self.storages[n]
        if array.dtype != dtype.np:
            raise ValueError(f"storage {n} holds {array.dtype}, the tensor says {dtype.name}")
        return array

    @staticmethod
    def view(flat: np.ndarray, offset: int, shape: tuple, strides: tuple) -> np.ndarray:
        """The strided view of a block, after checking that every element it reaches lies inside the block."""
        if len(shape) != len(strides) or any(s < 0 for s in shape):
            raise ValueError(f"shape {list(shape)} and strides {list(strides)} don't describe a tensor")
        if 0 not in shape:
            low = offset + sum((n - 1) * s for n, s in zip(shape, strides) if s < 0)
            high = offset + sum((n - 1) * s for n, s in zip(shape, strides) if s > 0)
            if low < 0 or high >= flat.size:
                raise ValueError(f"a view reaching elements {low}..{high} of a block of {flat.size}")
        elif not 0 <= offset <= flat.size:
            raise ValueError(f"offset {offset} outside a block of {flat.size}")
        itemsize = flat.itemsize
        return np.lib.stride_tricks.as_strided(flat[offset:] if 0 not in shape else flat[:0], shape,
                                               tuple(s * itemsize for s in strides))

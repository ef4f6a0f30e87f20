"""Where a tensor's values live around compiled CUDA steps: on the GPU between steps, on the host on demand.

A compiled CUDA step keeps every tensor it reads or writes (parameters, optimizer state, ``.grad``, its
arguments) on the device between calls, and copies a tensor's values back only when host code uses them.
A tensor's ``__dict__`` tells where its current values are:

- no ``_device``: an ordinary host tensor;
- ``_device`` (a ``Mirror``) and no ``_data``: the device copy is current. Host code reaching for
  ``t._data`` (any eager op, printing, ``.numpy()``, ``state_dict``) finds it missing, and
  ``Tensor.__getattr__`` (installed by this module) calls ``Mirror.to_host``, which copies the values down
  when the step changed them and puts ``_data`` back;
- ``_device`` and ``_data``: the host copy is in use and may have been written: the next step uploads it
  (into the same device buffer) before it runs.

Eager code pays nothing for this until the CUDA backend is used: ``_data`` is an ordinary instance attribute
whenever it is present, and ``Tensor.__getattr__`` exists only once this module is imported.

A tensor whose host buffer something else may read (a NumPy view of it, ``.numpy()`` held by the user, a
tensor view sharing its memory) can't leave that buffer stale: it stays on the host, written through
(its new values are copied down after every step that changes it).
"""
from __future__ import annotations

import sys

import numpy as np
from numba import cuda

from ...ir import GuardFailure
from ...tensor import Tensor


class Mirror:
    """A tensor's device copy and its host buffer (held here while ``_data`` is away)."""

    __slots__ = ("device", "host", "stale")

    def __init__(self, device, host: np.ndarray | None = None, stale: bool = True) -> None:
        self.device = device  # the device array, current whenever the tensor has no _data
        self.host = host      # the host buffer while _data is away (None: not allocated yet)
        self.stale = stale    # the host buffer lacks the device's latest values

    def to_host(self, t: Tensor) -> np.ndarray:
        """The tensor's values on the host, copied down if the device changed them; ``_data`` is back."""
        if self.host is None:
            self.host = np.empty(self.device.shape, self.device.dtype)
        if self.stale:
            _download(self.device, self.host)
            self.stale = False
        t.__dict__["_data"] = self.host
        return self.host


def _data_from_device(t: Tensor, name: str):
    """Tensor.__getattr__, reached only when the normal lookup fails: ``_data`` is missing while a compiled CUDA
    step holds the tensor's current values on the GPU, and its first host use brings them back. Every other
    name is an ordinary missing attribute."""
    if name == "_data":
        mirror = t.__dict__.get("_device")
        if mirror is not None:
            return mirror.to_host(t)
    raise AttributeError(f"{type(t).__name__!r} object has no attribute {name!r}")


# Installed when this backend is first used, not in tensor.py: a class with __getattr__ makes every attribute
# lookup of its instances slower (measured: eager mul 3.2 -> 3.6 us), a cost only CUDA users should pay.
Tensor.__getattr__ = _data_from_device


def _download(device, host: np.ndarray) -> None:
    """Copy a device array into a host buffer of its shape (any strides on either side)."""
    if host.flags.c_contiguous and device.is_c_contiguous():
        device.copy_to_host(host)
    else:
        host[...] = device.copy_to_host()


def on_device(t: Tensor, shape: tuple, dtype: np.dtype, name: str):
    """The device array holding ``t``'s current values (uploaded when its host copy is in use).

    Raises GuardFailure, as a replay's type check does, when ``t`` no longer has the traced shape or dtype."""
    d = t.__dict__
    host = d.get("_data")
    mirror = d.get("_device")
    if host is None:  # untouched on the host since the last step: the device copy is current
        return mirror.device
    if host.shape != shape or host.dtype != dtype:
        raise GuardFailure(f"the type of {name}", f"{np.dtype(dtype).name}{list(shape)}",
                           f"{host.dtype}{list(host.shape)}")
    contiguous = np.ascontiguousarray(host)
    if mirror is None or mirror.device.shape != shape or mirror.device.dtype != dtype:
        d["_device"] = mirror = Mirror(cuda.to_device(contiguous))
    else:
        mirror.device.copy_to_device(contiguous)
    mirror.stale = False
    return mirror.device


def settle(t: Tensor, written: bool) -> bool:
    """After a step that read ``t`` (and wrote it when ``written``): leave its values on the device, or
    write them through to a host buffer others may read. Returns whether it was written through."""
    d = t.__dict__
    mirror = d["_device"]
    if "_data" not in d:  # it stayed on the device
        mirror.stale = mirror.stale or written
        return False
    mirror.host = None  # its own reference to the buffer (left by to_host) is not someone else's
    if _shared(d):
        if written:
            _download(mirror.device, d["_data"])
        return True
    mirror.host, mirror.stale = d.pop("_data"), written
    return False


def _references(d: dict) -> int:
    """References to d's ``_data`` array, counted the same way for a lone array (``_ALONE``) as for a tensor's."""
    return sys.getrefcount(d["_data"])


_ALONE = _references({"_data": np.empty(1)})  # measured: what the count reads differs between Python versions


def _shared(d: dict) -> bool:
    """Whether something besides the tensor may read or write its host buffer: a view's buffer belongs to its
    base, and an array others hold has references of theirs."""
    return d["_data"].base is not None or _references(d) > _ALONE


def resident(make, device) -> Tensor:
    """A new tensor (made by ``make``, as a replay makes its results) whose values are ``device``'s, on the GPU."""
    t = make(np.empty(device.shape, device.dtype))
    d = t.__dict__
    d["_device"] = Mirror(device, d.pop("_data"), stale=True)
    return t


def copy(device):
    """A new device array with ``device``'s values."""
    out = cuda.device_array_like(device)
    out.copy_to_device(device)
    return out


def number(device) -> float:
    """The Python float a 0-d device array holds (a traced float the step returns or stores)."""
    return float(device.copy_to_host())

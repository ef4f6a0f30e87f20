"""Backends: what runs an optimized graph. Each is a folder (a subpackage of this one) with this interface.

A folder provides ``PROVIDES``, a dict from backend name to a ``Backend`` object, and is listed in
``_FOLDERS`` below (imported on first use: Numba's takes a second to import). A ``Backend`` has

- ``name``: what ``tracegrad.compile(backend=...)`` calls it;
- ``fallback``: the backend that runs a graph this one can't compile (None for the interpreter, which
  compiles every graph);
- ``unavailable() -> str | None``: why the backend can't run on this machine (no GPU, say), None when it can;
- ``compile(graph) -> Executable``: ``graph`` made runnable; raises ``Unsupported`` (with the reason)
  when some node can't be lowered, and that graph then runs on the ``fallback`` backend;
- ``kernel_report(graph) -> KernelReport | None``: the code ``compile`` would generate, with the counts
  the backend knows from its own plan (``explain`` shows them), without compiling it; None for a backend
  that generates no code. It raises ``Unsupported`` as ``compile`` does.

An ``Executable`` is called with one array per graph input and returns the outputs; its attributes
``source`` (the generated code, or None) and ``fresh_outputs`` (True when every output is a new array,
aliasing no input and no other output: a replay then hands them out without copies) tell the compiler
the rest. A ``resident`` Executable (the CUDA backend's) keeps tensors' values on its device: a replay
passes it the tensors themselves (not their arrays) and makes its results with ``numba_cuda.memory``.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

from ..ir import Graph

# backend name -> the folder providing it
_FOLDERS = {"interpreter": "interpreter", "numba": "numba_cpu", "numba-parallel": "numba_cpu", "cuda": "numba_cuda"}


def names() -> tuple:
    """The names of the backends listed in ``_FOLDERS`` now."""
    return tuple(_FOLDERS)


class Unsupported(Exception):
    """A backend can't lower some node of the graph (the reason says which)."""


class Executable(Protocol):
    """A graph made runnable by a backend."""

    source: str | None   # the generated code (`tracegrad dump --stage kernel`), None when there is none
    fresh_outputs: bool  # each output is a new array, aliasing no input and no other output

    def __call__(self, arrays: list) -> list:
        """The graph's outputs for one array per graph input (write-backs stored into those arrays)."""


@dataclass(frozen=True)
class KernelReport:
    """The code a backend generates for a graph, and what it is made of."""

    source: str
    loop_nests: int  # loops at the top level of the generated functions
    kernels: int     # generated functions the graph runs as


class Backend(Protocol):
    """What a backend folder provides (see the module's docstring)."""

    name: str
    fallback: str | None

    def unavailable(self) -> str | None:
        """Why this backend can't run on this machine; None when it can."""

    def compile(self, graph: Graph) -> Executable:
        """``graph`` made runnable (raises Unsupported when some node can't be lowered)."""

    def kernel_report(self, graph: Graph) -> KernelReport | None:
        """The code ``compile`` would generate and its counts, without compiling it; None if it generates none."""


def get(name: str) -> Backend:
    """The backend called ``name`` (its folder is imported on first use)."""
    folder = _FOLDERS.get(name)
    if folder is None:
        raise ValueError(f"unknown backend {name!r}; expected one of {names()}")
    return importlib.import_module(f".{folder}", __name__).PROVIDES[name]

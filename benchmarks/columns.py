"""The columns every workload shares: its PyTorch-style step run by tracegrad and PyTorch, eager and compiled.

A workload writes its step once, as a PyTorch user would, in a function
`build(torch, problem) -> Prepared` that takes the `torch` module to use.
`pytorch_style_columns(build)` turns it into the tracegrad and PyTorch
columns; `jax_jit(name)` is the column of the step that `jax_steps.<name>`
writes for JAX.

A compiled column first runs a throwaway copy of the step until the compiled
code has run: a backend that is missing, a torch.compile that fails, or a
step that runs eagerly or on the interpreter instead of the named backend,
then shows as an unavailable column with its reason, instead of stopping the
run or being timed as if it had compiled.
"""

from __future__ import annotations

import functools
import time
import warnings
from types import ModuleType
from typing import Any, Callable, Iterable

import numpy as np

from benchmarks.harness import Factory, Prepared, Unavailable, import_optional, import_torch

Build = Callable[[ModuleType, Any], Prepared]

# column name -> tracegrad.compile backend
TRACEGRAD_BACKENDS = {"tracegrad compiled": "numba", "tracegrad numba-parallel": "numba-parallel"}
# tracegrad.compile runs call 1 eagerly (optimizers create their state lazily) and traces call 2; calls 3 and 4
# replay (call 3 compiles a Numba kernel, or loads it from disk): after 4 calls the backend's own code has run.
CALLS_UNTIL_COMPILED = 4


def pytorch_style_columns(build: Build) -> dict[str, Factory]:
    """tracegrad eager and compiled, PyTorch eager and torch.compile, all running the step that `build` makes."""
    return {"tracegrad eager": functools.partial(_tracegrad_eager, build),
            **{name: tracegrad_compiled(build, backend) for name, backend in TRACEGRAD_BACKENDS.items()},
            "torch eager": functools.partial(_torch_eager, build),
            "torch.compile": functools.partial(_torch_compiled, build)}


def copy_parameters(torch: ModuleType, parameters: Iterable, values: Iterable[np.ndarray]) -> None:
    """Overwrite each parameter with the NumPy array of the same position (no gradient recorded)."""
    with torch.no_grad():
        for parameter, value in zip(parameters, values):
            parameter.copy_(torch.from_numpy(value))


def compile_step(tracegrad: ModuleType, step: Callable, backend: str) -> Callable:
    """tracegrad.compile(step, backend=backend); Unavailable when that backend is not there."""
    try:
        return tracegrad.compile(step, backend=backend)
    except RuntimeError as reason:  # a backend that can't run on this machine (backend="cuda" without a GPU)
        raise Unavailable(f"tracegrad.compile(backend={backend!r}) is not available: {reason}") from reason


def run_until_compiled(compiled_step: Callable) -> list[float]:
    """Call a tracegrad.compile'd step until its backend's code has run; return the seconds of each call.

    Unavailable when the step ran eagerly, or on the interpreter instead of the backend it was compiled for.
    """
    from tracegrad.compiler import CompileWarning

    seconds = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", CompileWarning)
        for _ in range(CALLS_UNTIL_COMPILED):
            start = time.perf_counter()
            compiled_step()
            seconds.append(time.perf_counter() - start)
    reasons = [str(warning.message) for warning in caught if issubclass(warning.category, CompileWarning)]
    info = compiled_step.cache_info()
    if reasons or info.fallbacks or info.hits < CALLS_UNTIL_COMPILED - 2:  # calls 1 and 2 run the Python code
        raise Unavailable(f"tracegrad.compile(backend={compiled_step.backend!r}) did not run this step with its "
                          f"backend in {CALLS_UNTIL_COMPILED} calls: {'; '.join(reasons) or info}")
    return seconds


def tracegrad_compiled(build: Build, backend: str) -> Factory:
    """A column of `build`'s step under tracegrad.compile with `backend` (any backend, e.g. for tests)."""
    return functools.partial(_tracegrad_compiled, build, backend)


def jax_jit(name: str) -> Factory:
    """The column of `jax_steps.<name>`, the workload's step written for JAX and run under jax.jit."""
    def factory(problem: Any) -> Prepared:
        import_optional("jax")
        from benchmarks import jax_steps  # imports JAX at its top: only once JAX is known to be installed
        return getattr(jax_steps, name)(problem)
    return factory


def _tracegrad_eager(build: Build, problem: Any) -> Prepared:
    return build(import_optional("tracegrad"), problem)


def _torch_eager(build: Build, problem: Any) -> Prepared:
    return build(import_torch(), problem)


def _tracegrad_compiled(build: Build, backend: str, problem: Any) -> Prepared:
    tracegrad = import_optional("tracegrad")
    run_until_compiled(compile_step(tracegrad, build(tracegrad, problem).step, backend))
    prepared = build(tracegrad, problem)
    return Prepared(compile_step(tracegrad, prepared.step, backend), prepared.weights)


def _torch_compiled(build: Build, problem: Any) -> Prepared:
    torch = import_torch()
    trial = build(torch, problem)
    try:
        compiled = torch.compile(trial.step)
        for _ in range(2):  # the first call compiles; the second runs what it made
            compiled()
    except Exception as error:  # it fails in many ways (no C compiler, an unsupported op, ...): all mean unavailable
        first_line = (str(error).strip().splitlines() or [""])[0]
        raise Unavailable(f"torch.compile failed: {type(error).__name__}: {first_line}") from error
    prepared = build(torch, problem)
    return Prepared(torch.compile(prepared.step), prepared.weights)

"""Run CUDA test cases under Numba's CUDA simulator, in a subprocess.

Numba picks the simulator when it is first imported (``NUMBA_ENABLE_CUDASIM=1``), so the cases can't run in
pytest's own process. A case module (``tests/cuda_*_cases.py``) defines ``CASES``, a dict from a case's name
to a function of no arguments that raises when the case fails; it imports Numba only inside those functions,
so pytest can import it to learn the names. ``results(module)`` runs every case of the module in one fresh
interpreter (one Numba import for all of them) and returns name -> None (passed) or the failure's traceback;
``launched_kernels(module)`` runs them the same way and returns every kernel they launched with the types of
its arguments, which ``test_cuda_device_compile.py`` compiles for a real GPU.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent


def _simulate(*arguments: str, timeout: float = 1500):
    """The JSON this script prints when run with ``arguments`` in a fresh interpreter with the simulator on."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=os.pathsep.join(
        [str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, __file__, *arguments], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=TESTS.parent)
    lines = [line for line in done.stdout.splitlines() if line.startswith(("{", "["))]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the simulator run of {' '.join(arguments)} failed (exit {done.returncode}):\n"
                           f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return json.loads(lines[-1])


@functools.cache
def results(module: str) -> dict:
    """name -> None or the traceback, for every case of ``tests/<module>.py`` run under the simulator."""
    return _simulate(module)


@functools.cache
def launched_kernels(module: str) -> list:
    """[module source, kernel name, argument types] of each distinct kernel launch made by the cases of
    ``tests/<module>.py`` under the simulator, the source None for ``numba_cuda/runtime.py``'s kernels. An
    argument's type is ["array", dtype, ndim, layout] or ["scalar", dtype]. Raises when a case failed."""
    return _simulate("--kernels", module)


def check(module: str, case: str) -> None:
    """Fail with the case's traceback when it failed under the simulator."""
    failure = results(module)[case]
    if failure is not None:
        raise AssertionError(f"{case} failed under the CUDA simulator:\n{failure}")


def _run_cases(module: str) -> dict:
    """Run every case of the module here (the simulator must be on); name -> None or the traceback."""
    import importlib
    cases = importlib.import_module(module).CASES
    outcome = {}
    for name, case in cases.items():
        try:
            case()
            outcome[name] = None
        except BaseException:  # noqa: BLE001 - every failure is reported, by name
            outcome[name] = traceback.format_exc()
    return outcome


def _argument_type(value) -> list:
    if hasattr(value, "copy_to_host"):  # a (simulated) device array
        layout = "C" if value.is_c_contiguous() else "F" if value.is_f_contiguous() else "A"
        return ["array", value.dtype.str, value.ndim, layout]
    return ["scalar", np.asarray(value).dtype.str]  # as Numba types it: a Python int is int64, a float float64


def _record_launches(module: str) -> list:
    """Run every case of the module with ``runtime.launch`` recording its launches; see ``launched_kernels``."""
    from tracegrad.backends.numba_cuda import runtime
    launch, seen = runtime.launch, {}

    def recording(program, kernel, elements, *args):
        function = kernel.fn  # the simulator's kernel runs this Python function
        origin = function.__globals__.get("SOURCE")  # a generated module's; runtime.py has none
        seen[(origin, function.__name__, json.dumps([_argument_type(a) for a in args]))] = None
        launch(program, kernel, elements, *args)

    runtime.launch = recording
    failed = {name: failure for name, failure in _run_cases(module).items() if failure is not None}
    if failed:
        raise RuntimeError(f"cases of {module} failed under the simulator, so their kernels went unrecorded: "
                           f"{failed}")
    return [[origin, name, json.loads(arguments)] for origin, name, arguments in seen]


if __name__ == "__main__":
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run through cudasim.results(): the simulator must be on"
    if sys.argv[1] == "--kernels":
        print(json.dumps(_record_launches(sys.argv[2])))
    else:
        print(json.dumps(_run_cases(sys.argv[1])))

"""Run CUDA tests under Numba's CUDA simulator, in subprocesses started early.

Numba picks the simulator when it is first imported (``NUMBA_ENABLE_CUDASIM=1``), so these tests can't run in
pytest's own process. Two kinds of runs:

- a case module (``tests/cuda_*_cases.py``) defines ``CASES``, a dict from a case's name to a function of no
  arguments that raises when the case fails; it imports Numba only inside those functions, so pytest can
  import it to learn the names. ``check(module, case)`` fails with the case's traceback;
- ``SUITE``: the compiled-step test files run by pytest on the CUDA backend (``TRACEGRAD_TEST_BACKENDS=cuda``,
  see conftest.py); ``suite()`` returns pytest's exit status and output;
- ``launched_kernels(module)`` runs a case module's cases recording every kernel they launch with the types of
  its arguments, which ``test_cuda_device_compile.py`` compiles for a real GPU.

The simulator is slow (each simulated thread is a Python thread), so conftest.py starts every run the session
will need as soon as the tests are collected (``start_runs``): they go on beside the rest of the suite.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parent
CASE_MODULES = ("cuda_lowering_cases", "cuda_step_cases")
# The compiled-step tests run again on the CUDA backend. Not test_compile_threads.py: the simulator runs one
# kernel at a time and refuses a second thread's.
SUITE = ("tests/test_compile_soundness.py", "tests/test_compile_scenarios.py", "tests/test_compile_index_errors.py",
         "tests/test_compile_data_dependent.py")
TIMEOUT = 1800  # seconds a run may take

_RUNS: dict = {}  # run name -> (process, file its output goes to)


def _environment() -> dict:
    return dict(os.environ, NUMBA_ENABLE_CUDASIM="1", TRACEGRAD_TEST_BACKENDS="cuda", PYTHONPATH=os.pathsep.join(
        [str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")]))


def start(name: str) -> None:
    """Start the run ``name`` (a case module, "kernels:" and a case module, or "suite") unless it was started."""
    if name in _RUNS:
        return
    if name == "suite":
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITE]
    else:
        argv = [sys.executable, __file__, *name.split(":")]
    output = tempfile.TemporaryFile("w+")
    _RUNS[name] = (subprocess.Popen(argv, env=_environment(), stdout=output, stderr=subprocess.STDOUT, text=True,
                                    cwd=TESTS.parent), output)


def _finished(name: str) -> tuple[int, str]:
    """The exit status and output of run ``name`` (started now if it was not), once it has finished."""
    start(name)
    process, output = _RUNS[name]
    try:
        status = process.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        raise RuntimeError(f"the simulator run {name!r} took more than {TIMEOUT} s") from None
    output.seek(0)
    return status, output.read()


def stop_all() -> None:
    """Kill the runs still going (nothing will read them)."""
    for process, _ in _RUNS.values():
        if process.poll() is None:
            process.kill()


def _printed(name: str):
    """The JSON the script printed last in run ``name``."""
    status, text = _finished(name)
    lines = [line for line in text.splitlines() if line.startswith(("{", "["))]
    if status != 0 or not lines:
        raise RuntimeError(f"the simulator run {name!r} failed (exit {status}):\n{text[-6000:]}")
    return json.loads(lines[-1])


def check(module: str, case: str) -> None:
    """Fail with the case's traceback when it failed under the simulator."""
    failure = _printed(module)[case]
    if failure is not None:
        raise AssertionError(f"{case} failed under the CUDA simulator:\n{failure}")


def launched_kernels(module: str) -> list:
    """[module source, kernel name, argument types] of each distinct kernel launch made by the cases of
    ``tests/<module>.py`` under the simulator, the source None for ``numba_cuda/runtime.py``'s kernels. An
    argument's type is ["array", dtype, ndim, layout] or ["scalar", dtype]. Raises when a case failed."""
    return _printed(f"kernels:{module}")


def suite() -> tuple[int, str]:
    """pytest's exit status and output for SUITE on the CUDA backend under the simulator."""
    return _finished("suite")


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
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run through cudasim.check(): the simulator must be on"
    if sys.argv[1] == "kernels":
        print(json.dumps(_record_launches(sys.argv[2])))
    else:
        print(json.dumps(_run_cases(sys.argv[1])))

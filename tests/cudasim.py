"""Run CUDA tests under Numba's CUDA simulator, in subprocesses started early.

Numba picks the simulator when it is first imported (``NUMBA_ENABLE_CUDASIM=1``), so these tests can't run in
pytest's own process. Two kinds of runs:

- a case module (``tests/cuda_*_cases.py``) defines ``CASES``, a dict from a case's name to a function of no
  arguments that raises when the case fails; it imports Numba only inside those functions, so pytest can
  import it to learn the names. ``check(module, case)`` fails with the case's traceback;
- ``SUITE``: the compiled-step test files run by pytest on the CUDA backend (``TRACEGRAD_TEST_BACKENDS=cuda``,
  see conftest.py); ``suite()`` returns pytest's exit status and output.

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
    """Start the run ``name`` (a case module, or "suite") unless it was started already."""
    if name in _RUNS:
        return
    argv = ([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUITE] if name == "suite"
            else [sys.executable, __file__, name])
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


def check(module: str, case: str) -> None:
    """Fail with the case's traceback when it failed under the simulator."""
    status, text = _finished(module)
    lines = [line for line in text.splitlines() if line.startswith("{")]
    if status != 0 or not lines:
        raise RuntimeError(f"the simulator run of {module} failed (exit {status}):\n{text[-6000:]}")
    failure = json.loads(lines[-1])[case]
    if failure is not None:
        raise AssertionError(f"{case} failed under the CUDA simulator:\n{failure}")


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


if __name__ == "__main__":
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run through cudasim.check(): the simulator must be on"
    print(json.dumps(_run_cases(sys.argv[1])))

"""Run CUDA test cases under Numba's CUDA simulator, in a subprocess.

Numba picks the simulator when it is first imported (``NUMBA_ENABLE_CUDASIM=1``), so the cases can't run in
pytest's own process. A case module (``tests/cuda_*_cases.py``) defines ``CASES``, a dict from a case's name
to a function of no arguments that raises when the case fails; it imports Numba only inside those functions,
so pytest can import it to learn the names. ``results(module)`` runs every case of the module in one fresh
interpreter (one Numba import for all of them) and returns name -> None (passed) or the failure's traceback.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path

TESTS = Path(__file__).resolve().parent


@functools.cache
def results(module: str, timeout: float = 1500) -> dict:
    """name -> None or the traceback, for every case of ``tests/<module>.py`` run under the simulator."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=os.pathsep.join(
        [str(TESTS.parent), str(TESTS), os.environ.get("PYTHONPATH", "")]))
    done = subprocess.run([sys.executable, __file__, module], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=TESTS.parent)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"the simulator run of {module} failed (exit {done.returncode}):\n"
                           f"{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return json.loads(lines[-1])


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


if __name__ == "__main__":
    assert os.environ.get("NUMBA_ENABLE_CUDASIM") == "1", "run through cudasim.results(): the simulator must be on"
    print(json.dumps(_run_cases(sys.argv[1])))

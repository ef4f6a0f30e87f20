"""Shared test set-up: one kernel cache for the whole run, and the ``backend`` fixture."""
import os
from pathlib import Path

import pytest

# Kernels compiled by one test (or an example run in a subprocess) are loaded from disk by the next:
# within a run, each distinct graph is compiled by Numba once.
os.environ.setdefault("TRACEGRAD_CACHE_DIR", str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "kernels"))
# The key that signs them: the run's own, not the user's
os.environ.setdefault("TRACEGRAD_CACHE_KEY", str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "cache-key"))

# TRACEGRAD_TEST_BACKENDS=cuda (with NUMBA_ENABLE_CUDASIM=1) runs the compiled-step tests on the CUDA backend
# instead: tests/test_cuda_steps.py does, under Numba's CUDA simulator
COMPILING_BACKENDS = os.environ.get("TRACEGRAD_TEST_BACKENDS", "interpreter,numba").split(",")


@pytest.fixture(params=COMPILING_BACKENDS)
def backend(request, monkeypatch):
    """Runs a test once per backend: ``tracegrad.compile`` without ``backend=`` uses this one."""
    monkeypatch.setenv("TRACEGRAD_BACKEND", request.param)
    return request.param


def pytest_collection_finish(session):
    """Start the CUDA simulator runs the selected tests read (``@pytest.mark.simulator(run)``), so they go on
    beside the rest of the suite (tests/cudasim.py)."""
    import cudasim
    for item in session.items:
        marker = item.get_closest_marker("simulator")
        if marker is not None:
            cudasim.start(marker.args[0])


def pytest_sessionfinish(session):
    """Stop simulator runs no test waited for (a run cut short by -x or a failure)."""
    import cudasim
    cudasim.stop_all()

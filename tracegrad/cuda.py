"""``tracegrad.cuda``: whether the CUDA backend (``compile(step, backend="cuda")``) can run here, and
waiting for its kernels. Eager tensors always live in host memory; a compiled CUDA step keeps the tensors
it uses on the GPU between calls (see the README)."""
from __future__ import annotations


def is_available() -> bool:
    """True when compiled steps can run with ``backend="cuda"``: a GPU and driver numba.cuda can use, or
    Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:  # noqa: BLE001 - a broken driver install means: not available
        return False


def device_count() -> int:
    """The number of GPUs numba.cuda sees (0 without any)."""
    if not is_available():
        return 0
    from numba import cuda
    return len(cuda.gpus)


def synchronize() -> None:
    """Wait until every kernel and copy the CUDA backend started has finished."""
    if not is_available():
        raise RuntimeError("tracegrad.cuda.synchronize(): no GPU is available (tracegrad.cuda.is_available() is "
                           "False); there is nothing to wait for without one")
    from numba import cuda
    cuda.synchronize()

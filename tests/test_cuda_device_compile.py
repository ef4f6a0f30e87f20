"""Every kernel the CUDA cases launch, compiled for a real GPU (compute capability 9.0) by numba-cuda's
``compile_ptx``, which needs NVVM but no GPU. The simulator runs any Python, so only this catches code the
device compiler rejects.

The cases run under the simulator first (``cudasim.launched_kernels``), recording each kernel's argument types;
this process, with the simulator off, compiles each kernel for those types. It needs numba-cuda with NVVM
(``pip install "numba-cuda[cu13]" pytest``) and skips, saying why, anywhere else. From the repository root:

    /tmp/cudavenv/bin/python -m pytest -q tests/test_cuda_device_compile.py
"""
import hashlib
import os
import sys
import types

import numpy as np
import pytest

import cudasim

CC = (9, 0)  # H100


@pytest.fixture(scope="module")
def cuda():
    """numba.cuda, when it can compile kernels for a GPU here; else the test skips, saying why."""
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        pytest.skip("the CUDA simulator is on, and it compiles nothing: unset NUMBA_ENABLE_CUDASIM")
    from numba import cuda, types as nb
    if getattr(cuda, "implementation", None) != "NVIDIA":
        pytest.skip("numba.cuda here is Numba's built-in CUDA target, not NVIDIA's numba-cuda that runs the kernels: "
                    'install "numba-cuda[cu13]" and run pytest with it')

    def probe(out):
        out[0] = 1
    try:
        cuda.compile_ptx(probe, (nb.float32[:],), cc=CC)
    except Exception as error:  # noqa: BLE001 - any failure means this interpreter can't compile for a GPU
        pytest.skip(f"numba.cuda can't compile for a GPU in this interpreter ({type(error).__name__}: "
                    f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}); "
                    f'install "numba-cuda[cu13]" (NVIDIA\'s CUDA target with NVVM) and run pytest with it')
    return cuda


def _numba_type(argument: list):
    """The Numba type of a recorded argument type (``cudasim.launched_kernels``)."""
    from numba import from_dtype, types as nb
    if argument[0] == "array":
        _, dtype, ndim, layout = argument
        return nb.Array(from_dtype(np.dtype(dtype)), ndim, layout)
    return from_dtype(np.dtype(argument[1]))


def _kernel(origin: str | None, name: str, modules: dict):
    """Kernel ``name`` of the generated module with source ``origin`` (loaded once), or of runtime.py."""
    if origin is None:
        from tracegrad.backends.numba_cuda import runtime
        return getattr(runtime, name)
    if origin not in modules:
        # registered like the disk cache's modules (numba_cpu/cache.py): Numba finds a function's module by name
        module_name = f"tracegrad_device_compile_{hashlib.sha256(origin.encode()).hexdigest()[:16]}"
        module = sys.modules[module_name] = types.ModuleType(module_name)
        exec(compile(origin, module_name, "exec"), module.__dict__)
        modules[origin] = module
    return getattr(modules[origin], name)


def _kernel_source(origin: str, name: str) -> str:
    """Kernel ``name``'s lines in a generated module's source, for a failure message."""
    head = f"@cuda.jit\ndef {name}("
    return head + origin.partition(head)[2].partition("\n\n\n")[0]


@pytest.mark.parametrize("cases", ["cuda_lowering_cases", "cuda_step_cases"])
def test_every_launched_kernel_compiles(cuda, cases):
    launched = cudasim.launched_kernels(cases)
    assert launched, f"the cases of {cases} launched no kernel"
    modules, failed = {}, []
    for origin, name, arguments in launched:
        kernel = _kernel(origin, name, modules)
        signature = tuple(_numba_type(a) for a in arguments)
        try:
            cuda.compile_ptx(kernel.py_func, signature, cc=CC)
        except Exception as error:  # noqa: BLE001 - every failure is reported, with its kernel's source
            where = "in numba_cuda/runtime.py" if origin is None else _kernel_source(origin, name)
            failed.append(f"{name}{signature}: {type(error).__name__}: {error}\n{where}")
    assert not failed, f"{len(failed)} of {len(launched)} kernels don't compile for cc {CC}:\n\n" + "\n\n".join(failed)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_matrix_product_compiles(cuda, dtype):
    from numba import from_dtype, types as nb
    from tracegrad.backends.numba_cuda import runtime
    matrix = nb.Array(from_dtype(np.dtype(dtype)), 2, "C")
    cuda.compile_ptx(runtime._tiled_product(np.dtype(dtype)).py_func,
                     (matrix, matrix, matrix, nb.boolean, nb.boolean), cc=CC)

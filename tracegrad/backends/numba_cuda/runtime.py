"""Helpers the generated CUDA modules' drivers call (imported there as ``rt``): launches, copies, index checks and
the matrix product. Kernels call no device function from here (``scalars.py`` says why)."""
from __future__ import annotations

import functools

import numpy as np
from numba import config, cuda

# numba-cuda 0.30.4 registers an overload of np.row_stack, which NumPy 2.5 removed: its first real kernel
# compile fails without this. Every generated module imports this one before any of its kernels compiles.
if not hasattr(np, "row_stack"):
    np.row_stack = np.vstack

SIMULATED = bool(config.ENABLE_CUDASIM)
# The simulator runs each thread as Python (~0.3 ms a thread): at most 2 blocks of 8 threads. Every kernel
# walks its elements with a grid-stride loop, so any count gives the same results.
THREADS = 8 if SIMULATED else 256  # per block; a power of two (the shared-memory reductions halve it)
MAX_BLOCKS = 2 if SIMULATED else 2048
TILE = 4 if SIMULATED else 16  # the matrix product's square tile (TILE x TILE threads per block)


class GuardFailed(Exception):
    """Raised by a driver when guard number ``args[0]`` does not hold, before any write-back."""


def blocks(elements: int) -> int:
    """Blocks of a launch over ``elements`` (at least one: a kernel with shared-memory partials writes each)."""
    return max(1, min(MAX_BLOCKS, -(-elements // THREADS)))


def launch(program, kernel, elements: int, *args) -> None:
    """Run ``kernel`` over ``elements`` (grid-stride) and count the launch on ``program``."""
    kernel[blocks(elements), THREADS](*args)
    program.launches += 1


def item(array):
    """A 0-d or one-element device array's value on the host: a device-to-host copy, which waits for the
    kernels before it (guards and index checks are read this way, before any write-back)."""
    return array.copy_to_host().reshape(-1)[0]


@cuda.jit
def _fill_flat(out, value):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[e] = value


@cuda.jit
def _copy_flat(out, x):
    for e in range(cuda.grid(1), out.size, cuda.gridsize(1)):
        out[e] = x[e]


def fill(program, out, value) -> None:
    """out[...] = value, for a C-contiguous device array."""
    launch(program, _fill_flat, out.size, out.reshape(out.size), value)


def full(program, shape: tuple, dtype, value):
    """A new device array of ``shape`` filled with ``value``."""
    out = cuda.device_array(shape, dtype)
    fill(program, out, value)
    return out


def copy(program, out, x) -> None:
    """out[...] = x, for C-contiguous device arrays of one shape."""
    launch(program, _copy_flat, out.size, out.reshape(out.size), x.reshape(x.size))


def clone(program, x):
    """A new device array holding C-contiguous x's values."""
    out = cuda.device_array(x.shape, x.dtype)
    copy(program, out, x)
    return out


@cuda.jit
def _first_out_of_range(idx, lowest, size, first):
    for e in range(cuda.grid(1), idx.size, cuda.gridsize(1)):
        if idx[e] < lowest or idx[e] >= size:
            cuda.atomic.min(first, 0, e)


def out_of_range(program, idx, lowest: int, size: int):
    """The first value of index array idx (row-major) outside lowest..size-1, or None: a device-to-host copy."""
    flat = idx.reshape(idx.size)
    first = cuda.to_device(np.array([idx.size], np.int64))
    launch(program, _first_out_of_range, idx.size, flat, lowest, size, first)
    at = int(item(first))
    return None if at == idx.size else int(item(flat[at:at + 1]))


@functools.cache
def _tiled_product(dtype: np.dtype):
    """The tiled shared-memory product kernel for one float dtype (a shared array's dtype is a compile-time constant)."""
    dtype = dtype.type

    @cuda.jit
    def product(a, b, out, ta, tb):
        # each block computes TILE x TILE tiles of out (grid-stride over tiles), staging TILE x TILE tiles
        # of both operands in shared memory; ta / tb: read a / b transposed
        sa = cuda.shared.array((TILE, TILE), dtype)
        sb = cuda.shared.array((TILE, TILE), dtype)
        tx, ty = cuda.threadIdx.x, cuda.threadIdx.y
        m, n = out.shape
        inner = a.shape[0] if ta else a.shape[1]
        for row0 in range(cuda.blockIdx.y * TILE, m, cuda.gridDim.y * TILE):
            for col0 in range(cuda.blockIdx.x * TILE, n, cuda.gridDim.x * TILE):
                row, col = row0 + ty, col0 + tx
                acc = dtype(0)
                for k0 in range(0, inner, TILE):
                    ka, kb = k0 + tx, k0 + ty
                    sa[ty, tx] = (a[ka, row] if ta else a[row, ka]) if row < m and ka < inner else dtype(0)
                    sb[ty, tx] = (b[col, kb] if tb else b[kb, col]) if kb < inner and col < n else dtype(0)
                    cuda.syncthreads()
                    for k in range(TILE):
                        acc += sa[ty, k] * sb[k, tx]
                    cuda.syncthreads()
                if row < m and col < n:
                    out[row, col] = acc
    return product


def matmul(program, a, b, out, ta: bool = False, tb: bool = False) -> None:
    """out = a @ b for 2-D float32/float64 device arrays (a.T where ``ta``, b.T where ``tb``).

    The one seam for a vendor product: a cuBLAS gemm (row-major operands as column-major transposes)
    would replace this body; a hand-written tile kernel reaches ~10-15% of cuBLAS (NUMBA-NOTES)."""
    m, n = out.shape
    if out.size == 0:
        return
    grid = (min(-(-n // TILE), MAX_BLOCKS), min(-(-m // TILE), MAX_BLOCKS))
    _tiled_product(np.dtype(out.dtype))[grid, (TILE, TILE)](a, b, out, ta, tb)
    program.launches += 1

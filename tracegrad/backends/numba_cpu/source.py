"""Text helpers for generated kernel source: typed literals, index expressions, Numba's thread count."""
from __future__ import annotations

import math

import numpy as np


def scalar_type(dtype: np.dtype) -> str:
    """The NumPy scalar type's name in generated code ('np.float32')."""
    return "np.bool_" if dtype == np.bool_ else f"np.{np.dtype(dtype).name}"


def literal(value, dtype: np.dtype) -> str:
    """A typed literal: plain Python numbers would promote float32 arithmetic to float64."""
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return repr(bool(value))
    if dtype.kind == "f":
        value = float(value)
        text = "np.nan" if math.isnan(value) else ("np.inf" if value > 0 else "-np.inf") if math.isinf(value) \
            else repr(value)
        return f"{scalar_type(dtype)}({text})"
    return f"{scalar_type(dtype)}({int(value)})"


def index_text(parts: list) -> str:
    return ", ".join(parts) if parts else "()"


def broadcast_index(shape: tuple, loop_shape: tuple, end: int | None = None) -> list:
    """Index of an operand of ``shape`` broadcast against loop indices i0, i1, ...: aligned so its last
    dim meets loop dim ``end - 1`` (default: the last), a size-1 dim reads its only element."""
    offset = (len(loop_shape) if end is None else end) - len(shape)
    return ["0" if s == 1 else f"i{offset + j}" for j, s in enumerate(shape)]


def numba_threads() -> int:
    """Numba's thread count (NUMBA_NUM_THREADS): parallel kernels cut their outer loop into this many chunks."""
    import numba
    return numba.config.NUMBA_NUM_THREADS

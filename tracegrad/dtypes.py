"""Tensor element types and the type-promotion rule shared by every op."""
from __future__ import annotations

import numpy as np


class dtype:
    """An element type: a name, its NumPy dtype and its category (bool < integer < floating)."""

    __slots__ = ("name", "np", "category", "itemsize")

    def __init__(self, name: str, np_dtype: type, category: int) -> None:
        self.name = name
        self.np = np.dtype(np_dtype)
        self.category = category
        self.itemsize = self.np.itemsize

    @property
    def is_floating_point(self) -> bool:
        """True for floating-point types."""
        return self.category == FLOAT

    @property
    def is_signed(self) -> bool:
        """True unless the type is bool or unsigned."""
        return self.np.kind in "if"

    def __repr__(self) -> str:
        return f"tracegrad.{self.name}"

    def __reduce__(self):
        return (_by_name, (self.name,))


BOOL, INT, FLOAT = 0, 1, 2

bool_ = dtype("bool", np.bool_, BOOL)
uint8 = dtype("uint8", np.uint8, INT)
int8 = dtype("int8", np.int8, INT)
int16 = dtype("int16", np.int16, INT)
int32 = dtype("int32", np.int32, INT)
int64 = dtype("int64", np.int64, INT)
float16 = dtype("float16", np.float16, FLOAT)
float32 = dtype("float32", np.float32, FLOAT)
float64 = dtype("float64", np.float64, FLOAT)

ALL = (bool_, uint8, int8, int16, int32, int64, float16, float32, float64)
_FROM_NP = {d.np: d for d in ALL}
_NAMES = {d.name: d for d in ALL}


def _by_name(name: str) -> dtype:
    return _NAMES[name]


_default_float = float32


def get_default_dtype() -> dtype:
    """The dtype of tensors made from Python floats (float32 unless changed)."""
    return _default_float


def set_default_dtype(d: dtype) -> None:
    """Set the floating dtype used for Python floats; must be float32 or float64."""
    global _default_float
    if d not in (float32, float64):
        raise TypeError(f"only float32 and float64 can be the default dtype, got {d}")
    _default_float = d


def from_numpy(np_dtype) -> dtype:
    """The tracegrad dtype of a NumPy dtype; raises TypeError for unsupported ones."""
    try:
        return _FROM_NP[np.dtype(np_dtype)]
    except (KeyError, TypeError):
        raise TypeError(f"can't convert NumPy dtype {np_dtype} to a tracegrad dtype; "
                        f"supported: {', '.join(d.name for d in ALL)}") from None


def to_dtype(d) -> dtype:
    """Accept a tracegrad dtype, a NumPy dtype or a Python type (float, int, bool)."""
    if isinstance(d, dtype):
        return d
    if d is float:
        return _default_float
    if d is int:
        return int64
    if d is bool:
        return bool_
    return from_numpy(d)


def promote_types(a: dtype, b: dtype) -> dtype:
    """The common type of two dtypes: the higher category wins, within a category the wider type."""
    if a is b:
        return a
    if a.category != b.category:
        return a if a.category > b.category else b
    return _FROM_NP[np.promote_types(a.np, b.np)]


def scalar_dtype(value) -> dtype:
    """The dtype a Python scalar takes when it stands alone."""
    if isinstance(value, (bool, np.bool_)):
        return bool_
    if isinstance(value, (int, np.integer)):
        return int64
    if isinstance(value, (float, np.floating)):
        return _default_float
    raise TypeError(f"expected a Tensor or a Python number, got {type(value).__name__}")


def result_type(*operands) -> dtype:
    """Type promotion across tensors and Python scalars, by the PyTorch rule.

    Tensors with dimensions take priority; zero-dim tensors and then Python scalars only
    matter when they belong to a higher category (so float32 tensor * 2.0 stays float32,
    and int tensor * 2.5 becomes the default float type).
    """
    groups: list[dtype | None] = [None, None, None]  # dimensioned, zero-dim, scalar
    for op in operands:
        d = getattr(op, "dtype", None)
        if d is None:
            group, d = 2, scalar_dtype(op)
        else:
            group = 0 if op.ndim else 1
        groups[group] = d if groups[group] is None else promote_types(groups[group], d)
    result = None
    for d in groups:
        if d is not None and (result is None or d.category > result.category):
            result = d
    return result

"""How tensors print: PyTorch's format (column widths, scientific notation, summarization) and set_printoptions."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import dtypes


@dataclass
class PrintOptions:
    """The options set_printoptions changes (PyTorch's defaults)."""

    precision: int = 4
    threshold: float = 1000
    edgeitems: int = 3
    linewidth: int = 80
    sci_mode: bool | None = None


PRINT_OPTS = PrintOptions()
_PROFILES = {"default": dict(precision=4, threshold=1000, edgeitems=3, linewidth=80),
             "short": dict(precision=2, threshold=1000, edgeitems=2, linewidth=80),
             "full": dict(precision=4, threshold=math.inf, edgeitems=3, linewidth=80)}


def set_printoptions(precision: int | None = None, threshold: float | None = None, edgeitems: int | None = None,
                     linewidth: int | None = None, profile: str | None = None, sci_mode: bool | None = None) -> None:
    """Set how tensors print, as PyTorch's: a profile ("default", "short", "full") then the options given."""
    if profile is not None:
        if profile not in _PROFILES:
            raise ValueError(f"set_printoptions: unknown profile {profile!r}; use one of {sorted(_PROFILES)}")
        for key, value in _PROFILES[profile].items():
            setattr(PRINT_OPTS, key, value)
    for key, value in (("precision", precision), ("threshold", threshold), ("edgeitems", edgeitems),
                       ("linewidth", linewidth)):
        if value is not None:
            setattr(PRINT_OPTS, key, value)
    PRINT_OPTS.sci_mode = sci_mode  # as in PyTorch: None (automatic) unless given


class _Formatter:
    """Picks one format and column width for all the values of a tensor (PyTorch's rules)."""

    def __init__(self, values: np.ndarray) -> None:
        self.floating = values.dtype.kind == "f"
        self.int_mode, self.sci_mode, self.max_width = True, False, 1
        p = PRINT_OPTS.precision
        flat = values.reshape(-1)
        if not self.floating:
            self.max_width = max([len(str(v)) for v in flat.tolist()], default=1)
        else:
            finite = flat[np.isfinite(flat) & (flat != 0)].astype(np.float64)
            if finite.size:
                magnitudes = np.abs(finite)
                low, high = magnitudes.min(), magnitudes.max()
                self.int_mode = bool(np.all(finite == np.ceil(finite)))
                self.sci_mode = high / low > 1000.0 or high > 1.0e8 or (not self.int_mode and low < 1.0e-4)
                if PRINT_OPTS.sci_mode is not None:
                    self.sci_mode = PRINT_OPTS.sci_mode
                if self.sci_mode:
                    widths = [len(f"{v:.{p}e}") for v in finite.tolist()]
                elif self.int_mode:
                    widths = [len(f"{v:.0f}") + 1 for v in finite.tolist()]
                else:
                    widths = [len(f"{v:.{p}f}") for v in finite.tolist()]
                self.max_width = max(widths)
        if PRINT_OPTS.sci_mode is not None:  # also where no value was finite and nonzero
            self.sci_mode = PRINT_OPTS.sci_mode

    def format(self, value) -> str:
        p = PRINT_OPTS.precision
        if not self.floating:
            text = str(value)
        elif self.sci_mode:
            text = f"{value:{self.max_width}.{p}e}"
        elif self.int_mode:
            text = f"{value:.0f}" + ("" if math.isinf(value) or math.isnan(value) else ".")
        else:
            text = f"{value:.{p}f}"
        return text.rjust(self.max_width)


def _summarized(arr: np.ndarray) -> np.ndarray:
    """The values that a summarized print shows (edgeitems at both ends of every dim)."""
    e = PRINT_OPTS.edgeitems
    if arr.ndim == 0:
        return arr
    if arr.ndim > 1 and not e:
        return arr[(slice(0, 0),) * arr.ndim]
    if arr.shape[0] > 2 * e:
        arr = np.concatenate([arr[:e], arr[-e:]])
    return arr if arr.ndim == 1 else np.stack([_summarized(row) for row in arr])


def _vector(arr: np.ndarray, indent: int, summarize: bool, formatter: _Formatter) -> str:
    per_line = max(1, int(math.floor((PRINT_OPTS.linewidth - indent) / (formatter.max_width + 2))))
    e = PRINT_OPTS.edgeitems
    if summarize and not e:
        data = ["..."]
    elif summarize and arr.shape[0] > 2 * e:
        data = [formatter.format(v) for v in arr[:e].tolist()] + [" ..."] + \
               [formatter.format(v) for v in arr[-e:].tolist()]
    else:
        data = [formatter.format(v) for v in arr.tolist()]
    lines = [", ".join(data[i:i + per_line]) for i in range(0, len(data), per_line)]
    return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"


def _nested(arr: np.ndarray, indent: int, summarize: bool, formatter: _Formatter) -> str:
    if arr.ndim == 0:
        return formatter.format(arr.item())
    if arr.ndim == 1:
        return _vector(arr, indent, summarize, formatter)
    e = PRINT_OPTS.edgeitems
    if summarize and arr.shape[0] > 2 * e:
        rows = [_nested(r, indent + 1, summarize, formatter) for r in arr[:e]] + ["..."] + \
               [_nested(r, indent + 1, summarize, formatter) for r in arr[-e:]]
    else:
        rows = [_nested(r, indent + 1, summarize, formatter) for r in arr]
    return "[" + ("," + "\n" * (arr.ndim - 1) + " " * (indent + 1)).join(rows) + "]"


def _with_suffixes(text: str, suffixes: list[str], indent: int) -> str:
    parts = [text]
    last_line = len(text) - text.rfind("\n") + 1
    for suffix in suffixes:
        if last_line + len(suffix) + 2 > PRINT_OPTS.linewidth:
            parts.append(",\n" + " " * indent + suffix)
            last_line = indent + len(suffix)
        else:
            parts.append(", " + suffix)
            last_line += len(suffix) + 2
    return "".join(parts) + ")"


def tensor_repr(arr: np.ndarray, dtype: dtypes.dtype, grad_fn_name: str | None, requires_grad: bool) -> str:
    """``tensor(...)`` text of a tensor's values, dtype and autograd state, as PyTorch prints it."""
    prefix = "tensor("
    indent = len(prefix)
    suffixes = []
    default = dtype in (dtypes.get_default_dtype(), dtypes.int64, dtypes.bool_)
    if arr.size == 0:
        if arr.ndim != 1:
            suffixes.append(f"size={tuple(arr.shape)}")
        if dtype is not dtypes.get_default_dtype():
            suffixes.append(f"dtype={dtype}")
        body = "[]"
    else:
        if not default:
            suffixes.append(f"dtype={dtype}")
        values = arr.astype(np.float32) if arr.dtype == np.float16 else arr
        summarize = arr.size > PRINT_OPTS.threshold
        body = _nested(values, indent, summarize, _Formatter(_summarized(values) if summarize else values))
    if grad_fn_name is not None:
        suffixes.append(f"grad_fn=<{grad_fn_name}>")
    elif requires_grad:
        suffixes.append("requires_grad=True")
    return _with_suffixes(prefix + body, suffixes, indent)

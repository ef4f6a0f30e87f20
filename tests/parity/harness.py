"""Run one snippet in tracegrad and in PyTorch and compare everything it produces.

A snippet is a function ``f(lib, *inputs)`` written against a module namespace
``lib`` (``tracegrad`` or ``torch``). The inputs are NumPy arrays; each library
turns them into its own tensors (floating ones require grad unless told
otherwise), runs ``f``, back-propagates a fixed random cotangent through every
floating output that requires grad, and then the outputs, the inputs and the
inputs' ``.grad`` are compared: types, shapes, dtypes, ``requires_grad`` flags
and values. Where PyTorch gives no RuntimeWarning (floating-point noise such as
"invalid value encountered"), tracegrad must not give one either.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable

import numpy as np
import pytest

import tracegrad

torch = pytest.importorskip("torch")

RTOL = 1e-5
ATOL = 1e-6
LIBRARIES = (tracegrad, torch)
Snippet = Callable[..., Any]


def randn(*shape: int, dtype: type = np.float32, seed: int = 0) -> np.ndarray:
    """Standard-normal test data of the given shape (float32 unless told), reproducible by seed."""
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def check(f: Snippet, *arrays: np.ndarray, requires_grad: bool | None = None,
          backward: bool = True, rtol: float = RTOL, atol: float = ATOL) -> None:
    """Assert that ``f`` gives the same outputs, input values and input gradients in both libraries.

    ``requires_grad=None`` makes floating inputs require grad and the others not.
    ``backward=False`` is for snippets that run their own backward pass.
    """
    results, warned = [], []
    for lib in LIBRARIES:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            results.append(_run(lib, f, arrays, requires_grad, backward))
        warned.append([str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)])
    assert_same(*results, where="snippet", rtol=rtol, atol=atol)
    ours, theirs = warned
    assert theirs or not ours, f"tracegrad gave RuntimeWarnings where PyTorch is silent: {ours}"


def check_error(f: Snippet, *arrays: np.ndarray, requires_grad: bool | None = None) -> None:
    """Assert that ``f`` raises in PyTorch and that tracegrad raises the same kind of error."""
    expected = _raised(torch, f, arrays, requires_grad)
    assert expected is not None, "PyTorch did not raise, so this test checks nothing: fix the snippet"
    got = _raised(tracegrad, f, arrays, requires_grad)
    assert got is not None, (f"tracegrad did not raise; PyTorch raised "
                             f"{type(expected).__name__}: {expected}")
    assert _builtin_class(got) is _builtin_class(expected), (
        f"tracegrad raised {type(got).__name__}: {got}\n"
        f"PyTorch raised {type(expected).__name__}: {expected}")


def _make_inputs(lib, arrays: tuple[np.ndarray, ...], requires_grad: bool | None) -> list:
    """One tensor per array, requiring grad as asked (by default: when floating)."""
    tensors = []
    for array in arrays:
        array = np.asarray(array)
        wants_grad = array.dtype.kind == "f" if requires_grad is None else requires_grad
        tensors.append(lib.tensor(array, requires_grad=wants_grad))
    return tensors


def _run(lib, f: Snippet, arrays, requires_grad, backward) -> dict:
    """Run the snippet (and optionally a backward pass) in one library; collect what to compare."""
    inputs = _make_inputs(lib, arrays, requires_grad)
    outputs = f(lib, *inputs)
    if backward:
        _backpropagate(lib, outputs)
    return {"outputs": outputs, "inputs": inputs, "input grads": [x.grad for x in inputs]}


def _backpropagate(lib, outputs: Any) -> None:
    """Back-propagate a reproducible random cotangent through each differentiable output."""
    differentiable = [t for t in _tensors_in(lib, outputs)
                      if t.requires_grad and t.dtype.is_floating_point]
    if not differentiable:
        return
    loss = 0
    for seed, out in enumerate(differentiable, start=1000):
        values = _to_numpy(out)
        cotangent = np.random.default_rng(seed).standard_normal(values.shape).astype(values.dtype)
        loss = loss + (out * lib.tensor(cotangent)).sum()
    loss.backward()


def _tensors_in(lib, value: Any) -> list:
    """All tensors inside a nested tuple/list/dict structure."""
    if isinstance(value, lib.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (tuple, list)):
        return [t for item in value for t in _tensors_in(lib, item)]
    return []


def _to_numpy(tensor) -> np.ndarray:
    return tensor.detach().numpy()


def _dtype_name(dtype) -> str:
    """'float32' for both tracegrad.float32 and torch.float32."""
    return str(dtype).rsplit(".", 1)[-1]


def assert_same(ours: Any, theirs: Any, where: str, rtol: float = RTOL, atol: float = ATOL) -> None:
    """Recursively compare a tracegrad result with the PyTorch one; ``where`` names the spot in failures."""
    if isinstance(theirs, torch.Tensor):
        _assert_same_tensor(ours, theirs, where, rtol, atol)
    elif isinstance(theirs, torch.dtype):
        assert isinstance(ours, tracegrad.dtype), f"{where}: expected a dtype, got {ours!r}"
        assert _dtype_name(ours) == _dtype_name(theirs), f"{where}: dtype {ours} != {theirs}"
    elif isinstance(theirs, dict):
        assert isinstance(ours, dict) and ours.keys() == theirs.keys(), f"{where}: {ours!r} != {theirs!r}"
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}[{key!r}]", rtol, atol)
    elif isinstance(theirs, (tuple, list)):
        assert isinstance(ours, (tuple, list)), f"{where}: expected a sequence, got {ours!r}"
        assert isinstance(ours, list) == isinstance(theirs, list), (
            f"{where}: got a {type(ours).__name__}, PyTorch gives a {type(theirs).__name__}")
        assert len(ours) == len(theirs), f"{where}: length {len(ours)} != {len(theirs)}: {ours!r} vs {theirs!r}"
        for i, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{where}[{i}]", rtol, atol)
    elif isinstance(theirs, float):
        assert type(ours) is float, f"{where}: expected a Python float, got {ours!r}"
        np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol, equal_nan=True, err_msg=where)
    else:  # None, bool, int, str: exact type and value
        assert type(ours) is type(theirs) and ours == theirs, f"{where}: {ours!r} != PyTorch's {theirs!r}"


def _assert_same_tensor(ours: Any, theirs, where: str, rtol: float, atol: float) -> None:
    assert isinstance(ours, tracegrad.Tensor), f"{where}: expected a Tensor, got {ours!r}"
    assert tuple(ours.shape) == tuple(theirs.shape), f"{where}: shape {tuple(ours.shape)} != {tuple(theirs.shape)}"
    assert _dtype_name(ours.dtype) == _dtype_name(theirs.dtype), f"{where}: dtype {ours.dtype} != {theirs.dtype}"
    assert ours.requires_grad == theirs.requires_grad, (
        f"{where}: requires_grad {ours.requires_grad} != {theirs.requires_grad}")
    expected = _to_numpy(theirs)
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(_to_numpy(ours), expected, rtol=rtol, atol=atol, equal_nan=True, err_msg=where)
    else:
        np.testing.assert_array_equal(_to_numpy(ours), expected, err_msg=where)


def _raised(lib, f: Snippet, arrays, requires_grad) -> BaseException | None:
    """The exception the snippet raises in this library, or None."""
    try:
        f(lib, *_make_inputs(lib, arrays, requires_grad))
    except Exception as error:  # noqa: BLE001 - any error is a result to compare
        return error
    return None


def _builtin_class(error: BaseException) -> type:
    """The nearest built-in exception class (PyTorch raises subclasses of the built-in ones)."""
    return next(cls for cls in type(error).__mro__ if cls.__module__ == "builtins")

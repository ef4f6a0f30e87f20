"""Grad modes: whether ops record the autograd graph (no_grad, enable_grad, inference_mode)."""
from __future__ import annotations

import functools
import threading


class _State(threading.local):
    grad_enabled = True
    inference = False


STATE = _State()


def is_grad_enabled() -> bool:
    """True when ops record the autograd graph."""
    return STATE.grad_enabled


def is_inference_mode_enabled() -> bool:
    """True inside an inference_mode() block."""
    return STATE.inference


class _Mode:
    """A grad-mode switch usable as a context manager and as a decorator."""

    def _enter_state(self) -> tuple:
        raise NotImplementedError

    def __enter__(self):
        self._saved = (STATE.grad_enabled, STATE.inference)
        self._enter_state()
        return self

    def __exit__(self, *exc) -> None:
        STATE.grad_enabled, STATE.inference = self._saved

    def clone(self):
        """A fresh copy of this mode (decorators re-enter it on each call)."""
        return self.__class__()

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with self.clone():
                return fn(*args, **kwargs)
        return wrapper


class _NoArgMode(_Mode):
    """A mode that also works as a bare decorator: `@no_grad` as well as `@no_grad()`."""

    def __new__(cls, orig_func=None):
        self = super().__new__(cls)
        if orig_func is None:
            return self
        if not callable(orig_func):
            raise TypeError(f"{cls.__name__}() takes no arguments; use `with {cls.__name__}():` or `@{cls.__name__}()`")
        return self(orig_func)

    def __init__(self, orig_func=None) -> None:
        pass


class no_grad(_NoArgMode):
    """Ops inside do not record the graph; results have requires_grad=False."""

    def _enter_state(self) -> None:
        STATE.grad_enabled = False


class enable_grad(_NoArgMode):
    """Ops inside record the graph, even within no_grad."""

    def _enter_state(self) -> None:
        STATE.grad_enabled = True


class set_grad_enabled(_Mode):
    """Turn graph recording on or off; takes effect at once, also as a plain call."""

    def __init__(self, mode: bool) -> None:
        self.mode = bool(mode)
        self._saved = (STATE.grad_enabled, STATE.inference)
        STATE.grad_enabled = self.mode

    def _enter_state(self) -> None:
        STATE.grad_enabled = self.mode

    def __enter__(self):
        # The constructor already switched the mode; restore to what was before it.
        return self

    def clone(self):
        return _SetGradScope(self.mode)

    def __call__(self, fn):
        # Used as a decorator, the switch made by the constructor must not outlive the decoration.
        STATE.grad_enabled, STATE.inference = self._saved
        return super().__call__(fn)


class _SetGradScope(_Mode):
    def __init__(self, mode: bool) -> None:
        self.mode = mode

    def _enter_state(self) -> None:
        STATE.grad_enabled = self.mode


class inference_mode(_Mode):
    """Like no_grad, and tensors made inside can never enter autograd later."""

    def __new__(cls, mode=True):
        self = super().__new__(cls)
        if callable(mode):  # bare @inference_mode
            self.__init__(True)
            return self(mode)
        return self

    def __init__(self, mode: bool = True) -> None:
        if not callable(mode):
            self.mode = bool(mode)

    def _enter_state(self) -> None:
        STATE.grad_enabled = not self.mode
        STATE.inference = self.mode

    def clone(self):
        return inference_mode(self.mode)

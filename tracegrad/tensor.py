"""The Tensor: a NumPy array plus autograd state, and ``apply``, where every primitive runs."""
from __future__ import annotations

import copy
import math
import threading
from typing import Callable, Sequence

import numpy as np

from . import dtypes
from . import autograd
from .autograd import views
from .autograd.engine import AccumulateGrad, RemovableHandle, run_backward
from .autograd.grad_mode import STATE
from .printing import tensor_repr


class _TraceState(threading.local):
    """The active tracer of this thread (tracegrad.compiler sets it while it records a step), else None.

    Per thread: a trace records only its own thread's ops, so another thread's eager work (or its own
    compiled steps) never leaks into it."""

    tracer = None


TRACE = _TraceState()


def _alias(new: "Tensor", src: "Tensor") -> "Tensor":
    """Register that new holds src's value (detach, .data, copies): one value for the tracer."""
    if TRACE.tracer is not None:
        TRACE.tracer.alias(new, src)
    return new


def _reads_data(t: "Tensor", how: str) -> None:
    """Tell an active tracer that Python code looks at a tensor's values (a data-dependent step)."""
    if TRACE.tracer is not None:
        TRACE.tracer.observe(t, how)


def _data_dependent_shape(what: str) -> None:
    """Tell an active tracer that an op's result shape depends on values: a graph can't hold it."""
    if TRACE.tracer is not None:
        TRACE.tracer.data_dependent_shape(what)


class Size(tuple):
    """A tensor shape: a tuple of ints with ``numel()``."""

    def numel(self) -> int:
        """The number of elements of a tensor of this shape."""
        n = 1
        for s in self:
            n *= s
        return n

    def __repr__(self) -> str:
        return f"tracegrad.Size({list(self)})"

    def __getitem__(self, item):
        out = tuple.__getitem__(self, item)
        return Size(out) if isinstance(item, slice) else out


class Tensor:
    """A multi-dimensional array with automatic differentiation."""

    # Class-level defaults: creating a tensor only sets _data and _vc, which keeps ops cheap.
    _requires_grad = False
    _grad = None
    grad_fn = None
    _output_nr = 0
    _acc = None           # the AccumulateGrad node of a leaf that requires grad
    _inference = False    # made inside inference_mode
    _base = None          # the tensor whose memory this view shares
    _base_history = None  # the base's grad_fn when the view was taken (an in-place op changes it)
    _view_steps = ()      # the movement steps (primitive, attrs) that derive this view from _base

    # Tensors beat NumPy arrays in mixed binary operations (ndarray + Tensor -> Tensor).
    __array_priority__ = 1000

    def __init__(self, *args) -> None:
        # The legacy constructor: Tensor(data) or Tensor(*sizes), always of the default float type.
        float_type = dtypes.get_default_dtype().np
        if args and all(isinstance(a, int) for a in args):
            arr = np.zeros(args, dtype=float_type)
        else:
            arr = np.array(_unwrap_nested(args[0]) if args else [], dtype=float_type)
        _init(self, arr, False)

    @classmethod
    def _make(cls, arr: np.ndarray, requires_grad: bool = False) -> "Tensor":
        """Wrap an ndarray without copying (internal constructor)."""
        t = object.__new__(cls)
        _init(t, arr if type(arr) is np.ndarray else np.asarray(arr), requires_grad)
        return t

    # ---- basic properties ---------------------------------------------------------------

    @property
    def shape(self) -> Size:
        """The shape as a ``Size``."""
        return Size(self._data.shape)

    def size(self, dim: int | None = None):
        """The shape, or the size of one dimension."""
        if dim is None:
            return Size(self._data.shape)
        return self._data.shape[_wrap_dim(dim, self._data.ndim)]

    @property
    def dtype(self) -> dtypes.dtype:
        """The element type."""
        return dtypes._FROM_NP[self._data.dtype]

    @property
    def ndim(self) -> int:
        """The number of dimensions."""
        return self._data.ndim

    def dim(self) -> int:
        """The number of dimensions."""
        return self._data.ndim

    def numel(self) -> int:
        """The number of elements."""
        return self._data.size

    def nelement(self) -> int:
        """The number of elements."""
        return self._data.size

    def element_size(self) -> int:
        """Bytes per element."""
        return self._data.itemsize

    @property
    def device(self) -> str:
        """Always 'cpu': tensors live in host memory."""
        return "cpu"

    @property
    def is_cuda(self) -> bool:
        """Always False: eager tensors live in host memory."""
        return False

    def is_floating_point(self) -> bool:
        """True for floating dtypes."""
        return self._data.dtype.kind == "f"

    def is_contiguous(self) -> bool:
        """True when the elements are laid out in row-major order without gaps."""
        return self._data.flags.c_contiguous

    def stride(self, dim: int | None = None):
        """Strides in elements, like PyTorch."""
        strides = tuple(s // self._data.itemsize for s in self._data.strides)
        return strides if dim is None else strides[_wrap_dim(dim, self._data.ndim)]

    def data_ptr(self) -> int:
        """Address of the first element."""
        return self._data.__array_interface__["data"][0]

    def type(self, dtype=None):
        """The legacy type name ('tracegrad.FloatTensor'), or a cast when dtype is given."""
        if dtype is not None:
            return self.to(dtype)
        return f"tracegrad.{_LEGACY_NAMES[self._data.dtype.kind, self._data.itemsize]}"

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    # ---- autograd state -----------------------------------------------------------------

    @property
    def requires_grad(self) -> bool:
        """Whether gradients are recorded for this tensor."""
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag: bool) -> None:
        if self.grad_fn is not None:
            if not flag:
                raise RuntimeError(
                    "you can only change requires_grad flags of leaf variables. If you want to use a "
                    "computed variable in a subgraph that doesn't require differentiation use "
                    "var_no_grad = var.detach().")
            return
        if flag and self._data.dtype.kind != "f":
            raise RuntimeError(
                f"only Tensors of floating point dtype can require gradients (got {self.dtype})")
        self._requires_grad = bool(flag)

    def requires_grad_(self, requires_grad: bool = True) -> "Tensor":
        """Set requires_grad in place and return self."""
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        """True for tensors not produced by a recorded op."""
        return self.grad_fn is None

    def is_inference(self) -> bool:
        """True for tensors made inside inference_mode()."""
        return self._inference

    @property
    def grad(self) -> "Tensor | None":
        """The accumulated gradient (leaves, and non-leaves after retain_grad())."""
        if TRACE.tracer is not None:
            TRACE.tracer.grad_seen(self)
        return self._grad

    @grad.setter
    def grad(self, value: "Tensor | None") -> None:
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"assigned grad expected to be a Tensor or None but got {type(value).__name__}")
            if value._data.shape != self._data.shape:
                raise RuntimeError(f"assigned grad has data of a different size: "
                                   f"{list(value.shape)} vs parameter {list(self.shape)}")
            if value._data.dtype != self._data.dtype:
                raise RuntimeError(f"assigned grad has data of a different type: {value.dtype} vs {self.dtype}")
        if TRACE.tracer is not None:
            TRACE.tracer.grad_seen(self)
        self._grad = value

    @property
    def retains_grad(self) -> bool:
        """True for a non-leaf on which retain_grad() was called."""
        node = self.grad_fn
        return bool(node is not None and node._retained and self._output_nr in node._retained)

    @property
    def _version(self) -> int:
        return self._vc[0]

    @property
    def output_nr(self) -> int:
        """Which output of its grad_fn this tensor is."""
        return self._output_nr

    def _accumulator(self) -> AccumulateGrad:
        if self._acc is None:
            self._acc = AccumulateGrad(self)
        return self._acc

    def retain_grad(self) -> None:
        """Keep the gradient of this non-leaf in ``.grad`` after backward."""
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is not None:
            self.grad_fn.retain(self._output_nr, self)

    def register_hook(self, hook: Callable) -> RemovableHandle:
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned tensor replaces it."""
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        node = self.grad_fn if self.grad_fn is not None else self._accumulator()
        return node.add_tensor_hook(self._output_nr, hook)

    def register_post_accumulate_grad_hook(self, hook: Callable) -> RemovableHandle:
        """Call ``hook(tensor)`` on this leaf after a backward accumulated its gradient into ``.grad``."""
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self.grad_fn is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        return self._accumulator().add_post_hook(hook)

    def backward(self, gradient: "Tensor | None" = None, retain_graph: bool | None = None,
                 create_graph: bool = False, inputs=None) -> None:
        """Accumulate d(self)/d(leaf) into each leaf's ``.grad``."""
        autograd.backward(self, gradient, retain_graph, create_graph, inputs=inputs)

    def detach(self) -> "Tensor":
        """A tensor sharing the data, cut from the graph."""
        t = Tensor._make(self._data)
        t._vc = self._vc
        t._inference = self._inference
        return _alias(t, self)

    def detach_(self) -> "Tensor":
        """Cut this tensor from the graph in place."""
        if self._base is not None and self._base._requires_grad:
            raise RuntimeError("Can't detach views in-place. Use detach() instead.")
        self.grad_fn = None
        self._requires_grad = False
        return self

    @property
    def data(self) -> "Tensor":
        """The same storage without autograd history; changes through it are not tracked."""
        t = Tensor._make(self._data)
        t._inference = self._inference
        return _alias(t, self)

    @data.setter
    def data(self, value: "Tensor") -> None:
        if not isinstance(value, Tensor):
            raise TypeError(f"data must be a Tensor, got {type(value).__name__}")
        if TRACE.tracer is not None:
            TRACE.tracer.data_assigned(self, value)
        self._data = value._data

    def _owned_copy(self) -> "Tensor":
        """A copy with its own buffer (used to store gradients safely)."""
        return _alias(Tensor._make(self._data.copy()), self)

    # ---- conversion -------------------------------------------------------------------------

    def numpy(self, *, force: bool = False) -> np.ndarray:
        """The data as an ndarray sharing memory; raises if the tensor requires grad."""
        if self._requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        _reads_data(self, "numpy()")
        return self._data

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted to Scalar")
        _reads_data(self, "item()")
        return self._data.reshape(()).item()

    def tolist(self):
        """The data as (nested) Python lists."""
        _reads_data(self, "tolist()")
        return self._data.tolist()

    def __array__(self, dtype=None, copy=None):
        _reads_data(self, "conversion to a NumPy array")
        if self._requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        return self._data if dtype is None else self._data.astype(dtype)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iu" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        _reads_data(self, "bool()")
        return bool(self._data.reshape(()))

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return _format(self)

    def __format__(self, format_spec: str) -> str:
        # As PyTorch: a 0-d plain tensor formats its value (f"{loss:.4f}"); others only with an empty spec
        if self._data.ndim == 0 and type(self) is Tensor:
            return self.item().__format__(format_spec)
        return object.__format__(self, format_spec)

    def __reduce_ex__(self, protocol):
        return (_rebuild, (self._data.copy(), self._requires_grad, type(self)))

    def __deepcopy__(self, memo):
        if self.grad_fn is not None:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support the "
                               "deepcopy protocol at the moment. Use detach() or clone() first.")
        t = type(self)._make(self._data.copy(), self._requires_grad)
        memo[id(self)] = t
        if self._grad is not None:
            t._grad = self._grad.__deepcopy__(memo)
        # Attributes users attached to the tensor come along; its own state (data, history) does not.
        extras = {k: v for k, v in self.__dict__.items() if k not in _TENSOR_STATE}
        t.__dict__.update(copy.deepcopy(extras, memo))
        return t

    # ---- in-place machinery -------------------------------------------------------------

    def _check_inplace(self) -> None:
        if self._inference and not STATE.inference:
            raise RuntimeError("Inplace update to inference tensor outside InferenceMode is not allowed. "
                               "You can make a clone to get a normal tensor before doing inplace update.")
        if STATE.grad_enabled and self._requires_grad and self.grad_fn is None:
            raise RuntimeError("a leaf Variable that requires grad is being used in an in-place operation.")
        base = self._base
        if STATE.grad_enabled and base is not None and base._requires_grad and base.grad_fn is None:
            raise RuntimeError("a view of a leaf Variable that requires grad is being used in an in-place "
                               "operation.")

    def _snapshot(self, copy: bool = True) -> "Tensor":
        """This tensor's current value and history as a separate tensor, for an op that overwrites it."""
        old = Tensor._make(self._data.copy() if copy else self._data, self._requires_grad)
        old.grad_fn, old._output_nr = self.grad_fn, self._output_nr
        if self._requires_grad and self.grad_fn is None:
            old._acc = self._accumulator()
        return _alias(old, self)

    def _inplace(self, prim, *others, direct: Callable | None = None, **attrs) -> "Tensor":
        """Run ``prim(self, *others)`` and store the result in self's buffer, rebinding its history.

        Without autograd recording, ``direct(dst, *other_arrays)`` (or the primitive's ufunc) writes
        straight into the buffer, which is the fast path of optimizer updates.
        """
        # Callers cast the other operands to self's dtype first, so the result keeps self's dtype.
        self._check_inplace()
        tracking = False
        if STATE.grad_enabled:
            tracking = self._requires_grad
            for o in others:
                tracking = tracking or o._requires_grad
        tracer = TRACE.tracer
        if not tracking and tracer is None:
            arrays = [o._data for o in others]
            if direct is not None and self._data.flags.writeable:
                direct(self._data, *arrays)
            elif prim.write is not None and not attrs and self._data.flags.writeable:
                for a in arrays:
                    if a.shape != self._data.shape:
                        _check_inplace_shape(self, np.broadcast_shapes(self._data.shape, *[a.shape for a in arrays]))
                try:
                    prim.write(self._data, *arrays, out=self._data, casting="unsafe")
                except ValueError as e:  # the error the out-of-place op raises (apply)
                    raise RuntimeError(f"{prim.name}: {e}") from None
            else:
                _store(self, prim.impl(self._data, *arrays, **attrs))
        else:
            if tracer is not None and self._base is not None:
                tracer.unsupported("an in-place write into a view")  # tracing stops; the step goes on eagerly
            is_view = tracking and self._base is not None
            if is_view and self._base.grad_fn is not self._base_history:
                views.refresh(self)
            result = apply(prim, self._snapshot(copy=prim.saves_first_input), *others, **attrs)
            if result._data.dtype != self._data.dtype:
                result = result.to(self.dtype)
            if is_view:
                views.write_through_view(self, result)
            else:
                _store(self, result._data)
                if tracking:
                    self.grad_fn, self._output_nr, self._requires_grad = result.grad_fn, 0, True
            if TRACE.tracer is not None:
                TRACE.tracer.rebind(self, result)
        self._vc[0] += 1
        return self


_LEGACY_NAMES = {("f", 4): "FloatTensor", ("f", 8): "DoubleTensor", ("f", 2): "HalfTensor",
                 ("i", 8): "LongTensor", ("i", 4): "IntTensor", ("i", 2): "ShortTensor",
                 ("i", 1): "CharTensor", ("u", 1): "ByteTensor", ("b", 1): "BoolTensor"}


def _legacy_kind(d: dtypes.dtype) -> str:
    return {"float32": "Float", "float64": "Double", "float16": "Half", "int64": "Long", "int32": "Int",
            "int16": "Short", "int8": "Char", "uint8": "Byte", "bool": "Bool"}[d.name]


_TENSOR_STATE = {"_data", "_device", "_vc", "_requires_grad", "_grad", "grad_fn", "_output_nr", "_acc", "_inference",
                 "_base", "_base_history", "_view_steps"}


def _init(t: Tensor, arr: np.ndarray, requires_grad: bool) -> None:
    t._data = arr
    t._vc = [0]  # the version counter, shared by views of one memory
    if requires_grad:
        t._requires_grad = True
    if STATE.inference:
        t._inference = True
    if TRACE.tracer is not None:
        TRACE.tracer.born_tensor(t)


def _make_plain(arr: np.ndarray) -> Tensor:
    """Tensor._make(arr) where neither inference mode nor a tracer is active (the caller checked):
    half the cost, for the many results of a replayed compiled step."""
    t = _new_object(Tensor)
    t._data = arr
    t._vc = [0]
    return t


def plain_make_allowed() -> bool:
    """Whether _make_plain may stand for Tensor._make now."""
    return not STATE.inference and TRACE.tracer is None


_new_object = object.__new__


def _rebuild(arr: np.ndarray, requires_grad: bool, cls=Tensor) -> Tensor:
    return cls._make(arr, requires_grad)


def _check_inplace_shape(t: Tensor, out_shape: tuple) -> None:
    if tuple(out_shape) != t._data.shape:
        raise RuntimeError(f"output with shape {list(t._data.shape)} doesn't match the broadcast shape "
                           f"{list(out_shape)}")


def _store(t: Tensor, values: np.ndarray) -> None:
    _check_inplace_shape(t, np.broadcast_shapes(t._data.shape, np.shape(values)))
    if not t._data.flags.writeable:
        raise RuntimeError("unsupported operation: the tensor is an expanded (broadcast) view whose "
                           "elements share memory; clone() it before writing to it")
    np.copyto(t._data, values, casting="unsafe")


def _wrap_dim(dim: int, ndim: int) -> int:
    """Normalize a possibly negative dim; IndexError like PyTorch when out of range."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return dim % n


def _shape_arg(shape) -> tuple:
    """A shape given as sizes or as one sequence of them, as a tuple of ints (TypeError otherwise)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if all(type(s) is int for s in shape):
        return shape
    for s in shape:
        if not isinstance(s, (int, np.integer)):
            raise TypeError(f"shape entries must be ints, got {type(s).__name__}")
    return tuple(int(s) for s in shape)


def _infer_shape(shape: tuple, numel: int) -> tuple:
    """shape with its -1 (at most one) inferred from numel; RuntimeError when numel doesn't fit it."""
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    if -1 in shape:
        known = math.prod([s for s in shape if s != -1])
        if known == 0 or numel % known:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        shape = tuple(numel // known if s == -1 else s for s in shape)
    if math.prod(shape) != numel:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return shape


def _format(t: Tensor) -> str:
    grad_fn = t.grad_fn
    return tensor_repr(t._data, t.dtype, None if grad_fn is None else grad_fn.name(), t._requires_grad)


# ---- apply: the one place where a primitive runs --------------------------------------------

def apply(prim, *inputs: Tensor, **attrs) -> Tensor:
    """Run a primitive on tensors: compute with NumPy, and record a graph node when needed."""
    try:
        result = prim.impl(*[t._data for t in inputs], **attrs)
    except ValueError as e:
        # Shape errors get the message of the shape rule, which names both shapes.
        prim.shape_rule([t._data.shape for t in inputs], **attrs)
        raise RuntimeError(f"{prim.name}: {e}") from None
    out = _new_tensor(Tensor)
    out._data = result if type(result) is np.ndarray else np.asarray(result)
    out._vc = [0]
    if prim.kind == "movement" and np.may_share_memory(result, inputs[0]._data):
        src = inputs[0]
        out._vc = src._vc
        if src._base is not None:
            out._base, out._view_steps = src._base, src._view_steps + ((prim, attrs),)
        else:
            out._base, out._view_steps = src, ((prim, attrs),)
        out._base_history = out._base.grad_fn
    if STATE.grad_enabled:
        if prim.vjp is not None and out._data.dtype.kind == "f":  # integer results carry no gradient
            for t in inputs:
                if t._requires_grad:
                    out.grad_fn = prim.node_class(prim, inputs, attrs, out)
                    out._requires_grad = True
                    break
    elif STATE.inference:
        out._inference = True
    if TRACE.tracer is not None:
        TRACE.tracer.record(prim, inputs, attrs, out)
    return out


_new_tensor = object.__new__


# ---- tensors from data ------------------------------------------------------------------------

def _infer_array(data, dtype) -> np.ndarray:
    if isinstance(data, Tensor):
        arr = data._data
    elif isinstance(data, (list, tuple)):
        arr = np.array(_unwrap_nested(data))
    else:
        arr = np.asarray(data)
    if dtype is not None:
        return arr.astype(dtypes.to_dtype(dtype).np, copy=False)
    if arr.dtype.kind == "f" and not isinstance(data, (np.ndarray, Tensor, np.floating)):
        return arr.astype(dtypes.get_default_dtype().np, copy=False)
    if arr.dtype.kind in "iu" and not isinstance(data, (np.ndarray, Tensor, np.integer)):
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind in "OUS":
        raise TypeError(f"can't make a tensor from data of type {type(data).__name__}; "
                        f"expected numbers, nested lists of numbers or an ndarray")
    return arr


def _unwrap_nested(data):
    if isinstance(data, Tensor):
        _reads_data(data, "conversion to a new tensor")
        return data._data
    if isinstance(data, (list, tuple)):
        return [_unwrap_nested(x) for x in data]
    return data


def tensor(data, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A new tensor holding a copy of ``data`` (numbers, nested lists, ndarrays or tensors)."""
    if isinstance(data, Tensor) and TRACE.tracer is not None:
        t = _recorded_conversion(data, dtype).clone()
        return t.requires_grad_(True) if requires_grad else t
    arr = _infer_array(data, dtype)
    arr = np.array(arr, copy=True)
    dtypes.from_numpy(arr.dtype)
    t = Tensor._make(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """A tensor sharing memory with ``data`` where possible (ndarrays of the same dtype)."""
    if isinstance(data, Tensor) and (dtype is None or dtypes.to_dtype(dtype) is data.dtype):
        return data
    if isinstance(data, Tensor) and TRACE.tracer is not None:
        return _recorded_conversion(data, dtype)
    arr = _infer_array(data, dtype)
    dtypes.from_numpy(arr.dtype)
    return Tensor._make(arr)


def _recorded_conversion(data: Tensor, dtype) -> Tensor:
    """data's values, detached and cast to dtype, through ops a traced step records (never a constant of it)."""
    return data.detach().to(dtypes.to_dtype(dtype) if dtype is not None else None)


def from_numpy(arr: np.ndarray) -> Tensor:
    """A tensor sharing memory with an ndarray."""
    if not isinstance(arr, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(arr).__name__})")
    dtypes.from_numpy(arr.dtype)
    return Tensor._make(arr)

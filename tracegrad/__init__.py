"""tracegrad: PyTorch-style tensors and autograd on NumPy, with a compiler for whole training steps."""
from __future__ import annotations

import importlib

from . import tensor_methods  # noqa: F401  (binds ops as Tensor methods)
from . import autograd
from .autograd import enable_grad, inference_mode, is_grad_enabled, is_inference_mode_enabled, no_grad, set_grad_enabled
from .compiler import CompileMismatch, compile, explain, make_ir
from .creation import (Generator, arange, bernoulli, default_generator, empty, empty_like, eye, full, full_like,
                       get_rng_state, initial_seed, linspace, logspace, manual_seed, multinomial, normal, ones, ones_like,
                       rand, rand_like, randint, randint_like, randn, randn_like, randperm, seed, set_rng_state, zeros,
                       zeros_like)
from .dtypes import (bool_ as bool, dtype, float16, float32, float64, get_default_dtype, int8, int16, int32, int64,
                     promote_types, set_default_dtype, uint8)
from .dtypes import result_type as _result_type
from .einsum import einsum
from .ops import (add, addcdiv, addcmul, addmm, argsort, baddbmm, cumprod, logaddexp, roll, sort, topk, all, allclose, amax, amin, any, argmax, argmin, bitwise_not, bmm,
                  broadcast_to, cat, chunk, clamp, clamp_max, clamp_min, clip, clone, concat, cumsum, div, dot,
                  equal, flatten, flip, floor_divide, gather, index_put, index_select, isclose, isfinite, lerp, log2,
                  log10, log_softmax, logical_and, logical_not, logical_or, logsumexp, masked_fill, masked_select,
                  matmul, max, mean, min, mm, movedim, mv, narrow, neg, nonzero, norm, outer, permute, prod,
                  reciprocal, remainder, repeat, reshape, round, rsqrt, scatter_add, softmax, split, square, squeeze,
                  stack, std, sub, sum, swapaxes, t, tan, transpose, tril, triu, unbind, unflatten, unsqueeze, var,
                  where)
from .ops import div as divide, div as true_divide, sub as subtract
from .printing import set_printoptions
from .serialization import load, save
from .tensor import Size, Tensor, as_tensor, from_numpy, tensor

__version__ = "0.1.0"

float = float32
double = float64
half = float16
long = int64
int = int32
short = int16

FloatTensor = DoubleTensor = LongTensor = Tensor  # type names for isinstance checks


def is_tensor(obj) -> bool:
    """True if obj is a tracegrad Tensor."""
    return isinstance(obj, Tensor)


def is_floating_point(input: Tensor) -> bool:
    """True if input has a floating dtype."""
    return input.is_floating_point()


def numel(input: Tensor) -> int:
    """The number of elements of input."""
    return input.numel()


def result_type(tensor1, tensor2) -> dtype:
    """The dtype an op on these operands produces (PyTorch's promotion rule)."""
    return _result_type(tensor1, tensor2)


def device(name: str = "cpu") -> str:
    """A device name; only 'cpu' exists."""
    if not str(name).startswith("cpu"):
        raise RuntimeError(f"eager tensors live in host memory, so device {name!r} is not available; to run a "
                           f"training step on the GPU, compile it with tracegrad.compile(step, backend='cuda')")
    return "cpu"


_SUBMODULES = {"cuda", "distributed", "linalg", "nn", "optim", "utils", "viz"}


def __getattr__(name: str):
    # Submodules load on first use, which keeps `import tracegrad` fast.
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'tracegrad' has no attribute {name!r}")

"""Creation functions and the global random number generator."""
from __future__ import annotations

import json
import math

import numpy as np

from . import dtypes
from .tensor import TRACE, Tensor, _shape_arg


def _dtype_or_default(dtype) -> dtypes.dtype:
    return dtypes.to_dtype(dtype) if dtype is not None else dtypes.get_default_dtype()


def _finish(arr: np.ndarray, requires_grad: bool) -> Tensor:
    t = Tensor._make(arr)
    return t.requires_grad_() if requires_grad else t


def zeros(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """A tensor of zeros (float32 unless dtype is given)."""
    return _finish(np.zeros(_shape_arg(size), dtype=_dtype_or_default(dtype).np), requires_grad)


def zeros_like(input: Tensor, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Zeros with input's shape and dtype."""
    return zeros(input._data.shape, dtype=dtype or input.dtype, requires_grad=requires_grad)


def ones(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """A tensor of ones."""
    return _finish(np.ones(_shape_arg(size), dtype=_dtype_or_default(dtype).np), requires_grad)


def empty(*size, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """An uninitialized tensor (zero-filled here, so results never depend on garbage)."""
    return zeros(*size, dtype=dtype, requires_grad=requires_grad)


def full(size, fill_value, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """A tensor filled with fill_value; the dtype follows the value (bool, int64 or float32)."""
    d = dtypes.to_dtype(dtype) if dtype is not None else dtypes.scalar_dtype(
        fill_value.item() if isinstance(fill_value, Tensor) else fill_value)
    return _finish(np.full(_shape_arg((size,) if isinstance(size, int) else tuple(size)), fill_value, dtype=d.np),
                   requires_grad)


def ones_like(input: Tensor, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Ones with input's shape and dtype."""
    return ones(input._data.shape, dtype=dtype or input.dtype, requires_grad=requires_grad)


def empty_like(input: Tensor, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """An uninitialized (zero-filled) tensor with input's shape and dtype."""
    return zeros_like(input, dtype=dtype, requires_grad=requires_grad)


def full_like(input: Tensor, fill_value, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """fill_value with input's shape and dtype."""
    return full(input._data.shape, fill_value, dtype=dtype or input.dtype, requires_grad=requires_grad)


def arange(start, end=None, step=1, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """Values start, start+step, ... below end (int64 for integer arguments, else float32)."""
    if end is None:
        start, end = 0, start
    values = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]
    if values[2] == 0:
        raise RuntimeError("step must be nonzero")
    if dtype is None:
        dtype = dtypes.int64 if all(isinstance(v, (int, np.integer)) for v in values) else dtypes.get_default_dtype()
    d = dtypes.to_dtype(dtype)
    if (values[1] - values[0]) * values[2] < 0:
        raise RuntimeError("upper bound and larger bound inconsistent with step sign")
    count = math.ceil((values[1] - values[0]) / values[2])
    arr = (values[0] + np.arange(count, dtype=np.float64 if d.category == dtypes.FLOAT else np.int64) * values[2])
    return _finish(arr.astype(d.np), requires_grad)


def linspace(start, end, steps: int, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """steps evenly spaced values from start to end inclusive."""
    if steps < 0:
        raise RuntimeError("number of steps must be non-negative")
    return _finish(np.linspace(start, end, steps).astype(_dtype_or_default(dtype).np), requires_grad)


def logspace(start, end, steps: int, base: float = 10.0, *, dtype=None, requires_grad: bool = False) -> Tensor:
    """base ** linspace(start, end, steps)."""
    return _finish((base ** np.linspace(start, end, steps)).astype(_dtype_or_default(dtype).np), requires_grad)


def eye(n: int, m: int | None = None, *, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """The identity matrix (n x m)."""
    return _finish(np.eye(n, m, dtype=_dtype_or_default(dtype).np), requires_grad)


# ---- random -------------------------------------------------------------------------------------

class Generator:
    """A random number generator (NumPy's PCG64): ``generator=`` of the random functions, and the global one.

    The same seed gives the same stream within tracegrad; the numbers differ from PyTorch's for that seed.
    """

    def __init__(self, device="cpu") -> None:
        if not str(device).startswith("cpu"):
            from . import device as check_device  # raises, naming the device and what to do instead
            check_device(device)
        self.device = "cpu"
        self.manual_seed(67280421310721)  # PyTorch's default seed, so initial_seed() reads the same

    def manual_seed(self, seed: int) -> "Generator":
        """Restart the stream from a seed; returns the generator."""
        if isinstance(seed, Tensor) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"manual_seed expected an int seed, got {type(seed).__name__}")
        self._seed = int(seed) % 2 ** 64  # a negative seed wraps as in PyTorch
        self.gen = np.random.default_rng(self._seed)
        return self

    def seed(self) -> int:
        """Seed from the operating system's entropy and return that seed."""
        value = int(np.random.SeedSequence().entropy % 2 ** 63)
        self.manual_seed(value)
        return value

    def initial_seed(self) -> int:
        """The seed the stream last started from."""
        return self._seed

    def get_state(self) -> Tensor:
        """The full state as a uint8 tensor, for set_state."""
        state = json.dumps({"seed": self._seed, "bit_generator": self.gen.bit_generator.state})
        return Tensor._make(np.frombuffer(state.encode(), dtype=np.uint8).copy())

    def set_state(self, new_state: Tensor) -> "Generator":
        """Restore a state that get_state returned; returns the generator."""
        if not isinstance(new_state, Tensor) or new_state.dtype is not dtypes.uint8:
            raise TypeError("set_state expects the uint8 tensor that Generator.get_state() (or "
                            "tracegrad.get_rng_state()) returned")
        try:
            state = json.loads(bytes(new_state._data).decode())
            gen = np.random.default_rng()
            gen.bit_generator.state = state["bit_generator"]
            seed_value = int(state["seed"])
        except (ValueError, KeyError, TypeError) as e:
            raise RuntimeError(f"set_state: not a state from Generator.get_state() ({e}); pass the tensor "
                               f"get_state() returned, unchanged") from None
        self.gen, self._seed = gen, seed_value
        return self

    def __repr__(self) -> str:
        return f"<tracegrad.Generator object at {id(self):#x}>"


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the global generator (tracegrad's streams differ from PyTorch's for the same seed)."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    """Seed the global generator from the operating system and return the seed."""
    return default_generator.seed()


def initial_seed() -> int:
    """The last seed of the global generator."""
    return default_generator.initial_seed()


def get_rng_state() -> Tensor:
    """The global generator's state, for set_rng_state (used by checkpointing to replay dropout)."""
    return default_generator.get_state()


def set_rng_state(new_state: Tensor) -> None:
    """Restore a state from get_rng_state."""
    default_generator.set_state(new_state)


def _random(name: str, generator: Generator | None) -> np.random.Generator:
    """The NumPy generator to draw from (generator's, or the global one's).

    Random numbers are drawn in Python: a traced step stops tracing there (runs eagerly)."""
    if TRACE.tracer is not None:
        TRACE.tracer.unsupported(f"random numbers ({name})")
    if generator is None:
        return default_generator.gen
    if not isinstance(generator, Generator):
        raise TypeError(f"{name}(): generator must be a tracegrad.Generator, got {type(generator).__name__}")
    return generator.gen


def rand(*size, dtype=None, requires_grad: bool = False, generator: Generator | None = None,
         device=None) -> Tensor:
    """Uniform samples in [0, 1)."""
    rng = _random("rand", generator)
    d = _dtype_or_default(dtype)
    return _finish(rng.random(_shape_arg(size), dtype=np.float64).astype(d.np), requires_grad)


def randn(*size, dtype=None, requires_grad: bool = False, generator: Generator | None = None,
         device=None) -> Tensor:
    """Standard normal samples."""
    rng = _random("randn", generator)
    d = _dtype_or_default(dtype)
    return _finish(rng.standard_normal(_shape_arg(size)).astype(d.np), requires_grad)


def randint(low, high=None, size=None, *, generator: Generator | None = None, dtype=None,
            requires_grad: bool = False, device=None) -> Tensor:
    """Uniform integers in [low, high)."""
    rng = _random("randint", generator)
    if size is None:
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    d = dtypes.to_dtype(dtype) if dtype is not None else dtypes.int64
    return _finish(rng.integers(low, high, size=tuple(size)).astype(d.np), requires_grad)


def randperm(n: int, *, generator: Generator | None = None, dtype=None, device=None) -> Tensor:
    """A random permutation of 0..n-1."""
    rng = _random("randperm", generator)
    d = dtypes.to_dtype(dtype) if dtype is not None else dtypes.int64
    return Tensor._make(rng.permutation(n).astype(d.np))


def rand_like(input: Tensor, *, dtype=None) -> Tensor:
    """Uniform samples with input's shape and dtype."""
    return rand(input._data.shape, dtype=dtype or input.dtype)


def randn_like(input: Tensor, *, dtype=None) -> Tensor:
    """Standard normal samples with input's shape and dtype."""
    return randn(input._data.shape, dtype=dtype or input.dtype)


def randint_like(input: Tensor, low, high=None, *, dtype=None) -> Tensor:
    """Uniform integers with input's shape."""
    return randint(low, high, input._data.shape, dtype=dtype or input.dtype)


def normal(mean, std, size=None, *, generator: Generator | None = None, dtype=None) -> Tensor:
    """Normal samples with the given mean and std (numbers or tensors)."""
    rng = _random("normal", generator)
    m = mean._data if isinstance(mean, Tensor) else mean
    s = std._data if isinstance(std, Tensor) else std
    shape = tuple(size) if size is not None else np.broadcast_shapes(np.shape(m), np.shape(s))
    d = dtypes.to_dtype(dtype) if dtype is not None else (
        mean.dtype if isinstance(mean, Tensor) else std.dtype if isinstance(std, Tensor) else dtypes.get_default_dtype())
    return Tensor._make((m + s * rng.standard_normal(shape)).astype(d.np))


def bernoulli(input: Tensor, p=None, *, generator: Generator | None = None) -> Tensor:
    """1 with probability input (or p), else 0."""
    rng = _random("bernoulli", generator)
    probs = input._data if p is None else p
    return Tensor._make((rng.random(input._data.shape) < probs).astype(input._data.dtype))


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *,
                generator: Generator | None = None) -> Tensor:
    """Sample category indices from (unnormalized) probabilities in the last dim."""
    rng = _random("multinomial", generator)
    probs = input._data / input._data.sum(-1, keepdims=True)
    rows = probs.reshape(-1, probs.shape[-1])
    out = np.stack([rng.choice(rows.shape[1], num_samples, replace=replacement, p=r) for r in rows])
    return Tensor._make(out.reshape(probs.shape[:-1] + (num_samples,)).astype(np.int64))

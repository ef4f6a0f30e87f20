"""W3: an elementwise step, memory-bound: loss = mean(gelu_tanh(x * w + b) ** 2), SGD on w and b.

x is a fixed (2048, 2048) float32 batch; w and b are per-column (2048,)
parameters, a scale and a shift. Almost all the work is elementwise over x,
so a step's speed is judged by the memory bandwidth it reaches (see
`BANDWIDTH`) against a plain copy measured in the same run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from benchmarks import columns
from benchmarks.harness import Bandwidth, Prepared, Workload

SHAPE = (2048, 2048)
# The gradient of a mean over 4M elements is small (|dL/dw| ~ 5e-4): lr 10 makes the 3 steps of --check
# change w and b by ~1e-2, a hundred times its tolerance, so a wrong gradient cannot pass unseen.
LR = 10.0
GELU_SCALE = math.sqrt(2 / math.pi)  # gelu_tanh(y) = 0.5 y (1 + tanh(GELU_SCALE (y + GELU_CUBIC y^3)))
GELU_CUBIC = 0.044715

_FLOAT_BYTES = 4
BANDWIDTH = Bandwidth(
    # The gradient of a mean does not depend on the loss's value, so one fused pass over x can accumulate the
    # loss, dL/dw and dL/db together: a step must read x once, and read and write w and b once.
    bytes_per_step=_FLOAT_BYTES * (SHAPE[0] * SHAPE[1] + 4 * SHAPE[1]),
    formula="bytes = 4 x (2048*2048 + 4*2048): x read once, w and b read and written once",
    copy_shape=SHAPE)


@dataclass(frozen=True)
class ElementwiseProblem:
    """The fixed batch and the initial parameters; every implementation starts from copies of these."""

    x: np.ndarray  # SHAPE, float32, standard normal
    w: np.ndarray  # (SHAPE[1],) float32 per-column scale
    b: np.ndarray  # (SHAPE[1],) float32 per-column shift
    lr: float


def make_problem(seed: int = 0) -> ElementwiseProblem:
    """A standard-normal x, scales around 1 and shifts around 0, from `seed`."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(SHAPE, dtype=np.float32)
    w = rng.uniform(0.5, 1.5, SHAPE[1]).astype(np.float32)
    b = rng.uniform(-0.5, 0.5, SHAPE[1]).astype(np.float32)
    return ElementwiseProblem(x, w, b, LR)


# ---------------------------------------------------------------- PyTorch-style code


def build_pytorch_style(torch: ModuleType, problem: ElementwiseProblem) -> Prepared:
    """The step as a PyTorch user writes it; `torch` is tracegrad or PyTorch itself."""
    w = torch.nn.Parameter(torch.tensor(problem.w))
    b = torch.nn.Parameter(torch.tensor(problem.b))
    x = torch.from_numpy(problem.x)
    optimizer = torch.optim.SGD([w, b], lr=problem.lr)

    def step():
        optimizer.zero_grad()
        loss = (torch.nn.functional.gelu(x * w + b, approximate="tanh") ** 2).mean()
        loss.backward()
        optimizer.step()
        return loss

    return Prepared(step, weights=lambda: [w.detach().numpy(), b.detach().numpy()])


# ---------------------------------------------------------------- hand-written NumPy


class NumpyElementwiseStep:
    """The same step by hand: forward and manual backward, in place in four preallocated (2048, 2048) buffers.

    With y = x w + b, t = tanh(s (y + c y^3)) and a = (1 + t) / 2:
    gelu(y) = y a, and gelu'(y) = a + s y (1 - t^2) (1 + 3 c y^2) / 2;
    dL/dy = 2 gelu(y) gelu'(y) / N for the N elements of x.
    """

    def __init__(self, problem: ElementwiseProblem) -> None:
        self.x = problem.x
        self.w, self.b = problem.w.copy(), problem.b.copy()
        self.grad_w, self.grad_b = np.empty_like(self.w), np.empty_like(self.b)
        self.y, self.t, self.a, self.gelu = (np.empty_like(self.x) for _ in range(4))
        self.lr = np.float32(problem.lr)
        self.inverse_size = np.float32(1 / self.x.size)
        self.two_over_size = np.float32(2 / self.x.size)

    def step(self) -> np.float32:
        """One training step; returns the loss before the update."""
        x, y, t, a, gelu = self.x, self.y, self.t, self.a, self.gelu
        np.multiply(x, self.w, out=y)
        y += self.b
        np.multiply(y, y, out=t)  # t = tanh(s y (1 + c y^2))
        t *= np.float32(GELU_CUBIC)
        t += np.float32(1)
        t *= y
        t *= np.float32(GELU_SCALE)
        np.tanh(t, out=t)
        np.add(t, np.float32(1), out=a)  # a = (1 + t) / 2
        a *= np.float32(0.5)
        np.multiply(y, a, out=gelu)
        # einsum sums pairwise: float32 accurate over 4M terms, where a BLAS dot drifts by ~1e-4
        loss = np.einsum("ij,ij->", gelu, gelu) * self.inverse_size
        t *= t  # t = gelu'(y) - a = s y (1 - t^2) (1 + 3 c y^2) / 2
        np.subtract(np.float32(1), t, out=t)
        t *= y
        t *= np.float32(GELU_SCALE / 2)
        y *= y  # y is not needed any more: y = 1 + 3 c y^2
        y *= np.float32(3 * GELU_CUBIC)
        y += np.float32(1)
        t *= y
        t += a  # t = gelu'(y), then dL/dy
        t *= gelu
        t *= self.two_over_size
        np.sum(t, axis=0, out=self.grad_b)
        np.einsum("ij,ij->j", t, x, out=self.grad_w)
        self.grad_w *= self.lr  # plain SGD: p -= lr * grad
        self.w -= self.grad_w
        self.grad_b *= self.lr
        self.b -= self.grad_b
        return loss


def numpy_step(problem: ElementwiseProblem) -> Prepared:
    """The hand-written NumPy step."""
    model = NumpyElementwiseStep(problem)
    return Prepared(model.step, weights=lambda: [model.w, model.b])


# ---------------------------------------------------------------- the registry entries

IMPLEMENTATIONS = {
    "numpy": numpy_step,
    **columns.pytorch_style_columns(build_pytorch_style),
    "jax.jit": columns.jax_jit("elementwise_step"),
}

WORKLOADS = [
    Workload("W3", "elementwise step: x (2048, 2048), w and b (2048,), loss = mean(gelu_tanh(x*w + b)**2), "
                   f"SGD (lr {LR:g})",
             make_problem, IMPLEMENTATIONS, bandwidth=BANDWIDTH),
]

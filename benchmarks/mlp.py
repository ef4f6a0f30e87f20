"""W1 and W2: one MLP training step (zero_grad, forward, cross-entropy, backward, optimizer step).

The implementations of the same step:
- `build_pytorch_style`: the step as ordinary PyTorch code, run by tracegrad
  and by PyTorch, eager and compiled (see `columns`);
- `NumpyMLPStep`: the step written by hand in NumPy (manual backward, the
  optimizer update written out), float32 throughout, into preallocated
  buffers: the baseline a library on NumPy is measured against;
- `jax_steps.mlp_step`: the step written functionally for jax.jit.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Callable, Literal

import numpy as np

from benchmarks import columns
from benchmarks.harness import Prepared, Workload

SGD_MOMENTUM = 0.9
ADAM_BETAS = (0.9, 0.999)  # PyTorch's defaults, spelled out for the hand-written update
ADAM_EPS = 1e-8
# float32 copies for the hand-written updates, made once: converting a Python float per call costs time
_MOMENTUM32 = np.float32(SGD_MOMENTUM)
_ONE_MINUS_BETA1 = np.float32(1 - ADAM_BETAS[0])
_BETA2 = np.float32(ADAM_BETAS[1])
_ONE_MINUS_BETA2 = np.float32(1 - ADAM_BETAS[1])
_EPS32 = np.float32(ADAM_EPS)


@dataclass(frozen=True)
class MLPProblem:
    """Initial weights and one fixed batch; every implementation starts from copies of these."""

    sizes: tuple[int, ...]  # layer widths, input first: (32, 64, 64, 10)
    optimizer: Literal["sgd", "adam"]
    lr: float
    weights: tuple[np.ndarray, ...]  # W1, b1, W2, b2, ...; W has shape (out, in) like a Linear layer
    x: np.ndarray  # (batch, sizes[0]) float32
    y: np.ndarray  # (batch,) int64 class labels


def make_problem(batch: int, sizes: tuple[int, ...], optimizer: Literal["sgd", "adam"], lr: float,
                 seed: int = 0) -> MLPProblem:
    """Weights drawn like a Linear layer's default init, and a standard-normal batch, from `seed`."""
    rng = np.random.default_rng(seed)
    weights = linear_weights(rng, sizes)
    x = rng.standard_normal((batch, sizes[0]), dtype=np.float32)
    y = rng.integers(0, sizes[-1], batch, dtype=np.int64)
    return MLPProblem(sizes, optimizer, lr, tuple(weights), x, y)


def linear_weights(rng: np.random.Generator, sizes: tuple[int, ...]) -> list[np.ndarray]:
    """W1, b1, W2, b2, ... of Linear layers of widths `sizes`, drawn like a Linear layer's default init."""
    weights = []
    for fan_in, fan_out in zip(sizes, sizes[1:]):
        bound = 1.0 / np.sqrt(fan_in)
        weights.append(rng.uniform(-bound, bound, (fan_out, fan_in)).astype(np.float32))
        weights.append(rng.uniform(-bound, bound, fan_out).astype(np.float32))
    return weights


# ---------------------------------------------------------------- PyTorch-style code


def build_model(torch: ModuleType, problem: MLPProblem):
    """Linear layers with ReLU between them, holding the problem's initial weights."""
    nn = torch.nn
    layers: list = []
    for fan_in, fan_out in zip(problem.sizes, problem.sizes[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    model = nn.Sequential(*layers[:-1])  # no ReLU after the output layer
    columns.copy_parameters(torch, model.parameters(), problem.weights)
    return model


def build_training_step(torch: ModuleType, model, problem: MLPProblem) -> Callable:
    """The training step of `model` on the problem's batch, as a PyTorch user writes it."""
    x, y = torch.from_numpy(problem.x), torch.from_numpy(problem.y)
    loss_fn = torch.nn.CrossEntropyLoss()
    if problem.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=problem.lr, momentum=SGD_MOMENTUM)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=problem.lr)

    def step():
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return step


def build_pytorch_style(torch: ModuleType, problem: MLPProblem) -> Prepared:
    """The step as a PyTorch user writes it; `torch` is tracegrad or PyTorch itself."""
    model = build_model(torch, problem)
    return Prepared(build_training_step(torch, model, problem),
                    weights=lambda: [p.detach().numpy() for p in model.parameters()])


# ---------------------------------------------------------------- hand-written NumPy


class NumpyMLPStep:
    """The same step by hand: Linear/ReLU forward, cross-entropy, manual backward, SGD or Adam.

    All arrays are float32 and allocated once; the step writes into them in
    place. Gradients are overwritten (not accumulated) by each backward, which
    is what zero_grad followed by backward amounts to.
    """

    def __init__(self, problem: MLPProblem) -> None:
        batch = problem.x.shape[0]
        self.params = [w.copy() for w in problem.weights]
        self.grads = [np.empty_like(w) for w in problem.weights]
        self.x, self.y, self.rows = problem.x, problem.y, np.arange(batch)
        self.inverse_batch = np.float32(1 / batch)
        # activations[i] is the input of layer i; the last one holds the logits
        self.activations = [self.x] + [np.empty((batch, width), np.float32) for width in problem.sizes[1:]]
        self.deltas = [np.empty((batch, width), np.float32) for width in problem.sizes[1:]]  # dLoss/dpre-act
        self.relu_masks = [np.empty((batch, width), bool) for width in problem.sizes[1:-1]]
        self.row_max = np.empty((batch, 1), np.float32)
        self.row_sum = np.empty((batch, 1), np.float32)
        self.update = (SGDUpdate(self.params, problem.lr) if problem.optimizer == "sgd"
                       else AdamUpdate(self.params, problem.lr))

    def step(self) -> np.float32:
        """One training step; returns the loss before the update."""
        self._forward()
        loss = self._cross_entropy_and_its_gradient()
        self._backward()
        self.update(self.grads)
        return loss

    def _forward(self) -> None:
        last = len(self.deltas) - 1
        for i in range(len(self.deltas)):
            weight, bias, out = self.params[2 * i], self.params[2 * i + 1], self.activations[i + 1]
            np.matmul(self.activations[i], weight.T, out=out)
            out += bias
            if i < last:
                np.maximum(out, 0, out=out)

    def _cross_entropy_and_its_gradient(self) -> np.float32:
        """Mean cross-entropy of the logits; leaves softmax(logits) - onehot(y), over batch, in deltas[-1]."""
        logits, probs = self.activations[-1], self.deltas[-1]
        np.max(logits, axis=1, keepdims=True, out=self.row_max)
        np.subtract(logits, self.row_max, out=probs)
        np.exp(probs, out=probs)
        np.sum(probs, axis=1, keepdims=True, out=self.row_sum)
        # -log-softmax at the label = log(sum exp(logit - max)) + max - logit
        total = np.log(self.row_sum).sum() + self.row_max.sum() - logits[self.rows, self.y].sum()
        loss = total * self.inverse_batch
        probs /= self.row_sum
        probs[self.rows, self.y] -= 1
        probs *= self.inverse_batch
        return loss

    def _backward(self) -> None:
        for i in reversed(range(len(self.deltas))):
            delta = self.deltas[i]
            np.matmul(delta.T, self.activations[i], out=self.grads[2 * i])
            np.sum(delta, axis=0, out=self.grads[2 * i + 1])
            if i > 0:  # push the gradient through layer i's weight and the ReLU before it
                previous, mask = self.deltas[i - 1], self.relu_masks[i - 1]
                np.matmul(delta, self.params[2 * i], out=previous)
                np.greater(self.activations[i], 0, out=mask)
                np.multiply(previous, mask, out=previous)


class SGDUpdate:
    """SGD with momentum as PyTorch does it: buf = momentum * buf + grad (grad at first); p -= lr * buf."""

    def __init__(self, params: list[np.ndarray], lr: float) -> None:
        self.params, self.lr = params, np.float32(lr)
        self.buffers = [np.zeros_like(p) for p in params]
        self.scratch = [np.empty_like(p) for p in params]
        self.first_step = True

    def __call__(self, grads: list[np.ndarray]) -> None:
        """Update the parameters in place from `grads`."""
        for param, grad, buffer, scratch in zip(self.params, grads, self.buffers, self.scratch):
            if self.first_step:
                np.copyto(buffer, grad)
            else:
                buffer *= _MOMENTUM32
                buffer += grad
            np.multiply(buffer, self.lr, out=scratch)
            param -= scratch
        self.first_step = False


class AdamUpdate:
    """Adam, PyTorch's formula: bias-corrected moments, p -= lr/bc1 * m / (sqrt(v)/sqrt(bc2) + eps)."""

    def __init__(self, params: list[np.ndarray], lr: float) -> None:
        self.params, self.lr = params, lr
        self.means = [np.zeros_like(p) for p in params]
        self.squares = [np.zeros_like(p) for p in params]
        self.scratch = [np.empty_like(p) for p in params]
        self.steps = 0

    def __call__(self, grads: list[np.ndarray]) -> None:
        """Update the parameters in place from `grads`."""
        beta1, beta2 = ADAM_BETAS
        self.steps += 1
        step_size = np.float32(self.lr / (1 - beta1 ** self.steps))
        bias_correction2_sqrt = np.float32((1 - beta2 ** self.steps) ** 0.5)
        state = zip(self.params, grads, self.means, self.squares, self.scratch)
        for param, grad, mean, square, scratch in state:
            np.subtract(grad, mean, out=scratch)  # mean += (1 - beta1) * (grad - mean)
            scratch *= _ONE_MINUS_BETA1
            mean += scratch
            square *= _BETA2  # square = beta2 * square + (1 - beta2) * grad**2
            np.multiply(grad, grad, out=scratch)
            scratch *= _ONE_MINUS_BETA2
            square += scratch
            np.sqrt(square, out=scratch)  # scratch = denominator, then the step
            scratch /= bias_correction2_sqrt
            scratch += _EPS32
            np.divide(mean, scratch, out=scratch)
            scratch *= step_size
            param -= scratch


def numpy_step(problem: MLPProblem) -> Prepared:
    """The hand-written NumPy step."""
    model = NumpyMLPStep(problem)
    return Prepared(model.step, weights=lambda: model.params)


# ---------------------------------------------------------------- the registry entries

IMPLEMENTATIONS = {
    "numpy": numpy_step,
    **columns.pytorch_style_columns(build_pytorch_style),
    "jax.jit": columns.jax_jit("mlp_step"),
}

WORKLOADS = [
    Workload("W1", "tiny MLP step: batch 32, 32-64-64-10, ReLU, cross-entropy, SGD momentum 0.9 (lr 0.01)",
             lambda: make_problem(32, (32, 64, 64, 10), "sgd", lr=0.01), IMPLEMENTATIONS),
    Workload("W2", "MLP step: batch 128, 784-512-512-10, ReLU, cross-entropy, Adam (lr 1e-3)",
             lambda: make_problem(128, (784, 512, 512, 10), "adam", lr=1e-3), IMPLEMENTATIONS,
             # Adam's step is grad / (|grad| + eps) at first: where a gradient is near eps (1e-8), float32
             # rounding of that gradient (1e-9) moves the step by ~1% of lr, whoever computes it.
             check_atol=0.05 * 1e-3),
]

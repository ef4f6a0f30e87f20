"""W5: a small CNN training step on 8x8 single-channel images (the digits data's size).

conv 1->8 (3x3, padding 1), ReLU, 2x2 max pool, conv 8->16 (3x3, padding 1), ReLU, flatten, linear
256->10; cross-entropy on a fixed batch of 64, SGD momentum 0.9 (lr 0.05). Implementations:
- `build_pytorch_style`: the step as ordinary PyTorch code, run by tracegrad and by PyTorch;
- `NumpyCNNStep`: the step by hand in NumPy (im2col through the same window tables as tracegrad's,
  manual backward with np.add.at for col2im), float32;
- `jax_steps.cnn_step`: the step written functionally for jax.jit (lax.conv_general_dilated, reduce_window).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from benchmarks import columns
from benchmarks.harness import Prepared, Workload
from benchmarks.mlp import SGD_MOMENTUM, SGDUpdate

BATCH, SIDE, CLASSES = 64, 8, 10
CHANNELS = (1, 8, 16)  # input, first conv, second conv
LR = 0.05
FEATURES = CHANNELS[2] * (SIDE // 2) ** 2


@dataclass(frozen=True)
class CNNProblem:
    """Initial weights (conv1 w, b, conv2 w, b, linear w, b: model.parameters() order) and one fixed batch."""

    weights: tuple[np.ndarray, ...]
    x: np.ndarray  # (BATCH, 1, SIDE, SIDE) float32
    y: np.ndarray  # (BATCH,) int64


def make_problem(seed: int = 0) -> CNNProblem:
    """Weights drawn like PyTorch's default init of Conv2d and Linear, a standard-normal batch, from `seed`."""
    rng = np.random.default_rng(seed)
    shapes = [(CHANNELS[1], CHANNELS[0], 3, 3), (CHANNELS[2], CHANNELS[1], 3, 3), (CLASSES, FEATURES)]
    weights = []
    for shape in shapes:
        bound = 1.0 / np.sqrt(np.prod(shape[1:]))  # kaiming_uniform(a=sqrt(5)) and the bias share this bound
        weights += [rng.uniform(-bound, bound, shape).astype(np.float32),
                    rng.uniform(-bound, bound, shape[0]).astype(np.float32)]
    x = rng.standard_normal((BATCH, 1, SIDE, SIDE), dtype=np.float32)
    y = rng.integers(0, CLASSES, BATCH, dtype=np.int64)
    return CNNProblem(tuple(weights), x, y)


# ---------------------------------------------------------------- PyTorch-style code


def build_pytorch_style(torch: ModuleType, problem: CNNProblem) -> Prepared:
    """The step as a PyTorch user writes it; `torch` is tracegrad or PyTorch itself."""
    nn = torch.nn
    model = nn.Sequential(nn.Conv2d(CHANNELS[0], CHANNELS[1], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(CHANNELS[1], CHANNELS[2], 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(FEATURES, CLASSES))
    columns.copy_parameters(torch, model.parameters(), problem.weights)
    x, y = torch.from_numpy(problem.x), torch.from_numpy(problem.y)
    loss_fn = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=SGD_MOMENTUM)

    def step():
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()
        return loss

    return Prepared(step, weights=lambda: [p.detach().numpy() for p in model.parameters()])


# ---------------------------------------------------------------- hand-written NumPy


class NumpyCNNStep:
    """The same step by hand. Activations are kept as [channels, positions, batch] (batch innermost), so
    im2col is one fancy index of a padded array and each convolution one matrix product."""

    def __init__(self, problem: CNNProblem) -> None:
        from tracegrad.nn.windows import _window_table  # the tables say which position each window reads

        self.params = [w.copy() for w in problem.weights]
        self.x = problem.x.reshape(BATCH, 1, SIDE * SIDE).transpose(1, 2, 0)  # [1, 64, N]
        self.y, self.rows = problem.y, np.arange(BATCH)
        same = ((SIDE, SIDE), (3, 3), (1, 1), (1, 1), (1, 1), (SIDE, SIDE), "zeros")
        self.conv1_table = _window_table(*same)  # [9, 64]
        half = SIDE // 2
        self.pool_table = _window_table((SIDE, SIDE), (2, 2), (2, 2), (1, 1), (0, 0), (half, half), "zeros")
        self.conv2_table = _window_table((half, half), (3, 3), (1, 1), (1, 1), (1, 1), (half, half), "zeros")
        self.update = SGDUpdate(self.params, LR)

    def step(self) -> np.float32:
        """One training step; returns the loss before the update."""
        w1, b1, w2, b2, w3, b3 = self.params
        cols1 = _padded(self.x, 0.0)[:, self.conv1_table].reshape(-1, 64 * BATCH)  # [9, L*N]
        h1 = (w1.reshape(CHANNELS[1], -1) @ cols1 + b1[:, None]).reshape(CHANNELS[1], 64, BATCH)
        r1 = np.maximum(h1, 0)
        windows = _padded(r1, -np.inf)[:, self.pool_table]  # [C, 4, 16, N]
        arg = windows.argmax(axis=1)[:, None]
        pooled = np.take_along_axis(windows, arg, axis=1)[:, 0]  # [C, 16, N]
        cols2 = _padded(pooled, 0.0)[:, self.conv2_table].reshape(-1, 16 * BATCH)  # [72, L*N]
        h2 = w2.reshape(CHANNELS[2], -1) @ cols2 + b2[:, None]  # [16, 16*N]
        r2 = np.maximum(h2, 0)
        features = r2.reshape(CHANNELS[2], 16, BATCH).transpose(2, 0, 1).reshape(BATCH, FEATURES)
        logits = features @ w3.T + b3
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        total = exp.sum(axis=1, keepdims=True)
        loss = np.float32((np.log(total[:, 0]) - shifted[self.rows, self.y]).mean())
        d_logits = exp / total
        d_logits[self.rows, self.y] -= 1
        d_logits /= BATCH
        grads: list = [None, None, None, None, d_logits.T @ features, d_logits.sum(axis=0)]
        d_h2 = (d_logits @ w3).reshape(BATCH, CHANNELS[2], 16).transpose(1, 2, 0).reshape(CHANNELS[2], -1)
        d_h2 *= h2 > 0
        grads[2], grads[3] = (d_h2 @ cols2.T).reshape(w2.shape), d_h2.sum(axis=1)
        d_pooled = _col2im(w2.reshape(CHANNELS[2], -1).T @ d_h2, self.conv2_table, pooled.shape)
        d_windows = np.zeros_like(windows)
        np.put_along_axis(d_windows, arg, d_pooled[:, None], axis=1)
        d_r1 = _col2im(d_windows, self.pool_table, r1.shape)
        d_h1 = (d_r1 * (h1 > 0)).reshape(CHANNELS[1], -1)
        grads[0], grads[1] = (d_h1 @ cols1.T).reshape(w1.shape), d_h1.sum(axis=1)
        self.update(grads)
        return loss


def _padded(values: np.ndarray, fill: float) -> np.ndarray:
    """[C, positions, N] with one more position holding fill (what the tables read for padding)."""
    channels, _, batch = values.shape
    return np.concatenate([values, np.full((channels, 1, batch), fill, values.dtype)], axis=1)


def _col2im(cols: np.ndarray, table: np.ndarray, shape: tuple) -> np.ndarray:
    """The gradient of [C, positions, N] from that of its windows: each window element added back."""
    channels, positions, batch = shape
    out = np.zeros((channels, positions + 1, batch), np.float32)
    np.add.at(out, (slice(None), table), cols.reshape(channels, *table.shape, batch))
    return out[:, :positions]


def numpy_step(problem: CNNProblem) -> Prepared:
    """The hand-written NumPy step."""
    model = NumpyCNNStep(problem)
    return Prepared(model.step, weights=lambda: model.params)


IMPLEMENTATIONS = {
    "numpy": numpy_step,
    **columns.pytorch_style_columns(build_pytorch_style),
    "jax.jit": columns.jax_jit("cnn_step"),
}

WORKLOADS = [
    Workload("W5", "small CNN step: batch 64 of 1x8x8, conv 8 and 16 channels 3x3, 2x2 max pool, linear, "
                   "cross-entropy, SGD momentum 0.9 (lr 0.05)", make_problem, IMPLEMENTATIONS),
]

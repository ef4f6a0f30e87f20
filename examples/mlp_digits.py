"""Train an MLP on scikit-learn's bundled 8x8 handwritten digits, eagerly and then compiled.

The data ships with scikit-learn, so nothing is downloaded. The script splits it with a fixed seed,
standardizes the pixels and trains an nn.Sequential MLP with Adam and cross-entropy from a shuffling
DataLoader, twice from the same initial weights: once eagerly (PyTorch-style code on NumPy), once with
the same step function under ``tracegrad.compile``, which traces the whole step (forward, backward,
optimizer update) into one fused native kernel. It prints the loss every few epochs, the test accuracy
and the median step time of each run, the speed-up, and where the compiled kernels were cached.

Run: python examples/mlp_digits.py [--epochs N]   (needs scikit-learn)
"""
import argparse
import statistics
import time
from typing import Callable

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import tracegrad as torch
from tracegrad import nn, optim

BATCH_SIZE = 64
PRINT_EVERY = 5


def load_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return standardized train and test inputs and their labels."""
    digits = load_digits()
    x_train, x_test, y_train, y_test = train_test_split(
        digits.data, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
    scaler = StandardScaler().fit(x_train)
    return (torch.from_numpy(scaler.transform(x_train).astype(np.float32)),
            torch.from_numpy(scaler.transform(x_test).astype(np.float32)),
            torch.from_numpy(y_train.astype(np.int64)),
            torch.from_numpy(y_test.astype(np.int64)))


def train_step(model: nn.Module, optimizer: optim.Optimizer, loss_fn: nn.Module,
               x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Run one optimization step and return the loss."""
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Return the fraction of samples that model classifies correctly."""
    model.eval()
    with torch.no_grad():
        correct = (model(x).argmax(dim=1) == y).float().mean().item()
    model.train()
    return correct


def mlp() -> nn.Module:
    """The model this example trains: 64 pixels, 128 hidden units, 10 classes."""
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def train(mode: str, data: tuple, epochs: int, make_model: Callable[[], nn.Module], lr: float) -> float:
    """Train a fresh model (same seed, same batches) with the step run eagerly or compiled; return the
    median step time in seconds."""
    x_train, x_test, y_train, y_test = data
    torch.manual_seed(0)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_train, y_train),
                                         batch_size=BATCH_SIZE, shuffle=True)
    model = make_model()
    optimizer = optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    step = torch.compile(train_step) if mode == "compiled" else train_step
    step_times = []
    for epoch in range(1, epochs + 1):
        total_loss, num_samples = 0.0, 0
        for x_batch, y_batch in loader:
            start = time.perf_counter()
            loss = step(model, optimizer, loss_fn, x_batch, y_batch)
            step_times.append(time.perf_counter() - start)
            total_loss += loss.item() * len(x_batch)
            num_samples += len(x_batch)
        if epoch % PRINT_EVERY == 0 or epoch == epochs:
            print(f"mode={mode} epoch={epoch} loss={total_loss / num_samples:.4f}")
    median = statistics.median(step_times)
    print(f"mode={mode} test_accuracy={accuracy(model, x_test, y_test):.4f} median_step_us={1e6 * median:.1f}")
    return median


def main(make_model: Callable[[], nn.Module] = mlp, lr: float = 1e-3, description: str = __doc__) -> None:
    """Train ``make_model()`` on the digits eagerly, then compiled, and print what the module docstring says."""
    parser = argparse.ArgumentParser(description=description.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="training epochs of each run (default 20)")
    epochs = parser.parse_args().epochs
    data = load_data()
    print(f"train_samples={len(data[0])} test_samples={len(data[1])}")
    eager = train("eager", data, epochs, make_model, lr)
    compiled = train("compiled", data, epochs, make_model, lr)
    print(f"speedup={eager / compiled:.1f} (the compiled step's median time against the eager step's)")
    from tracegrad.backends.numba_cpu import cache
    print(f"kernels cached in {cache.folders()[-1].path} (`tracegrad cache info` shows what is there)")


if __name__ == "__main__":
    main()

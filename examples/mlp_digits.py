"""Train an MLP on scikit-learn's bundled 8x8 handwritten digits.

The data ships with scikit-learn, so nothing is downloaded. The script
splits it with a fixed seed, standardizes the pixels, trains an
nn.Sequential MLP with Adam and cross-entropy from a shuffling DataLoader,
prints the mean training loss of each epoch and the final test accuracy.

Run: python examples/mlp_digits.py   (needs scikit-learn)
"""
import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import tracegrad as torch
from tracegrad import nn, optim

NUM_EPOCHS = 20
BATCH_SIZE = 64


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


def main() -> None:
    torch.manual_seed(0)
    x_train, x_test, y_train, y_test = load_data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_train, y_train),
                                         batch_size=BATCH_SIZE, shuffle=True)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    print(f"train_samples={len(x_train)} test_samples={len(x_test)}")
    for epoch in range(1, NUM_EPOCHS + 1):
        total_loss, num_samples = 0.0, 0
        for x_batch, y_batch in loader:
            loss = train_step(model, optimizer, loss_fn, x_batch, y_batch)
            total_loss += loss.item() * len(x_batch)
            num_samples += len(x_batch)
        print(f"epoch={epoch} loss={total_loss / num_samples:.4f}")
    print(f"train_accuracy={accuracy(model, x_train, y_train):.4f}")
    print(f"test_accuracy={accuracy(model, x_test, y_test):.4f}")


if __name__ == "__main__":
    main()

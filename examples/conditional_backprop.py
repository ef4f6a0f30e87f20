"""Back-propagate only when the loss is above a threshold.

train_step reads the loss as a Python number and skips backward() and
step() when the batch is already fitted well enough. Batches alternate between
small and large inputs, so some losses fall below the threshold and some
above. The script checks that parameters moved exactly on the steps that
back-propagated.

Run: python examples/conditional_backprop.py
"""
import numpy as np

import tracegrad as torch
from tracegrad import nn, optim

LOSS_THRESHOLD = 0.5


def train_step(model: nn.Module, optimizer: optim.Optimizer, loss_fn: nn.Module,
               x: torch.Tensor, y: torch.Tensor, threshold: float) -> torch.Tensor:
    """Step the optimizer only if the loss exceeds threshold; return the loss."""
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    if loss.item() > threshold:
        loss.backward()
        optimizer.step()
    return loss


def make_batches(num_batches: int = 20) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Return batches of y = 2x + 1 whose inputs alternate between small and large scale."""
    rng = np.random.default_rng(0)
    batches = []
    for index in range(num_batches):
        scale = 0.1 if index % 2 == 0 else 3.0
        x = scale * rng.standard_normal((16, 1)).astype(np.float32)
        batches.append((torch.from_numpy(x), torch.from_numpy(2.0 * x + 1.0)))
    return batches


def main() -> None:
    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    nn.init.zeros_(model.weight)
    nn.init.zeros_(model.bias)
    optimizer = optim.SGD(model.parameters(), lr=0.02)
    loss_fn = nn.MSELoss()

    batches = make_batches()
    num_updates = 0
    consistent = True
    for step, (x, y) in enumerate(batches):
        before = [p.detach().numpy().copy() for p in model.parameters()]
        loss = train_step(model, optimizer, loss_fn, x, y, LOSS_THRESHOLD).item()
        updated = any(not np.array_equal(b, p.detach().numpy())
                      for b, p in zip(before, model.parameters()))
        consistent = consistent and updated == (loss > LOSS_THRESHOLD)
        num_updates += updated
        print(f"step={step} loss={loss:.4f} updated={updated}")
    print(f"num_updates={num_updates}")
    print(f"num_skipped={len(batches) - num_updates}")
    print(f"updates_match_threshold={consistent}")


if __name__ == "__main__":
    main()

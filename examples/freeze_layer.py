"""Freeze a layer by turning off requires_grad on its parameters.

The first Linear layer is frozen, so backward computes no gradient for it and
the optimizer (which still receives every parameter) skips it. The script
checks that the frozen weights are bit-for-bit unchanged and their .grad is None.

Run: python examples/freeze_layer.py
"""
import numpy as np

import tracegrad as torch
from tracegrad import nn, optim


def make_data(num_samples: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Return inputs and targets of a fixed random nonlinear regression task."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((num_samples, 4)).astype(np.float32)
    y = np.tanh(x @ rng.standard_normal((4, 1))).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def train_step(model: nn.Module, optimizer: optim.Optimizer, loss_fn: nn.Module,
               x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Run one optimization step and return the loss."""
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


def main() -> None:
    torch.manual_seed(0)
    x, y = make_data()
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    frozen_layer = model[0]
    frozen_layer.requires_grad_(False)
    frozen_before = [p.detach().numpy().copy() for p in frozen_layer.parameters()]
    trained_before = [p.detach().numpy().copy() for p in model[2].parameters()]

    # Momentum and weight decay would move any parameter that had a gradient.
    optimizer = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    loss_fn = nn.MSELoss()
    losses = [train_step(model, optimizer, loss_fn, x, y).item() for _ in range(100)]

    frozen_unchanged = all(np.array_equal(before, p.detach().numpy())
                           for before, p in zip(frozen_before, frozen_layer.parameters()))
    trained_changed = all(not np.array_equal(before, p.detach().numpy())
                          for before, p in zip(trained_before, model[2].parameters()))
    print(f"initial_loss={losses[0]:.4f}")
    print(f"final_loss={losses[-1]:.4f}")
    print(f"frozen_unchanged={frozen_unchanged}")
    print(f"frozen_grad_is_none={all(p.grad is None for p in frozen_layer.parameters())}")
    print(f"trained_changed={trained_changed}")


if __name__ == "__main__":
    main()

"""Gradient accumulation over micro-batches.

Calling backward() several times adds into .grad. Splitting a batch into
equal micro-batches and dividing each micro-batch loss by their number gives
the same gradient, and so the same optimizer step, as the full batch.

Run: python examples/gradient_accumulation.py
"""
import numpy as np

import tracegrad as torch
from tracegrad import nn, optim

NUM_MICRO_BATCHES = 4


def train_step(model: nn.Module, optimizer: optim.Optimizer, loss_fn: nn.Module,
               x: torch.Tensor, y: torch.Tensor, num_micro_batches: int) -> torch.Tensor:
    """Accumulate gradients over micro-batches of (x, y), take one step, return the loss."""
    optimizer.zero_grad()
    total_loss = torch.zeros(())
    for x_micro, y_micro in zip(x.chunk(num_micro_batches), y.chunk(num_micro_batches)):
        loss = loss_fn(model(x_micro), y_micro) / num_micro_batches
        loss.backward()
        total_loss = total_loss + loss.detach()
    optimizer.step()
    return total_loss


def make_model() -> nn.Module:
    """Return a small MLP regressor."""
    return nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 1))


def make_data(num_samples: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Return a fixed random regression batch."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((num_samples, 6)).astype(np.float32)
    y = (x ** 2).sum(axis=1, keepdims=True).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def relative_diff(first: list[torch.Tensor], second: list[torch.Tensor]) -> float:
    """Return the largest difference between two tensor lists, relative to their largest value."""
    first_values = np.concatenate([t.detach().numpy().ravel() for t in first])
    second_values = np.concatenate([t.detach().numpy().ravel() for t in second])
    return float(np.abs(first_values - second_values).max() / np.abs(second_values).max())


def main() -> None:
    torch.manual_seed(0)
    x, y = make_data()
    loss_fn = nn.MSELoss()
    accumulated_model = make_model()
    full_batch_model = make_model()
    full_batch_model.load_state_dict(accumulated_model.state_dict())
    accumulated_opt = optim.SGD(accumulated_model.parameters(), lr=0.01)
    full_batch_opt = optim.SGD(full_batch_model.parameters(), lr=0.01)

    accumulated_loss = train_step(accumulated_model, accumulated_opt, loss_fn, x, y,
                                  NUM_MICRO_BATCHES)
    full_batch_loss = train_step(full_batch_model, full_batch_opt, loss_fn, x, y, 1)
    grad_diff = relative_diff([p.grad for p in accumulated_model.parameters()],
                              [p.grad for p in full_batch_model.parameters()])
    param_diff = relative_diff(list(accumulated_model.parameters()),
                               list(full_batch_model.parameters()))
    print(f"accumulated_loss={accumulated_loss.item():.5f}")
    print(f"full_batch_loss={full_batch_loss.item():.5f}")
    # float32 sums in a different order agree to a few units in the last place.
    print(f"grad_relative_diff={grad_diff:.3e}")
    print(f"grads_match={grad_diff < 1e-5}")
    print(f"param_relative_diff_after_step={param_diff:.3e}")
    print(f"params_match={param_diff < 1e-5}")

    losses = [train_step(accumulated_model, accumulated_opt, loss_fn, x, y,
                         NUM_MICRO_BATCHES).item() for _ in range(100)]
    print(f"final_loss={losses[-1]:.4f}")


if __name__ == "__main__":
    main()

"""Change gradients between backward() and step().

Three ways, all in one training step: a tensor hook that halves the first
layer's weight gradient as backward computes it, zeroing the output bias
gradient by hand (so plain SGD leaves that bias alone), and clip_grad_norm_,
which rescales all gradients to a total norm of at most MAX_NORM.

Run: python examples/gradient_manipulation.py
"""
import numpy as np

import tracegrad as torch
from tracegrad import nn, optim

MAX_NORM = 1.0


def train_step(model: nn.Sequential, optimizer: optim.Optimizer, loss_fn: nn.Module,
               x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one step with manipulated gradients; return the loss and the pre-clip grad norm."""
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    model[2].bias.grad.zero_()
    total_norm = nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)
    optimizer.step()
    return loss, total_norm


def grad_norm(params: list[torch.Tensor]) -> float:
    """Return the 2-norm of all gradients taken together."""
    return float(np.sqrt(sum((p.grad.numpy().astype(np.float64) ** 2).sum() for p in params)))


def make_data(num_samples: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Return inputs and large-valued targets, so raw gradients are far above MAX_NORM."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((num_samples, 3)).astype(np.float32)
    y = 10.0 * x[:, :1] - 5.0 * x[:, 1:2] + 3.0
    return torch.from_numpy(x), torch.from_numpy(y)


def main() -> None:
    torch.manual_seed(0)
    x, y = make_data()
    model = nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Linear(16, 1))
    loss_fn = nn.MSELoss()

    # The gradient without the hook, for comparison.
    (unhooked_grad,) = torch.autograd.grad(loss_fn(model(x), y), [model[0].weight])
    model[0].weight.register_hook(lambda grad: grad * 0.5)
    loss_fn(model(x), y).backward()
    hook_diff = np.abs(model[0].weight.grad.numpy() - 0.5 * unhooked_grad.numpy()).max()
    print(f"hook_halves_grad={bool(hook_diff < 1e-6)}")

    optimizer = optim.SGD(model.parameters(), lr=0.2)
    bias_before = model[2].bias.detach().numpy().copy()
    losses, norms = [], []
    for _ in range(100):
        loss, total_norm = train_step(model, optimizer, loss_fn, x, y)
        losses.append(loss.item())
        norms.append(total_norm.item())
    print(f"first_total_norm={norms[0]:.4f}")
    print(f"max_norm={MAX_NORM}")
    print(f"clipped_norm={grad_norm(list(model.parameters())):.4f}")
    print(f"zeroed_bias_unchanged={np.array_equal(bias_before, model[2].bias.detach().numpy())}")
    print(f"initial_loss={losses[0]:.4f}")
    print(f"final_loss={losses[-1]:.4f}")


if __name__ == "__main__":
    main()

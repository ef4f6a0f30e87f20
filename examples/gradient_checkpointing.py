"""Gradient checkpointing: recompute activations in backward instead of storing them.

Each residual block runs through checkpoint(block, h, use_reentrant=False),
which keeps only the block's input and recomputes the inside during backward.
The loss and every gradient equal those of the plain forward pass.

Run: python examples/gradient_checkpointing.py
"""
import numpy as np

import tracegrad as torch
from tracegrad import nn, optim


class ResidualBlock(nn.Module):
    """h + W2 tanh(W1 h)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(width, 4 * width), nn.Tanh(),
                                   nn.Linear(4 * width, width))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.inner(h)


class DeepNet(nn.Module):
    """A stack of residual blocks that can run with or without checkpointing."""

    def __init__(self, width: int = 16, depth: int = 4) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([ResidualBlock(width) for _ in range(depth)])
        self.out = nn.Linear(width, 1)
        self.use_checkpointing = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for block in self.blocks:
            if self.use_checkpointing:
                h = torch.utils.checkpoint.checkpoint(block, h, use_reentrant=False)
            else:
                h = block(h)
        return self.out(h)


def train_step(model: nn.Module, optimizer: optim.Optimizer,
               x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Run one optimization step and return the loss."""
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


def loss_and_grads(model: nn.Module, x: torch.Tensor,
                   y: torch.Tensor) -> tuple[float, list[np.ndarray]]:
    """Return the loss and the gradients of the parameters and of the input."""
    x = x.detach().requires_grad_(True)
    model.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    return loss.item(), [p.grad.numpy().copy() for p in model.parameters()] + [x.grad.numpy()]


def main() -> None:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((32, 16)).astype(np.float32))
    y = torch.from_numpy(rng.standard_normal((32, 1)).astype(np.float32))
    model = DeepNet()

    plain_loss, plain_grads = loss_and_grads(model, x, y)
    model.use_checkpointing = True
    checkpointed_loss, checkpointed_grads = loss_and_grads(model, x, y)
    max_diff = max(float(np.abs(a - b).max()) for a, b in zip(plain_grads, checkpointed_grads))
    print(f"plain_loss={plain_loss:.6f}")
    print(f"checkpointed_loss={checkpointed_loss:.6f}")
    print(f"losses_match={plain_loss == checkpointed_loss}")
    print(f"num_grads_compared={len(plain_grads)}")
    print(f"max_grad_diff={max_diff:.3e}")
    print(f"grads_match={max_diff < 1e-6}")

    optimizer = optim.SGD(model.parameters(), lr=0.05)
    losses = [train_step(model, optimizer, x, y).item() for _ in range(50)]
    print(f"initial_loss={losses[0]:.4f}")
    print(f"final_loss={losses[-1]:.4f}")


if __name__ == "__main__":
    main()

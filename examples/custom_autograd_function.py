"""Custom autograd Functions: x * sigmoid(x) and a straight-through clamp.

Swish saves its input and writes its own derivative; gradcheck compares it
with finite differences in float64. StraightThroughClamp clamps in the
forward pass but passes the gradient through unchanged, which an ordinary
clamp (gradient 0 outside the range) would not. A small model trains with both.

Run: python examples/custom_autograd_function.py
"""
from typing import Callable

import numpy as np

import tracegrad as torch
from tracegrad import nn, optim


class Swish(torch.autograd.Function):
    """x * sigmoid(x) with a hand-written backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        return x * torch.sigmoid(x)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        (x,) = ctx.saved_tensors
        s = torch.sigmoid(x)
        return grad_output * (s + x * s * (1 - s))


class StraightThroughClamp(torch.autograd.Function):
    """Clamp to [-1, 1] forward; identity gradient backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        return x.clamp(-1.0, 1.0)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor) -> torch.Tensor:
        return grad_output if ctx.needs_input_grad[0] else None


class SwishClampNet(nn.Module):
    """Linear -> Swish -> Linear -> straight-through clamp."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = nn.Linear(4, 16)
        self.out = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return StraightThroughClamp.apply(self.out(Swish.apply(self.hidden(x))))


def train_step(model: nn.Module, optimizer: optim.Optimizer,
               x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Run one optimization step and return the loss."""
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


def grad_of_sum(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> np.ndarray:
    """Return d(sum(fn(x)))/dx as a NumPy array."""
    x = x.detach().requires_grad_(True)
    fn(x).sum().backward()
    return x.grad.numpy()


def main() -> None:
    torch.manual_seed(0)
    x64 = torch.randn(8, dtype=torch.float64, requires_grad=True)
    print(f"swish_gradcheck={torch.autograd.gradcheck(Swish.apply, (x64,))}")
    swish_diff = np.abs(grad_of_sum(Swish.apply, x64)
                        - grad_of_sum(lambda t: t * torch.sigmoid(t), x64)).max()
    print(f"swish_grad_max_diff_vs_autograd={swish_diff:.3e}")

    wide = torch.linspace(-3.0, 3.0, 7)
    print(f"ste_grad={','.join(f'{g:g}' for g in grad_of_sum(StraightThroughClamp.apply, wide))}")
    plain_clamp_grad = grad_of_sum(lambda t: t.clamp(-1.0, 1.0), wide)
    print(f"clamp_grad={','.join(f'{g:g}' for g in plain_clamp_grad)}")

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((64, 4)).astype(np.float32))
    y = torch.from_numpy(np.tanh(x.numpy().sum(axis=1, keepdims=True)))
    model = SwishClampNet()
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    losses = [train_step(model, optimizer, x, y).item() for _ in range(100)]
    print(f"initial_loss={losses[0]:.4f}")
    print(f"final_loss={losses[-1]:.4f}")


if __name__ == "__main__":
    main()

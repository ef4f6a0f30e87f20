"""Higher-order gradients with torch.autograd.grad(..., create_graph=True).

Part 1 differentiates y = x**3 + sin(x) twice and compares with the exact
second derivative 6x - sin(x). Part 2 trains a network with a gradient
penalty: the loss is built from the network's input gradient, so training
differentiates through a gradient and drives its norm toward 1.

Run: python examples/higher_order_gradients.py
"""
import numpy as np

import tracegrad as torch
from tracegrad import nn, optim


def second_derivative_error() -> float:
    """Return the largest error of the autograd second derivative of x**3 + sin(x)."""
    x = torch.linspace(-2.0, 2.0, 9, dtype=torch.float64, requires_grad=True)
    y = x ** 3 + torch.sin(x)
    (dy_dx,) = torch.autograd.grad(y.sum(), x, create_graph=True)
    (d2y_dx2,) = torch.autograd.grad(dy_dx.sum(), x)
    exact = 6 * x.detach() - torch.sin(x.detach())
    return (d2y_dx2 - exact).abs().max().item()


def input_grad_norms(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Return the norm of d model(x) / d x for each sample, differentiable in the parameters."""
    x = x.detach().requires_grad_(True)
    (grads,) = torch.autograd.grad(model(x).sum(), x, create_graph=True)
    return grads.norm(2, dim=1)


def train_step(model: nn.Module, optimizer: optim.Optimizer, x: torch.Tensor) -> torch.Tensor:
    """Take one step on the gradient penalty mean((|grad_x model(x)| - 1)**2) and return it."""
    optimizer.zero_grad()
    penalty = ((input_grad_norms(model, x) - 1) ** 2).mean()
    penalty.backward()
    optimizer.step()
    return penalty


def main() -> None:
    torch.manual_seed(0)
    print(f"max_second_derivative_error={second_derivative_error():.3e}")

    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((64, 2)).astype(np.float32))
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1))
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    penalties = [train_step(model, optimizer, x).item() for _ in range(200)]
    print(f"initial_penalty={penalties[0]:.4f}")
    print(f"final_penalty={penalties[-1]:.5f}")
    print(f"final_mean_grad_norm={input_grad_norms(model, x).mean().item():.4f}")


if __name__ == "__main__":
    main()

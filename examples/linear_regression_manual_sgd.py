"""Linear regression with hand-written gradient descent.

The weights are plain tensors with requires_grad=True; each step calls
backward() and then updates them in place inside torch.no_grad(), the way one
writes SGD without an optimizer. The script prints the learned w and b next
to the true ones.

Run: python examples/linear_regression_manual_sgd.py
"""
import numpy as np

import tracegrad as torch

TRUE_W = np.array([[2.0], [-3.4]], dtype=np.float32)
TRUE_B = 4.2


def make_data(num_samples: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Return inputs and noisy targets of y = x @ TRUE_W + TRUE_B."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((num_samples, 2)).astype(np.float32)
    noise = 0.01 * rng.standard_normal((num_samples, 1)).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(x @ TRUE_W + TRUE_B + noise)


def train_step(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor,
               lr: float) -> torch.Tensor:
    """Take one gradient-descent step on w and b in place and return the loss."""
    loss = ((x @ w + b - y) ** 2).mean()
    loss.backward()
    with torch.no_grad():
        w -= lr * w.grad
        b -= lr * b.grad
        w.grad.zero_()
        b.grad.zero_()
    return loss


def main() -> None:
    torch.manual_seed(0)
    x, y = make_data()
    w = torch.randn(2, 1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    losses = [train_step(w, b, x, y, lr=0.1).item() for _ in range(200)]

    learned_w = w.detach().numpy().ravel()
    learned_b = b.item()
    max_error = max(float(np.abs(learned_w - TRUE_W.ravel()).max()), abs(learned_b - TRUE_B))
    print(f"initial_loss={losses[0]:.4f}")
    print(f"final_loss={losses[-1]:.6f}")
    print(f"w0={learned_w[0]:.4f} w1={learned_w[1]:.4f} b={learned_b:.4f}")
    print(f"true_w0={TRUE_W[0, 0]:.4f} true_w1={TRUE_W[1, 0]:.4f} true_b={TRUE_B:.4f}")
    print(f"max_param_error={max_error:.4f}")
    print(f"w_is_leaf={w.is_leaf} w_grad_fn_is_none={w.grad_fn is None}")


if __name__ == "__main__":
    main()

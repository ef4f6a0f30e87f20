"""A custom layer whose weights are nn.Parameter attributes.

PerFeatureAffine learns y = x * scale + shift, one scale and shift per
feature. Assigning nn.Parameter objects in __init__ registers them, so they
show up in parameters(), named_parameters() and state_dict() and the
optimizer trains them.

Run: python examples/custom_layer_parameter.py
"""
import numpy as np

import tracegrad as torch
from tracegrad import nn, optim

TRUE_SCALE = np.array([2.0, -1.0, 0.5], dtype=np.float32)
TRUE_SHIFT = np.array([0.5, 1.0, -2.0], dtype=np.float32)


class PerFeatureAffine(nn.Module):
    """Multiply each feature by a learned scale and add a learned shift."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(num_features))
        self.shift = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.shift


def train_step(model: nn.Module, optimizer: optim.Optimizer,
               x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Run one optimization step and return the loss."""
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


def make_data(num_samples: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Return inputs and targets of the true per-feature affine map."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((num_samples, 3)).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(x * TRUE_SCALE + TRUE_SHIFT)


def main() -> None:
    torch.manual_seed(0)
    model = PerFeatureAffine(3)
    print(f"param_names={','.join(name for name, _ in model.named_parameters())}")
    print(f"state_dict_keys={','.join(model.state_dict().keys())}")
    print(f"param_is_leaf={all(p.is_leaf and p.requires_grad for p in model.parameters())}")

    x, y = make_data()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    losses = [train_step(model, optimizer, x, y).item() for _ in range(200)]
    scale_error = float(np.abs(model.scale.detach().numpy() - TRUE_SCALE).max())
    shift_error = float(np.abs(model.shift.detach().numpy() - TRUE_SHIFT).max())
    print(f"initial_loss={losses[0]:.4f}")
    print(f"final_loss={losses[-1]:.6f}")
    print(f"max_scale_error={scale_error:.5f}")
    print(f"max_shift_error={shift_error:.5f}")


if __name__ == "__main__":
    main()

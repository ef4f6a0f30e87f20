"""An optimizer that owns only some of the model's parameters.

Every parameter requires grad, so backward fills .grad everywhere, but the
optimizer was given only the head's parameters: the backbone keeps its
gradients and never moves (fine-tuning just the last layer).

Run: python examples/optimizer_param_subset.py
"""
import numpy as np

import tracegrad as torch
from tracegrad import nn, optim


def train_step(model: nn.Module, optimizer: optim.Optimizer, loss_fn: nn.Module,
               x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Run one optimization step and return the loss."""
    model.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


def make_data(num_samples: int = 96) -> tuple[torch.Tensor, torch.Tensor]:
    """Return inputs and class labels of three Gaussian blobs."""
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, size=num_samples)
    centers = np.array([[2.0, 0.0], [-1.0, 1.7], [-1.0, -1.7]], dtype=np.float32)
    x = centers[labels] + 0.5 * rng.standard_normal((num_samples, 2)).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(labels.astype(np.int64))


def main() -> None:
    torch.manual_seed(0)
    x, y = make_data()
    backbone = nn.Sequential(nn.Linear(2, 16), nn.ReLU())
    head = nn.Linear(16, 3)
    model = nn.Sequential(backbone, head)
    optimizer = optim.SGD(head.parameters(), lr=0.1, momentum=0.9)
    backbone_before = [p.detach().numpy().copy() for p in backbone.parameters()]
    head_before = [p.detach().numpy().copy() for p in head.parameters()]

    loss_fn = nn.CrossEntropyLoss()
    losses = [train_step(model, optimizer, loss_fn, x, y).item() for _ in range(100)]
    backbone_unchanged = all(np.array_equal(before, p.detach().numpy())
                             for before, p in zip(backbone_before, backbone.parameters()))
    head_changed = all(not np.array_equal(before, p.detach().numpy())
                       for before, p in zip(head_before, head.parameters()))
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    print(f"num_optimized_tensors={len(optimized)}")
    print(f"num_model_tensors={len(list(model.parameters()))}")
    print(f"initial_loss={losses[0]:.4f}")
    print(f"final_loss={losses[-1]:.4f}")
    print(f"backbone_unchanged={backbone_unchanged}")
    print(f"backbone_has_grad={all(p.grad is not None for p in backbone.parameters())}")
    print(f"head_changed={head_changed}")


if __name__ == "__main__":
    main()

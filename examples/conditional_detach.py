"""Detach a hidden activation only when a data-dependent condition holds.

The model cuts the gradient path to its encoder whenever the mean of the
hidden activation is positive. The encoder has no bias, so a batch and its
negation give hidden means of opposite sign: one batch takes each branch.
For each branch the script reports which layers received gradients and moved.

Run: python examples/conditional_detach.py
"""
import numpy as np

import tracegrad as torch
from tracegrad import nn, optim


class GatedModel(nn.Module):
    """Two linear layers; the encoder stops learning on batches with a positive hidden mean."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Linear(3, 8, bias=False)
        self.head = nn.Linear(8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        if h.mean() > 0:
            h = h.detach()
        return self.head(torch.relu(h))


def train_step(model: nn.Module, optimizer: optim.Optimizer,
               x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Run one optimization step and return the loss."""
    optimizer.zero_grad(set_to_none=True)
    loss = nn.functional.mse_loss(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


def make_data() -> tuple[torch.Tensor, torch.Tensor]:
    """Return a fixed batch of inputs (shifted away from zero) and targets."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((16, 3)).astype(np.float32) + 1.0
    y = rng.standard_normal((16, 1)).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y)


def main() -> None:
    torch.manual_seed(0)
    model = GatedModel()
    optimizer = optim.SGD(model.parameters(), lr=0.1)
    x, y = make_data()
    # Run the detached batch first: it leaves the encoder untouched, so the
    # negated batch then has exactly the opposite hidden mean and takes the other branch.
    with torch.no_grad():
        x_is_detached = model.encoder(x).mean() > 0
    batches = [x, -x] if x_is_detached else [-x, x]
    for inputs in batches:
        with torch.no_grad():
            hidden_mean = model.encoder(inputs).mean().item()
        branch = "detached" if hidden_mean > 0 else "attached"
        encoder_before = model.encoder.weight.detach().numpy().copy()
        head_before = model.head.weight.detach().numpy().copy()
        loss = train_step(model, optimizer, inputs, y)
        encoder_changed = not np.array_equal(encoder_before, model.encoder.weight.detach().numpy())
        head_changed = not np.array_equal(head_before, model.head.weight.detach().numpy())
        print(f"branch={branch} hidden_mean={hidden_mean:.4f} loss={loss.item():.4f} "
              f"{branch}_encoder_grad_is_none={model.encoder.weight.grad is None} "
              f"{branch}_encoder_changed={encoder_changed} {branch}_head_changed={head_changed}")


if __name__ == "__main__":
    main()

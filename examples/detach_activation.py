"""Detach an intermediate activation so a second loss cannot reach the encoder.

A shared encoder feeds a main head and a "probe" head. The probe reads the
encoder output through .detach(), so its loss trains the probe only. The
script checks that the encoder gradient equals the gradient of the main loss
alone, and that the probe still gets a gradient.

Run: python examples/detach_activation.py
"""
import numpy as np

import tracegrad as torch
from tracegrad import nn, optim


class EncoderWithProbe(nn.Module):
    """An encoder, a main regression head, and a probe head trained on detached features."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(5, 16), nn.Tanh())
        self.head = nn.Linear(16, 1)
        self.probe = nn.Linear(16, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(x)
        return self.head(features), self.probe(features.detach())


def losses(model: EncoderWithProbe, x: torch.Tensor, y: torch.Tensor,
           probe_target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Return the main loss and the probe loss."""
    prediction, probe_prediction = model(x)
    return (nn.functional.mse_loss(prediction, y),
            nn.functional.mse_loss(probe_prediction, probe_target))


def train_step(model: EncoderWithProbe, optimizer: optim.Optimizer, x: torch.Tensor,
               y: torch.Tensor, probe_target: torch.Tensor) -> torch.Tensor:
    """Run one optimization step on the sum of both losses and return it."""
    optimizer.zero_grad()
    main_loss, probe_loss = losses(model, x, y, probe_target)
    total = main_loss + probe_loss
    total.backward()
    optimizer.step()
    return total


def encoder_grads(model: EncoderWithProbe, loss: torch.Tensor) -> list[np.ndarray]:
    """Return the encoder parameter gradients of loss."""
    params = list(model.encoder.parameters())
    return [g.numpy() for g in torch.autograd.grad(loss, params, retain_graph=True)]


def make_data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return inputs, main targets and probe targets."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = np.sin(x[:, :1] + x[:, 1:2]).astype(np.float32)
    probe_target = (x[:, 2:3] > 0).astype(np.float32)
    return torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(probe_target)


def main() -> None:
    torch.manual_seed(0)
    model = EncoderWithProbe()
    x, y, probe_target = make_data()

    main_loss, probe_loss = losses(model, x, y, probe_target)
    from_main = encoder_grads(model, main_loss)
    from_total = encoder_grads(model, main_loss + probe_loss)
    max_diff = max(float(np.abs(a - b).max()) for a, b in zip(from_main, from_total))
    print(f"encoder_grad_max_diff={max_diff:.3e}")
    print(f"encoder_grad_matches_main_loss_only={max_diff == 0.0}")

    optimizer = optim.Adam(model.parameters(), lr=0.01)
    totals = [train_step(model, optimizer, x, y, probe_target).item() for _ in range(50)]
    print(f"initial_loss={totals[0]:.4f}")
    print(f"final_loss={totals[-1]:.4f}")
    print(f"probe_grad_nonzero={bool(np.abs(model.probe.weight.grad.numpy()).sum() > 0)}")


if __name__ == "__main__":
    main()

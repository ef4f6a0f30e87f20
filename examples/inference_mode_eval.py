"""Evaluate a trained model under torch.inference_mode().

A classifier with Dropout trains briefly, then evaluate() runs in eval mode
under the inference_mode decorator: no graph is recorded, outputs do not
require grad, and Dropout is off so two evaluations agree exactly. In
training mode two forward passes differ because Dropout is active.

Run: python examples/inference_mode_eval.py
"""
import numpy as np

import tracegrad as torch
from tracegrad import nn, optim


def train_step(model: nn.Module, optimizer: optim.Optimizer, loss_fn: nn.Module,
               x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Run one optimization step and return the loss."""
    optimizer.zero_grad()
    loss = loss_fn(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


@torch.inference_mode()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, float]:
    """Return the logits and the accuracy of model on (x, y)."""
    logits = model(x)
    accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    return logits, accuracy


def make_data(num_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Return points labelled by which side of a circle they fall on."""
    rng = np.random.default_rng(num_samples)
    x = rng.uniform(-1.0, 1.0, size=(num_samples, 2)).astype(np.float32)
    labels = ((x ** 2).sum(axis=1) < 0.5).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(labels)


def main() -> None:
    torch.manual_seed(0)
    x_train, y_train = make_data(512)
    x_test, y_test = make_data(256)
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Dropout(0.2), nn.Linear(64, 2))
    optimizer = optim.Adam(model.parameters(), lr=0.01)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for _ in range(150):
        train_step(model, optimizer, loss_fn, x_train, y_train)
    with torch.no_grad():
        train_mode_outputs_differ = not np.array_equal(model(x_test).numpy(), model(x_test).numpy())

    model.eval()
    logits, accuracy = evaluate(model, x_test, y_test)
    logits_again, _ = evaluate(model, x_test, y_test)
    with torch.inference_mode():
        inside_flag = torch.is_inference_mode_enabled()
    print(f"inference_mode_enabled_inside={inside_flag}")
    print(f"inference_mode_enabled_after={torch.is_inference_mode_enabled()}")
    print(f"eval_requires_grad={logits.requires_grad}")
    print(f"eval_grad_fn_is_none={logits.grad_fn is None}")
    print(f"eval_outputs_identical={np.array_equal(logits.numpy(), logits_again.numpy())}")
    print(f"train_mode_outputs_differ={train_mode_outputs_differ}")
    print(f"test_accuracy={accuracy:.4f}")


if __name__ == "__main__":
    main()

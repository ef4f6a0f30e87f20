"""Compile a whole training step and look inside: cache_info, explain, and the IR dump.

The step (forward, backward, Adam update, zero_grad) is traced once into a typed SSA graph and then
replayed; a StepLR scheduler changes the learning rate without a retrace, because hyperparameters
are graph inputs. Also try: `tracegrad dump --stage all examples/compile_explain.py`.

Run: python examples/compile_explain.py
"""
import numpy as np

import tracegrad as torch
from tracegrad import nn, optim


def make_data(n: int = 64):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 8)).astype(np.float32)
    y = (x[:, :3].sum(1) > 0).astype(np.int64) + (x[:, 3] > 1).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def train_step(model: nn.Module, optimizer: optim.Optimizer, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """One optimization step; returns the loss."""
    optimizer.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    optimizer.step()
    return loss


def main() -> None:
    torch.manual_seed(0)
    x, y = make_data()
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    optimizer = optim.Adam(model.parameters(), lr=0.05)
    scheduler = optim.lr_scheduler.StepLR(optimizer, step_size=10, gamma=0.5)
    step = torch.compile(train_step)
    for epoch in range(30):
        loss = step(model, optimizer, x, y)
        scheduler.step()
    info = step.cache_info()
    print(f"final_loss={loss.item():.4f}")
    print(f"traces={info.misses} replays={info.hits} fallbacks={info.fallbacks}")
    report = torch.explain(train_step, model, optimizer, x, y)
    print(report)
    graph = report.graphs[0]
    print(f"graph_nodes={len(graph.nodes)} adjoint_nodes={sum(n.adjoint for n in graph.nodes)} "
          f"writebacks={len(graph.writebacks)}")


if __name__ == "__main__":
    main()

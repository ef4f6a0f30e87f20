"""Train the digits MLP of mlp_digits.py data-parallel on several processes with DistributedDataParallel.

Each rank reads its share of every epoch's shuffled training set (DistributedSampler), and backward averages
the gradients across ranks (MPI allreduce), so all replicas take the same Adam steps. Each rank prints its
accuracy on its share of the test set; rank 0 prints the accuracy on the whole test set.

Run: mpiexec -n 2 python examples/ddp_digits.py [--epochs N] [--compile]
     (needs scikit-learn and mpi4py + MPICH: pip install -e ".[mpi,examples]"; plain python runs 1 rank)
"""
import argparse
import sys
from pathlib import Path

import tracegrad as torch
import tracegrad.distributed as dist
from tracegrad import nn, optim
from tracegrad.nn.parallel import DistributedDataParallel as DDP
from tracegrad.utils.data import DataLoader, DistributedSampler, TensorDataset

sys.path.insert(0, str(Path(__file__).parent))
from mlp_digits import BATCH_SIZE, accuracy, load_data, train_step  # noqa: E402  (the same data and step)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    parser.add_argument("--compile", action="store_true",
                        help="put the step under torch.compile (it runs eagerly, with a CompileWarning: the "
                             "allreduce is not part of compiled graphs yet)")
    args = parser.parse_args()
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    x_train, x_test, y_train, y_test = load_data()
    train_set = TensorDataset(x_train, y_train)
    sampler = DistributedSampler(train_set, shuffle=True, seed=0)
    loader = DataLoader(train_set, batch_size=BATCH_SIZE // world, sampler=sampler)  # same global batch size
    torch.manual_seed(rank)  # different on each rank: DDP starts every replica from rank 0's weights
    model = DDP(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)))
    optimizer = optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    step = torch.compile(train_step) if args.compile else train_step
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)
        for x_batch, y_batch in loader:
            step(model, optimizer, loss_fn, x_batch, y_batch)
    shard = slice(rank, None, world)  # this rank's share of the test set
    shard_accuracy = accuracy(model, x_test[shard], y_test[shard])
    print(f"rank={rank} samples_per_epoch={len(sampler)} shard_accuracy={shard_accuracy:.4f}", flush=True)
    counts = torch.tensor([shard_accuracy * len(y_test[shard]), len(y_test[shard])], dtype=torch.float64)
    dist.all_reduce(counts)
    checksum = torch.tensor([sum(p.double().sum().item() for p in model.parameters())] * 2, dtype=torch.float64)
    dist.all_reduce(checksum[:1], op=dist.ReduceOp.MAX)
    dist.all_reduce(checksum[1:], op=dist.ReduceOp.MIN)
    if rank == 0:
        print(f"world_size={world} test_accuracy={(counts[0] / counts[1]).item():.4f} "
              f"replicas_equal={bool(checksum[0] == checksum[1])}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()

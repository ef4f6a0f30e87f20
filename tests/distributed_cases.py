"""Scenarios run on 2 ranks by tests/test_distributed.py: ``mpiexec -n 2 python tests/distributed_cases.py CASE``.

Each case raises (and so aborts the job) when a check fails, and rank 0 prints ``CASE OK`` when all passed.
"""
from __future__ import annotations

import sys
import time
import warnings
from datetime import timedelta

import numpy as np

import tracegrad as torch
import tracegrad.distributed as dist
from tracegrad import nn, optim
from tracegrad.nn.parallel import DistributedDataParallel as DDP

TOL = dict(rtol=1e-5, atol=1e-6)


def rank_values(rank: int, dtype: str, shape: tuple) -> np.ndarray:
    """The values rank ``rank`` contributes (small integers, so sums and products are exact)."""
    return np.random.default_rng(rank).integers(1, 4, size=shape).astype(dtype)


def collectives() -> None:
    """Every collective and op against NumPy, several dtypes, contiguous and not."""
    rank, n = dist.get_rank(), dist.get_world_size()
    reduce = {dist.ReduceOp.SUM: np.sum, dist.ReduceOp.PRODUCT: np.prod, dist.ReduceOp.MIN: np.min,
              dist.ReduceOp.MAX: np.max, dist.ReduceOp.AVG: np.mean}
    for dtype in ("float32", "float64", "int32", "int64", "uint8", "int8"):
        every = np.stack([rank_values(r, dtype, (3, 4)) for r in range(n)])
        for op, fn in reduce.items():
            if op is dist.ReduceOp.AVG and dtype[0] != "f":
                continue
            t = torch.from_numpy(rank_values(rank, dtype, (3, 4)))
            address = t.data_ptr()
            dist.all_reduce(t, op=op)
            np.testing.assert_allclose(t.numpy(), fn(every, axis=0).astype(dtype), err_msg=f"{op} {dtype}")
            assert t.data_ptr() == address
            view = torch.from_numpy(rank_values(rank, dtype, (4, 3))).t()  # not contiguous: staged and copied back
            dist.all_reduce(view, op=op)
            np.testing.assert_allclose(view.numpy(), fn(np.stack([rank_values(r, dtype, (4, 3)).T for r in range(n)]),
                                                         axis=0).astype(dtype))
            outputs = torch.zeros(3, 4, dtype=t.dtype)
            dist.reduce_scatter(outputs, [torch.from_numpy(rank_values(rank + 10 * i, dtype, (3, 4)))
                                          for i in range(n)], op=op)
            expected = fn(np.stack([rank_values(r + 10 * rank, dtype, (3, 4)) for r in range(n)]), axis=0)
            np.testing.assert_allclose(outputs.numpy(), expected.astype(dtype), err_msg=f"reduce_scatter {op}")
        for src in range(n):
            t = torch.from_numpy(rank_values(rank, dtype, (5,)))
            dist.broadcast(t, src)
            np.testing.assert_array_equal(t.numpy(), rank_values(src, dtype, (5,)))
        gathered = [torch.zeros(3, 4, dtype=torch.from_numpy(every[0]).dtype) for _ in range(n)]
        dist.all_gather(gathered, torch.from_numpy(rank_values(rank, dtype, (3, 4))))
        for r in range(n):
            np.testing.assert_array_equal(gathered[r].numpy(), every[r])
    work = dist.all_reduce(torch.ones(2), async_op=True)
    assert work.wait()
    dist.barrier()
    for call, words in ((lambda: dist.all_gather([torch.zeros(2)], torch.zeros(2)), "has 1 tensors but the world"),
                        (lambda: dist.all_gather([torch.zeros(2), torch.zeros(3)], torch.zeros(2)), "tensor_list[1]"),
                        (lambda: dist.all_reduce(torch.ones(2, dtype=torch.int32), op=dist.ReduceOp.AVG),
                         "floating-point")):
        try:
            call()
        except (ValueError, TypeError) as e:
            assert words in str(e), e
        else:
            raise AssertionError(f"no error mentioning {words!r}")


def make_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 3))


def batch(step: int) -> tuple:
    g = np.random.default_rng(100 + step)
    return (torch.from_numpy(g.standard_normal((8, 6)).astype("float32")),
            torch.from_numpy(g.integers(0, 3, 8)))


def halves(step: int) -> tuple:
    x, y = batch(step)
    rank = dist.get_rank()
    return x[rank * 4:(rank + 1) * 4], y[rank * 4:(rank + 1) * 4]


def adam_step(model: nn.Module, opt: optim.Optimizer, x, y):
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss


def assert_same_parameters(ddp: DDP, reference: nn.Module, what: str) -> None:
    for (name, p), q in zip(ddp.module.named_parameters(), reference.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), **TOL, err_msg=f"{what}: {name}")


def ddp_adam() -> None:
    """DDP on half batches equals one process on the whole batch after 10 Adam steps, eager and compiled."""
    for compiled in (False, True):
        reference = make_model(0)
        ddp = DDP(make_model(dist.get_rank()), bucket_cap_mb=0.0005)  # rank 1's model is replaced by rank 0's
        assert len(ddp.reducer.buckets) > 1
        ref_opt = optim.Adam(reference.parameters(), lr=1e-2)
        opt = optim.Adam(ddp.parameters(), lr=1e-2)
        step = torch.compile(adam_step) if compiled else adam_step
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for i in range(10):
                adam_step(reference, ref_opt, *batch(i))
                step(ddp, opt, *halves(i))
        assert_same_parameters(ddp, reference, f"compiled={compiled}")
        if compiled:
            messages = [str(w.message) for w in caught]
            assert any("collective" in m for m in messages), messages
            if dist.get_rank() == 0:
                print("compiled step:", [m for m in messages if "collective" in m][0])
    assert list(ddp.state_dict())[0] == "module.0.weight"


def no_sync() -> None:
    """Two micro-batches accumulated under no_sync, then a synchronized one, equal one process's accumulation."""
    reference = make_model(0)
    ddp = DDP(make_model(dist.get_rank()))
    for i in range(3):
        nn.functional.cross_entropy(reference(batch(i)[0]), batch(i)[1]).backward()
    for i in range(2):
        with ddp.no_sync():
            nn.functional.cross_entropy(ddp(halves(i)[0]), halves(i)[1]).backward()
        local = ddp.module[0].weight.grad.numpy().copy()
    nn.functional.cross_entropy(ddp(halves(2)[0]), halves(2)[1]).backward()
    assert not np.allclose(local, ddp.module[0].weight.grad.numpy())
    for p, q in zip(ddp.module.parameters(), reference.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), **TOL)


class TwoHeads(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body, self.used, self.unused = nn.Linear(4, 4), nn.Linear(4, 2), nn.Linear(4, 2)

    def forward(self, x, head: str):
        return getattr(self, head)(self.body(x))


def unused_parameters() -> None:
    """find_unused_parameters: a head used on one rank gets the average on both; a head no rank used keeps
    no gradient; without the flag the next forward says which parameters got no gradient."""
    rank = dist.get_rank()
    torch.manual_seed(0)
    ddp = DDP(TwoHeads(), find_unused_parameters=True)
    x = torch.ones(2, 4) * (rank + 1)
    ddp(x, "used").sum().backward()
    assert ddp.module.unused.weight.grad is None
    ddp.zero_grad()
    ddp(x, "used" if rank == 0 else "unused").sum().backward()
    own = ddp.module.used if rank == 0 else ddp.module.unused
    assert own.weight.grad is not None and ddp.module.unused.weight.grad is not None
    strict = DDP(TwoHeads())
    strict(x, "used").sum().backward()
    try:
        strict(x, "used")
    except RuntimeError as e:
        assert "find_unused_parameters=True" in str(e) and "unused.weight" in str(e), e
    else:
        raise AssertionError("an unused parameter went unnoticed")


def mismatch() -> None:
    """Ranks wrapping different shapes: both shapes named, on both ranks."""
    rank = dist.get_rank()
    try:
        DDP(nn.Linear(4, 3 + 2 * rank))
    except ValueError as e:
        print(f"rank {rank}: {e}", flush=True)
        assert "[3, 4]" in str(e) and "[5, 4]" in str(e), e
    else:
        raise AssertionError("mismatched shapes went unnoticed")
    try:
        dist.all_reduce(torch.zeros(2 + rank))
    except ValueError as e:
        assert "[2]" in str(e) and "[3]" in str(e), e
    else:
        raise AssertionError("mismatched shapes went unnoticed")


def fails_mid_step() -> None:
    """Rank 1 raises between forward and backward; rank 0 is left waiting in backward's allreduce."""
    ddp = DDP(make_model(0))
    loss = nn.functional.cross_entropy(ddp(halves(0)[0]), halves(0)[1])
    if dist.get_rank() == 1:
        raise RuntimeError("rank 1 failed on purpose in the middle of a step")
    loss.backward()


def stalls() -> None:
    """Rank 1 stays alive but never joins the allreduce: rank 0 times out (timeout=2 s) and ends the job."""
    if dist.get_rank() == 1:
        time.sleep(60)
    dist.all_reduce(torch.ones(3))


CASES = {f.__name__: f for f in (collectives, ddp_adam, no_sync, unused_parameters, mismatch, fails_mid_step, stalls)}

if __name__ == "__main__":
    name = sys.argv[1]
    dist.init_process_group("mpi", timeout=timedelta(seconds=float(sys.argv[2]) if len(sys.argv) > 2 else 60))
    CASES[name]()
    dist.barrier()
    if dist.get_rank() == 0:
        print(f"{name} OK", flush=True)
    dist.destroy_process_group()

"""tracegrad.distributed and DistributedDataParallel on 2 MPI ranks (tests/distributed_cases.py under mpiexec),
plus the in-process parts: errors without a process group or without mpi4py, and DistributedSampler."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tracegrad
import tracegrad.distributed as dist
from tracegrad.utils.data import DataLoader, DistributedSampler, TensorDataset

CASES = Path(__file__).with_name("distributed_cases.py")
MPIEXEC = shutil.which("mpiexec", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
needs_mpi = pytest.mark.skipif(not dist.is_available() or MPIEXEC is None,
                               reason='needs mpi4py and mpiexec: pip install -e ".[mpi]"')


def launch(case: str, timeout_s: float = 60, limit: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    """Run a case on 2 ranks with the process group's timeout; returns the finished job and its wall time."""
    start = time.monotonic()
    job = subprocess.run([MPIEXEC, "-n", "2", sys.executable, str(CASES), case, str(timeout_s)],
                         capture_output=True, text=True, timeout=limit, cwd=CASES.parent.parent,
                         env={**os.environ, "PYTHONPATH": str(CASES.parent.parent)})
    return job, time.monotonic() - start


@needs_mpi
@pytest.mark.parametrize("case, says", [
    ("collectives", ""), ("no_sync", ""), ("unused_parameters", ""),
    # a compiled step holding DDP's allreduce runs eagerly, with a CompileWarning (the values are checked)
    ("ddp_adam", "runs eagerly: a collective (DistributedDataParallel's gradient allreduce)"),
    ("mismatch", "shape [3, 4] on rank 0 but shape [5, 4] on rank 1")])
def test_two_ranks(case: str, says: str) -> None:
    job, _ = launch(case)
    assert job.returncode == 0, job.stdout + job.stderr
    assert f"{case} OK" in job.stdout and says in job.stdout, job.stdout


@needs_mpi
def test_rank_raising_mid_step_ends_the_job() -> None:
    job, elapsed = launch("fails_mid_step", timeout_s=30)
    assert job.returncode != 0
    assert "rank 1 failed on purpose" in job.stderr and "aborting all ranks (MPI_Abort)" in job.stderr, job.stderr
    assert elapsed < 20, f"the job took {elapsed:.1f} s to end"


@needs_mpi
def test_rank_missing_a_collective_times_out() -> None:
    job, elapsed = launch("stalls", timeout_s=2)
    assert job.returncode != 0
    assert "all_reduce(SUM)" in job.stderr and "did not complete within the timeout of 2 s" in job.stderr, job.stderr
    assert elapsed < 20, f"the job took {elapsed:.1f} s to end (timeout 2 s)"


def test_errors_without_a_process_group() -> None:
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(ValueError, match="backend='mpi'"):
        dist.init_process_group("nccl")


def test_missing_mpi4py_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    with pytest.raises(ImportError, match=r"pip install mpi4py mpich"):
        dist.init_process_group("mpi")
    assert not dist.is_initialized()


@pytest.mark.parametrize("n, replicas, drop_last, expected", [
    # PyTorch's assignment, by hand: pad by repeating from the start (or cut the tail), then stride by replicas
    (10, 3, False, [[0, 3, 6, 9], [1, 4, 7, 0], [2, 5, 8, 1]]),
    (10, 3, True, [[0, 3, 6], [1, 4, 7], [2, 5, 8]]),
    (2, 5, False, [[0], [1], [0], [1], [0]]),
    (8, 2, True, [[0, 2, 4, 6], [1, 3, 5, 7]]),
    (11, 4, True, [[0, 4], [1, 5], [2, 6], [3, 7]]),
])
def test_distributed_sampler_assignment(n: int, replicas: int, drop_last: bool, expected: list) -> None:
    shares = [DistributedSampler(range(n), replicas, r, shuffle=False, drop_last=drop_last) for r in range(replicas)]
    assert [list(s) for s in shares] == expected
    assert [len(s) for s in shares] == [len(e) for e in expected]


def test_distributed_sampler_shuffles_per_epoch() -> None:
    shares = [DistributedSampler(range(9), 2, r, seed=3) for r in range(2)]
    first = [list(s) for s in shares]
    assert sorted(first[0] + first[1][:-1]) == list(range(9)) and first[1][-1] == first[0][0]  # one index padded
    assert [list(s) for s in shares] == first  # same epoch, same order
    for s in shares:
        s.set_epoch(1)
    assert [list(s) for s in shares] != first
    permutation = tracegrad.randperm(9, generator=tracegrad.Generator().manual_seed(4)).tolist()
    assert list(shares[0]) == permutation[0::2]


def test_distributed_sampler_in_a_data_loader() -> None:
    data = TensorDataset(tracegrad.arange(10.0))
    loader = DataLoader(data, batch_size=2, sampler=DistributedSampler(data, 3, 1, shuffle=False))
    assert [b[0].tolist() for b in loader] == [[1.0, 4.0], [7.0, 0.0]] and len(loader) == 2
    with pytest.raises(ValueError, match="mutually exclusive"):
        DataLoader(data, sampler=DistributedSampler(data, 3, 1), shuffle=True)
    with pytest.raises(ValueError, match="Invalid rank 3"):
        DistributedSampler(data, 3, 3)


@needs_mpi
def test_ddp_digits_example_on_two_ranks() -> None:
    pytest.importorskip("sklearn")
    job = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "examples/ddp_digits.py", "--epochs", "10"],
                         capture_output=True, text=True, timeout=300, cwd=CASES.parent.parent)
    assert job.returncode == 0, job.stderr
    assert "rank=0 " in job.stdout and "rank=1 " in job.stdout and "samples_per_epoch=674" in job.stdout
    assert "world_size=2" in job.stdout and "replicas_equal=True" in job.stdout, job.stdout
    accuracy = float(job.stdout.split("test_accuracy=")[1].split()[0])
    assert accuracy >= 0.95, job.stdout

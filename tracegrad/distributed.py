"""Collective communication between processes, mirroring ``torch.distributed`` for the MPI backend (mpi4py).

Launch with ``mpiexec -n N python script.py``; every rank calls ``init_process_group("mpi")``. Collectives
work in place on the tensor's own NumPy buffer (contiguous data is handed to MPI without a copy). Every
collective waits with a deadline (the process group's ``timeout``): a rank that never joins makes the
others raise a ``DistributedTimeoutError`` naming the collective, instead of hanging. An uncaught exception
on any rank aborts the whole job (``MPI_Abort``) after its traceback is printed.
"""
from __future__ import annotations

import enum
import importlib.util
import os
import sys
import time
from datetime import timedelta
from typing import Any, Callable, Sequence

import numpy as np

from .tensor import TRACE, Tensor

__all__ = ["ReduceOp", "Work", "DistributedTimeoutError", "is_available", "is_initialized", "init_process_group",
           "destroy_process_group", "get_rank", "get_world_size", "get_backend", "all_reduce", "broadcast",
           "all_gather", "reduce_scatter", "barrier"]

# PyTorch's default for its CPU backends; settable with init_process_group(timeout=...).
DEFAULT_TIMEOUT = timedelta(minutes=30)
SPIN_S = 2e-3  # seconds a collective's wait polls MPI without sleeping (MPI progresses inside Test())
ABORT_GRACE_S = 1.0  # seconds a rank that raised waits after printing, before MPI_Abort ends every rank

_INSTALL = 'pip install "tracegrad[mpi]" (or: pip install mpi4py mpich)'


class ReduceOp(enum.Enum):
    """How all_reduce and reduce_scatter combine the ranks' values."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MIN = "min"
    MAX = "max"


class DistributedTimeoutError(RuntimeError):
    """A collective did not complete within the process group's timeout (another rank failed or diverged)."""


class _Group:
    """The default process group: a private duplicate of MPI's world communicator and its timeout."""

    def __init__(self, mpi: Any, timeout: timedelta) -> None:
        self.mpi = mpi
        self.comm = mpi.COMM_WORLD.Dup()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        self.timeout = timeout
        self.previous_excepthook: Callable | None = None
        self.checks = os.environ.get("TRACEGRAD_DISTRIBUTED_CHECKS", "1") != "0"


_GROUP: _Group | None = None


def _mpi() -> Any:
    """mpi4py's MPI module, or an ImportError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as e:
        raise ImportError(f"tracegrad.distributed needs mpi4py and an MPI library: {_INSTALL}") from e
    return MPI


def _group() -> _Group:
    if _GROUP is None:
        raise RuntimeError("Default process group has not been initialized, please make sure to call "
                           "tracegrad.distributed.init_process_group('mpi') first (and launch the script with "
                           "mpiexec -n N python script.py)")
    return _GROUP


def is_available() -> bool:
    """Whether the MPI backend can be used (mpi4py is installed)."""
    return importlib.util.find_spec("mpi4py") is not None


def is_initialized() -> bool:
    """Whether init_process_group has been called (and destroy_process_group has not)."""
    return _GROUP is not None


def init_process_group(backend: str = "mpi", init_method: str | None = None, timeout: timedelta | float | None = None,
                       world_size: int = -1, rank: int = -1) -> None:
    """Join the default process group; rank and world size come from MPI (``mpiexec -n N``)."""
    global _GROUP
    if backend not in ("mpi", None):
        raise ValueError(f"backend {backend!r} is not available: tracegrad.distributed supports backend='mpi' "
                         f"(launch with mpiexec -n N python script.py)")
    if init_method not in (None, "env://"):
        raise ValueError(f"init_method {init_method!r} is not used by the MPI backend: MPI's launcher (mpiexec) "
                         f"connects the ranks; leave init_method unset")
    if _GROUP is not None:
        raise RuntimeError("trying to initialize the default process group twice!")
    if timeout is None:
        timeout = DEFAULT_TIMEOUT
    elif not isinstance(timeout, timedelta):
        timeout = timedelta(seconds=float(timeout))
    if timeout.total_seconds() <= 0:
        raise ValueError(f"timeout must be positive, got {timeout}")
    group = _Group(_mpi(), timeout)
    for name, given, actual in (("world_size", world_size, group.size), ("rank", rank, group.rank)):
        if given not in (-1, actual):
            group.comm.Free()
            raise ValueError(f"{name}={given} was given but MPI says {name} is {actual}: the MPI launcher decides "
                             f"ranks (mpiexec -n N); leave {name} unset")
    group.previous_excepthook = sys.excepthook
    sys.excepthook = _abort_on_uncaught
    _GROUP = group


def destroy_process_group(group: None = None) -> None:
    """Leave the default process group (MPI itself stays initialized until the process exits)."""
    global _GROUP
    _check_group_arg(group)
    g = _group()
    if sys.excepthook is _abort_on_uncaught:
        sys.excepthook = g.previous_excepthook
    g.comm.Free()
    _GROUP = None


def _abort_on_uncaught(exc_type, exc, tb) -> None:
    """sys.excepthook while a process group exists: print the traceback, then end every rank (MPI_Abort)."""
    g = _GROUP
    (g.previous_excepthook if g is not None else sys.__excepthook__)(exc_type, exc, tb)
    if g is None:
        return
    sys.stderr.write(f"tracegrad.distributed: rank {g.rank} of {g.size} raised an uncaught {exc_type.__name__}; "
                     f"aborting all ranks (MPI_Abort)\n")
    sys.stderr.flush()
    sys.stdout.flush()
    # mpiexec forwards a rank's output through its process manager, which MPI_Abort stops at once: without a
    # pause the traceback printed just now was cut short in CI (a second to forward it is the cost of a crash)
    time.sleep(ABORT_GRACE_S)
    g.mpi.COMM_WORLD.Abort(1)


def get_rank(group: None = None) -> int:
    """This process's rank in the default group (0 .. world size - 1)."""
    _check_group_arg(group)
    return _group().rank


def get_world_size(group: None = None) -> int:
    """How many processes the default group has."""
    _check_group_arg(group)
    return _group().size


def get_backend(group: None = None) -> str:
    """The default group's backend: 'mpi'."""
    _check_group_arg(group)
    _group()
    return "mpi"


def _check_group_arg(group) -> None:
    if group is not None:
        raise ValueError("only the default process group exists in tracegrad.distributed: pass group=None")


# ---- waiting with a deadline --------------------------------------------------------------------------------


class Work:
    """A started collective (``async_op=True``): ``wait()`` finishes it (raises on timeout)."""

    def __init__(self, requests: list, what: str, finish: Callable[[], None] | None = None) -> None:
        self._requests, self._what, self._finish, self._done = requests, what, finish, False

    def is_completed(self) -> bool:
        """Whether the communication has finished (finishing it if so)."""
        if not self._done and all(r.Test() for r in self._requests):
            self.wait()
        return self._done

    def wait(self, timeout: timedelta | None = None) -> bool:
        """Block until done, at most the process group's timeout (or the one given)."""
        if not self._done:
            _wait(self._requests, self._what, timeout)
            self._done = True
            if self._finish is not None:
                self._finish()
        return True


def _wait(requests: list, what: str, timeout: timedelta | None = None) -> None:
    """Poll MPI requests until all completed; raise DistributedTimeoutError after the timeout."""
    g = _group()
    limit = (timeout or g.timeout).total_seconds()
    start = time.monotonic()
    pause = 0.0
    pending = list(requests)
    while pending:
        pending = [r for r in pending if not r.Test()]
        if not pending:
            return
        waited = time.monotonic() - start
        if waited > limit:
            raise DistributedTimeoutError(
                f"{what} on rank {g.rank} of {g.size} did not complete within the timeout of {limit:g} s: another "
                f"rank failed, exited or is running a different collective. The process group can't be used "
                f"after this; set the timeout with init_process_group(timeout=timedelta(seconds=...)).")
        if waited > SPIN_S:
            # then back off to 1 ms: a sleep lasts ~80 us at least here (docs/SCALING.md), a collective
            # over shared memory a few, so sleeping from the start added 0.1-0.5 ms to every small allreduce
            time.sleep(pause)
            pause = min(1e-3, pause * 2 or 1e-5)


# ---- collectives ---------------------------------------------------------------------------------------------

_MPI_OPS = {ReduceOp.SUM: "SUM", ReduceOp.AVG: "SUM", ReduceOp.PRODUCT: "PROD", ReduceOp.MIN: "MIN",
            ReduceOp.MAX: "MAX"}


def _buffer(t: Tensor, what: str) -> np.ndarray:
    """The NumPy array a collective works on (the tensor's own when contiguous), after the checks."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{what} expects tracegrad tensors, got {type(t).__name__}")
    _leave_trace(what)
    data = t._data
    if data.dtype == np.bool_ or data.dtype == np.float16:
        raise TypeError(f"{what} does not support {data.dtype} tensors over MPI: convert to uint8 (bool) or "
                        f"float32 (float16) first")
    return data if data.flags.c_contiguous and data.flags.writeable else np.ascontiguousarray(data)


def _leave_trace(what: str) -> None:
    """Stop an active trace: a compiled step that communicates runs eagerly (with a CompileWarning)."""
    if TRACE.tracer is not None:
        TRACE.tracer.unsupported(f"a collective ({what}): communication between processes is not part of a "
                                 f"compiled graph yet")


def _gather(mine: np.ndarray, what: str) -> np.ndarray:
    """Every rank's copy of a small array (one row per rank, in rank order), within the timeout."""
    g = _group()
    everyone = np.empty((g.size, *mine.shape), dtype=mine.dtype)
    _wait([g.comm.Iallgather(mine, everyone)], what)
    return everyone


def _start_sum(buf: np.ndarray, what: str) -> Work:
    """Start summing a contiguous array across ranks in place (a nonblocking MPI_Iallreduce)."""
    _leave_trace(what)
    g = _group()
    return Work([g.comm.Iallreduce(g.mpi.IN_PLACE, buf, g.mpi.SUM)], what)


def _written(t: Tensor, buf: np.ndarray) -> None:
    """Store a collective's result in the tensor (a no-op copy-wise when buf is its own array)."""
    if buf is not t._data:
        t._data[...] = buf
    t._vc[0] += 1


def _check_same(name: str, what: str, t: Tensor, extra: int = 0) -> None:
    """Check that every rank runs the same collective on the same shape and dtype; raise naming both."""
    g = _group()
    if not g.checks or g.size == 1:
        return
    shape = tuple(t.shape)
    if len(shape) > 14:
        return
    mine = np.zeros(18, dtype=np.int64)
    mine[0] = _COLLECTIVES.index(name)
    mine[1] = np.dtype(t._data.dtype).num
    mine[2] = extra
    mine[3] = len(shape)
    mine[4:4 + len(shape)] = shape
    everyone = _gather(mine, f"{what} (checking shapes across ranks)")
    for r in range(g.size):
        if not np.array_equal(everyone[r], mine):
            raise ValueError(f"{what}: rank {g.rank} called {_describe(mine)} but rank {r} called "
                             f"{_describe(everyone[r])}; every rank must run the same collectives on tensors of "
                             f"the same shape and dtype")


_COLLECTIVES = ["all_reduce", "broadcast", "all_gather", "reduce_scatter"]


def _describe(row: np.ndarray) -> str:
    name, extra = _COLLECTIVES[int(row[0])], int(row[2])
    detail = f" from rank {extra}" if name == "broadcast" else f" ({list(ReduceOp)[extra].name})" if name in (
        "all_reduce", "reduce_scatter") else ""
    shape = [int(s) for s in row[4:4 + int(row[3])]]
    return f"{name}{detail} with a {np.dtype(_DTYPES.get(int(row[1]), 'V')).name} tensor of shape {shape}"


_DTYPES = {np.dtype(code).num: code for code in "bBhHiIlLqQfd"}


def all_reduce(tensor: Tensor, op: ReduceOp = ReduceOp.SUM, group: None = None, async_op: bool = False) -> Work | None:
    """Combine the tensor across ranks with ``op``; every rank gets the result in place."""
    _check_group_arg(group)
    g = _group()
    what = f"all_reduce({op.name})"
    buf = _buffer(tensor, what)
    if op is ReduceOp.AVG and buf.dtype.kind != "f":
        raise TypeError(f"all_reduce with ReduceOp.AVG needs a floating-point tensor, got {buf.dtype}: "
                        f"use ReduceOp.SUM and divide")
    _check_same("all_reduce", what, tensor, list(ReduceOp).index(op))

    def finish() -> None:
        if op is ReduceOp.AVG:
            np.divide(buf, g.size, out=buf)
        _written(tensor, buf)

    return _run([g.comm.Iallreduce(g.mpi.IN_PLACE, buf, getattr(g.mpi, _MPI_OPS[op]))], what, finish, async_op)


def broadcast(tensor: Tensor, src: int, group: None = None, async_op: bool = False) -> Work | None:
    """Copy rank ``src``'s tensor into the tensor of every other rank, in place."""
    _check_group_arg(group)
    g = _group()
    if not 0 <= src < g.size:
        raise ValueError(f"broadcast: src={src} is not a rank of this group of {g.size}")
    what = f"broadcast from rank {src}"
    buf = _buffer(tensor, what)
    _check_same("broadcast", what, tensor, src)
    return _run([g.comm.Ibcast(buf, root=src)], what, lambda: _written(tensor, buf), async_op)


def all_gather(tensor_list: list[Tensor], tensor: Tensor, group: None = None, async_op: bool = False) -> Work | None:
    """Fill ``tensor_list[r]`` with rank r's ``tensor``, on every rank."""
    _check_group_arg(group)
    g = _group()
    what = "all_gather"
    _check_list(what, "tensor_list", tensor_list, tensor, g.size)
    send = _buffer(tensor, what)
    _check_same("all_gather", what, tensor)
    out = np.empty((g.size, *send.shape), dtype=send.dtype)

    def finish() -> None:
        for t, part in zip(tensor_list, out):
            _written(t, part)

    return _run([g.comm.Iallgather(send, out)], what, finish, async_op)


def reduce_scatter(output: Tensor, input_list: list[Tensor], op: ReduceOp = ReduceOp.SUM, group: None = None,
                   async_op: bool = False) -> Work | None:
    """Combine ``input_list[r]`` across ranks with ``op``; rank r gets the result in ``output``."""
    _check_group_arg(group)
    g = _group()
    what = f"reduce_scatter({op.name})"
    _check_list(what, "input_list", input_list, output, g.size)
    out = _buffer(output, what)
    if op is ReduceOp.AVG and out.dtype.kind != "f":
        raise TypeError(f"reduce_scatter with ReduceOp.AVG needs a floating-point tensor, got {out.dtype}")
    _check_same("reduce_scatter", what, output, list(ReduceOp).index(op))
    send = np.stack([t._data for t in input_list])

    def finish() -> None:
        if op is ReduceOp.AVG:
            np.divide(out, g.size, out=out)
        _written(output, out)

    return _run([g.comm.Ireduce_scatter_block(send, out, getattr(g.mpi, _MPI_OPS[op]))], what, finish, async_op)


def barrier(group: None = None, async_op: bool = False) -> Work | None:
    """Wait until every rank has reached the barrier (at most the timeout)."""
    _check_group_arg(group)
    g = _group()
    return _run([g.comm.Ibarrier()], "barrier", None, async_op)


def _check_list(what: str, name: str, tensors: Sequence[Tensor], like: Tensor, size: int) -> None:
    if len(tensors) != size:
        raise ValueError(f"{what}: {name} has {len(tensors)} tensors but the world size is {size}: pass one "
                         f"tensor per rank")
    for i, t in enumerate(tensors):
        if not isinstance(t, Tensor) or tuple(t.shape) != tuple(like.shape) or t.dtype != like.dtype:
            got = f"{t.dtype} {list(t.shape)}" if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{what}: {name}[{i}] is {got} but the tensor is {like.dtype} {list(like.shape)}: "
                             f"every entry needs the tensor's shape and dtype")


def _run(requests: list, what: str, finish: Callable[[], None] | None, async_op: bool) -> Work | None:
    work = Work(requests, what, finish)
    if async_op:
        return work
    work.wait()
    return None

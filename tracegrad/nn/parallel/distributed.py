"""DistributedDataParallel: one model replica per rank, gradients averaged across ranks during backward."""
from __future__ import annotations

import contextlib
from typing import Any, Iterator

import numpy as np

from ... import distributed as dist
from ...autograd.engine import AccumulateGrad
from ...autograd.grad_mode import is_grad_enabled
from ...tensor import Tensor
from ..module import Module

_MIB = 1024 * 1024
_FIRST_BUCKET_BYTES = _MIB  # PyTorch's first bucket is small, so communication starts early in backward


class DistributedDataParallel(Module):
    """Wrap a module for data-parallel training: parameters and buffers start equal on every rank (broadcast
    from rank 0), and ``backward()`` leaves every rank with the gradients averaged over all ranks."""

    def __init__(self, module: Module, device_ids: list | None = None, output_device: Any = None, dim: int = 0,
                 broadcast_buffers: bool = True, process_group: None = None, bucket_cap_mb: float | None = None,
                 find_unused_parameters: bool = False, check_reduction: bool = False,
                 gradient_as_bucket_view: bool = False, static_graph: bool = False) -> None:
        super().__init__()
        dist.get_world_size(process_group)  # raises when the process group is missing
        if device_ids or output_device is not None:
            raise ValueError("DistributedDataParallel in tracegrad replicates CPU modules: leave device_ids and "
                             "output_device unset")
        self.module = module
        self.broadcast_buffers = broadcast_buffers
        self.find_unused_parameters = find_unused_parameters
        self.require_backward_grad_sync = True
        named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        _verify_shapes(named)
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t, 0)
        cap = int((25 if bucket_cap_mb is None else bucket_cap_mb) * _MIB)
        self.reducer = _Reducer(named, cap, find_unused_parameters)

    def forward(self, *inputs, **kwargs):
        """Run the wrapped module (after syncing buffers from rank 0) and get ready to average gradients."""
        if self.broadcast_buffers:
            for buffer in self.module.buffers():
                dist.broadcast(buffer, 0)
        sync = is_grad_enabled() and self.require_backward_grad_sync
        if sync:
            self.reducer.prepare()
        output = self.module(*inputs, **kwargs)
        if sync and self.find_unused_parameters:
            self.reducer.set_used(_leaves_reached(output))
        return output

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        """Inside, forward/backward passes accumulate local gradients without communicating; the first
        synchronized backward after it averages the accumulated gradients."""
        previous = self.require_backward_grad_sync
        self.require_backward_grad_sync = False
        try:
            yield
        finally:
            self.require_backward_grad_sync = previous


def _verify_shapes(named: list[tuple[str, Tensor]]) -> None:
    """Check that every rank wraps a module with the same parameters; raise naming both shapes if not."""
    g = dist._group()
    counts = dist._gather(np.array([len(named)], dtype=np.int64), "DistributedDataParallel (parameter counts)")
    for r, (count,) in enumerate(counts):
        if count != len(named):
            raise ValueError(f"DistributedDataParallel: rank {g.rank} has {len(named)} parameters that require "
                             f"grad but rank {r} has {count}; every rank must wrap the same model")
    rows = np.zeros((len(named), 9), dtype=np.int64)
    for row, (_, p) in zip(rows, named):
        shape = tuple(p.shape)[:8]
        row[0] = len(shape)
        row[1:1 + len(shape)] = shape
    everyone = dist._gather(rows, "DistributedDataParallel (parameter shapes)")
    for r in range(g.size):
        for (name, _), mine, theirs in zip(named, rows, everyone[r]):
            if not np.array_equal(mine, theirs):
                raise ValueError(f"DistributedDataParallel: parameter {name!r} has shape {_shape(mine)} on rank "
                                 f"{g.rank} but shape {_shape(theirs)} on rank {r}; every rank must wrap the same "
                                 f"model")


def _shape(row: np.ndarray) -> list[int]:
    return [int(s) for s in row[1:1 + int(row[0])]]


def _leaves_reached(output: Any) -> set[int]:
    """ids of the leaf tensors whose gradient the autograd graph behind ``output`` reaches."""
    stack = [t.grad_fn if t.grad_fn is not None else t._acc for t in _tensors(output) if t.requires_grad]
    seen, leaves = set(), set()
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, AccumulateGrad):
            leaves.add(id(node.variable))
        stack.extend(child for child, _ in node.next_functions)
    return leaves


def _tensors(value: Any) -> Iterator[Tensor]:
    """The tensors inside a (nested) output: a tensor, tuple, list or dict."""
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _tensors(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _tensors(v)


class _Bucket:
    """Gradients of consecutive parameters of one dtype, summed across ranks in one flat array."""

    def __init__(self, params: list[Tensor]) -> None:
        self.params = params
        sizes = [p.numel() for p in params]
        self.flat = np.zeros(sum(sizes), dtype=params[0]._data.dtype)
        bounds = np.cumsum([0, *sizes])
        self.views = [self.flat[a:b].reshape(p._data.shape) for a, b, p in zip(bounds[:-1], bounds[1:], params)]
        self.pending = len(params)
        self.work: dist.Work | None = None


class _Reducer:
    """Averages gradients across ranks: each parameter's post-accumulate hook copies its ``.grad`` into its
    bucket; a full bucket starts a nonblocking allreduce (buckets start in one order on every rank); when
    the last one started, all are waited for and the averages written back into ``.grad``."""

    def __init__(self, named: list[tuple[str, Tensor]], cap: int, find_unused: bool) -> None:
        self.names = {id(p): name for name, p in named}
        self.buckets = _make_buckets([p for _, p in reversed(named)], cap)  # gradients arrive in reverse order
        self.slot = {id(p): (b, j) for b in self.buckets for j, p in enumerate(b.params)}
        self.find_unused = find_unused
        self.world = dist.get_world_size()
        self.expecting = False
        self.ready: set[int] = set()
        self.unused: list[Tensor] = []
        self.next_bucket = 0
        self.handles = [p.register_post_accumulate_grad_hook(self.grad_ready) for _, p in named]

    def prepare(self) -> None:
        """Called by each synchronized forward: check the last backward finished, then reset."""
        if self.expecting and self.ready:
            missing = [self.names[id(p)] for b in self.buckets for p in b.params if id(p) not in self.ready]
            raise RuntimeError(
                "Expected to have finished reduction in the prior iteration before starting a new one. This "
                "error indicates that your module has parameters that were not used in producing loss. You can "
                "enable unused parameter detection by passing the keyword argument `find_unused_parameters=True` "
                "to `tracegrad.nn.parallel.DistributedDataParallel`, and by making sure all `forward` function "
                f"outputs participate in calculating loss. Parameters which did not receive grad for rank "
                f"{dist.get_rank()}: {', '.join(missing)}")
        self.expecting, self.next_bucket = True, 0
        self.ready = set()
        self.unused = []
        for b in self.buckets:
            b.pending, b.work = len(b.params), None

    def set_used(self, reached: set[int]) -> None:
        """Remember which parameters the forward's graph does not reach (find_unused_parameters)."""
        self.unused = [p for b in self.buckets for p in b.params if id(p) not in reached]

    def grad_ready(self, param: Tensor) -> None:
        """Post-accumulate hook of every parameter: queue its gradient for averaging."""
        if not self.expecting:
            return
        dist._leave_trace("DistributedDataParallel's gradient allreduce")
        if not self.ready:
            for p in self.unused:
                self.mark(p)
        self.mark(param)

    def mark(self, param: Tensor) -> None:
        """Copy a parameter's gradient (zeros when it has none) into its bucket; start full buckets in order."""
        if id(param) in self.ready:
            raise RuntimeError(
                f"Expected to mark a variable ready only once: parameter {self.names[id(param)]!r} received a "
                f"gradient twice in one synchronized iteration (a second backward without a DDP forward in "
                f"between); run it under no_sync() or call the DDP module's forward again")
        self.ready.add(id(param))
        bucket, j = self.slot[id(param)]
        grad = param.grad
        bucket.views[j][...] = 0 if grad is None else grad._data
        bucket.pending -= 1
        while self.next_bucket < len(self.buckets) and self.buckets[self.next_bucket].pending == 0:
            b = self.buckets[self.next_bucket]
            b.work = dist._start_sum(b.flat, f"DistributedDataParallel's allreduce of gradient bucket "
                                             f"{self.next_bucket} ({b.flat.nbytes} bytes)")
            self.next_bucket += 1
        if self.next_bucket == len(self.buckets):
            self.finish()

    def finish(self) -> None:
        """Wait for every bucket, then write the averaged gradients into ``.grad``."""
        for b in self.buckets:
            b.work.wait()
        used = None
        if self.find_unused:
            unused = {id(p) for p in self.unused}
            used = np.array([id(p) not in unused for b in self.buckets for p in b.params], dtype=np.int32)
            dist._start_sum(used, "DistributedDataParallel's allreduce of the used-parameter mask").wait()
        k = 0
        for b in self.buckets:
            np.divide(b.flat, self.world, out=b.flat)
            for p, view in zip(b.params, b.views):
                if used is None or used[k]:  # a parameter no rank used keeps its .grad (PyTorch's rule)
                    if p.grad is None:
                        p.grad = Tensor._make(view.copy())
                    else:
                        p.grad._data[...] = view
                        p.grad._vc[0] += 1
                k += 1
        self.expecting = False


def _make_buckets(params: list[Tensor], cap: int) -> list[_Bucket]:
    """Group parameters (in gradient-arrival order) into buckets of one dtype and at most ``cap`` bytes
    (the first bucket at most 1 MiB), a parameter larger than the cap alone in its bucket."""
    buckets: list[_Bucket] = []
    current: dict = {}
    for p in params:
        group = current.setdefault(p._data.dtype, [])
        limit = cap if buckets else min(cap, _FIRST_BUCKET_BYTES)
        if group and sum(q._data.nbytes for q in group) + p._data.nbytes > limit:
            buckets.append(_Bucket(group))
            group = current[p._data.dtype] = []
        group.append(p)
    buckets.extend(_Bucket(group) for group in current.values())
    return buckets

"""``tracegrad.compile``: trace a whole step once, then replay the graph; guards pick or rebuild variants."""
from __future__ import annotations

import collections
import contextlib
import copy
import functools
import inspect
import logging
import operator
import os
import time
import warnings
import weakref

import numpy as np

from .. import backends
from ..autograd.grad_mode import is_grad_enabled
from ..dtypes import get_default_dtype
from ..ir import GuardFailure, verify
from ..ir.passes import optimize
from ..tensor import Tensor
from .arguments import (DYNAMIC, argument_name, flatten, leaf_key, parameter_name, positional, shared_buffers,
                        whole_arguments)
from .capture import CaptureWatch, modules_and_optimizers, persistent_roots, tensor_names
from .replay import MISS, Replay
from .tracer import Trace, Tracer, plain_numbers
from .verify_mode import verified_run

_TRAINING = operator.attrgetter("training")  # map with it is quicker than a comprehension
_IS_TENSOR = functools.partial(operator.is_, Tensor)  # _IS_TENSOR(type(x)): x is a Tensor, not a subclass

# fallbacks: signatures that run eagerly; backend_fallbacks: compiled variants another backend runs (an op the
# backend asked for can't lower)
CacheInfo = collections.namedtuple("CacheInfo", "hits misses compiles fallbacks guard_failures entries backend_fallbacks")
# What a variant is traced for: argument structure, one key per leaf, which tensor arguments share memory,
# grad mode, the default dtype (of tensors the step makes), what the step reaches besides its arguments,
# the training flag of each module it reaches.
Signature = collections.namedtuple("Signature", "structure leaves shared grad_mode default_dtype reached training")

UNSTABLE_LIMIT = 3  # traced runs of one signature that changed what they read before it stays eager
VALUES_BEFORE_WARNING = 4  # distinct values of a Python number argument before a warning says it never compiles
# Compiled variants held per process, all compiled functions together: past it, the least recently used
# variant is dropped (and its kernel freed); a later call that needs it traces again and loads its kernel
# from the disk cache.
MAX_VARIANTS = int(os.environ.get("TRACEGRAD_MAX_VARIANTS", "64"))


LOG = logging.getLogger("tracegrad")
if os.environ.get("TRACEGRAD_LOG"):
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("[tracegrad %(levelname)s] %(message)s"))
    LOG.addHandler(_handler)
    LOG.setLevel(os.environ["TRACEGRAD_LOG"].upper())

# Callables told about every new variant and fallback: (function name, Variant | reason string).
# `tracegrad dump` listens here.
OBSERVERS: list = []


def _notify(name: str, event) -> None:
    for observer in OBSERVERS:
        observer(name, event)


class CompileWarning(UserWarning):
    """A step (or one variant of it) runs eagerly instead of compiled."""


def _describe(key) -> str:
    """A short description of a signature for the log."""
    tensors = [f"{np.dtype(k[2]).name}{list(k[1])}" for k in key.leaves if k[0] == "tensor"]
    return f"(tensors {', '.join(tensors) or 'none'}; grad mode {'on' if key.grad_mode else 'off'})"


def _difference(old, new) -> str:
    """What changed between two signatures, for the log."""
    if old.structure != new.structure:
        return "the argument structure changed"
    for i, (a, b) in enumerate(zip(old.leaves, new.leaves)):
        if a != b:
            return f"argument {i} was {a[1:]}, now {b[1:]}"
    if old.shared != new.shared:
        return "which tensor arguments share memory changed"
    if old.grad_mode != new.grad_mode:
        return f"grad mode was {'on' if old.grad_mode else 'off'}"
    if old.default_dtype != new.default_dtype:
        return f"the default dtype was {old.default_dtype}"
    if old.reached != new.reached:
        return "a captured tensor, module or optimizer was replaced"
    return "a module's training flag changed"


# weak reference to a variant -> (weak reference to its function, signature); least recently used first
_HELD: collections.OrderedDict = collections.OrderedDict()


def _hold(function: "CompiledFunction", key, variant: "Variant") -> None:
    """Count a new variant against MAX_VARIANTS, dropping the least recently used ones past it."""
    _HELD[weakref.ref(variant, _dropped)] = (weakref.ref(function), key)
    for _ in range(len(_HELD)):
        if len(_HELD) <= MAX_VARIANTS:
            return
        oldest, (function_ref, key) = next(iter(_HELD.items()))
        old, function = oldest(), function_ref()
        if old is not None and function is not None and function._fast is getattr(old.replay, "fast", None):
            _HELD.move_to_end(oldest)  # the variant its function replays right now: in use
            continue
        del _HELD[oldest]
        if old is not None and function is not None:
            function._drop(key, old)


def _dropped(variant_ref) -> None:
    _HELD.pop(variant_ref, None)


def _used(variant: "Variant") -> None:
    """Mark a variant as the most recently used."""
    with contextlib.suppress(KeyError):
        _HELD.move_to_end(weakref.ref(variant))


class Variant:
    """One traced graph with its guards, runnable on new arguments."""

    def __init__(self, trace: Trace, backend: str) -> None:
        self.trace = trace
        self.traced = copy.deepcopy(trace.graph)  # kept for dumps; the trace's graph gets optimized
        self.pass_report = optimize(trace.graph)
        verify(trace.graph)
        self.backend, self.fallback = backend, None
        while True:
            try:
                self.execute = backends.get(self.backend).compile(trace.graph)
                break
            except backends.Unsupported as reason:
                # the graph still runs compiled: by the backend's fallback (numba, else the reference interpreter)
                fallback = backends.get(self.backend).fallback
                self.fallback = (f"{self.fallback}; " if self.fallback else "") + \
                    f"{self.backend} can't compile {trace.graph.name}: {reason}"
                self.backend = fallback
        self.kernel_source = self.execute.source
        self.replay = Replay(trace, self.execute, self.execute.fresh_outputs)
        # run(leaves): replay on new arguments; GuardFailure (nothing modified) when an assumption fails
        self.run = self.replay.run

    def describe_guards(self, limit: int = 12) -> str:
        """What this variant assumes besides its signature, for messages."""
        trace = self.trace
        assumed = [read.assumption() for read in trace.reads]
        assumed += [f"bool({key!r}) is {expected}" for _, key, expected in trace.flag_guards]
        assumed += [f"{source or 'a value'} is {expected!r}" for _, expected, source in trace.graph.guards]
        more = f" and {len(assumed) - limit} more" if len(assumed) > limit else ""
        return "; ".join(assumed[:limit]) + more if assumed else "nothing besides its signature"


class CompiledFunction:
    """A function whose calls run a traced graph (see tracegrad.compile)."""

    def __init__(self, fn, backend: str, fullgraph: bool, recompile_limit: int = 8, verify: bool = False) -> None:
        known = backends.names() + ("eager",)
        if backend not in known:
            raise ValueError(f"unknown backend {backend!r}; expected one of {known}")
        unavailable = backend != "eager" and backends.get(backend).unavailable()
        if unavailable:
            raise RuntimeError(f"backend {backend!r} can't run here: {unavailable}. Use backend='numba' (the CPU) "
                               f"instead; for tests without a GPU, set NUMBA_ENABLE_CUDASIM=1 before tracegrad is "
                               f"imported to run the CUDA backend on Numba's simulator (slow)")
        functools.update_wrapper(self, fn)
        self.fn, self.backend, self.fullgraph, self.recompile_limit = fn, backend, fullgraph, recompile_limit
        # read once here, not per call: an environment lookup costs as much as the rest of a cache-hit check
        self.eager = backend == "eager" or os.environ.get("TRACEGRAD_DISABLE") == "1"
        self.verify = verify or os.environ.get("TRACEGRAD_VERIFY") == "1"
        self._captured = CaptureWatch(fn)
        self.cache_clear()

    def cache_clear(self) -> None:
        """Forget every traced variant and reset the counters."""
        self._variants: dict = {}
        self._modules: dict = {}  # what the step reaches -> its modules (their training flags are guarded)
        self._warmed: dict = {}  # signatures seen once (insertion ordered: the last is the previous one)
        self._eager: set = set()
        self._unstable = collections.Counter()  # signature -> traced runs not kept (they changed what they read)
        self._numbers: dict = {}  # (argument structure, leaf position) -> the Python numbers seen there
        # (argument structure, leaf position) -> True while a float argument there is traced as a graph input;
        # once a trace read its value, where and how (it is then part of the signature again)
        self._dynamic: dict = {}
        self._why_not_compiled: list = []  # warnings about steps that keep running eagerly, for explain()
        self._counts = collections.Counter()
        self._hits = 0  # an int of its own: counted on every replay, where a Counter update costs time
        self._fast = None  # the replay of the last variant hit, behind inline checks of its signature

    def cache_info(self) -> CacheInfo:
        """hits, misses (traces), compiles, fallbacks (to eager), guard_failures, entries, backend_fallbacks."""
        c = self._counts
        return CacheInfo(self._hits, c["misses"], c["compiles"], c["fallbacks"], c["guard_failures"],
                         sum(len(v) for v in self._variants.values()), c["backend_fallbacks"])

    def __call__(self, *args, **kwargs):
        if self.eager:
            return self.fn(*args, **kwargs)
        if self._fast is not None and not kwargs and not self.verify:
            try:
                result = self._fast(args)
            except GuardFailure:
                self._fast, result = None, MISS  # the lookup below finds or makes the variant that holds
            if result is not MISS:
                self._hits += 1
                return result
        if not kwargs and all(map(_IS_TENSOR, map(type, args))):  # the common case, without the walk
            leaves, structure, objects = args, len(args), ()
            leaf_keys = tuple(map(leaf_key, args))
        else:
            leaves = []
            structure = flatten((args, kwargs), leaves)
            leaf_keys = tuple(map(leaf_key, leaves))
            if self._dynamic:
                leaf_keys = self._generalized(structure, leaf_keys)
            objects = tuple(k for k in leaf_keys if k[0] == "object")
        # What the step reaches besides its arguments (closure cells, globals) is part of the signature:
        # rebinding a global model must not replay a graph that captured the old one.
        reached = (self._captured(), objects)
        modules = self._modules.get(reached)
        if modules is None:
            modules = self._modules[reached] = modules_and_optimizers(self.fn, list(leaves))[0]
        key = Signature(structure, leaf_keys, shared_buffers(leaves), is_grad_enabled(), get_default_dtype(),
                        reached, tuple(map(_TRAINING, modules)))
        if self._eager and key in self._eager:
            return self.fn(*args, **kwargs)
        variants = self._variants.get(key, ())
        failed = None
        for n, variant in enumerate(variants):
            try:
                result = (verified_run(self.fn, variant, leaves, args, kwargs, f"{self.__name__} (variant {n})")
                          if self.verify else variant.run(leaves))
            except GuardFailure as e:
                self._counts["guard_failures"] += 1
                failed = e
                continue
            self._hits += 1
            self._fast = getattr(variant.replay, "fast", None)
            _used(variant)
            return result
        variants = self._variants.setdefault(key, [])
        if key not in self._warmed:
            # The first call runs eagerly: optimizers and modules create their state lazily.
            previous = next(reversed(self._warmed), None) if self._warmed else None
            self._warmed[key] = True
            LOG.info("%s: new signature %s%s, first call runs eagerly", self.__name__, _describe(key),
                     "" if previous is None else f" ({_difference(previous, key)})")
            self._count_values(key)
            return self.fn(*args, **kwargs)
        if failed is not None:
            LOG.info("%s: cache miss, %s", self.__name__, failed)
        if len(variants) >= self.recompile_limit:
            return self._give_up(key, f"the {failed} kept failing: {len(variants)} variants reached the "
                                      f"recompile limit ({self.recompile_limit})", args, kwargs)
        return self._trace(key, list(leaves), args, kwargs)

    def _generalized(self, structure, leaf_keys: tuple) -> tuple:
        """The leaf keys with float arguments traced as graph inputs keyed by type only."""
        return tuple(DYNAMIC if k[:2] == ("value", "float") and self._dynamic.get((structure, n)) is True
                     else k for n, k in enumerate(leaf_keys))

    def _count_values(self, key: Signature) -> None:
        """Follow the Python numbers of the arguments. A float argument whose value changes is traced as a
        graph input from then on (the signature keeps its type only); warn once per argument whose number
        keeps changing anyway (an int, or a float whose value the step reads): every new value is a new
        signature, whose first call runs eagerly and whose second traces, so such a step never replays."""
        structure, leaf_keys = key.structure, key.leaves
        for position, leaf in enumerate(leaf_keys):
            if leaf[0] != "value" or leaf[1] not in ("int", "float") or leaf == DYNAMIC:
                continue
            seen = self._numbers.setdefault((structure, position), set())
            seen.add(leaf[2])
            if len(seen) == 2 and leaf[1] == "float" and (structure, position) not in self._dynamic \
                    and position in whole_arguments(structure):
                self._dynamic[(structure, position)] = True
                LOG.info("%s: %s changed value; from now on it is a graph input", self.__name__,
                         argument_name(self.fn, structure, position))
                # this call ran eagerly, and so does any step whose signature changed: the next call can trace
                self._warmed[key._replace(leaves=self._generalized(structure, leaf_keys))] = True
            if len(seen) == VALUES_BEFORE_WARNING:
                name = argument_name(self.fn, structure, position)
                read = self._dynamic.get((structure, position))
                reason = (f"{name} has had {len(seen)} different values"
                          f"{f' and the step reads its value ({read})' if read else ''}: each new value of a Python "
                          f"number is a new signature, which runs eagerly and traces before it can replay")
                LOG.info("%s: %s", self.__name__, reason)
                self._why_not_compiled.append(reason)
                warnings.warn(f"tracegrad.compile: {self.__name__}'s {reason}; pass it as a tensor "
                              f"(tracegrad.tensor(value)) to make it a graph input", CompileWarning, stacklevel=3)

    def _trace(self, key, leaves: list, args, kwargs):
        tracer = tracer_for(self.fn, leaves, self.fullgraph)
        start = time.perf_counter()
        with tracer:
            args, kwargs = self._traced_numbers(tracer, key, leaves, args, kwargs)
            try:
                result = self.fn(*args, **kwargs)
            except Exception as error:
                if tracer.numbers:
                    self._numbers_read(key, tracer.numbers, f"the traced run raised {type(error).__name__}")
                    error.add_note(f"tracegrad.compile traced {', '.join(tracer.numbers.values())} of "
                                   f"{self.__name__} as graph inputs in this call; from the next call on they are "
                                   f"plain floats again")
                raise
        self._counts["misses"] += 1
        LOG.info("%s: traced in %.1f ms", self.__name__, 1e3 * (time.perf_counter() - start))
        trace = tracer.finish(result) if tracer.failure is None else None
        if tracer.numbers:
            result = plain_numbers(result)
        if tracer.value_reads:  # this run's graph holds for these values only: not kept
            names, how, where = tracer.value_reads[0]
            self._numbers_read(key, {p: n for p, n in tracer.numbers.items() if n in names},
                               f"{how} at {where or 'an unknown line'}")
            return result
        if tracer.failure is not None:
            self._stay_eager(key, tracer.failure, f"{self.__name__} runs eagerly: {tracer.failure}")
            return result
        changed = tracer.recorder.changed()
        if changed:
            # The traced run changed Python values it read (a counter, optimizer state created on its first
            # step): a replay would start from other values. The next call traces again.
            self._unstable[key] += 1
            what = "; ".join(read.message() for read in changed[:3])
            if self._unstable[key] >= UNSTABLE_LIMIT:
                self._stay_eager(key, f"every traced run changed Python values it reads: {what}",
                                 f"{self.__name__} runs eagerly from now on: every traced run changed Python values "
                                 f"it reads ({what}); a replay runs no Python code, so move the code that changes "
                                 f"them out of the compiled step")
            else:
                LOG.info("%s: not kept, the traced run changed %s; the next call traces again", self.__name__, what)
            return result
        start = time.perf_counter()
        variant = Variant(trace, self.backend)
        if variant.fallback is not None:
            self._counts["backend_fallbacks"] += 1
            LOG.info("%s: %s; %s runs it", self.__name__, variant.fallback, variant.backend)
            warnings.warn(f"tracegrad.compile: {variant.fallback}; the {variant.backend} backend runs this variant",
                          CompileWarning, stacklevel=3)
        LOG.info("%s: compiled variant %d (%d nodes, %d guarded reads, passes %s) in %.1f ms", self.__name__,
                 len(self._variants[key]), len(variant.trace.graph.nodes), len(trace.reads), variant.pass_report,
                 1e3 * (time.perf_counter() - start))
        self._add_fast_path(variant, key, leaves)
        self._variants[key].append(variant)
        self._counts["compiles"] += 1
        _hold(self, key, variant)
        _notify(self.__name__, variant)
        return result

    def _traced_numbers(self, tracer: Tracer, key: Signature, leaves: list, args, kwargs) -> tuple:
        """args and kwargs with each float argument the signature keys by type alone as a traced number."""
        whole = whole_arguments(key.structure)
        dynamic = [p for p, k in enumerate(key.leaves) if k == DYNAMIC and p in whole]
        if not dynamic:
            return args, kwargs
        args, kwargs = list(args), dict(kwargs)
        for position in dynamic:
            kind, where = whole[position]
            number = tracer.number(leaves[position], position, parameter_name(self.fn, key.structure, position))
            if kind == "arg":
                args[where] = number
            else:
                kwargs[where] = number
        return tuple(args), kwargs

    def _numbers_read(self, key: Signature, numbers: dict, why: str) -> None:
        """A traced run read the value of float arguments it traced as graph inputs: from now on their
        values are part of the signature again (this run's graph is not kept)."""
        for position, name in numbers.items():
            self._dynamic[(key.structure, position)] = why
            LOG.info("%s: argument %r is keyed by value again: the step reads its value (%s)", self.__name__,
                     name, why)

    def _drop(self, key, variant: Variant) -> None:
        """Forget a variant (the process holds MAX_VARIANTS already); its signature traces again when called."""
        with contextlib.suppress(ValueError):
            self._variants[key].remove(variant)
        LOG.info("%s: dropped a variant %s, the least recently used of %d held (TRACEGRAD_MAX_VARIANTS)",
                 self.__name__, _describe(key), MAX_VARIANTS)

    def _stay_eager(self, key, reason: str, warning: str) -> None:
        """From now on, calls with this signature run eagerly (one CompileWarning says why)."""
        self._eager.add(key)
        self._counts["fallbacks"] += 1
        _notify(self.__name__, reason)
        LOG.info("%s: falls back to eager: %s", self.__name__, reason)
        warnings.warn(f"tracegrad.compile: {warning}", CompileWarning, stacklevel=4)

    def _add_fast_path(self, variant: Variant, key, leaves: list) -> None:
        """Give the variant a fast path when its signature is one a few inline checks can confirm:
        positional tensor arguments (and floats traced as graph inputs), closure cells and globals as they
        are now."""
        watch = self._captured
        structure, grad_mode, reached = key.structure, key.grad_mode, key.reached
        try:
            cells = [c.cell_contents for c in watch.cells]
        except ValueError:  # an empty cell: the signature lookup handles it
            return
        captured = cells + [watch.globals.get(n) for n in watch.names]
        if not positional(structure) or key.shared is not None or reached[1] or watch.seen is None or \
                not all(map(operator.is_, captured, watch.seen)) or \
                not all(isinstance(x, Tensor) or k == DYNAMIC for x, k in zip(leaves, key.leaves)):
            return
        variant.replay.add_fast_path(leaves, grad_mode, watch.cells, captured, watch.globals, watch.names,
                                     self._modules[reached])

    def _give_up(self, key, reason: str, args, kwargs):
        self._stay_eager(key, reason, f"{self.__name__} runs eagerly from now on: {reason}")
        return self.fn(*args, **kwargs)


DEFAULT_BACKEND = "numba"


def default_backend() -> str:
    """The backend of ``compile`` when none is given: $TRACEGRAD_BACKEND, else DEFAULT_BACKEND."""
    return os.environ.get("TRACEGRAD_BACKEND") or DEFAULT_BACKEND


def compile(fn=None, *, backend: str | None = None, fullgraph: bool = False, verify: bool = False, **options):
    """Compile a whole step (forward, backward, optimizer update); usable as @compile or @compile(...).

    ``verify=True`` (or TRACEGRAD_VERIFY=1) also runs every replay eagerly from the same state and raises
    CompileMismatch where the two differ."""
    options["verify"] = verify
    backend = backend or default_backend()
    if fn is None:
        return lambda f: CompiledFunction(f, backend, fullgraph, **options)
    return CompiledFunction(fn, backend, fullgraph, **options)


def tracer_for(fn, leaves: list, fullgraph: bool) -> Tracer:
    """A tracer for one call of fn on these argument leaves (names, closure cells and persistent objects known)."""
    return Tracer(getattr(fn, "__name__", "step"), leaves, fullgraph, tensor_names(fn, leaves),
                  functions=(fn, inspect.unwrap(fn)), roots=persistent_roots(fn, leaves))


def make_ir(fn):
    """``make_ir(fn)(*args)`` runs fn once under the tracer and returns the traced Graph."""
    def traced(*args, **kwargs):
        leaves: list = []
        flatten((args, kwargs), leaves)
        tracer = tracer_for(fn, leaves, fullgraph=True)
        with tracer:
            result = fn(*args, **kwargs)
        return tracer.finish(result).graph
    return traced

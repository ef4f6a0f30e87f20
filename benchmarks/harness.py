"""The benchmark machinery: workload registry types, agreement check, timing, tables.

A workload knows how to make its problem (initial weights and data, created
with NumPy from a fixed seed) and holds a dict of implementation name ->
factory. A factory takes the problem and returns a `Prepared`: a zero-argument
`step()` that runs one training step and returns the loss, plus `weights()`
that reads the current parameters back as NumPy arrays. Everything else here
(checking, timing, profiling, printing) works on that interface only.
"""

from __future__ import annotations

import cProfile
import importlib
import json
import os
import platform
import pstats
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

REFERENCE = "numpy"  # the column every other implementation is checked and compared against
TORCH_EAGER = "torch eager"  # the second column that ratios are given against


@dataclass(frozen=True)
class Prepared:
    """One implementation, ready to run: `step()` returns the loss, `weights()` the parameters."""

    step: Callable[[], Any]
    weights: Callable[[], list[np.ndarray]]


Factory = Callable[[Any], Prepared]


@dataclass(frozen=True)
class Bandwidth:
    """A memory-bound workload's yardstick: the bytes a step must move at least, and a copy to compare with."""

    bytes_per_step: int
    formula: str  # how bytes_per_step is counted, printed with the table
    copy_shape: tuple[int, ...]  # the float32 array whose np.copyto gives the bandwidth this machine reaches


@dataclass(frozen=True)
class Workload:
    """A benchmark problem and the implementations that solve it."""

    key: str
    title: str
    make_problem: Callable[[], Any]
    implementations: dict[str, Factory]
    check_atol: float = 1e-5  # absolute tolerance of --check on losses and weights (rtol is 1e-4)
    bandwidth: Bandwidth | None = None  # set for memory-bound workloads: the table then shows GB/s


class Unavailable(Exception):
    """Raised by a factory whose implementation cannot run on this machine."""


def import_optional(name: str) -> ModuleType:
    """Import `name`, raising Unavailable (not ImportError) when the package is not installed."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as error:
        missing = error.name or ""
        if name == missing or name.startswith(missing + "."):
            raise Unavailable(f"{name} is not installed") from error
        raise  # the package is there but broken: that must not look like "not installed"


def blas_threads() -> int:
    """The number of threads of the loaded BLAS (all CPUs when it cannot be asked)."""
    for pool in _blas_pools():
        return int(pool["num_threads"])
    return os.cpu_count() or 1


def _blas_pools() -> list[dict]:
    try:
        import threadpoolctl
    except ModuleNotFoundError:
        return []
    return [pool for pool in threadpoolctl.threadpool_info() if pool["user_api"] == "blas"]


def import_torch() -> ModuleType:
    """Import PyTorch with as many intra-op threads as NumPy's BLAS has, so both get the same CPUs."""
    torch = import_optional("torch")
    torch.set_num_threads(blas_threads())
    return torch


# ---------------------------------------------------------------- preparing


def prepare(workload: Workload, problem: Any) -> tuple[dict[str, Prepared], dict[str, str]]:
    """Build every implementation of `workload`; return the built ones and the reasons for the rest."""
    built, skipped = {}, {}
    for name, factory in workload.implementations.items():
        try:
            built[name] = factory(problem)
        except Unavailable as reason:
            skipped[name] = str(reason)
    return built, skipped


# ---------------------------------------------------------------- checking


@dataclass(frozen=True)
class Agreement:
    """How far one implementation is from the reference after a few steps from the same start."""

    implementation: str
    max_loss_diff: float
    max_weight_diff: float
    ok: bool


# tracegrad.compile runs call 1 eagerly and traces call 2: steps 3 and 4 replay it, the second on the first's state
CHECK_STEPS = 4


def check_agreement(workload: Workload, steps: int = CHECK_STEPS, rtol: float = 1e-4) -> list[Agreement]:
    """Run `steps` steps of each implementation from identical weights and data; compare to numpy."""
    atol = workload.check_atol
    built, _ = prepare(workload, workload.make_problem())
    if REFERENCE not in built:
        raise RuntimeError(f"workload {workload.key} has no '{REFERENCE}' implementation to check against; "
                           f"add one to its implementations dict")
    runs = {name: _run_steps(prepared, steps) for name, prepared in built.items()}
    ref_losses, ref_weights = runs[REFERENCE]
    results = []
    for name, (losses, weights) in runs.items():
        if name == REFERENCE:
            continue
        close = np.allclose(losses, ref_losses, rtol=rtol, atol=atol) and all(
            np.allclose(w, r, rtol=rtol, atol=atol) for w, r in zip(weights, ref_weights))
        same_shapes = [w.shape for w in weights] == [r.shape for r in ref_weights]
        results.append(Agreement(
            implementation=name,
            max_loss_diff=float(np.max(np.abs(np.subtract(losses, ref_losses)))),
            max_weight_diff=max(float(np.max(np.abs(w - r))) for w, r in zip(weights, ref_weights))
            if same_shapes else float("inf"),
            ok=bool(close and same_shapes)))
    return results


def _run_steps(prepared: Prepared, steps: int) -> tuple[np.ndarray, list[np.ndarray]]:
    losses = np.array([float(prepared.step().item()) for _ in range(steps)])
    return losses, [np.array(w, copy=True) for w in prepared.weights()]


# ---------------------------------------------------------------- timing


@dataclass(frozen=True)
class TimingPlan:
    """How long to measure: warm-up steps, rounds of blocks, the wall time of one block, process rounds,
    and how many cold+warm pairs of starts the startup part times."""

    warmup_steps: int
    rounds: int  # timed blocks per implementation in one process
    block_seconds: float
    process_rounds: int  # isolated mode: how often every implementation gets a fresh process
    startup_rounds: int


FULL = TimingPlan(warmup_steps=20, rounds=41, block_seconds=0.01, process_rounds=3, startup_rounds=5)
QUICK = TimingPlan(warmup_steps=5, rounds=5, block_seconds=0.002, process_rounds=1, startup_rounds=1)


@dataclass(frozen=True)
class Timing:
    """Seconds per step of one implementation: median and spread over the timed blocks."""

    median_s: float
    p10_s: float
    p90_s: float
    steps_timed: int
    samples_s: tuple[float, ...]  # seconds per step of each timed block, in the order they ran


def summarize(samples_s: list[float], steps_timed: int) -> Timing:
    """The median, 10th and 90th percentile of per-step times measured over blocks."""
    return Timing(median_s=float(np.median(samples_s)),
                  p10_s=float(np.percentile(samples_s, 10)),
                  p90_s=float(np.percentile(samples_s, 90)),
                  steps_timed=steps_timed,
                  samples_s=tuple(samples_s))


def rotated(names: list[str], round_index: int) -> list[str]:
    """`names` rotated left by `round_index`: round after round, each name runs in every position."""
    shift = round_index % len(names) if names else 0
    return names[shift:] + names[:shift]


def measure(steps: dict[str, Callable[[], Any]], plan: TimingPlan) -> dict[str, Timing]:
    """Time each step function, interleaved in rounds so machine noise hits all of them alike.

    Each round runs one block of consecutive steps per implementation, in an
    order rotated every round; a block lasts about `plan.block_seconds`, so
    the timer's own cost is negligible even for microsecond steps. The
    reported numbers are the median, 10th and 90th percentile of the
    per-step time over the blocks.
    """
    block_sizes = {name: _block_size(step, plan) for name, step in steps.items()}
    per_step: dict[str, list[float]] = {name: [] for name in steps}
    names = list(steps)
    for round_index in range(plan.rounds):
        for name in rotated(names, round_index):
            per_step[name].append(_time_block(steps[name], block_sizes[name]) / block_sizes[name])
    return {name: summarize(samples, block_sizes[name] * plan.rounds) for name, samples in per_step.items()}


def _block_size(step: Callable[[], Any], plan: TimingPlan) -> int:
    """Warm `step` up, then pick how many steps fill one block of `plan.block_seconds`."""
    seconds = _time_block(step, plan.warmup_steps)
    return max(1, round(plan.block_seconds * plan.warmup_steps / max(seconds, 1e-9)))


def _time_block(step: Callable[[], Any], count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        step()
    return time.perf_counter() - start


def copy_bandwidth(shape: tuple[int, ...], plan: TimingPlan) -> tuple[float, Timing]:
    """Bytes per second np.copyto moves on a float32 array of `shape` (read and write both counted), and its timing."""
    source = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    target = np.empty_like(source)
    timing = measure({"copy": lambda: np.copyto(target, source)}, plan)["copy"]
    return 2 * source.nbytes / timing.median_s, timing


# ---------------------------------------------------------------- child processes


def run_python_json(script: str, args: list[str], failure: str, env: dict[str, str] | None = None,
                    launcher: Sequence[str] = (), timeout_s: float | None = None) -> dict[str, Any]:
    """Run the Python file `script` with `args` in a new process and return the JSON it prints on stdout.

    `launcher` goes before the interpreter (``["mpiexec", "-n", "2"]`` starts
    one process per rank). With `timeout_s`, the child runs in a process group
    of its own, killed whole (an MPI launcher's ranks too) past the timeout or
    when this program is interrupted. When the child fails or times out, stop
    this program with `failure` (what was being done, and what to try)
    followed by the child's error output.
    """
    with subprocess.Popen([*launcher, sys.executable, script, *args], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, env=env, start_new_session=timeout_s is not None) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout_s)
        except BaseException as error:
            if timeout_s is None:
                child.kill()
            else:
                os.killpg(child.pid, signal.SIGKILL)
            _, stderr = child.communicate()
            if not isinstance(error, subprocess.TimeoutExpired):
                raise
            sys.exit(f"error: {failure} (no result within {timeout_s:g} s). Its output:\n{stderr}")
    if child.returncode != 0:
        sys.exit(f"error: {failure} (exit status {child.returncode}). Its output:\n{stderr}")
    return json.loads(stdout)


# ---------------------------------------------------------------- profiling


def print_child_report(measure: Callable[[], dict]) -> int:
    """What a measuring child process does: print ``measure()`` as JSON, or why it could not run."""
    try:
        report = measure()
    except Unavailable as reason:
        report = {"unavailable": str(reason)}
    json.dump(report, sys.stdout)
    return 0


def profile_steps(step: Callable[[], Any], steps: int = 500, top: int = 15) -> str:
    """Profile `steps` warm calls of `step`; return the `top` functions by own time, per step."""
    for _ in range(20):
        step()
    profiler = cProfile.Profile()
    profiler.runcall(_time_block, step, steps)
    # (file, line, function) -> (primitive calls, calls, tottime, cumtime, callers)
    stats = pstats.Stats(profiler).stats
    rows = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)[:top]
    total = sum(entry[2] for entry in stats.values())
    lines = [f"total profiled time per step: {total / steps * 1e6:.1f} us (profiler overhead included)",
             f"{'tottime/step':>13} {'cumtime/step':>13} {'calls/step':>11}  function"]
    for (filename, line, function), (_, calls, tottime, cumtime, _) in rows:
        lines.append(f"{tottime / steps * 1e6:10.2f} us {cumtime / steps * 1e6:10.2f} us "
                     f"{calls / steps:11.1f}  {function} ({_short_path(filename)}:{line})")
    return "\n".join(lines)


def _short_path(filename: str) -> str:
    """`filename` relative to the repository or the Python install, to keep profile lines short."""
    for root in _SOURCE_ROOTS:
        if filename.startswith(root + os.sep):
            return os.path.relpath(filename, root)
    return filename


_SOURCE_ROOTS = (os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                 *(sysconfig.get_path(name) for name in ("purelib", "platlib", "stdlib")))


# ---------------------------------------------------------------- reporting


def environment() -> dict[str, Any]:
    """Versions, thread settings and CPU: what a reader needs to compare two tables."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "logical_cpus": os.cpu_count(),
        # other processes on the machine steal cores from multi-threaded BLAS and OpenMP: check this first
        "load_average_1m": round(os.getloadavg()[0], 2),
        "numpy": np.__version__,
        "blas_pools": [f"{pool['internal_api']} {pool['version']} ({pool['threading_layer']}, "
                       f"{pool['num_threads']} threads)" for pool in _blas_pools()],
        "blas_threads": blas_threads(),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
    }
    for name in ("tracegrad", "numba", "torch", "jax"):
        module = sys.modules.get(name)
        if module is not None:
            info[name] = f"{getattr(module, '__version__', '?')} ({os.path.dirname(module.__file__ or '?')})"
    torch = sys.modules.get("torch")
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def format_environment(info: dict[str, Any]) -> str:
    """The header printed above the tables."""
    width = max(len(key) for key in info)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in info.items())


def ratios(timings: dict[str, Timing]) -> dict[str, dict[str, float | None]]:
    """For each implementation, its median divided by the numpy and torch eager medians."""
    def ratio(name: str, base: str) -> float | None:
        return timings[name].median_s / timings[base].median_s if base in timings else None
    return {name: {"vs_numpy": ratio(name, REFERENCE), "vs_torch_eager": ratio(name, TORCH_EAGER)}
            for name in timings}


def format_table(timings: dict[str, Timing], bandwidth: Bandwidth | None = None,
                 copy_bytes_per_s: float | None = None) -> str:
    """One row per implementation: median, p10, p90 per step, the two ratios; GB/s when `bandwidth` is given."""
    header = f"{'implementation':<26}{'median':>11}{'p10':>11}{'p90':>11}{'/ numpy':>10}{'/ torch eager':>15}"
    if bandwidth is not None:
        header += f"{'GB/s':>8}{'/ copy':>8}"
    lines = [header, "-" * len(header)]
    for name, ratio in ratios(timings).items():
        timing = timings[name]
        line = (f"{name:<26}{_duration(timing.median_s):>11}{_duration(timing.p10_s):>11}"
                f"{_duration(timing.p90_s):>11}{_ratio(ratio['vs_numpy']):>10}{_ratio(ratio['vs_torch_eager']):>15}")
        if bandwidth is not None:
            achieved = bandwidth.bytes_per_step / timing.median_s
            of_copy = achieved / copy_bytes_per_s if copy_bytes_per_s else None
            line += f"{achieved / 1e9:>8.2f}{_ratio(of_copy):>8}"
        lines.append(line)
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"

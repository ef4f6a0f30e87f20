"""Cold and warm start of a compiled W1 or W2 step: how long a new process takes to run compiled code.

`run_startup` (run.py --startup) runs, for each workload and backend, this
file as a script in a new process twice, with TRACEGRAD_CACHE_DIR set to a
new empty folder: cold (nothing cached), then warm (the same folder, now
filled by the cold run). Each prints, as JSON, the time from just before
`import tracegrad` until the backend's compiled code has run a step: the
import, the build (model, optimizer, loss, tracegrad.compile) and the calls
until then (`columns.CALLS_UNTIL_COMPILED`: call 1 runs eagerly, call 2
traces and compiles, and by the end of call 4 the backend's code has run,
even where a kernel not yet on disk runs its first replay on the
interpreter), with the seconds of each call. Not in that time: starting
Python, importing NumPy and this harness, making the weights and data; the
parent also reports the child's whole wall time, which includes them.

Each pair of starts (a new empty folder, cold then warm) is repeated
`rounds` times (5 in a full run, 1 with --quick): the table shows the median
with the range, and where the cold start's Numba compile went (the kernel's
TRACEGRAD_LOG=info line of the median cold run: typing, lowering with LLVM,
other passes, the rest). With an even number of runs the median run is the
lower middle one.

Run alone: `python benchmarks/startup.py W1 numba` (uses TRACEGRAD_CACHE_DIR as set).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from typing import Any, TextIO

if __name__ == "__main__":  # run as a script: the repository root makes `benchmarks` and `tracegrad` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import columns, harness, mlp  # noqa: E402  (none of them imports tracegrad)

WORKLOADS = {workload.key: workload for workload in mlp.WORKLOADS}  # W1 and W2


def first_compiled_step(workload_key: str, backend: str) -> dict[str, Any]:
    """In this process, time `import tracegrad` through the first step run by the backend's compiled code."""
    if "tracegrad" in sys.modules:
        raise RuntimeError("tracegrad is already imported in this process: run this in a new process")
    problem = WORKLOADS[workload_key].make_problem()
    kernel_log = _KernelLog()
    logger = logging.getLogger("tracegrad")
    logger.addHandler(kernel_log)
    logger.setLevel(logging.INFO)
    start = time.perf_counter()
    import tracegrad
    imported = time.perf_counter()
    step = columns.compile_step(tracegrad, mlp.build_pytorch_style(tracegrad, problem).step, backend)
    built = time.perf_counter()
    call_seconds = columns.run_until_compiled(step)
    done = time.perf_counter()
    return {"first_step_s": done - start, "import_s": imported - start, "build_s": built - imported,
            "calls_s": done - built, "call_seconds": call_seconds, "kernel_log": kernel_log.lines}


class _KernelLog(logging.Handler):
    """Keeps tracegrad's log lines about a kernel's first call (how long Numba compiled or loaded it)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "first kernel call" in message:
            self.lines.append(message)


def run_startup(workload_keys: list[str], backends: list[str], out: TextIO, rounds: int = 1) -> list[dict[str, Any]]:
    """Measure cold and warm start of each workload with each backend in new processes, `rounds` pairs of
    starts each; print and return rows (each with the runs and the cold and warm run of median time)."""
    rows = []
    for key in workload_keys:
        for backend in backends:
            row: dict[str, Any] = {"workload": key, "backend": backend, "cold_runs": [], "warm_runs": []}
            for _ in range(rounds):
                with tempfile.TemporaryDirectory(prefix="tracegrad-startup-") as cache_dir:
                    env = {**os.environ, "TRACEGRAD_CACHE_DIR": cache_dir}
                    # Python's own bytecode cache stays on, as in a user's second run of a script: with
                    # PYTHONDONTWRITEBYTECODE set (some sandboxes set it) every start would compile
                    # tracegrad's sources again (~0.06 s).
                    env.pop("PYTHONDONTWRITEBYTECODE", None)
                    cold = _in_new_process(key, backend, env)
                    if "unavailable" in cold:
                        row["unavailable"] = cold["unavailable"]
                        break
                    row["cold_runs"].append(cold)
                    row["warm_runs"].append(_in_new_process(key, backend, env))
            for start in ("cold", "warm"):
                runs = sorted(row[f"{start}_runs"], key=lambda run: run["first_step_s"])
                if runs:
                    row[start] = runs[(len(runs) - 1) // 2]  # the median run (the lower one of an even count)
            rows.append(row)
    _print_rows(rows, out)
    return rows


def _in_new_process(workload_key: str, backend: str, env: dict[str, str]) -> dict[str, Any]:
    start = time.perf_counter()
    report = harness.run_python_json(os.path.abspath(__file__), [workload_key, backend],
                                     f"timing the start of {workload_key} with backend {backend!r} in a new "
                                     f"process failed; run `python benchmarks/startup.py {workload_key} {backend}` "
                                     f"to see it directly", env=env)
    return {**report, "process_s": time.perf_counter() - start}


def _print_rows(rows: list[dict[str, Any]], out: TextIO) -> None:
    print(f"\nstartup: a new process, from `import tracegrad` through call {columns.CALLS_UNTIL_COMPILED} of the "
          f"compiled step, the first that surely ran the backend's code (cold: empty TRACEGRAD_CACHE_DIR; warm: "
          f"the same folder after the cold run; Python's bytecode cache on); median of the runs, with their "
          f"range; process: the child's whole wall time in the median run", file=out)
    header = (f"{'workload':<10}{'backend':<16}{'runs':>5}{'cold':>9}{'(range)':>14}{'warm':>9}{'(range)':>14}"
              f"{'cold process':>14}{'warm process':>14}")
    print(header, "-" * len(header), sep="\n", file=out)
    for row in rows:
        if "cold" not in row:
            print(f"{row['workload']:<10}{row['backend']:<16}  not run, {row['unavailable']}", file=out)
            continue
        cells = []
        for start in ("cold", "warm"):  # the median run's time, then the range of all runs
            times = [run["first_step_s"] for run in row[f"{start}_runs"]]
            cells.append(f"{row[start]['first_step_s']:>8.2f}s{f'({min(times):.2f}-{max(times):.2f})':>14}")
        print(f"{row['workload']:<10}{row['backend']:<16}{len(row['cold_runs']):>5}{''.join(cells)}"
              f"{row['cold']['process_s']:>13.2f}s{row['warm']['process_s']:>13.2f}s", file=out)
    for row in rows:
        for line in row.get("cold", {}).get("kernel_log", []):
            print(f"  {row['workload']} {row['backend']}, median cold run: {line}", file=out)


def main(argv: list[str] | None = None) -> int:
    """Time one start in this process and print it as JSON (what run_startup runs in each new process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("backend", help="the tracegrad.compile backend, e.g. numba")
    args = parser.parse_args(argv)
    return harness.print_child_report(lambda: first_compiled_step(args.workload, args.backend))


if __name__ == "__main__":
    sys.exit(main())

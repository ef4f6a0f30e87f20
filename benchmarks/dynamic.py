"""Step time of a compiled step on a kernel generic in the batch size, against the literal-size kernel.

`run_dynamic` (run.py --dynamic) runs, for each workload, this file in new processes, alternating:
"literal" builds the compiled step at the workload's batch size alone (its kernel has the sizes as
numbers); "generic" first runs the step at two other batch sizes, so that the kernel at the
workload's own size is the generic one (sizes read from the arrays at run time), and checks that it
is. Both then time the same step at the same size: the ratio is what a generic kernel costs. "count"
runs the step at 40 batch sizes on an empty kernel cache and counts the kernels compiled.

Run alone: `python benchmarks/dynamic.py W1 generic` (or literal, count; prints JSON).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, TextIO

import numpy as np

if __name__ == "__main__":  # run as a script: make `benchmarks` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import actor_critic, columns, harness, mlp  # noqa: E402

WORKLOADS = {workload.key: workload for workload in (*mlp.WORKLOADS, *actor_critic.WORKLOADS)}  # W1, W2, W4
OTHER_BATCHES = (8, 16)  # the two sizes run first in "generic" mode: the workload's batch plus these
SIZES_COUNTED = 40  # "count" mode: batch sizes run one after the other, counting the kernels they need


def resized(problem: Any, batch: int) -> Any:
    """The problem with every data array (a field holding an ndarray, not a weight tuple) cut or repeated
    to ``batch`` rows."""
    changes = {field.name: np.resize(value, (batch, *value.shape[1:]))
               for field in dataclasses.fields(problem)
               if isinstance(value := getattr(problem, field.name), np.ndarray)}
    return dataclasses.replace(problem, **changes)


def _batch(problem: Any) -> int:
    return next(value.shape[0] for field in dataclasses.fields(problem)
                if isinstance(value := getattr(problem, field.name), np.ndarray))


def time_step(workload_key: str, mode: str, plan: harness.TimingPlan) -> dict[str, Any]:
    """In this process: the compiled step's median step time at the workload's batch size, on a literal
    kernel (``mode`` "literal") or on the generic one (``mode`` "generic")."""
    workload = WORKLOADS[workload_key]
    problem = workload.make_problem()
    build = workload.implementations["tracegrad compiled"]
    if mode == "generic":
        for extra in OTHER_BATCHES:
            build(resized(problem, _batch(problem) + extra))  # compiles and runs the step at that size
    prepared = build(problem)
    columns.run_until_compiled(prepared.step)
    sources = [v.kernel_source or "" for variants in prepared.step._variants.values() for v in variants]
    generic = any("a size that varies" in source for source in sources)
    if generic != (mode == "generic"):
        raise RuntimeError(f"{workload_key}: expected a {mode} kernel, the step ran a "
                           f"{'generic' if generic else 'literal'} one")
    timing = harness.measure({mode: prepared.step}, plan)[mode]
    return {"median_s": timing.median_s, "batch": _batch(problem)}


def count_kernels(workload_key: str) -> dict[str, Any]:
    """In this process, on an empty kernel cache: how many distinct kernels the compiled step needs over
    SIZES_COUNTED batch sizes (the workload's batch and the ones after it), each run until compiled."""
    with tempfile.TemporaryDirectory(prefix="tracegrad-dynamic-") as folder:
        os.environ["TRACEGRAD_CACHE_DIR"] = folder
        workload = WORKLOADS[workload_key]
        problem = workload.make_problem()
        build = workload.implementations["tracegrad compiled"]
        for extra in range(SIZES_COUNTED):
            columns.run_until_compiled(build(resized(problem, _batch(problem) + extra)).step)
        return {"sizes": SIZES_COUNTED, "kernels": len(list(Path(folder, "kernels").glob("tg_*.py")))}


def run_dynamic(workload_keys: list[str], out: TextIO, rounds: int = 1) -> list[dict[str, Any]]:
    """Time each workload's step on both kernels in new processes, ``rounds`` pairs each; print a table."""
    rows = []
    for key in workload_keys:
        runs: dict[str, list[float]] = {"literal": [], "generic": []}
        for index in range(rounds):
            for mode in harness.rotated(list(runs), index):
                report = harness.run_python_json(
                    os.path.abspath(__file__), [key, mode, *(["--quick"] if rounds == 1 else [])],
                    f"timing {key} on a {mode} kernel failed; run `python benchmarks/dynamic.py {key} {mode}` "
                    f"to see it directly")
                runs[mode].append(report["median_s"])
        literal, generic = (float(np.median(runs[mode])) for mode in ("literal", "generic"))
        counted = harness.run_python_json(os.path.abspath(__file__), [key, "count"],
                                          f"counting {key}'s kernels failed; run `python benchmarks/dynamic.py "
                                          f"{key} count` to see it directly")
        rows.append({"workload": key, "batch": report["batch"], "literal_s": literal, "generic_s": generic,
                     "ratio": generic / literal, "runs": runs, "kernels_for_sizes": counted["kernels"]})
    print("\ndynamic batch size: the compiled step at the workload's batch size on a kernel generic in the "
          "batch (made by running two other sizes first) against the literal-size kernel; median of "
          f"{rounds} process pair(s); kernels: how many distinct kernels {SIZES_COUNTED} batch sizes compiled", file=out)
    header = f"{'workload':<10}{'batch':>6}{'literal':>12}{'generic':>12}{'generic/literal':>17}{'kernels':>9}"
    print(header, "-" * len(header), sep="\n", file=out)
    for row in rows:
        print(f"{row['workload']:<10}{row['batch']:>6}{row['literal_s'] * 1e6:>10.1f}us{row['generic_s'] * 1e6:>10.1f}us"
              f"{row['ratio']:>16.3f}x{row['kernels_for_sizes']:>9}", file=out)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Time one workload on one kind of kernel in this process and print it as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload", choices=sorted(WORKLOADS))
    parser.add_argument("mode", choices=("literal", "generic", "count"))
    parser.add_argument("--quick", action="store_true", help="fewer timed blocks")
    args = parser.parse_args(argv)
    if args.mode == "count":
        return harness.print_child_report(lambda: count_kernels(args.workload))
    plan = harness.QUICK if args.quick else harness.FULL
    return harness.print_child_report(lambda: time_step(args.workload, args.mode, plan))


if __name__ == "__main__":
    sys.exit(main())

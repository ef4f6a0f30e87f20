"""Benchmark tracegrad against hand-written NumPy, PyTorch and JAX: `python benchmarks/run.py --help`.

Prints, for each workload, the median time of one training step for every
implementation available here, and its ratio to the NumPy and the PyTorch
eager medians (for W3 also the memory bandwidth reached, against a copy's).
By default each implementation is timed in fresh processes of its own,
because implementations sharing a process slow each other down (see
README.md); `--in-process` times them interleaved in this one process. A full
run also measures the cold and warm start of compiled steps (startup.py),
compiled training alternating with eager evaluation (alternate.py) and the
step time on a kernel generic in the batch size (dynamic.py).
"""

import argparse
import json
import os
import sys
from dataclasses import asdict, dataclass, replace
from typing import Any, TextIO

# Before anything imports PyTorch: its OpenMP threads spin while idle by
# default, stealing CPU from whatever runs between its steps (here: the other
# implementations) and distorting their times.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Run as a script, Python puts benchmarks/ on the path; the repository root is
# what makes `benchmarks` and a not-installed `tracegrad` importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import actor_critic, alternate, cnn, columns, dynamic, elementwise, harness, mlp, startup  # noqa: E402

# Every workload, in table order. A new workload module adds its list here.
WORKLOADS: list[harness.Workload] = [*mlp.WORKLOADS, *elementwise.WORKLOADS, *actor_critic.WORKLOADS, *cnn.WORKLOADS]

PARTS = ("steps", "startup", "alternate", "dynamic")
# Implementations that --quick leaves out, and why.
QUICK_SKIPS = {"torch.compile": "--quick skips it: it takes tens of seconds to compile each step; run without --quick"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="few, short rounds: a smoke test of the whole run, not numbers to quote")
    parser.add_argument("--json", metavar="PATH",
                        help="also write the environment and results to PATH as JSON "
                             "('-': the JSON alone to stdout, the tables to stderr)")
    parser.add_argument("--in-process", action="store_true",
                        help="time all implementations interleaved in this one process instead of each in "
                             "fresh processes of its own: quicker, but they slow each other down")
    parser.add_argument("--only", metavar="NAME", action="append",
                        help="run only this workload (e.g. W1); may be given more than once")
    parser.add_argument("--check", action="store_true",
                        help="first run 3 steps of each implementation from identical weights and data, "
                             "and stop with exit status 1 unless all agree with numpy to float32 tolerance")
    parser.add_argument("--profile", metavar="IMPLEMENTATION",
                        help="instead of timing, profile this implementation (e.g. 'tracegrad eager') "
                             "and print the 15 functions with the most own time per step")
    parts = parser.add_argument_group(
        "parts", "what to measure; none given: all four, except that --quick or --only measures --steps alone")
    parts.add_argument("--steps", action="store_true", help="the step-time tables (with W3's memory bandwidth)")
    parts.add_argument("--startup", action="store_true",
                       help="cold and warm start of W1 and W2 compiled: new processes, from `import tracegrad` to "
                            "the first compiled step, with an empty and then a filled TRACEGRAD_CACHE_DIR")
    parts.add_argument("--alternate", action="store_true",
                       help="compiled W2 training steps alternating with eager evaluation in one loop, against the "
                            "sum of the two alone")
    parts.add_argument("--dynamic", action="store_true",
                       help="W1, W2 and W4 compiled at their batch size on a kernel generic in the batch, against the "
                            "literal-size kernel")
    parser.add_argument("--backend", action="append", metavar="NAME",
                        help="tracegrad.compile backend of --startup and --alternate; may be given more than once "
                             f"(default: {', '.join(columns.TRACEGRAD_BACKENDS.values())})")
    # Internal: what one process of the isolated mode runs (with --only, --json -).
    parser.add_argument("--impl", metavar="IMPLEMENTATION", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def selected_workloads(only: list[str] | None) -> list[harness.Workload]:
    """The workloads named by --only (all when it is not given)."""
    if not only:
        return WORKLOADS
    by_key = {workload.key.lower(): workload for workload in WORKLOADS}
    unknown = [name for name in only if name.lower() not in by_key]
    if unknown:
        sys.exit(f"error: unknown workload {', '.join(unknown)}; choose from {', '.join(by_key).upper()}")
    return [by_key[name.lower()] for name in only]


@dataclass(frozen=True)
class WorkloadTimings:
    """The timings of one workload's implementations, and why the others did not run."""

    workload: harness.Workload
    timings: dict[str, harness.Timing]
    skipped: dict[str, str]  # implementation -> reason


def run_check(workloads: list[harness.Workload], out: TextIO) -> bool:
    """Print how far each implementation is from numpy after a few steps; return whether all agree."""
    print(f"check: {harness.CHECK_STEPS} steps from identical weights and data, compared with numpy (rtol 1e-4)",
          file=out)
    all_ok = True
    for workload in workloads:
        print(f"  {workload.key} (atol {workload.check_atol:g})", file=out)
        for result in harness.check_agreement(workload):
            all_ok &= result.ok
            print(f"    {result.implementation:<26} max |loss diff| {result.max_loss_diff:.2e}"
                  f"  max |weight diff| {result.max_weight_diff:.2e}  {'ok' if result.ok else 'MISMATCH'}",
                  file=out)
    print(file=out)
    return all_ok


def run_profile(workloads: list[harness.Workload], implementation: str) -> None:
    """Print a per-step profile of one implementation on each workload."""
    for workload in only_implementation(workloads, implementation):
        prepared = workload.implementations[implementation](workload.make_problem())
        print(f"\n{workload.key} {implementation}: {workload.title}")
        print(harness.profile_steps(prepared.step))


def only_implementation(workloads: list[harness.Workload], implementation: str) -> list[harness.Workload]:
    """The workloads with `implementation` as their only implementation."""
    for workload in workloads:
        if implementation not in workload.implementations:
            sys.exit(f"error: no implementation '{implementation}' in {workload.key}; "
                     f"choose from {', '.join(workload.implementations)}")
    return [replace(workload, implementations={implementation: workload.implementations[implementation]})
            for workload in workloads]


def time_in_process(workloads: list[harness.Workload],
                    plan: harness.TimingPlan) -> tuple[dict[str, Any], list[WorkloadTimings]]:
    """Time every available implementation of each workload interleaved in this process."""
    prepared = [(workload, *harness.prepare(workload, workload.make_problem())) for workload in workloads]
    environment = harness.environment()  # after preparing: it names what got imported
    results = [WorkloadTimings(workload, harness.measure({name: p.step for name, p in built.items()}, plan), skipped)
               for workload, built, skipped in prepared]
    return environment, results


def time_isolated(workloads: list[harness.Workload], plan: harness.TimingPlan,
                  quick: bool) -> tuple[dict[str, Any], list[WorkloadTimings]]:
    """Time each implementation of each workload in fresh processes, `plan.process_rounds` rounds.

    Every round runs one process per (workload, implementation), the
    implementations in an order rotated every round; the samples of all
    rounds are pooled into one timing per implementation.
    """
    rows: dict[tuple[str, str], list[dict]] = {}  # (workload, implementation) -> one result row per process
    skipped: dict[tuple[str, str], str] = {}
    environments = []
    for round_index in range(plan.process_rounds):
        for workload in workloads:
            names = [name for name in workload.implementations if (workload.key, name) not in skipped]
            for name in harness.rotated(names, round_index):
                report = run_in_fresh_process(workload.key, name, quick)
                environments.append(report["environment"])
                for row in report["results"]:
                    rows.setdefault((workload.key, name), []).append(row)
                for row in report["skipped"]:
                    skipped[workload.key, name] = row["reason"]
    environment = harness.environment()
    for child_environment in environments:  # adds what only the children imported (tracegrad, torch)
        for key, value in child_environment.items():
            environment.setdefault(key, value)
    results = [WorkloadTimings(workload,
                               {name: pooled(rows[workload.key, name])
                                for name in workload.implementations if (workload.key, name) in rows},
                               {name: reason for (key, name), reason in skipped.items() if key == workload.key})
               for workload in workloads]
    return environment, results


def pooled(rows: list[dict]) -> harness.Timing:
    """One timing from the samples of several processes' result rows."""
    return harness.summarize([sample for row in rows for sample in row["samples_s"]],
                             sum(row["steps_timed"] for row in rows))


def run_in_fresh_process(workload_key: str, implementation: str, quick: bool) -> dict[str, Any]:
    """Time one implementation of one workload with this script in a new Python process; return its JSON report.

    The child inherits this process's environment, so OMP_WAIT_POLICY and the
    thread-count variables are the same in every child.
    """
    return harness.run_python_json(
        os.path.abspath(__file__),
        ["--only", workload_key, "--impl", implementation, "--json", "-", *(["--quick"] if quick else [])],
        f"timing '{implementation}' on {workload_key} in its own process failed; rerun with --in-process to see "
        f"it directly")


def copy_bandwidths(results: list[WorkloadTimings], plan: harness.TimingPlan) -> dict[str, dict[str, Any]]:
    """For each memory-bound workload, the np.copyto bandwidth of its copy array, measured now in this process."""
    measured = {}
    for result in results:
        bandwidth = result.workload.bandwidth
        if bandwidth is not None:
            bytes_per_s, timing = harness.copy_bandwidth(bandwidth.copy_shape, plan)
            measured[result.workload.key] = {"copy_GBps": bytes_per_s / 1e9, "copy_median_s": timing.median_s,
                                             "copy_shape": list(bandwidth.copy_shape),
                                             "bytes_per_step": bandwidth.bytes_per_step,
                                             "formula": bandwidth.formula}
    return measured


def print_tables(mode: str, environment: dict[str, Any], results: list[WorkloadTimings],
                 bandwidths: dict[str, dict[str, Any]], out: TextIO) -> tuple[list[dict], list[dict]]:
    """Print the header and one table per workload; return the result rows and the skipped rows for JSON."""
    print(harness.format_environment({"mode": mode, **environment}), file=out)
    rows, skipped = [], []
    for result in results:
        bandwidth, copy = result.workload.bandwidth, bandwidths.get(result.workload.key)
        print(f"\n{result.workload.key}  {result.workload.title}", file=out)
        print(harness.format_table(result.timings, bandwidth, copy["copy_GBps"] * 1e9 if copy else None), file=out)
        if copy:
            print(f"  GB/s: the bytes a step must move at least / median step time, with {copy['formula']}\n"
                  f"  / copy: that over the {copy['copy_GBps']:.2f} GB/s np.copyto reached in this run on a "
                  f"{'x'.join(map(str, copy['copy_shape']))} float32 array (its read and write counted)", file=out)
        for name, reason in result.skipped.items():
            print(f"  ({name}: not run, {reason})", file=out)
            skipped.append({"workload": result.workload.key, "implementation": name, "reason": reason})
        for name, ratio in harness.ratios(result.timings).items():
            row = {"workload": result.workload.key, "implementation": name, **asdict(result.timings[name]), **ratio}
            if bandwidth is not None:
                row["bandwidth_GBps"] = bandwidth.bytes_per_step / result.timings[name].median_s / 1e9
                row["vs_copy_bandwidth"] = row["bandwidth_GBps"] / copy["copy_GBps"]
            rows.append(row)
    return rows, skipped


def measure(workloads: list[harness.Workload], plan: harness.TimingPlan,
            args: argparse.Namespace) -> tuple[str, dict[str, Any], list[WorkloadTimings]]:
    """Time the workloads in the mode the command line asks for; return the mode's description too."""
    if args.impl:
        return f"one implementation ({args.impl}) in this process", \
            *time_in_process(only_implementation(workloads, args.impl), plan)
    if args.in_process:
        return "in-process: all implementations interleaved in one process", *time_in_process(workloads, plan)
    return (f"isolated: each implementation in fresh processes of its own, "
            f"{plan.process_rounds} round(s) in rotating order"), *time_isolated(workloads, plan, args.quick)


def write_json(path: str, report: dict[str, Any]) -> None:
    """Write `report` to the file `path`, or to stdout when `path` is '-'."""
    if path == "-":
        json.dump(report, sys.stdout, indent=2)
        return
    with open(path, "w", encoding="utf-8") as out:
        json.dump(report, out, indent=2)


def selected_parts(args: argparse.Namespace) -> set[str]:
    """The parts asked for; none asked: all, or the step tables alone with --quick, --only or --impl."""
    asked = {part for part in PARTS if getattr(args, part)}
    if asked:
        return asked
    return {"steps"} if args.quick or args.only or args.impl else set(PARTS)


def without_quick_skips(workloads: list[harness.Workload]) -> tuple[list[harness.Workload], dict[str, dict]]:
    """The workloads less the implementations --quick leaves out, and those left out of each, with the reason."""
    kept, left_out = [], {}
    for workload in workloads:
        left_out[workload.key] = {name: reason for name, reason in QUICK_SKIPS.items()
                                  if name in workload.implementations}
        kept.append(replace(workload, implementations={name: factory for name, factory in
                                                       workload.implementations.items() if name not in QUICK_SKIPS}))
    return kept, left_out


def run_steps(workloads: list[harness.Workload], plan: harness.TimingPlan, args: argparse.Namespace,
              left_out: dict[str, dict], out: TextIO) -> dict[str, Any]:
    """Time the steps, measure the copy bandwidth, print the tables; return what goes into the JSON report."""
    mode, environment, results = measure(workloads, plan, args)
    for result in results:
        result.skipped.update(left_out.get(result.workload.key, {}))
    bandwidths = copy_bandwidths(results, plan)
    rows, skipped = print_tables(mode, environment, results, bandwidths, out)
    return {"mode": mode, "environment": environment, "plan": asdict(plan), "results": rows, "skipped": skipped,
            "bandwidth": bandwidths}


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = parse_args(argv)
    workloads = selected_workloads(args.only)
    if args.profile:
        run_profile(workloads, args.profile)
        return 0
    out = sys.stderr if args.json == "-" else sys.stdout  # `--json -` keeps stdout for the JSON alone
    left_out: dict[str, dict] = {}
    if args.quick and not args.impl:
        workloads, left_out = without_quick_skips(workloads)
    if args.check and not run_check(workloads, out):
        print("check failed: the implementations above marked MISMATCH do not compute the same step", file=out)
        return 1
    plan = harness.QUICK if args.quick else harness.FULL
    parts = selected_parts(args)
    if "steps" in parts:
        report = run_steps(workloads, plan, args, left_out, out)
    else:
        report = {"environment": harness.environment()}
        print(harness.format_environment(report["environment"]), file=out)
    backends = args.backend or list(columns.TRACEGRAD_BACKENDS.values())
    if "startup" in parts:
        keys = [workload.key for workload in workloads if workload.key in startup.WORKLOADS]
        report["startup"] = startup.run_startup(keys, backends, out, plan.startup_rounds)
    if "alternate" in parts:
        report["alternation"] = alternate.run_alternation(backends, args.quick, out)
    if "dynamic" in parts:
        keys = [workload.key for workload in workloads if workload.key in dynamic.WORKLOADS]
        report["dynamic"] = dynamic.run_dynamic(keys, out, plan.process_rounds)
    if args.json:
        write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark tracegrad against hand-written NumPy and PyTorch: `python benchmarks/run.py --help`.

Prints, for each workload, the median time of one training step for every
implementation available here, measured interleaved in the same run, and its
ratio to the NumPy and the PyTorch eager medians.
"""

import argparse
import json
import os
import sys
from dataclasses import asdict

# Before anything imports PyTorch: its OpenMP threads spin while idle by
# default, stealing CPU from whatever runs between its steps (here: the other
# implementations) and distorting their times.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# Run as a script, Python puts benchmarks/ on the path; the repository root is
# what makes `benchmarks` and a not-installed `tracegrad` importable.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import harness, mlp  # noqa: E402

# Every workload, in table order. A new workload module adds its list here.
WORKLOADS: list[harness.Workload] = [*mlp.WORKLOADS]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="few, short rounds: a smoke test of the whole run, not numbers to quote")
    parser.add_argument("--json", metavar="PATH",
                        help="also write the environment and results to PATH as JSON")
    parser.add_argument("--only", metavar="NAME", action="append",
                        help="run only this workload (e.g. W1); may be given more than once")
    parser.add_argument("--check", action="store_true",
                        help="first run 3 steps of each implementation from identical weights and data, "
                             "and stop with exit status 1 unless all agree with numpy to float32 tolerance")
    parser.add_argument("--profile", metavar="IMPLEMENTATION",
                        help="instead of timing, profile this implementation (e.g. 'tracegrad eager') "
                             "and print the 15 functions with the most own time per step")
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


def run_check(workloads: list[harness.Workload]) -> bool:
    """Print how far each implementation is from numpy after 3 steps; return whether all agree."""
    print("check: 3 steps from identical weights and data, compared with numpy (rtol 1e-4)")
    all_ok = True
    for workload in workloads:
        print(f"  {workload.key} (atol {workload.check_atol:g})")
        for result in harness.check_agreement(workload):
            all_ok &= result.ok
            print(f"    {result.implementation:<20} max |loss diff| {result.max_loss_diff:.2e}"
                  f"  max |weight diff| {result.max_weight_diff:.2e}  {'ok' if result.ok else 'MISMATCH'}")
    print()
    return all_ok


def run_profile(workloads: list[harness.Workload], implementation: str) -> None:
    """Print a per-step profile of one implementation on each workload."""
    for workload in workloads:
        if implementation not in workload.implementations:
            sys.exit(f"error: no implementation '{implementation}' in {workload.key}; "
                     f"choose from {', '.join(workload.implementations)}")
        prepared = workload.implementations[implementation](workload.make_problem())
        print(f"\n{workload.key} {implementation}: {workload.title}")
        print(harness.profile_steps(prepared.step))


def run_timings(workloads: list[harness.Workload], plan: harness.TimingPlan) -> list[dict]:
    """Time every available implementation of each workload; print the environment, then one table each."""
    prepared = [(workload, *harness.prepare(workload, workload.make_problem())) for workload in workloads]
    print(harness.format_environment(harness.environment()))  # after preparing: it names what got imported
    rows = []
    for workload, built, skipped in prepared:
        timings = harness.measure({name: implementation.step for name, implementation in built.items()}, plan)
        print(f"\n{workload.key}  {workload.title}")
        print(harness.format_table(timings))
        for name, reason in skipped.items():
            print(f"  ({name}: not run, {reason})")
        for name, ratio in harness.ratios(timings).items():
            rows.append({"workload": workload.key, "implementation": name, **asdict(timings[name]), **ratio})
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = parse_args(argv)
    workloads = selected_workloads(args.only)
    if args.profile:
        run_profile(workloads, args.profile)
        return 0
    if args.check and not run_check(workloads):
        print("check failed: the implementations above marked MISMATCH do not compute the same step")
        return 1
    plan = harness.QUICK if args.quick else harness.FULL
    rows = run_timings(workloads, plan)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            report = {"environment": harness.environment(), "plan": asdict(plan), "results": rows}
            json.dump(report, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Compiled training steps alternating with eager evaluation in one loop: do they slow each other down?

With W2's model (784-512-512-10, batch 128, Adam), in one process:
- train: the training step under tracegrad.compile(backend=...);
- eval: the same model's forward on the batch under tracegrad.no_grad, in
  tracegrad eager (NumPy's matmuls, so NumPy's BLAS);
- alternating: one train step, then one eval, the loop of a user who
  evaluates after every step.

The ratio alternating / (train + eval) is 1.0 when the two do not interfere;
the target is at most 1.2. Two thread pools spinning for the same cores (NumPy's
BLAS, and whatever threads the compiled code uses) show as a far larger ratio.

`run_alternation` (run.py --alternate) runs this file as a script in a new
process for each backend; run alone: `python benchmarks/alternate.py numba`.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from typing import Any, TextIO

if __name__ == "__main__":  # run as a script: the repository root makes `benchmarks` and `tracegrad` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import columns, harness, mlp  # noqa: E402

WORKLOAD = mlp.WORKLOADS[1]  # W2
TARGET_RATIO = 1.2


def measure_alternation(backend: str, plan: harness.TimingPlan) -> dict[str, Any]:
    """Time train alone, eval alone and the two alternating, interleaved in this process; return medians, ratio."""
    tracegrad = harness.import_optional("tracegrad")
    problem = WORKLOAD.make_problem()
    model = mlp.build_model(tracegrad, problem)
    train = columns.compile_step(tracegrad, mlp.build_training_step(tracegrad, model, problem), backend)
    columns.run_until_compiled(train)
    batch = tracegrad.from_numpy(problem.x)

    def evaluate():
        with tracegrad.no_grad():
            return model(batch)

    def train_then_evaluate():
        train()
        return evaluate()

    timings = harness.measure({"train": train, "eval": evaluate, "alternating": train_then_evaluate}, plan)
    medians = {name: timing.median_s for name, timing in timings.items()}
    return {"medians_s": medians, "ratio": medians["alternating"] / (medians["train"] + medians["eval"]),
            "timings": {name: asdict(timing) for name, timing in timings.items()}}


def run_alternation(backends: list[str], quick: bool, out: TextIO) -> list[dict[str, Any]]:
    """Measure the alternation with each backend, each in a new process; print and return one row per backend."""
    rows = []
    for backend in backends:
        report = harness.run_python_json(os.path.abspath(__file__), [backend, *(["--quick"] if quick else [])],
                                         f"timing compiled steps alternating with eager evaluation (backend "
                                         f"{backend!r}) failed; run `python benchmarks/alternate.py {backend}` "
                                         f"to see it directly")
        rows.append({"backend": backend, **report})
    _print_rows(rows, out)
    return rows


def _print_rows(rows: list[dict[str, Any]], out: TextIO) -> None:
    print(f"\nalternation: one compiled {WORKLOAD.key} training step, then one eager no_grad forward of the same "
          f"model, in one loop (target: alternating / (train + eval) <= {TARGET_RATIO})", file=out)
    header = f"{'backend':<16}{'train':>11}{'eval':>11}{'alternating':>13}{'ratio':>8}"
    print(header, "-" * len(header), sep="\n", file=out)
    for row in rows:
        if "unavailable" in row:
            print(f"{row['backend']:<16}  not run, {row['unavailable']}", file=out)
            continue
        medians = row["medians_s"]
        print(f"{row['backend']:<16}{medians['train'] * 1e3:>8.2f} ms{medians['eval'] * 1e3:>8.2f} ms"
              f"{medians['alternating'] * 1e3:>10.2f} ms{row['ratio']:>7.2f}x", file=out)


def main(argv: list[str] | None = None) -> int:
    """Measure in this process and print the result as JSON (what run_alternation runs in each new process)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("backend", help="the tracegrad.compile backend, e.g. numba")
    parser.add_argument("--quick", action="store_true", help="few, short rounds: a smoke test, not numbers to quote")
    args = parser.parse_args(argv)
    return harness.print_child_report(
        lambda: measure_alternation(args.backend, harness.QUICK if args.quick else harness.FULL))


if __name__ == "__main__":
    sys.exit(main())

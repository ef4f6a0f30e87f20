"""W2 data-parallel on 2 MPI ranks against 1 process, allreduce latency and bandwidth, and the alpha-beta model.

`python benchmarks/ddp.py` (`--quick`: a smoke run; `--json PATH`: keep the
numbers) launches, one after the other, with BLAS on 1 thread per rank:

1. `mpiexec -n 1` this file in the worker mode `steps`: W2's step in one
   process on the whole batch (eager; compiled with Numba for reference), the
   eager step on half the batch, and the DDP step on a 1-rank world on each
   per-rank share 128/p, p = 1..64: the model's compute term (forward,
   backward, DDP's bucket copies, Adam; no communication);
2. `mpiexec -n 2` in `steps`: the DDP step (eager: a compiled step with DDP
   runs eagerly) with each rank on half the batch and the time each rank
   waits on its bucket allreduces; the same buckets allreduced alone; and
   the eager step on half the batch on both ranks at once, without DDP
   (what two busy ranks cost each other);
3. `mpiexec -n 2` in `allreduce`, over shared memory and over TCP loopback:
   allreduce of 1 KB-64 MB of float32, with MPI_Allreduce and with DDP's
   path (a nonblocking Iallreduce that tracegrad polls).

It then fits the ring-allreduce model to each transport, checks the model
against the measured 2-rank step, and predicts W2 on 2-64 machines on
25 Gb/s Ethernet. docs/SCALING.md explains the model and the results.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import timedelta
from typing import Any, Callable, Iterator

import numpy as np

if __name__ == "__main__":  # run as a script: the repository root makes `benchmarks` and `tracegrad` importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import columns, harness, mlp  # noqa: E402  (none of them imports tracegrad)

W2 = next(workload for workload in mlp.WORKLOADS if workload.key == "W2")
MACHINES = (1, 2, 4, 8, 16, 32, 64)  # p: the model's compute term is measured on each per-rank share 128/p
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
# MPICH 4/5 (ch4): MPIR_CVAR_NOLOCAL=1 treats every rank as remote (no shared memory); its default netmod
# (UCX) then still uses UCX's own shared-memory transports, so pick the OFI netmod with libfabric's tcp provider.
TRANSPORTS = {"shared memory": {},
              "TCP loopback": {"MPIR_CVAR_NOLOCAL": "1", "MPIR_CVAR_CH4_NETMOD": "ofi", "FI_PROVIDER": "tcp"}}
SIZES = tuple(1024 * 4 ** k for k in range(9))  # 1 KB .. 64 MB
QUICK_SIZES = (1024, 65536)
DDP_STEPS = 200  # timed steps of the 2-rank run (--quick: the quick plan's rounds)
WORKER_TIMEOUT = timedelta(seconds=120)  # a collective waiting longer raises, and the job ends (MPI_Abort)
LAUNCH_TIMEOUT_S = 900.0  # a whole mpiexec run; past it, its process group is killed


@dataclass(frozen=True)
class Network:
    """A transport in the alpha-beta model: seconds per message (alpha) and bytes per second of a link (beta)."""

    name: str
    alpha_s: float
    beta_Bps: float


# 25 Gb/s line rate, less Ethernet, IP and TCP headers at a 1500-byte MTU (1448 payload bytes per 1538 on the wire)
ETHERNET_25G = Network("25 Gb/s Ethernet (TCP)", 20e-6, 25e9 / 8 * 1448 / 1538)
ALPHA_RANGE_S = (10e-6, 30e-6)  # the latencies the predictions are also given for


def ring_allreduce_s(nbytes: float, p: int, network: Network) -> float:
    """Ring allreduce of `nbytes` on `p` ranks: 2(p-1) message steps, each rank sending 2(p-1)/p of the bytes."""
    return 2 * (p - 1) * network.alpha_s + 2 * (p - 1) / p * nbytes / network.beta_Bps


def fit_network(name: str, sizes: list[int], seconds: list[float], p: int = 2) -> Network:
    """The alpha and beta whose ring allreduce fits the measured times on `p` ranks best, in relative error."""
    terms = np.array([[2 * (p - 1), 2 * (p - 1) / p * n] for n in sizes]) / np.array(seconds)[:, None]
    (alpha, seconds_per_byte), *_ = np.linalg.lstsq(terms, np.ones(len(sizes)), rcond=None)
    return Network(name, float(alpha), float(1 / seconds_per_byte))


def step_model_s(compute_s: float, bucket_bytes: list[int], p: int, network: Network) -> float:
    """W2's step on `p` machines: the per-rank share's compute, then each bucket's allreduce (no overlap)."""
    return compute_s + sum(ring_allreduce_s(nbytes, p, network) for nbytes in bucket_bytes)


# ---------------------------------------------------------------- the workers (one process per rank)


def share(problem: mlp.MLPProblem, rank: int, ranks: int) -> mlp.MLPProblem:
    """Rank `rank`'s consecutive 1/`ranks` of the problem's batch."""
    rows = slice(rank * len(problem.y) // ranks, (rank + 1) * len(problem.y) // ranks)
    return replace(problem, x=problem.x[rows], y=problem.y[rows])


def ddp_training(problem: mlp.MLPProblem) -> tuple[Callable[[], Any], Any]:
    """W2's PyTorch-style step on the MLP wrapped in DistributedDataParallel, and that wrapper."""
    import tracegrad
    from tracegrad.nn.parallel import DistributedDataParallel

    model = DistributedDataParallel(mlp.build_model(tracegrad, problem))
    return mlp.build_training_step(tracegrad, model, problem), model


class WaitClock:
    """Seconds spent in `tracegrad.distributed.Work.wait` (DDP's bucket allreduce waits) while installed."""

    def __init__(self) -> None:
        self.seconds = 0.0

    @contextlib.contextmanager
    def installed(self) -> Iterator[WaitClock]:
        """Time every `Work.wait` inside the block."""
        from tracegrad import distributed as dist

        original = dist.Work.wait

        def timed_wait(work: dist.Work, timeout: timedelta | None = None) -> bool:
            start = time.perf_counter()
            try:
                return original(work, timeout)
            finally:
                self.seconds += time.perf_counter() - start

        dist.Work.wait = timed_wait
        try:
            yield self
        finally:
            dist.Work.wait = original


def lockstep(step: Callable[[], Any], warmup: int, count: int, clock: WaitClock) -> tuple[list[float], list[float]]:
    """Seconds of each of `count` steps after `warmup` (every rank starts together), and of the waits in each."""
    from tracegrad import distributed as dist

    for _ in range(warmup):
        step()
    dist.barrier()
    totals, waits = [], []
    for _ in range(count):
        clock.seconds = 0.0
        start = time.perf_counter()
        step()
        totals.append(time.perf_counter() - start)
        waits.append(clock.seconds)
    return totals, waits


def one_rank_steps(plan: harness.TimingPlan) -> dict[str, Any]:
    """W2 in one process: eager and compiled on the batch, eager on half, DDP (1-rank world) on each share."""
    import tracegrad

    problem = W2.make_problem()
    steps = {"eager, batch 128": mlp.build_pytorch_style(tracegrad, problem).step,
             "eager, batch 64": mlp.build_pytorch_style(tracegrad, share(problem, 0, 2)).step}
    skipped, compiled = {}, "compiled (numba), batch 128"
    try:
        steps[compiled] = columns.tracegrad_compiled(mlp.build_pytorch_style, "numba")(problem).step
    except harness.Unavailable as reason:
        skipped[compiled] = str(reason)
    for p in MACHINES:
        steps[share_name(len(problem.y) // p)] = ddp_training(share(problem, 0, p))[0]
    timings = harness.measure(steps, plan)
    return {"environment": harness.environment(), "skipped": skipped,
            "timings": {name: asdict(timing) for name, timing in timings.items()}}


def share_name(batch: int) -> str:
    """The 1-rank timing of the DDP step on a per-rank share of `batch` rows."""
    return f"DDP on 1 rank, batch {batch}"


def two_rank_steps(plan: harness.TimingPlan, count: int) -> dict[str, Any] | None:
    """W2 DDP on every rank's share, its allreduce waits, its buckets alone, and the plain step on all ranks."""
    import tracegrad
    from tracegrad import distributed as dist

    rank, ranks = dist.get_rank(), dist.get_world_size()
    problem = share(W2.make_problem(), rank, ranks)
    step, model = ddp_training(problem)
    buffers = [np.zeros_like(bucket.flat) for bucket in model.reducer.buckets]

    def allreduce_buckets() -> None:
        for buffer in buffers:
            dist._start_sum(buffer, "a gradient bucket's allreduce, alone").wait()

    with WaitClock().installed() as clock:
        ddp_totals, ddp_waits = lockstep(step, plan.warmup_steps, count, clock)
        bucket_totals, _ = lockstep(allreduce_buckets, plan.warmup_steps, count, clock)
        plain_totals, _ = lockstep(mlp.build_pytorch_style(tracegrad, problem).step, plan.warmup_steps, count, clock)
    mine = {"ddp_step": ddp_totals, "ddp_wait": ddp_waits, "buckets_alone": bucket_totals,
            "eager_all_ranks_busy": plain_totals}
    everyone = dist._group().comm.gather({name: asdict(harness.summarize(samples, count))
                                          for name, samples in mine.items()}, root=0)
    if rank != 0:
        return None
    return {"ranks": ranks, "batch_per_rank": len(problem.y), "bucket_bytes": [b.nbytes for b in buffers],
            "load_average_1m": round(os.getloadavg()[0], 2),
            "per_rank": everyone}


def measure_steps(quick: bool) -> dict[str, Any] | None:
    """The `steps` worker: one process's timings on a 1-rank world, the DDP timings on more."""
    from tracegrad import distributed as dist

    plan = harness.QUICK if quick else harness.FULL
    dist.init_process_group("mpi", timeout=WORKER_TIMEOUT)
    try:
        if dist.get_world_size() == 1:
            return one_rank_steps(plan)
        return two_rank_steps(plan, plan.rounds if quick else DDP_STEPS)
    finally:
        dist.destroy_process_group()


def measure_allreduce(quick: bool) -> dict[str, Any] | None:
    """The `allreduce` worker: seconds per allreduce of each size, MPI_Allreduce and DDP's path."""
    from mpi4py import MPI

    from tracegrad import distributed as dist

    plan = harness.QUICK if quick else harness.FULL
    dist.init_process_group("mpi", timeout=WORKER_TIMEOUT)
    comm = dist._group().comm
    rank, rows = comm.rank, []
    for nbytes in QUICK_SIZES if quick else SIZES:
        buffer = np.zeros(nbytes // 4, np.float32)
        methods = {"MPI_Allreduce": lambda: comm.Allreduce(MPI.IN_PLACE, buffer),
                   "DDP's path": lambda: dist._start_sum(buffer, "allreduce").wait()}
        for method, allreduce in methods.items():
            for _ in range(plan.warmup_steps):
                allreduce()
            start = time.perf_counter()
            allreduce()
            count = comm.bcast(max(1, round(plan.block_seconds / (time.perf_counter() - start))), root=0)
            samples = []
            for _ in range(plan.rounds):
                comm.Barrier()
                start = time.perf_counter()
                for _ in range(count):
                    allreduce()
                samples.append((time.perf_counter() - start) / count)
            rows.append({"bytes": nbytes, "method": method, **asdict(harness.summarize(samples, count * plan.rounds))})
    dist.destroy_process_group()
    return {"processor": MPI.Get_processor_name(), "library": MPI.Get_library_version().splitlines()[0],
            "rows": rows} if rank == 0 else None


WORKERS = {"steps": measure_steps, "allreduce": measure_allreduce}


def run_worker(mode: str, quick: bool) -> int:
    """What each rank of a worker run does: rank 0 prints the JSON report, the others nothing."""
    report = WORKERS[mode](quick)
    if report is not None:
        json.dump(report, sys.stdout)
    return 0


# ---------------------------------------------------------------- the driver


def find_mpiexec() -> str | None:
    """The `mpiexec` next to this Python (a venv with the mpich wheel), else the one on PATH, else None."""
    return shutil.which("mpiexec", path=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]))


def launch(mpiexec: str, ranks: int, mode: str, quick: bool, env: dict[str, str]) -> dict[str, Any]:
    """Run this file's worker `mode` on `ranks` MPI ranks, 1 BLAS thread each; return rank 0's report."""
    return harness.run_python_json(
        os.path.abspath(__file__), ["--worker", mode, *(["--quick"] if quick else [])],
        f"the {mode} worker on {ranks} rank(s) failed", env={**os.environ, **ONE_THREAD, **env},
        launcher=[mpiexec, "-n", str(ranks)], timeout_s=LAUNCH_TIMEOUT_S)


def measure_all(quick: bool) -> dict[str, Any]:
    """Every run of the benchmark, one after the other, and the model fitted to and checked against them."""
    mpiexec = find_mpiexec()
    if mpiexec is None:
        sys.exit('error: no mpiexec found: pip install -e ".[mpi]" (mpi4py and the mpich wheel)')
    report: dict[str, Any] = {"one_rank": launch(mpiexec, 1, "steps", quick, {}),
                              "two_ranks": launch(mpiexec, 2, "steps", quick, {}),
                              "allreduce": {name: launch(mpiexec, 2, "allreduce", quick, env)
                                            for name, env in TRANSPORTS.items()},
                              "transport_env": TRANSPORTS}
    report["model"] = model(report)
    return report


def model(report: dict[str, Any]) -> dict[str, Any]:
    """Fit alpha and beta per transport and method, check the 2-rank step, predict 2-64 machines on Ethernet."""
    fits = {}
    for transport, result in report["allreduce"].items():
        for method in ("MPI_Allreduce", "DDP's path"):
            rows = [row for row in result["rows"] if row["method"] == method]
            fits[f"{transport}, {method}"] = fit_network(
                f"{transport}, {method}", [row["bytes"] for row in rows], [row["median_s"] for row in rows])
    one, two = report["one_rank"]["timings"], report["two_ranks"]
    buckets = two["bucket_bytes"]
    # tracegrad's wait polls with sleeps: the alpha it adds to MPI's, over shared memory
    polling_s = fits["shared memory, DDP's path"].alpha_s - fits["shared memory, MPI_Allreduce"].alpha_s
    single = one["eager, batch 128"]["median_s"]
    full_batch = len(W2.make_problem().y)
    predictions = []
    for p in MACHINES[1:]:
        compute = one[share_name(full_batch // p)]["median_s"]
        steps = {alpha: step_model_s(compute, buckets, p, replace(ETHERNET_25G, alpha_s=alpha))
                 for alpha in (ETHERNET_25G.alpha_s, *ALPHA_RANGE_S)}
        polled = step_model_s(compute, buckets, p, replace(ETHERNET_25G, alpha_s=ETHERNET_25G.alpha_s + polling_s))
        weak = step_model_s(one[share_name(full_batch)]["median_s"], buckets, p, ETHERNET_25G)
        predictions.append({"machines": p, "batch_per_rank": full_batch // p, "compute_s": compute,
                            "allreduce_s": steps[ETHERNET_25G.alpha_s] - compute,
                            "step_s": steps[ETHERNET_25G.alpha_s],
                            "efficiency": {f"{alpha * 1e6:g} us": single / (p * step) for alpha, step in steps.items()},
                            "step_polled_s": polled, "efficiency_polled": single / (p * polled),
                            "weak_efficiency": single / weak})
    return {"fits": {name: asdict(fit) for name, fit in fits.items()}, "polling_alpha_s": polling_s,
            "check": model_check(one, two, fits["shared memory, DDP's path"]),
            "network": asdict(ETHERNET_25G), "predictions": predictions}


def model_check(one: dict[str, Any], two: dict[str, Any], network: Network) -> dict[str, Any]:
    """The model's 2-rank step against the measured one, with the compute term measured two ways.

    `alone`: the DDP step on a 1-rank world with the machine to itself (the
    model as it predicts other machines). `loaded`: the eager step as this
    run's ranks got it, all busy at once, the slower rank of each step
    (paired by step index), plus DDP's bucket copies measured alone.
    """
    batch = two["batch_per_rank"]
    allreduce = sum(ring_allreduce_s(nbytes, two["ranks"], network) for nbytes in two["bucket_bytes"])
    measured = two["per_rank"][0]["ddp_step"]["median_s"]
    ddp_copies = one[share_name(batch)]["median_s"] - one[f"eager, batch {batch}"]["median_s"]
    slowest = np.max([rank["eager_all_ranks_busy"]["samples_s"] for rank in two["per_rank"]], axis=0)
    computes = {"alone": one[share_name(batch)]["median_s"], "loaded": float(np.median(slowest)) + ddp_copies}
    return {"transport": network.name, "allreduce_s": allreduce, "measured_s": measured,
            **{name: {"compute_s": compute, "predicted_s": compute + allreduce,
                      "error": (compute + allreduce) / measured - 1} for name, compute in computes.items()}}


def format_report(report: dict[str, Any]) -> str:
    """The tables: step times and scaling, allreduce per size and transport, the model check and predictions."""
    one, two, fitted = report["one_rank"], report["two_ranks"], report["model"]
    single = one["timings"]["eager, batch 128"]["median_s"]
    lines = [harness.format_environment(one["environment"]), "",
             "W2 step, 1 process (1 BLAS thread), median over blocks of steps:"]
    lines += [f"  {name:<34}{duration(t['median_s']):>10}" for name, t in one["timings"].items()]
    lines += [f"  {name:<34}unavailable: {reason}" for name, reason in one["skipped"].items()]
    lines += ["", f"W2 DDP eager on {two['ranks']} ranks x 1 thread, batch {two['batch_per_rank']} each, buckets "
                  f"{', '.join(f'{b / 1e6:.3f} MB' for b in two['bucket_bytes'])} (load average "
                  f"{two['load_average_1m']} after); median per step, by rank:"]
    for name, label in [("ddp_step", "DDP step"), ("ddp_wait", "  of which waiting on bucket allreduces"),
                        ("buckets_alone", "the buckets' allreduces alone"),
                        ("eager_all_ranks_busy", "eager step, no DDP, all ranks busy")]:
        lines.append(f"  {label:<42}" + "".join(f"{duration(rank[name]['median_s']):>10}" for rank in two["per_rank"]))
    step2 = two["per_rank"][0]["ddp_step"]["median_s"]
    lines.append(f"  speedup over 1 process on batch 128 (eager): {single / step2:.2f}x; scaling efficiency "
                 f"{single / (two['ranks'] * step2):.0%}")
    for transport, result in report["allreduce"].items():
        lines += ["", f"allreduce on 2 ranks, {transport} ({result['library']}), median per call:",
                  f"  {'size':>8}{'MPI_Allreduce':>15}{'GB/s':>7}{'model':>10}{'DDP path':>12}{'GB/s':>7}{'model':>10}"]
        fits = [Network(**fitted["fits"][f"{transport}, {method}"]) for method in ("MPI_Allreduce", "DDP's path")]
        by_size: dict[int, list[dict]] = {}
        for row in result["rows"]:
            by_size.setdefault(row["bytes"], []).append(row)
        for nbytes, rows in by_size.items():
            cells = "".join(f"{duration(row['median_s']):>12}{nbytes / row['median_s'] / 1e9:>7.2f}"
                            f"{duration(ring_allreduce_s(nbytes, 2, fit)):>10}" for row, fit in zip(rows, fits))
            lines.append(f"  {size(nbytes):>8}   {cells}")
        lines += [f"  fit {fit.name}: alpha {fit.alpha_s * 1e6:.1f} us, beta {fit.beta_Bps / 1e9:.2f} GB/s"
                  for fit in fits]
    check = fitted["check"]
    lines += ["", f"model check, 2 ranks, allreduce modelled with the fit of {check['transport']}, "
                  f"step measured {duration(check['measured_s'])}:"]
    for name, label in [("alone", "compute alone (1 rank)"), ("loaded", "compute as loaded (slower rank)")]:
        lines.append(f"  {label:<32} {duration(check[name]['compute_s'])} + allreduce "
                     f"{duration(check['allreduce_s'])} = {duration(check[name]['predicted_s'])}: "
                     f"error {check[name]['error']:+.0%}")
    network = Network(**fitted["network"])
    alphas = " / ".join(f"{alpha * 1e6:g}" for alpha in (network.alpha_s, *ALPHA_RANGE_S))
    lines += ["", f"prediction, W2 on p machines (1 rank x 1 thread each, global batch 128), {network.name}: "
                  f"alpha {network.alpha_s * 1e6:g} us, beta {network.beta_Bps / 1e9:.2f} GB/s",
              f"  {'p':>3}{'batch':>7}{'compute':>10}{'allreduce':>11}{'step':>10}{'speedup':>9}"
              f"  efficiency (alpha {alphas} us){'weak eff.':>11}{'polled step':>13}{'eff.':>6}"]
    for row in fitted["predictions"]:
        efficiency = " / ".join(f"{value:.0%}" for value in row["efficiency"].values())
        lines.append(f"  {row['machines']:>3}{row['batch_per_rank']:>7}{duration(row['compute_s']):>10}"
                     f"{duration(row['allreduce_s']):>11}{duration(row['step_s']):>10}"
                     f"{single / row['step_s']:>8.2f}x  {efficiency:<29}{row['weak_efficiency']:>11.0%}"
                     f"{duration(row['step_polled_s']):>13}{row['efficiency_polled']:>6.0%}")
    lines.append(f"  polled: with tracegrad's wait loop as today, which adds "
                 f"{fitted['polling_alpha_s'] * 1e6:.0f} us to alpha (its fit over MPI_Allreduce's, shared memory)")
    return "\n".join(lines)


def duration(seconds: float) -> str:
    """Seconds as us or ms."""
    return f"{seconds * 1e6:.1f} us" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms"


def size(nbytes: int) -> str:
    """Bytes as KB or MB (powers of 1024)."""
    return f"{nbytes // 1024} KB" if nbytes < 1024 ** 2 else f"{nbytes // 1024 ** 2} MB"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="few steps, two allreduce sizes: a smoke test of the whole run, not numbers to quote")
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH as JSON")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)  # what each rank runs
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with --worker, one rank of it)."""
    args = parse_args(argv)
    if args.worker:
        return run_worker(args.worker, args.quick)
    report = measure_all(args.quick)
    print(format_report(report))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump(report, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())

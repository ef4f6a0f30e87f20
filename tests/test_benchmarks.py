"""The benchmark command runs end to end, and its agreement check catches a step that differs."""

import dataclasses
import importlib.util
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # `benchmarks` is a folder of the repository, not an installed package

from benchmarks import actor_critic, cnn, columns, ddp, elementwise, harness, mlp, run, startup  # noqa: E402

pytestmark = pytest.mark.slow  # the benchmark harness runs in subprocesses: not in the quick subset

W1 = mlp.WORKLOADS[0]
BUILDS = {"W1": mlp.build_pytorch_style, "W2": mlp.build_pytorch_style, "W3": elementwise.build_pytorch_style,
          "W4": actor_critic.build_pytorch_style, "W5": cnn.build_pytorch_style}


def run_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/run.py", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)


def installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def assert_rows_complete(report: dict, workload: str, samples_per_row: int) -> None:
    """Every implementation is timed or skipped with a reason; those that must run here did."""
    rows = {row["implementation"]: row for row in report["results"] if row["workload"] == workload}
    skipped = {row["implementation"]: row["reason"] for row in report["skipped"] if row["workload"] == workload}
    implementations = next(w for w in run.WORKLOADS if w.key == workload).implementations
    assert set(rows) | set(skipped) == set(implementations) and not set(rows) & set(skipped)
    must_run = {"numpy", "tracegrad eager", *columns.TRACEGRAD_BACKENDS}  # numba is a tracegrad dependency
    must_run |= ({"torch eager"} if installed("torch") else set()) | ({"jax.jit"} if installed("jax") else set())
    assert must_run <= set(rows)
    assert all(reason for reason in skipped.values())
    assert rows["numpy"]["vs_numpy"] == 1.0
    assert all(0 < row["p10_s"] <= row["median_s"] <= row["p90_s"] for row in rows.values())
    assert all(len(row["samples_s"]) == samples_per_row for row in rows.values())


def test_check_and_quick_run_succeed_and_report_every_available_implementation(tmp_path):
    result_path = tmp_path / "results.json"
    completed = run_command("--check", "--quick", "--json", str(result_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "MISMATCH" not in completed.stdout
    assert "mode             isolated" in completed.stdout
    report = json.loads(result_path.read_text())
    assert report["mode"].startswith("isolated")
    for workload in run.WORKLOADS:
        assert_rows_complete(report, workload.key, harness.QUICK.rounds * harness.QUICK.process_rounds)
    quick_skipped = {(row["workload"], row["implementation"]) for row in report["skipped"]
                     if row["reason"].startswith("--quick skips it")}
    assert quick_skipped == {(workload.key, "torch.compile") for workload in run.WORKLOADS}
    assert "startup" not in report and "alternation" not in report  # --quick measures the steps alone
    assert_bandwidth_reported(report, "W3")
    assert "GB/s" in completed.stdout and "np.copyto" in completed.stdout


def assert_bandwidth_reported(report: dict, workload: str) -> None:
    """The memory-bound workload's rows give bytes per step over their median, and that over the copy's."""
    copy = report["bandwidth"][workload]
    assert copy["bytes_per_step"] == elementwise.BANDWIDTH.bytes_per_step
    assert copy["copy_GBps"] == pytest.approx(2 * 4 * 2048 * 2048 / copy["copy_median_s"] / 1e9)
    rows = [row for row in report["results"] if row["workload"] == workload]
    assert rows and all(row["bandwidth_GBps"] == pytest.approx(copy["bytes_per_step"] / row["median_s"] / 1e9)
                        and row["vs_copy_bandwidth"] == pytest.approx(row["bandwidth_GBps"] / copy["copy_GBps"])
                        for row in rows)
    assert set(report["bandwidth"]) == {workload}  # the compute-bound workloads have no bandwidth yardstick


def test_startup_and_alternation_report_cold_warm_and_ratio(tmp_path):
    """Wired with the interpreter backend, which every machine has: the numba ones may not be there."""
    result_path = tmp_path / "results.json"
    completed = run_command("--startup", "--alternate", "--backend", "interpreter", "--quick", "--only", "W1",
                            "--json", str(result_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(result_path.read_text())
    assert "results" not in report  # the parts asked for, and only those
    [row] = report["startup"]
    assert (row["workload"], row["backend"]) == ("W1", "interpreter")
    assert row["cold_runs"] == [row["cold"]] and row["warm_runs"] == [row["warm"]]  # --quick: one pair
    assert row["cold"]["kernel_log"] == []  # the interpreter compiles no kernel
    for start in (row["cold"], row["warm"]):
        assert len(start["call_seconds"]) == columns.CALLS_UNTIL_COMPILED
        assert sum(start["call_seconds"]) <= start["calls_s"]
        assert start["first_step_s"] == pytest.approx(start["import_s"] + start["build_s"] + start["calls_s"])
        assert 0 < start["first_step_s"] < start["process_s"]
    [alternation] = report["alternation"]
    medians = alternation["medians_s"]
    assert alternation["ratio"] == pytest.approx(medians["alternating"] / (medians["train"] + medians["eval"]))
    # one step of each cannot take less than either alone (noise allowance: a shared 2-core machine)
    assert medians["alternating"] > 0.5 * max(medians["train"], medians["eval"])


def test_startup_rounds_report_the_median_run_and_the_range():
    printed = io.StringIO()
    [row] = startup.run_startup(["W1"], ["interpreter"], printed, rounds=3)
    for start in ("cold", "warm"):
        times = sorted(run["first_step_s"] for run in row[f"{start}_runs"])
        assert len(times) == 3 and row[start]["first_step_s"] == times[1]
        assert f"({times[0]:.2f}-{times[2]:.2f})" in printed.getvalue()


@pytest.mark.parametrize("workload", run.WORKLOADS, ids=lambda workload: workload.key)
def test_compiled_column_computes_the_numpy_step(workload):
    """The compiled columns' wiring, with the interpreter backend: it needs nothing the numba ones need."""
    interpreted = columns.tracegrad_compiled(BUILDS[workload.key], "interpreter")
    checked = dataclasses.replace(workload, implementations={"numpy": workload.implementations["numpy"],
                                                             "interpreter": interpreted})
    [result] = harness.check_agreement(checked)
    assert result.ok, result


def test_compiled_column_of_a_missing_backend_is_unavailable_with_the_reason():
    with pytest.raises(harness.Unavailable, match="cuda"):
        columns.tracegrad_compiled(mlp.build_pytorch_style, "cuda")(W1.make_problem())


def test_compiled_column_that_runs_eagerly_is_unavailable_not_timed():
    def build_with_data_dependent_shape(torch, problem):
        prepared = mlp.build_pytorch_style(torch, problem)
        x = torch.from_numpy(problem.x)

        def step():
            return prepared.step() + 0 * x[x > 0].sum()  # a boolean mask: its result's shape depends on the data

        return harness.Prepared(step, prepared.weights)

    with pytest.raises(harness.Unavailable, match="did not run this step with its backend"):
        columns.tracegrad_compiled(build_with_data_dependent_shape, "interpreter")(W1.make_problem())


def test_in_process_mode_times_all_implementations_in_one_process(tmp_path):
    result_path = tmp_path / "results.json"
    completed = run_command("--in-process", "--quick", "--only", "W1", "--json", str(result_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(result_path.read_text())
    assert report["mode"].startswith("in-process")
    assert_rows_complete(report, "W1", harness.QUICK.rounds)
    assert {row["workload"] for row in report["results"]} == {"W1"}


def test_one_implementation_process_prints_only_json_and_imports_nothing_else():
    completed = run_command("--impl", "tracegrad eager", "--only", "W1", "--quick", "--json", "-")
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(completed.stdout)  # the tables went to stderr
    assert [row["implementation"] for row in report["results"]] == ["tracegrad eager"]
    assert "torch" not in report["environment"]  # the point of isolation: no other library loaded
    assert "tracegrad eager" in completed.stderr


def test_rotated_puts_every_name_in_every_position_once_over_as_many_rounds():
    names = ["a", "b", "c"]
    orders = [harness.rotated(names, round_index) for round_index in range(3)]
    assert orders == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"]]
    assert harness.rotated([], 2) == []


def test_unknown_workload_is_a_usage_error_that_lists_the_choices():
    completed = run_command("--only", "W99")
    assert completed.returncode != 0
    assert "W99" in completed.stderr and "W1" in completed.stderr


def test_check_flags_an_implementation_that_takes_a_different_step():
    def numpy_with_a_slightly_larger_lr(problem):
        return mlp.numpy_step(dataclasses.replace(problem, lr=problem.lr * 1.01))

    workload = dataclasses.replace(W1, implementations={"numpy": mlp.numpy_step,
                                                        "off by 1% lr": numpy_with_a_slightly_larger_lr})
    [result] = harness.check_agreement(workload)
    assert not result.ok
    assert result.max_loss_diff > 0  # the second and third losses see the different update


def test_check_sees_a_5_percent_error_in_the_elementwise_update():
    """W3's gradients are small (a mean over 4M elements): its lr must make an error in them visible."""
    def numpy_with_a_larger_lr(problem):
        return elementwise.numpy_step(dataclasses.replace(problem, lr=problem.lr * 1.05))

    workload = dataclasses.replace(elementwise.WORKLOADS[0], implementations={"numpy": elementwise.numpy_step,
                                                                               "off by 5% lr": numpy_with_a_larger_lr})
    [result] = harness.check_agreement(workload)
    assert not result.ok


def test_check_accepts_an_identical_implementation():
    workload = dataclasses.replace(W1, implementations={"numpy": mlp.numpy_step, "again": mlp.numpy_step})
    [result] = harness.check_agreement(workload)
    assert result.ok and result.max_loss_diff == 0 and result.max_weight_diff == 0


def test_numpy_step_learns_the_fixed_batch():
    step = mlp.numpy_step(W1.make_problem()).step
    first_loss = float(step())
    for _ in range(200):
        last_loss = float(step())
    assert last_loss < 0.5 * first_loss


def test_measure_reports_the_time_a_step_takes():
    def one_millisecond_step():
        time.sleep(0.001)

    plan = harness.TimingPlan(warmup_steps=2, rounds=3, block_seconds=0.003, process_rounds=1, startup_rounds=1)
    timing = harness.measure({"sleep": one_millisecond_step}, plan)["sleep"]
    assert 0.001 <= timing.p10_s <= timing.median_s <= timing.p90_s < 0.05
    assert timing.steps_timed >= plan.rounds


def test_dynamic_part_times_the_generic_kernel_against_the_literal_one(tmp_path):
    result_path = tmp_path / "results.json"
    completed = run_command("--dynamic", "--quick", "--only", "W1", "--json", str(result_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    [row] = json.loads(result_path.read_text())["dynamic"]
    assert (row["workload"], row["batch"]) == ("W1", 32)
    assert row["ratio"] == pytest.approx(row["generic_s"] / row["literal_s"])
    assert row["kernels_for_sizes"] <= 3  # 40 batch sizes: the first size's kernel, then the generic one
    assert "generic/literal" in completed.stdout


@pytest.mark.skipif(not installed("mpi4py") or ddp.find_mpiexec() is None,
                    reason='needs mpi4py and mpiexec: pip install -e ".[mpi]"')
def test_ddp_benchmark_times_two_ranks_the_allreduces_and_checks_the_model(tmp_path):
    result_path = tmp_path / "ddp.json"
    completed = subprocess.run([sys.executable, "benchmarks/ddp.py", "--quick", "--json", str(result_path)],
                               cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(result_path.read_text())
    one = report["one_rank"]["timings"]
    assert {"eager, batch 128", "eager, batch 64", *(ddp.share_name(128 // p) for p in ddp.MACHINES)} <= set(one)
    two = report["two_ranks"]
    assert two["ranks"] == 2 and two["batch_per_rank"] == 64 and len(two["per_rank"]) == 2
    assert sum(two["bucket_bytes"]) == 4 * sum(w.size for w in mlp.WORKLOADS[1].make_problem().weights)
    for rank in two["per_rank"]:
        assert 0 < rank["ddp_wait"]["median_s"] < rank["ddp_step"]["median_s"]
    for transport in ddp.TRANSPORTS:
        rows = report["allreduce"][transport]["rows"]
        assert {(row["bytes"], row["method"]) for row in rows} == {
            (size, method) for size in ddp.QUICK_SIZES for method in ("MPI_Allreduce", "DDP's path")}
    check = report["model"]["check"]
    assert check["alone"]["predicted_s"] == pytest.approx(check["alone"]["compute_s"] + check["allreduce_s"])
    assert [row["machines"] for row in report["model"]["predictions"]] == list(ddp.MACHINES[1:])
    assert "model check, 2 ranks" in completed.stdout and "TCP loopback" in completed.stdout


def test_ring_allreduce_fit_recovers_alpha_and_beta():
    network = ddp.Network("made up", alpha_s=20e-6, beta_Bps=3e9)
    sizes = [1024 * 4 ** k for k in range(9)]
    fitted = ddp.fit_network("fit", sizes, [ddp.ring_allreduce_s(n, 2, network) for n in sizes])
    assert fitted.alpha_s == pytest.approx(20e-6) and fitted.beta_Bps == pytest.approx(3e9)
    # 8 ranks: 14 message steps, each rank sending 2 * 7/8 of the bytes
    assert ddp.ring_allreduce_s(8e6, 8, network) == pytest.approx(14 * 20e-6 + 1.75 * 8e6 / 3e9)

"""The benchmark command runs end to end, and its agreement check catches a step that differs."""

import dataclasses
import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # `benchmarks` is a folder of the repository, not an installed package

from benchmarks import harness, mlp  # noqa: E402

W1 = mlp.WORKLOADS[0]


def run_command(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "benchmarks/run.py", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=600)


def available_implementations() -> set[str]:
    expected = {"numpy", "tracegrad eager"}
    if importlib.util.find_spec("torch") is not None:
        expected.add("torch eager")
    return expected


def assert_rows_complete(results: list[dict], workload: str, samples_per_row: int) -> None:
    rows = {row["implementation"]: row for row in results if row["workload"] == workload}
    assert set(rows) == available_implementations()
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
    for workload in ("W1", "W2"):
        assert_rows_complete(report["results"], workload, harness.QUICK.rounds * harness.QUICK.process_rounds)


def test_in_process_mode_times_all_implementations_in_one_process(tmp_path):
    result_path = tmp_path / "results.json"
    completed = run_command("--in-process", "--quick", "--only", "W1", "--json", str(result_path))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(result_path.read_text())
    assert report["mode"].startswith("in-process")
    assert_rows_complete(report["results"], "W1", harness.QUICK.rounds)
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

    plan = harness.TimingPlan(warmup_steps=2, rounds=3, block_seconds=0.003, process_rounds=1)
    timing = harness.measure({"sleep": one_millisecond_step}, plan)["sleep"]
    assert 0.001 <= timing.p10_s <= timing.median_s <= timing.p90_s < 0.05
    assert timing.steps_timed >= plan.rounds

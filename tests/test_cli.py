"""The `tracegrad` command: dump of each stage in each format, and clean errors."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = '''
import sys
import tracegrad as tg
w = tg.ones(3, 1, requires_grad=True)

@tg.compile
def step(x):
    loss = (x @ w).relu().sum()
    loss.backward()
    with tg.no_grad():
        w.sub_(0.1 * w.grad)
        w.grad = None
    return loss

for _ in range(int(sys.argv[1])):
    step(tg.ones(2, 3))
'''


ROOT = Path(__file__).resolve().parents[1]


def tracegrad(*args, cwd=None):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # importable from any working folder
    return subprocess.run([sys.executable, "-m", "tracegrad", *args], capture_output=True, text=True, cwd=cwd, env=env)


@pytest.fixture
def script(tmp_path):
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return str(path)


def test_version_and_help():
    assert tracegrad("--version").stdout.startswith("tracegrad ")
    out = tracegrad("dump", "--help")
    assert out.returncode == 0 and "--stage" in out.stdout and "--format" in out.stdout


def test_dump_text_shows_every_stage(script):
    out = tracegrad("dump", script, "3")
    assert out.returncode == 0, out.stderr
    for stage in ("traced", "adjoint", "optimized", "kernel", "replay"):
        assert f"· {stage} ===" in out.stdout
    traced = out.stdout.split("· adjoint ===")[0]
    assert "[adjoint]" not in traced and "matmul" in traced and "# train.py:" in traced
    assert "[adjoint]" in out.stdout.split("· adjoint ===")[1].split("· optimized ===")[0]
    assert "writeback" in out.stdout


def test_dump_kernel_stage_prints_the_generated_source_of_the_chosen_backend(script):
    out = tracegrad("dump", "--backend", "numba", "--stage", "kernel", script, "3")
    assert out.returncode == 0, out.stderr
    assert "@njit(" in out.stdout and "def step(" in out.stdout and "rt.dot(" in out.stdout
    out = tracegrad("dump", "--backend", "interpreter", "--stage", "kernel", script, "3")
    assert "no kernel: the interpreter backend" in out.stdout


def test_dump_replay_stage_prints_the_generated_python_of_each_call(script):
    out = tracegrad("dump", "--stage", "replay", "--format", "json", script, "3")
    assert out.returncode == 0, out.stderr
    replay = out.stdout.split("· replay ===")[1]
    assert "def run(leaves):" in replay and "out = execute([leaves[0]._data, d0" in replay
    assert "d0 = r0._data  # w\n" in replay  # captured tensors are named
    assert "r0._vc[0] += 1" in replay and "return make(out[0])" in replay


def test_dump_json_and_dot(script, tmp_path):
    out = tracegrad("dump", "--stage", "optimized", "--format", "json", script, "3")
    doc = json.loads(out.stdout.split("===\n", 1)[1])
    assert doc["writebacks"] and {n["prim"] for n in doc["nodes"]} >= {"matmul", "relu"}
    target = tmp_path / "dumps"
    out = tracegrad("dump", "--format", "dot", "-o", str(target), script, "3")
    assert out.returncode == 0
    files = sorted(p.name for p in target.iterdir())
    assert files == ["step.0.adjoint.dot", "step.0.kernel.py", "step.0.optimized.dot", "step.0.replay.py",
                     "step.0.traced.dot"]
    assert (target / "step.0.traced.dot").read_text().startswith('digraph "step"')


def test_dump_without_a_traced_step_says_so(script):
    out = tracegrad("dump", script, "1")  # one call only warms up
    assert out.returncode == 0 and "no compiled step was traced" in out.stderr


def test_a_missing_script_is_one_line_with_status_1(tmp_path):
    out = tracegrad("dump", str(tmp_path / "missing.py"))
    assert out.returncode == 1 and out.stderr.strip() == f"tracegrad dump: no such script: {tmp_path / 'missing.py'}"


def test_bad_usage_exits_2():
    assert tracegrad("dump", "--stage", "nonsense", "x.py").returncode == 2


def test_dump_an_example_at_every_stage():
    out = tracegrad("dump", str(ROOT / "examples" / "compile_explain.py"), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    sections = out.stdout.split("=== train_step (variant 0) · ")
    assert [s.split(" ===")[0] for s in sections[1:]] == ["traced", "adjoint", "optimized", "kernel", "replay"]
    traced, adjoint, optimized = sections[1], sections[2], sections[3]
    assert "[adjoint]" not in traced and "[adjoint]" in adjoint and "writeback" in optimized
    assert "'model.0.weight'" in optimized and "hyper 'lr'" in optimized


def test_dump_runs_the_script_as_python_would(tmp_path):
    """The script's folder first on sys.path (a module beside it imports), __name__ and sys.argv as under python."""
    (tmp_path / "model.py").write_text(SCRIPT.split("for _ in")[0])
    main = tmp_path / "main.py"
    main.write_text("import sys\nfrom model import step, tg\n"
                    "assert __name__ == '__main__' and sys.argv[1:] == ['3', '--lr', '0.1'], (__name__, sys.argv)\n"
                    "for _ in range(int(sys.argv[1])):\n    step(tg.ones(2, 3))\n")
    out = tracegrad("dump", "--stage", "traced", str(main), "3", "--lr", "0.1", cwd=tmp_path.parent)
    assert out.returncode == 0, out.stderr
    assert "matmul" in out.stdout and "# model.py:" in out.stdout


def test_a_script_failing_after_tracing_dumps_what_was_traced_then_its_traceback(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text(SCRIPT + "raise ValueError('boom')\n")
    out = tracegrad("dump", "--stage", "traced", str(bad), "3")
    assert out.returncode == 1
    assert "=== step (variant 0) · traced ===" in out.stdout and "matmul" in out.stdout
    assert out.stderr.startswith("Traceback (most recent call last):\n"), out.stderr
    line = len(SCRIPT.splitlines()) + 1
    assert f'File "{bad}", line {line}, in <module>' in out.stderr and out.stderr.endswith("ValueError: boom\n")
    assert "runpy" not in out.stderr and "cli.py" not in out.stderr  # the script's frames only


def test_a_script_failing_before_tracing_shows_its_traceback(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("raise ValueError('boom')\n")
    out = tracegrad("dump", str(bad))
    assert out.returncode == 1 and out.stdout == ""
    assert "no compiled step was traced" in out.stderr
    assert f'File "{bad}", line 1, in <module>' in out.stderr and out.stderr.endswith("ValueError: boom\n")

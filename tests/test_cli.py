"""The `tracegrad` command: dump of each stage in each format, and clean errors."""
import json
import os
import re
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


def tracegrad(*args, cwd=None, **env):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env}  # importable from any working folder
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
    usage = " ".join(out.stdout.split("\n\n")[0].split())
    assert usage.endswith("SCRIPT.py [ARGS ...]")  # the script's arguments are optional
    assert "{interpreter,numba,numba-parallel,cuda,eager}" in usage  # --backend lists the backends
    assert tracegrad("dump", "--backend", "nonsense", "x.py").returncode == 2


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


def _stages(stdout: str, function: str = "step", variant: int = 0) -> dict:
    """The stages of one variant in the JSON document `dump --format json` prints."""
    doc = json.loads(stdout)
    return next(f for f in doc["functions"] if f["name"] == function)["variants"][variant]["stages"]


def test_dump_replay_stage_prints_the_generated_python_of_each_call(script):
    text = tracegrad("dump", "--stage", "replay", script, "3")
    out = tracegrad("dump", "--stage", "replay", "--format", "json", script, "3")
    assert out.returncode == 0 and text.returncode == 0, out.stderr + text.stderr
    replay = _stages(out.stdout)["replay"]["source"]  # in JSON, Python source is a string field
    assert text.stdout.split("· replay ===\n")[1].rstrip() == replay.rstrip()
    assert "def run(leaves):" in replay and "out = execute([leaves[0]._data, d0" in replay
    assert "d0 = r0._data  # w\n" in replay  # captured tensors are named
    assert "r0._vc[0] += 1" in replay and "return make(out[0])" in replay


def test_dump_json_and_dot(script, tmp_path):
    out = tracegrad("dump", "--stage", "optimized", "--format", "json", script, "3")
    doc = _stages(out.stdout)["optimized"]["graph"]
    assert doc["writebacks"] and {n["prim"] for n in doc["nodes"]} >= {"matmul", "relu"}
    target = tmp_path / "dumps"
    out = tracegrad("dump", "--format", "dot", "-o", str(target), script, "3")
    assert out.returncode == 0 and out.stdout == "" and f"wrote 5 files to {target}" in out.stderr
    files = sorted(p.name for p in target.iterdir())
    assert files == ["step.0.adjoint.dot", "step.0.kernel.py", "step.0.optimized.dot", "step.0.replay.py",
                     "step.0.traced.dot"]
    assert (target / "step.0.traced.dot").read_text().startswith('digraph "step"')
    out = tracegrad("dump", "--stage", "traced", "--format", "json", "-o", str(target / "one"), script, "3")
    assert f"wrote 1 file to {target / 'one'}" in out.stderr
    assert json.loads((target / "one" / "step.0.traced.json").read_text())["graph"]["nodes"]
    out = tracegrad("dump", "--stage", "optimized", "--format", "dot", script, "3")
    assert out.stdout.startswith('// step (variant 0) · optimized\ndigraph "step" {') and out.returncode == 0


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
    bad.write_text(SCRIPT + "sys.exit(3)\n")
    out = tracegrad("dump", "--stage", "traced", "--format", "json", str(bad), "3")
    assert out.returncode == 1 and _stages(out.stdout)["traced"]["graph"]["nodes"]
    assert out.stderr.strip() == f"tracegrad dump: {bad} exited with status 3"


def test_a_script_failing_before_tracing_shows_its_traceback(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("raise ValueError('boom')\n")
    out = tracegrad("dump", str(bad))
    assert out.returncode == 1 and out.stdout == ""
    assert "no compiled step was traced" in out.stderr
    assert f'File "{bad}", line 1, in <module>' in out.stderr and out.stderr.endswith("ValueError: boom\n")


TWO_STEPS = '''
import tracegrad as tg
print("the script's own output")
w = tg.ones(3, 1, requires_grad=True)

@tg.compile
def step(x):
    loss = (x @ w).relu().sum()
    loss.backward()  # w.grad accumulates: the new w.grad is written back
    return loss

@tg.compile
def predict(x):
    return (x @ w).tanh()

for rows in (2, 2, 2, 4, 4, 4):  # two signatures each: two variants of each function
    step(tg.ones(rows, 3))
    with tg.no_grad():
        predict(tg.ones(rows, 3))
'''


@pytest.fixture
def two_steps(tmp_path):
    path = tmp_path / "two_steps.py"
    path.write_text(TWO_STEPS)
    return str(path)


def test_dump_json_is_one_document_on_stdout_with_every_function_variant_and_stage(two_steps):
    out = tracegrad("dump", "--format", "json", two_steps)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)  # the script's print went to stderr
    assert "the script's own output" in out.stderr and "the script's own output" not in out.stdout
    assert doc["script"] == two_steps and doc["args"] == []
    assert [f["name"] for f in doc["functions"]] == ["step", "predict"]
    for function in doc["functions"]:
        assert [v["variant"] for v in function["variants"]] == [0, 1]  # numbered per function
        for variant in function["variants"]:
            assert list(variant["stages"]) == ["traced", "adjoint", "optimized", "kernel", "replay"]
            assert variant["stages"]["traced"]["graph"]["nodes"] and "def run(" in variant["stages"]["replay"]["source"]
    assert _stages(out.stdout, "predict", 1)["traced"]["graph"]["inputs"][0]["type"] == "f32[4,3]"


def test_dump_text_numbers_variants_per_function(two_steps):
    out = tracegrad("dump", "--stage", "traced", two_steps)
    headings = [line for line in out.stdout.splitlines() if line.startswith("===")]
    assert headings == ["=== step (variant 0) · traced ===", "=== step (variant 1) · traced ===",
                        "=== predict (variant 0) · traced ===", "=== predict (variant 1) · traced ==="]
    assert "the script's own output" in out.stderr and "the script's own output" not in out.stdout


def _undefined(text: str) -> set:
    """The %N a printed graph uses but neither defines nor has as an input."""
    header, _, body = text.partition("{\n")
    defined = set(re.findall(r"%(\d+):", header)) | set(re.findall(r"^\s*%(\d+) =", body, re.M))
    return set(re.findall(r"%(\d+)", re.sub(r"#.*", "", body))) - defined


@pytest.mark.parametrize("clear_grad", [True, False])
def test_every_graph_stage_is_self_contained(tmp_path, clear_grad):
    """The traced stage names the values the backward computes (the gradient it updates with, the new .grad it
    writes back) as inputs, never a %N defined only in a later stage."""
    path = tmp_path / "train.py"
    path.write_text(SCRIPT if clear_grad else SCRIPT.replace("        w.grad = None\n", ""))
    out = tracegrad("dump", str(path), "3")
    assert out.returncode == 0, out.stderr
    sections = out.stdout.split("=== step (variant 0) · ")[1:4]
    assert [s.split(" ===")[0] for s in sections] == ["traced", "adjoint", "optimized"]
    for section in sections:
        assert not _undefined(section.split(" ===\n", 1)[1]), section
    traced = sections[0]
    assert "grad 'from the adjoint stage'" in traced and "computed by the backward" in traced
    doc = _stages(tracegrad("dump", "--format", "json", str(path), "3").stdout)
    for stage in ("traced", "adjoint", "optimized"):
        graph = doc[stage]["graph"]
        defined = {v["id"] for v in graph["inputs"]} | {n["id"] for n in graph["nodes"]}
        used = {o for n in graph["nodes"] for o in n["operands"]} | set(graph["outputs"]) | \
            {g["value"] for g in graph["guards"]} | {w[k] for w in graph["writebacks"] for k in ("input", "value")}
        assert used <= defined, stage


def test_dump_format_is_honoured_or_rejected_per_stage(script):
    out = tracegrad("dump", "--stage", "kernel", "--format", "dot", script, "3")
    assert out.returncode == 1 and out.stdout == ""
    assert "the kernel stage is Python source, which --format dot can't draw: use --format text" in out.stderr
    out = tracegrad("dump", "--format", "dot", script, "3")  # every stage, on stdout
    assert out.returncode == 1 and "pick a graph stage (--stage traced, adjoint or optimized)" in out.stderr
    assert "-o DIR" in out.stderr
    out = tracegrad("dump", "--backend", "numba", "--stage", "kernel", "--format", "json", script, "3")
    assert "@njit(" in _stages(out.stdout)["kernel"]["source"]


def cache(tmp_path, folder, action):
    return tracegrad("cache", action, TRACEGRAD_CACHE_DIR=str(folder), TRACEGRAD_CACHE_KEY=str(tmp_path / "key" / "k"))


def test_cache_info_names_the_folder_in_use_and_why(tmp_path):
    out = cache(tmp_path, tmp_path / "cache", "info")
    kernels = tmp_path / "cache" / "kernels"
    assert out.returncode == 0, out.stderr
    assert f"path: {tmp_path / 'cache'} (set by TRACEGRAD_CACHE_DIR)" in out.stdout
    assert f"folder in use: {kernels} (read-write)" in out.stdout and f"new kernels go to: {kernels}" in out.stdout
    assert "kernels: 0\nfiles: 0\nsize: 0 bytes\n" in out.stdout


@pytest.mark.parametrize("unusable", ["writable by others", "a file in its place"])
def test_cache_info_with_an_unusable_folder_names_the_fallback_and_why(tmp_path, unusable):
    folder = tmp_path / "shared"
    if unusable == "writable by others":
        (folder / "kernels").mkdir(parents=True)
        (folder / "kernels" / f"tg_{'0' * 32}.py").write_text("# not loaded: the folder is not used\n")
        os.chmod(folder / "kernels", 0o777)
        why = "group or others can write to it"
        fix = f"to fix it: run `chmod go-w {folder} {folder / 'kernels'}` if the folders are yours"
    else:
        folder.write_text("a file where the cache folder should be")
        folder = folder / "cache"
        why = "Not a directory"
        fix = "to fix it: set TRACEGRAD_CACHE_DIR to a folder you can write"
    out = cache(tmp_path, folder, "info")
    assert out.returncode == 0, out.stderr
    private = "a private temporary folder of each process, removed at exit"
    assert f"folder in use: {private} (a fallback: {folder / 'kernels'} can't be used: {why})" in out.stdout
    assert fix in out.stdout and f"new kernels go to: {private}" in out.stdout
    assert f"folder in use: {folder / 'kernels'} " not in out.stdout and "kernels: 0\n" in out.stdout
    out = cache(tmp_path, folder, "clear")
    assert out.returncode == 1 and out.stdout == ""
    assert f"nothing removed: the kernel cache {folder / 'kernels'} is not used ({why})" in out.stderr
    if unusable == "writable by others":
        assert len(list((folder / "kernels").iterdir())) == 1


def test_cache_clear_removes_tracegrad_files_only_and_counts_them(tmp_path):
    folder = tmp_path / "cache"
    assert cache(tmp_path, folder, "info").returncode == 0  # makes the folders, 0700
    kernels = folder / "kernels"
    key = "0123456789abcdef" * 2
    own = {f"tg_{key}.py": 100, f"tg_{key}.nbi": 20, f"tg_{key}.{key[:16]}.nbc": 3000, f"tg_{'f' * 32}.py": 7,
           f"helper_runtime.dot-{key[:16]}.nbi": 10, f"helper_runtime.dot-{key[:16]}.{key[:16]}.nbc": 900, "uses": 4}
    foreign = {"notes.txt": 5, "tg_mine.py": 6, f"tg_{key}": 8}
    for name, size in {**own, **foreign}.items():
        (kernels / name).write_bytes(b"x" * size)
    (kernels / "sub").mkdir()
    out = cache(tmp_path, folder, "info")
    assert "kernels: 2\nfiles: 7\nsize: 4041 bytes (4.0 kB)\n" in out.stdout, out.stdout
    out = cache(tmp_path, folder, "clear")
    assert out.returncode == 0, out.stderr
    assert out.stdout == (
        f"removed 2 kernels: 7 files, 4041 bytes (4.0 kB), from {kernels} (tracegrad's own files only)\n")
    assert sorted(p.name for p in kernels.iterdir()) == sorted([*foreign, "sub"])
    (kernels / f"tg_{key}.py").write_bytes(b"x")
    out = cache(tmp_path, folder, "clear")
    assert out.stdout.startswith("removed 1 kernel: 1 file, 1 byte, from")

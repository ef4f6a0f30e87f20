"""The disk cache of Numba kernels: reuse across processes, damaged entries rebuilt, the CLI."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A tiny training step; prints what the kernel cache did as JSON.
SCRIPT = """
import json
import sys
import numpy as np
import tracegrad as tg
w = tg.tensor(np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2), requires_grad=True)
x = tg.ones(4, 3)
opt = tg.optim.SGD([w], lr=0.1)
@tg.compile(backend="numba")
def step():
    opt.zero_grad()
    loss = (x @ w).tanh().sum()
    loss.backward()
    opt.step()
    return loss
losses = [float(step()) for _ in range(4)]
kernel = next(iter(step._variants.values()))[0].execute
stats = kernel.function.stats
print(json.dumps({"losses": losses, "w": w.detach().numpy().tobytes().hex(), "from_disk": kernel.from_disk, "numba_hits": sum(stats.cache_hits.values()),
                  "numba_misses": sum(stats.cache_misses.values()), "scipy_linalg": "scipy.linalg" in sys.modules}))
"""


def _run(cache_dir: Path, script: str = SCRIPT, stderr: list | None = None) -> dict:
    env = {**os.environ, "TRACEGRAD_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr
    if stderr is not None:
        stderr.append(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _same(a: dict, b: dict) -> bool:
    """Bit for bit the same losses and parameters: every replay runs the same machine code, whether the
    kernel was compiled in this process or loaded from the cache."""
    return a["losses"] == b["losses"] and a["w"] == b["w"]


def _kernel_files(cache_dir: Path) -> list:
    return sorted((cache_dir / "kernels").glob("tg_*.py"))


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A cache directory after one process compiled the step, and what that process saw."""
    cache_dir = tmp_path_factory.mktemp("kernels")
    return cache_dir, _run(cache_dir)


def test_first_process_compiles_and_writes_one_kernel_file(filled):
    cache_dir, first = filled
    assert not first["from_disk"] and first["numba_misses"] == 1 and first["numba_hits"] == 0
    assert len(_kernel_files(cache_dir)) == 1


def test_second_process_loads_the_kernel_without_calling_numbas_compiler(filled):
    cache_dir, first = filled
    second = _run(cache_dir)
    assert second["from_disk"] and second["numba_hits"] == 1 and second["numba_misses"] == 0
    assert _same(second, first)


def test_the_info_log_says_where_numbas_compile_time_went(tmp_path, monkeypatch):
    monkeypatch.setenv("TRACEGRAD_LOG", "info")
    logs: list = []
    _run(tmp_path, stderr=logs)
    _run(tmp_path, stderr=logs)
    compiled = re.search(r"first kernel call \(Numba compiling\) took ([\d.]+) ms: typing (\d+) ms, lowering "
                         r"and LLVM (\d+) ms, other passes (\d+) ms, outside Numba's compiler (\d+) ms", logs[0])
    assert compiled, logs[0]
    total, *phases = map(float, compiled.groups())
    assert all(phase > 0 for phase in phases) and sum(phases) == pytest.approx(total, abs=3)  # each rounded to 1 ms
    loaded = re.search(r"first kernel call \(Numba loading its cache\) took [\d.]+ ms$", logs[1], re.M)
    assert loaded, logs[1]


def test_a_warm_start_does_not_import_scipy_and_numba_still_gets_it_when_needed(filled):
    """Kernels call NumPy's BLAS: loading one skips SciPy's import (a quarter of a warm start), while
    a function compiled afterwards that needs SciPy's BLAS (np.dot in Numba) still works."""
    cache_dir, _ = filled
    later = SCRIPT + '''
import numba
@numba.njit
def dot(a, b):
    return np.dot(a, b)
a = np.arange(6.0).reshape(2, 3)
print(json.dumps({"dot_ok": bool(np.allclose(dot(a, a.T), a @ a.T))}))
'''
    out = subprocess.run([sys.executable, "-c", later], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "TRACEGRAD_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    kernel_report, dot_report = (json.loads(line) for line in out.stdout.strip().splitlines()[-2:])
    assert kernel_report["from_disk"] and not kernel_report["scipy_linalg"]
    assert dot_report["dot_ok"]


@pytest.mark.parametrize("damage", ["truncate", "corrupt"])
def test_a_damaged_kernel_file_is_rebuilt_not_trusted(filled, tmp_path, damage):
    cache_dir, first = filled
    copy = tmp_path / "cache"
    subprocess.run(["cp", "-r", str(cache_dir), str(copy)], check=True)
    path = _kernel_files(copy)[0]
    text = path.read_text()
    corrupt = text.replace("def ", "dfe ", 1)  # one flipped pair of letters: a syntax error if imported
    assert corrupt != text
    path.write_text(text[: len(text) // 2] if damage == "truncate" else corrupt)
    again = _run(copy)
    assert not again["from_disk"] and _same(again, first)
    assert path.read_text() == text  # rewritten whole


def test_damaged_numba_cache_files_are_recompiled(filled, tmp_path):
    cache_dir, first = filled
    copy = tmp_path / "cache"
    subprocess.run(["cp", "-r", str(cache_dir), str(copy)], check=True)
    for f in (copy / "kernels" / "__pycache__").iterdir():
        f.write_bytes(f.read_bytes()[:10])
    assert _same(_run(copy), first)


def test_an_unusable_cache_directory_falls_back_to_a_temporary_one_with_a_warning(filled, tmp_path):
    _, first = filled
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    stderr = []
    result = _run(blocker / "cache", stderr=stderr)
    assert _same(result, first) and not result["from_disk"]
    assert "can't be used" in stderr[0] and "TRACEGRAD_CACHE_DIR" in stderr[0]


def test_concurrent_processes_share_one_cache_safely(tmp_path):
    env = {**os.environ, "TRACEGRAD_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(2)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert _same(results[0], results[1])
    assert len(_kernel_files(tmp_path)) == 1 and not list((tmp_path / "kernels").glob("*.tmp"))


def test_cache_cli_info_and_clear(filled, tmp_path):
    cache_dir, _ = filled
    copy = tmp_path / "cache"
    subprocess.run(["cp", "-r", str(cache_dir), str(copy)], check=True)
    env = {**os.environ, "TRACEGRAD_CACHE_DIR": str(copy), "PYTHONPATH": str(ROOT)}

    def cli(*args):
        out = subprocess.run([sys.executable, "-m", "tracegrad", "cache", *args], capture_output=True, text=True,
                             env=env, check=True)
        return out.stdout
    assert f"path: {copy}" in cli("info") and "kernels: 1" in cli("info")
    assert "removed 1 kernels" in cli("clear")
    assert "kernels: 0" in cli("info") and not _kernel_files(copy)

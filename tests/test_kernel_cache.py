"""The disk cache of Numba kernels: reuse across processes, damaged or foreign entries never loaded, the CLI."""
import json
import os
import pickle
import random
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]

# A tiny training step; prints what the kernel cache did as JSON.
SCRIPT = """
import json
import sys
import numpy as np
from numba.core import event
passes = []  # Numba compiler passes run: none when every kernel and helper comes from the disk cache
class Passes(event.Listener):
    def on_start(self, e): passes.append(e.data["name"])
    def on_end(self, e): pass
event.register("numba:run_pass", Passes())
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
                  "numba_misses": sum(stats.cache_misses.values()), "scipy_linalg": "scipy.linalg" in sys.modules,
                  "compiled": len(passes) > 0}))
"""


def _run(cache_dir: Path, script: str = SCRIPT, stderr: list | None = None, **env) -> dict:
    env = {**os.environ, "TRACEGRAD_CACHE_DIR": str(cache_dir), "PYTHONPATH": str(ROOT), **env}
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
    assert not second["compiled"] and first["compiled"]
    assert _same(second, first)


def test_cache_folders_and_files_are_private(filled):
    cache_dir, _ = filled
    for folder in (cache_dir, cache_dir / "kernels"):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    files = list((cache_dir / "kernels").iterdir())
    assert {p.suffix or p.name for p in files} == {".py", ".nbi", ".nbc", "uses"}
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files)


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
    for f in (copy / "kernels").glob("tg_*.nb?"):
        f.write_bytes(f.read_bytes()[:10])
    assert _same(_run(copy), first)


def test_an_unusable_cache_directory_falls_back_to_a_temporary_one_with_a_warning(filled, tmp_path):
    _, first = filled
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    stderr = []
    result = _run(blocker / "cache", stderr=stderr)
    assert _same(result, first) and not result["from_disk"]
    assert "is not used" in stderr[0] and "TRACEGRAD_CACHE_DIR" in stderr[0]


def test_concurrent_processes_share_one_cache_safely(tmp_path):
    """Four processes compiling the same step into an empty cache: same results, one consistent entry."""
    env = {**os.environ, "TRACEGRAD_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, env=env) for _ in range(4)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(_same(results[0], r) for r in results[1:])
    assert len(_kernel_files(tmp_path)) == 1 and not list((tmp_path / "kernels").glob("*.tmp"))
    stderr: list = []
    later = _run(tmp_path, stderr=stderr)  # every file the four wrote verifies
    assert later["from_disk"] and not later["compiled"] and _same(later, results[0]) and not stderr[0]


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
    assert f"folder in use: {copy / 'kernels'} (read-write)" in cli("info")
    assert cli("clear").startswith("removed 1 kernel: ")
    assert "kernels: 0" in cli("info") and not list((copy / "kernels").iterdir())  # every file it wrote is its own


def test_cache_info_counts_the_kernels_processes_loaded_and_compiled(tmp_path):
    _run(tmp_path)
    _run(tmp_path)
    env = {**os.environ, "TRACEGRAD_CACHE_DIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "tracegrad", "cache", "info"], capture_output=True, text=True,
                         env=env, check=True).stdout
    assert "loaded from the cache: 1 kernel, compiled: 1" in out, out


# ---- a cache that runs no foreign code ----------------------------------------------------------------
#
# Each attack plants code that would create MARKER if it ever ran. The step must still give the same
# numbers, after a warning and a rebuild.

def _copy(filled, tmp_path) -> tuple[Path, dict]:
    cache_dir, first = filled
    copy = tmp_path / "cache"
    shutil.copytree(cache_dir, copy)
    return copy, first


def _attacked_run(copy: Path, first: dict, marker: Path) -> tuple[dict, str]:
    stderr: list = []
    result = _run(copy, stderr=stderr)
    assert not marker.exists(), "planted code ran"
    assert _same(result, first)
    return result, stderr[0]


def test_an_edited_kernel_with_a_recomputed_checksum_is_not_run(filled, tmp_path):
    import hashlib
    copy, first = _copy(filled, tmp_path)
    marker = tmp_path / "ran"
    path = _kernel_files(copy)[0]
    body = path.read_text().partition("\n")[2]
    injected = f"open({str(marker)!r}, 'w').close()\n" + body
    for head in (f"# checksum: {hashlib.sha256(injected.encode()).hexdigest()}",
                 f"# tracegrad signature: {hashlib.sha256(injected.encode()).hexdigest()}"):
        path.write_text(f"{head}\n{injected}")
        result, stderr = _attacked_run(copy, first, marker)
        assert not result["from_disk"] and f"{path} is not loaded: its signature does not match" in stderr
        assert "open(" not in path.read_text()  # rebuilt


def test_a_planted_pyc_beside_an_intact_kernel_is_not_run(filled, tmp_path):
    import importlib.util
    from importlib._bootstrap_external import _code_to_timestamp_pyc
    copy, first = _copy(filled, tmp_path)
    marker = tmp_path / "ran"
    path = _kernel_files(copy)[0]
    st = path.stat()
    evil = compile(f"open({str(marker)!r}, 'w').close()\n" + path.read_text(), str(path), "exec")
    pyc = Path(importlib.util.cache_from_source(str(path)))
    pyc.parent.mkdir(exist_ok=True)
    pyc.write_bytes(_code_to_timestamp_pyc(evil, int(st.st_mtime), st.st_size))
    result, _ = _attacked_run(copy, first, marker)
    assert result["from_disk"] and not result["compiled"]  # the intact kernel and its machine code are used


class _Planted:
    """A pickle that creates a file when it is loaded."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize("target", ["tg_*.nbi", "tg_*.nbc"])
def test_a_planted_pickle_in_numbas_index_or_machine_code_is_not_loaded(filled, tmp_path, target):
    copy, first = _copy(filled, tmp_path)
    marker = tmp_path / "ran"
    path = next((copy / "kernels").glob(target))
    path.write_bytes(pickle.dumps(_Planted(marker)))
    result, stderr = _attacked_run(copy, first, marker)
    assert f"{path} is not loaded: its signature does not match" in stderr
    assert result["from_disk"] and result["compiled"]  # the kernel source is intact: only Numba compiles again
    again, stderr = _attacked_run(copy, first, marker)
    assert not again["compiled"] and not stderr  # rebuilt and signed anew


def test_a_cache_folder_others_can_write_is_not_used(filled, tmp_path):
    copy, first = _copy(filled, tmp_path)
    kernels = copy / "kernels"
    os.chmod(kernels, 0o777)
    before = sorted(p.name for p in kernels.iterdir())
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    stderr: list = []
    result = _run(copy, stderr=stderr, TMPDIR=str(scratch))
    assert _same(result, first) and not result["from_disk"]
    assert f"kernel cache {kernels} is not used: group or others can write to it" in stderr[0]
    assert f"chmod go-w {copy} {kernels}" in stderr[0]
    assert sorted(p.name for p in kernels.iterdir()) == before  # nothing read or written there
    assert not list(scratch.iterdir())  # the private folder is gone
    info = subprocess.run([sys.executable, "-m", "tracegrad", "cache", "info"], capture_output=True, text=True,
                          env={**os.environ, "TRACEGRAD_CACHE_DIR": str(copy), "PYTHONPATH": str(ROOT)})
    assert "new kernels go to: a private temporary folder" in info.stdout
    assert f"folder in use: {kernels} " not in info.stdout
    assert f"(a fallback: {kernels} can't be used: group or others can write to it)" in info.stdout
    assert "is not used: group or others can write to it" in info.stderr


@pytest.mark.skipif(os.getuid() != 0, reason="giving a file to another user needs root (CI runs as root)")
def test_a_kernel_file_owned_by_another_user_is_not_loaded(filled, tmp_path):
    import pwd
    copy, first = _copy(filled, tmp_path)
    path = _kernel_files(copy)[0]
    os.chown(path, pwd.getpwnam("nobody").pw_uid, -1)
    stderr: list = []
    result = _run(copy, stderr=stderr)
    assert _same(result, first) and not result["from_disk"]
    assert f"{path} is not loaded: it belongs to another user" in stderr[0]
    assert path.stat().st_uid == os.getuid()  # replaced by a file of our own


@pytest.mark.slow
def test_single_bit_flips_in_machine_code_are_caught(filled, tmp_path):
    """20 random bit flips in a kernel's machine code: never a crash nor a wrong number."""
    rng = random.Random(12)
    cache_dir, first = filled
    for trial in range(20):
        copy = tmp_path / f"cache{trial}"
        shutil.copytree(cache_dir, copy)
        path = next((copy / "kernels").glob("tg_*.nbc"))
        data = bytearray(path.read_bytes())
        bit = rng.randrange(8 * len(data))
        data[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(data))
        stderr: list = []
        result = _run(copy, stderr=stderr)
        assert _same(result, first) and result["compiled"], f"flipped bit {bit}"
        assert "signature does not match" in stderr[0], f"flipped bit {bit}"


# Simulates a read-only file system for the cache folder (root writes through file modes).
_READ_ONLY = """
import os
_access = os.access
os.access = lambda path, mode, **kw: (not mode & os.W_OK or not str(path).startswith({root!r})) and _access(path, mode, **kw)
"""


def _snapshot(folder: Path) -> list:
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*"))


@pytest.mark.parametrize("step", ["same", "new"])
def test_a_read_only_cache_is_used_and_nothing_is_left_behind(filled, tmp_path, step):
    """A trusted read-only cache (a container image, a shared install) loads without a compile; a step it
    does not hold compiles into a private folder that is removed at exit."""
    copy, first = _copy(filled, tmp_path)
    script = SCRIPT if step == "same" else SCRIPT.replace(".tanh()", ".sigmoid()")
    for folder in (copy, copy / "kernels"):
        os.chmod(folder, 0o500)
    for f in (copy / "kernels").iterdir():
        os.chmod(f, 0o400)
    before = _snapshot(copy)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    stderr: list = []
    try:
        result = _run(copy, _READ_ONLY.format(root=str(copy)) + script, stderr=stderr, TMPDIR=str(scratch))
    finally:
        os.chmod(copy, 0o700)
    assert _snapshot(copy) == before and not list(scratch.iterdir())
    assert not stderr[0]
    if step == "same":
        assert result["from_disk"] and not result["compiled"] and _same(result, first)
    else:
        assert not result["from_disk"] and result["compiled"]


# ---- compiled variants held in memory --------------------------------------------------------------------

def _sized_step(backend: str):
    import tracegrad as tg
    w = tg.tensor(np.ones((3, 2), np.float32), requires_grad=True)
    opt = tg.optim.SGD([w], lr=0.1)

    @tg.compile(backend=backend)
    def step(x):
        opt.zero_grad()
        loss = (x @ w).tanh().sum()
        loss.backward()
        opt.step()
        return loss
    return step, w


def _sizes(step, sizes, calls: int = 3) -> list:
    import tracegrad as tg
    return [float(step(tg.ones(n, 3))) for n in sizes for _ in range(calls)]


def test_variants_held_are_bounded_and_a_dropped_one_is_rebuilt(monkeypatch):
    import tracegrad as tg
    compile_module = sys.modules["tracegrad.compiler.compile"]
    monkeypatch.setattr(compile_module, "MAX_VARIANTS", 3)
    step, w = _sized_step("interpreter")
    eager_step, eager_w = _sized_step("eager")
    sizes = [2, 3, 4, 5, 6, 2, 3]
    assert _sizes(step, sizes) == _sizes(eager_step, sizes)
    assert np.array_equal(w.detach().numpy(), eager_w.detach().numpy())
    info = step.cache_info()
    assert info.entries == 3 and info.compiles == 7  # sizes 2 and 3 were dropped, then traced again
    assert len(compile_module._HELD) <= 3
    tg.manual_seed(0)


def test_cache_clear_releases_the_compiled_kernels():
    """After cache_clear() no Numba dispatcher of the step is alive (Numba keeps the machine code)."""
    import gc
    import weakref
    step, _ = _sized_step("numba")
    eager_step, _ = _sized_step("eager")
    np.testing.assert_allclose(_sizes(step, [2, 3]), _sizes(eager_step, [2, 3]), rtol=1e-5)
    dispatchers = [weakref.ref(v.execute.function) for vs in step._variants.values() for v in vs]
    assert len(dispatchers) == 2 and all(d() is not None for d in dispatchers)
    step.cache_clear()
    gc.collect()
    gc.collect()  # the second pass frees what the finalizers of the first released
    assert all(d() is None for d in dispatchers)
    assert not [name for name in sys.modules if name.startswith("tracegrad_kernel_")]
    np.testing.assert_allclose(_sizes(step, [2]), _sizes(eager_step, [2]), rtol=1e-5)  # and it compiles again


def test_processes_saving_machine_code_of_different_signatures_at_once_never_mix_them(tmp_path):
    """Two processes that read the index before either wrote it: each file holds its own signature's code
    (Numba would number both data files 1, and one index would name the other's code)."""
    from tracegrad.backends.numba_cpu.machine_code import _SignedFiles
    key = os.urandom(32)
    first, second = (_SignedFiles(tmp_path, "tg_k", "stamp", key) for _ in range(2))
    second._load_index = lambda: {}  # it read the index before the first process wrote it
    first.save(("sig", "float32"), {"code": "for float32"})
    second.save(("sig", "float64"), {"code": "for float64"})
    reader = _SignedFiles(tmp_path, "tg_k", "stamp", key)
    assert reader.load(("sig", "float64")) == {"code": "for float64"}
    assert reader.load(("sig", "float32")) in (None, {"code": "for float32"})  # a miss at worst
    assert len(list(tmp_path.glob("tg_k.*.nbc"))) == 2  # one file per signature: neither overwrote the other

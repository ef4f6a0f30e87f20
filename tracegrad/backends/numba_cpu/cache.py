"""The disk cache of generated kernels: per kernel, a signed ``.py`` source and Numba's signed machine code.

A kernel's key is a hash of everything that shapes its code (graph structure, backend, options,
tracegrad, Numba and LLVM versions, CPU). A second process finds ``tg_<key>.py``, verifies its
signature, executes it as a fresh module (never through Python's import system, which would trust a
``.pyc`` beside it), and Numba loads the machine code from ``tg_<key>*.nbi/.nbc`` (``machine_code``):
neither code generation nor LLVM runs again.

Which folders are used (``trust`` says why each rule exists):

- the configured folder, when it and its ``kernels`` folder belong to you (or root) and only the
  owner can write them; created ``0700`` when missing, every file ``0600``;
- if it is read-only (a shared install, a container image), its kernels are loaded and new ones go to
  a private temporary folder removed when the process exits;
- if it can't be trusted or used at all, only that private folder, after one warning.
"""
from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import logging
import os
import platform
import re
import shutil
import sys
import tempfile
import types
from dataclasses import dataclass
from pathlib import Path

from . import machine_code, trust

LOG = logging.getLogger("tracegrad")


@dataclass
class Folder:
    """A folder of kernels: where it is, whether this process may add to it, the key its files are signed with."""
    path: Path
    writable: bool
    key: bytes
    private: bool = False  # this process's temporary folder, removed at exit


_FOLDERS: dict[str, list[Folder]] = {}  # configured cache folder -> the folders kernels are looked up in, in order
_UNUSED: dict[str, tuple[str, str, str]] = {}  # configured cache folder -> (its kernels folder, why unused, the fix)
# The files tracegrad writes in a kernels folder: kernels (tg_<key>.py, tmp files while written), their
# machine code (tg_<key>.nbi, tg_<key>.<signature>.nbc), the helpers' machine code, the `uses` log.
_OWN = re.compile(r"tg_[0-9a-f]{32}\..+|helper_\w+\.\w+-[0-9a-f]{16}\..+|uses")
COUNTS = {"hits": 0, "misses": 0}  # kernels found on disk / generated, in this process
_HELPERS_CACHED: list[Folder] = []  # the folder the helpers kernels call are cached in, once set


def cache_dir() -> Path:
    """Where kernels live: $TRACEGRAD_CACHE_DIR, else ~/.cache/tracegrad."""
    configured = os.environ.get("TRACEGRAD_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "tracegrad"


def folders() -> list[Folder]:
    """The folders kernels are looked up in, the configured one first (checked once per process)."""
    configured = str(cache_dir())
    found = _FOLDERS.get(configured)
    if found is None:
        found = _FOLDERS[configured] = _open(Path(configured))
    return found


def why_unused() -> tuple[str, str, str] | None:
    """(kernels folder, why it is not used, the fix) when the configured folder can't be used; None when it is."""
    folders()
    return _UNUSED.get(str(cache_dir()))


def _open(root: Path) -> list[Folder]:
    key = trust.signing_key()
    directory = root / "kernels"
    if key is None:
        _UNUSED[str(root)] = (str(directory), f"the signing key {trust.key_path()} can't be used",
                              "see the warning above")
        return []
    try:
        for folder in (root, directory):
            if not folder.exists():
                folder.mkdir(mode=0o700, parents=True)
                os.chmod(folder, 0o700)  # the mode mkdir gets is cut by the umask, never widened: make sure
    except OSError as error:
        problem, fix = error.strerror or str(error), "set TRACEGRAD_CACHE_DIR to a folder you can write"
    else:
        problem = trust.problem_with(root, folder=True, sticky_ok=True) or trust.problem_with(directory, folder=True)
        if problem is None:
            folder = Folder(directory, os.access(directory, os.W_OK), key)
            if folder.writable:
                _record_use(folder)
            return [folder]
        fix = (f"run `chmod go-w {root} {directory}` if the folders are yours, or set TRACEGRAD_CACHE_DIR to a "
               f"folder of your own")
    LOG.warning("kernel cache %s is not used: %s; kernels of this process go to a private temporary folder and "
                "are not kept. To fix it, %s", directory, problem, fix)
    _UNUSED[str(root)] = (str(directory), problem, fix)
    return []


def _record_use(folder: Folder) -> None:
    """At exit, append this process's hits and misses to the folder's ``uses`` log (one line per process,
    written in one call, so processes running at once don't lose counts): ``tracegrad cache info`` sums it."""
    def write() -> None:
        if COUNTS["hits"] or COUNTS["misses"]:
            with contextlib.suppress(OSError):
                fd = os.open(folder.path / "uses", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                with os.fdopen(fd, "w") as f:
                    f.write(f"{COUNTS['hits']} {COUNTS['misses']}\n")
    atexit.register(write)


def _uses(folder: Path) -> tuple[int, int]:
    """(hits, misses) of every process that recorded its use of ``folder``."""
    hits = misses = 0
    with contextlib.suppress(OSError):
        for line in (folder / "uses").read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                h, m = map(int, line.split())
                hits, misses = hits + h, misses + m
    return hits, misses


def _writable() -> Folder:
    """The folder new kernels go to: the configured one, else a private one made now (removed at exit)."""
    found = folders()
    if found and found[-1].writable:
        return found[-1]
    path = Path(tempfile.mkdtemp(prefix="tracegrad-kernels-"))  # mode 0700
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    found.append(Folder(path, True, os.urandom(trust.KEY_BYTES), private=True))
    return found[-1]


def kernel_key(graph_hash: str, backend: str, options: str) -> str:
    """The content key of one kernel: every input that changes the generated or compiled code."""
    import llvmlite
    import numba

    from ... import __version__
    parts = [graph_hash, backend, options, __version__, numba.__version__, llvmlite.__version__,
             platform.machine(), platform.processor(), sys.version.split()[0], code_digest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=None)
def code_digest() -> str:
    """Hash of this backend's folder: the code generator, the scheduler that orders a kernel, the loop
    templates and the helpers kernels call (what a primitive computes is in its graph's hash; how it is
    spelled is here, or in the kernel source a generic kernel is keyed by).

    Numba's cache notices neither a change of the generator nor of a helper a kernel calls.
    """
    return hashlib.sha256(b"".join(f.read_bytes() for f in hashed_files())).hexdigest()


def hashed_files() -> list[Path]:
    """The files ``code_digest`` hashes: this backend's folder, nothing else."""
    return sorted(Path(__file__).parent.glob("*.py"))


def load(key: str, make_source, machine_code_of_entry: bool = True) -> tuple[types.ModuleType, bool]:
    """(module, found): the kernel module of ``key`` from the first folder holding a valid copy, else
    ``make_source()`` written to the writable folder first. ``machine_code_of_entry``: the module's ``ENTRY`` is a
    Numba CPU dispatcher whose machine code is cached beside it (False for a module of CUDA kernels and a
    Python driver, whose kernels Numba's CUDA target compiles)."""
    name = f"tg_{key}.py"
    for folder in folders():
        text = trust.read_signed(folder.key, folder.path / name, text=True)
        if text is not None:
            COUNTS["hits"] += 1
            return _module(folder, key, text, machine_code_of_entry), True
    folder = _writable()
    text = trust.sign_text(folder.key, name, make_source())
    forget_machine_code(folder, key)  # machine code of an older or damaged file of this name
    trust.write_private(folder.path / name, text.encode())
    COUNTS["misses"] += 1
    return _module(folder, key, text, machine_code_of_entry), False


def _module(folder: Folder, key: str, text: str, machine_code_of_entry: bool) -> types.ModuleType:
    """Execute verified kernel source as a new module whose entry point has the folder's signed Numba cache
    (when ``machine_code_of_entry``).

    Numba finds a function's module by name when it compiles and loads machine code, so the module is in
    sys.modules until ``release`` (when the kernel is dropped)."""
    path = folder.path / f"tg_{key}.py"
    module = sys.modules[f"tracegrad_kernel_{key}"] = types.ModuleType(f"tracegrad_kernel_{key}")
    module.__file__ = str(path)
    exec(compile(text, str(path), "exec"), module.__dict__)
    module.SOURCE = text.partition("\n")[2]  # without the signature line
    if machine_code_of_entry:
        signature = text.partition("\n")[0]  # the source's signature: Numba's files are valid for this source only
        machine_code.attach(module.ENTRY, folder.path, f"tg_{key}", signature, folder.key)
        _cache_helpers(folder)
    return module


def _cache_helpers(folder: Folder) -> None:
    """Give the Numba functions kernels call (BLAS products, fast math) a signed cache in the first folder a
    kernel comes from: a process that compiles kernels then loads their machine code instead of compiling it."""
    from . import fastmath, runtime
    if _HELPERS_CACHED:
        return
    _HELPERS_CACHED.append(folder)
    for helper in (runtime.matmul_into, runtime.dot, fastmath.tanh, fastmath.exp, fastmath.log):
        stem = f"helper_{helper.py_func.__module__.rpartition('.')[2]}.{helper.__name__}-{code_digest()[:16]}"
        machine_code.attach(helper, folder.path, stem, code_digest(), folder.key)


def release(module: types.ModuleType) -> None:
    """Forget a kernel module (its kernel is no longer used): the module and its dispatcher can be freed."""
    if sys.modules.get(module.__name__) is module:
        del sys.modules[module.__name__]


def forget_machine_code(folder: Folder, key: str) -> None:
    """Delete Numba's cache files (index and machine code) of the kernel ``key`` in ``folder``."""
    for stale in folder.path.glob(f"tg_{key}.*nb[ic]"):  # tg_<key>.nbi, tg_<key>.<signature hash>.nbc
        stale.unlink(missing_ok=True)


def _own_files(folder: Path) -> list[Path]:
    """The files tracegrad wrote in a kernels folder (see ``_OWN``); other files are never counted nor removed."""
    return [p for p in folder.iterdir() if _OWN.fullmatch(p.name) and not p.is_symlink() and p.is_file()]


def _contents(files: list[Path]) -> dict:
    """How many kernels, files and bytes ``files`` hold."""
    return {"kernels": sum(1 for p in files if p.name.startswith("tg_") and p.suffix == ".py"), "files": len(files),
            "bytes": sum(p.stat().st_size for p in files)}


def info() -> dict:
    """The configured folder and what chose it (``configured_by``), why it is not used (``unused``, see
    ``why_unused()``), the folders in use, where new kernels go (``new_kernels``; None: a private temporary folder
    per process), the kernels, files and bytes tracegrad keeps there, the hits and misses recorded there by
    earlier processes, and this process's own."""
    found = folders()
    writable = [f for f in found if f.writable]
    recorded = [_uses(folder.path) for folder in found]
    return {"path": str(cache_dir()),
            "configured_by": "TRACEGRAD_CACHE_DIR" if os.environ.get("TRACEGRAD_CACHE_DIR") else "default",
            "unused": why_unused(), "folders": [(str(f.path), _describe(f)) for f in found],
            "new_kernels": str(writable[-1].path) if writable else None,
            **_contents([p for folder in found for p in _own_files(folder.path)]),
            "recorded_hits": sum(h for h, _ in recorded), "recorded_misses": sum(m for _, m in recorded), **COUNTS}


def _describe(folder: Folder) -> str:
    return "private, removed at exit" if folder.private else "read-write" if folder.writable else "read-only"


class NothingToClear(Exception):
    """No folder keeps this process's kernels (the configured one is unusable or read-only); the message says why."""


def clear() -> dict:
    """Delete tracegrad's own files (``_OWN``) from the folder kernels are kept in, nothing else; returns that
    folder (``path``) and the kernels, files and bytes removed. Raises NothingToClear when no folder keeps them."""
    problem = why_unused()
    if problem is not None:
        directory, why, fix = problem
        raise NothingToClear(f"nothing removed: the kernel cache {directory} is not used ({why}), so no kernel is "
                             f"kept. To fix it, {fix}")
    kept = [f for f in folders() if f.writable and not f.private]
    if not kept:
        raise NothingToClear(f"nothing removed: the kernel cache {folders()[0].path} is read-only (a shared cache); "
                             f"it is cleared by whoever can write it. Set TRACEGRAD_CACHE_DIR to a folder of your own "
                             f"to keep kernels of your own")
    files = _own_files(kept[0].path)
    removed = {"path": str(kept[0].path), **_contents(files)}
    for path in files:
        path.unlink(missing_ok=True)
    return removed

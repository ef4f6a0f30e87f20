"""The disk cache of generated kernels: one content-addressed ``.py`` file per kernel.

Numba's own cache (``cache=True``) needs a real source file: it is keyed by the file's path and
checks the source's content, so each kernel gets a file named after a hash of everything that
shapes its code (graph structure, backend, options, tracegrad, Numba and LLVM versions, CPU).
A second process finds the file, imports it and Numba loads the machine code from ``__pycache__``
beside it: neither code generation nor LLVM runs again. Files are written atomically (a temporary
file, then a rename), and each carries a checksum of its body: a corrupt or truncated file is
rebuilt, never imported.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
import logging
import os
import platform
import shutil
import sys
import tempfile
from pathlib import Path

_CHECKSUM = "# checksum: "


_FALLBACK: list = []  # a temporary directory of this process, used when the cache directory can't be written


def cache_dir() -> Path:
    """Where kernels live: $TRACEGRAD_CACHE_DIR, else ~/.cache/tracegrad."""
    configured = os.environ.get("TRACEGRAD_CACHE_DIR")
    return Path(configured) if configured else Path.home() / ".cache" / "tracegrad"


def _kernel_dir() -> Path:
    """The kernels folder, made if needed; a temporary one (with a warning) when that is impossible."""
    if _FALLBACK:
        return _FALLBACK[0]
    directory = cache_dir() / "kernels"
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if os.access(directory, os.W_OK):
            return directory
        problem = "it is not writable"
    except OSError as error:
        problem = str(error)
    _FALLBACK.append(Path(tempfile.mkdtemp(prefix="tracegrad-kernels-")))
    logging.getLogger("tracegrad").warning(
        "kernel cache %s can't be used (%s); kernels of this process go to %s and are not kept: set "
        "TRACEGRAD_CACHE_DIR to a writable folder", directory, problem, _FALLBACK[0])
    return _FALLBACK[0]


def kernel_key(graph_hash: str, backend: str, options: str) -> str:
    """The content key of one kernel: every input that changes the generated or compiled code."""
    import llvmlite
    import numba

    from ... import __version__
    parts = [graph_hash, backend, options, __version__, numba.__version__, llvmlite.__version__,
             platform.machine(), platform.processor(), sys.version.split()[0], _code_digest()]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=None)
def _code_digest() -> str:
    """Hash of the code generator (with the scheduler that orders a kernel), the helpers kernels call and
    the primitives' loop templates.

    Numba's cache notices neither a change of the generator nor of a helper a kernel calls.
    """
    package = Path(__file__).parents[2]
    files = sorted((package / "backends" / "numba_cpu").glob("*.py")) + sorted((package / "primitives").glob("*.py")) + \
        [package / "ir" / "passes.py"]
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


def _with_checksum(source: str) -> str:
    return f"{_CHECKSUM}{hashlib.sha256(source.encode()).hexdigest()}\n{source}"


def _intact(text: str) -> bool:
    head, _, body = text.partition("\n")
    return head.startswith(_CHECKSUM) and head[len(_CHECKSUM):] == hashlib.sha256(body.encode()).hexdigest()


def _path(key: str) -> Path:
    return _kernel_dir() / f"tg_{key}.py"


def load(key: str, make_source) -> tuple[object, bool]:
    """(module, found): the kernel module of ``key``, writing ``make_source()`` first when absent or damaged."""
    path = _path(key)
    found = path.exists() and _intact(path.read_text(errors="replace"))
    if not found:
        _write_atomically(path, _with_checksum(make_source()))
        forget_machine_code(key)  # Numba's cache of the old file
    module = sys.modules.get(f"tracegrad_kernel_{key}")
    return (module if module is not None else reload(key)), found


def reload(key: str):
    """Import the kernel file of ``key`` afresh (new Numba dispatchers, which read their cache anew)."""
    name = f"tracegrad_kernel_{key}"  # one module name per file: Numba's cache is keyed by both
    spec = importlib.util.spec_from_file_location(name, _path(key))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules[name] = module
    return module


def forget_machine_code(key: str) -> None:
    """Delete Numba's cache files (index and machine code) of the kernel ``key``."""
    path = _path(key)
    for stale in (path.parent / "__pycache__").glob(f"{path.stem}.*"):
        stale.unlink(missing_ok=True)


def _write_atomically(path: Path, text: str) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def info() -> dict:
    """Where the cache is, how many kernels it holds and their total size on disk (bytes)."""
    root = cache_dir()
    files = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    return {"path": str(root), "kernels": len(list((root / "kernels").glob("tg_*.py"))) if root.exists() else 0,
            "files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def clear() -> int:
    """Delete every cached kernel; returns how many there were."""
    count = info()["kernels"]
    shutil.rmtree(cache_dir() / "kernels", ignore_errors=True)
    return count

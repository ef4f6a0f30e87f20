"""Numba's on-disk cache of machine code, signed: a kernel's compiled code is saved and loaded by
Numba's own cache classes, with every file signed when written and verified before it is unpickled.

Numba's ``cache=True`` finds its folder from the function's source file and unpickles whatever index
(``.nbi``) and machine code (``.nbc``) it finds there. Here a dispatcher gets a cache object whose
folder and file names tracegrad chooses (the kernel's own folder and key) and whose reads go through
``trust.read_signed``. Anything that still fails while loading (a Numba upgrade that changed its
pickles, an LLVM error) is a cache miss with a warning: Numba compiles again and overwrites the files.
"""
from __future__ import annotations

import hashlib
import logging
import pickle
from pathlib import Path

from numba.core.caching import CompileResultCacheImpl, FunctionCache, IndexDataCacheFile, _CacheLocator

from . import trust

LOG = logging.getLogger("tracegrad")


class _Folder(_CacheLocator):
    """Numba's notion of where a function's cache lives, fixed to a folder tracegrad checked."""

    def __init__(self, folder: Path, source_file: str, stamp: str) -> None:
        self._folder, self._py_file, self._stamp = folder, source_file, stamp

    def ensure_cache_path(self) -> None:
        """The folder exists already (tracegrad made or checked it)."""

    def get_cache_path(self) -> str:
        return str(self._folder)

    def get_source_stamp(self) -> str:
        return self._stamp

    def get_disambiguator(self) -> str:
        return ""


class _Impl(CompileResultCacheImpl):
    """Numba's serialization of compile results, without its search for a folder next to the source."""

    def __init__(self, py_func, locator: _Folder, stem: str) -> None:  # noqa: super().__init__ would search
        self._lineno = py_func.__code__.co_firstlineno
        self._locator = locator
        self._filename_base = stem


class _SignedFiles(IndexDataCacheFile):
    """Numba's index and machine-code files, each signed: a file that fails its check is not unpickled."""

    def __init__(self, folder: Path, stem: str, stamp: str, key: bytes) -> None:
        super().__init__(str(folder), stem, stamp)
        self._stem, self._key = stem, key

    def _read(self, path: str):
        return trust.read_signed(self._key, Path(path), text=False)

    def _write(self, path: str, body: bytes) -> None:
        trust.write_private(Path(path), trust.sign_bytes(self._key, Path(path).name, body))

    def _load_index(self) -> dict:
        body = self._read(self._index_path)
        if body is None:
            return {}
        version, stamp, overloads = pickle.loads(body)  # signed by this user's key: written by tracegrad
        return overloads if (version, stamp) == (self._version, self._source_stamp) else {}

    def _save_index(self, overloads: dict) -> None:
        self._write(self._index_path, self._dump((self._version, self._source_stamp, overloads)))

    def save(self, key, data) -> None:
        """Write the machine code of ``key`` (a signature) to a file named after the key, then index it.

        Numba numbers its data files: two processes compiling different signatures at once could both
        take number 1, and an index would name a file holding another signature's code."""
        name = f"{self._stem}.{hashlib.sha256(repr(key).encode()).hexdigest()[:16]}.nbc"
        self._save_data(name, data)  # first: an index never names a file not written yet
        overloads = self._load_index()
        overloads[key] = name
        self._save_index(overloads)

    def load(self, key):
        name = self._load_index().get(key)
        body = None if name is None else self._read(self._data_path(name))
        return None if body is None else pickle.loads(body)

    def _save_data(self, name: str, data) -> None:
        self._write(self._data_path(name), self._dump(data))


class SignedCache(FunctionCache):
    """The cache of one dispatcher: files ``<stem>.nbi`` and ``<stem>.<signature hash>.nbc`` in ``folder``,
    signed with ``key``."""

    def __init__(self, dispatcher, folder: Path, stem: str, stamp: str, key: bytes) -> None:
        py_func = dispatcher.py_func
        self._name, self._py_func = repr(py_func), py_func
        self._impl = _Impl(py_func, _Folder(folder, py_func.__code__.co_filename, stamp), stem)
        self._cache_path = str(folder)
        self._cache_file = _SignedFiles(folder, stem, stamp, key)
        self.enable()

    def load_overload(self, sig, target_context):
        """The machine code of ``sig`` from disk, or None (a miss, with a warning when the files are unusable)."""
        try:
            return super().load_overload(sig, target_context)
        except Exception as error:  # noqa: any failure to load is a miss: Numba compiles afresh
            LOG.warning("Numba's cache of %s in %s can't be loaded (%s: %s); compiling it again",
                        self._py_func.__qualname__, self._cache_path, type(error).__name__, error)
            return None

    def save_overload(self, sig, data) -> None:
        """Save the machine code of ``sig``; a folder that can't be written (a read-only cache) keeps none."""
        try:
            super().save_overload(sig, data)
        except OSError as error:
            LOG.info("machine code of %s not saved in %s: %s", self._py_func.__qualname__, self._cache_path, error)

def attach(dispatcher, folder: Path, stem: str, stamp: str, key: bytes) -> None:
    """Give a Numba dispatcher (made without ``cache=True``) its signed disk cache."""
    dispatcher._cache = SignedCache(dispatcher, folder, stem, stamp, key)

"""What makes a cached kernel safe to load: folders and files only you (or root) can write, and a
keyed signature on every file, checked before anything in it is imported or unpickled.

A kernel file is Python source and Numba's cache files are pickles: loading either runs code. The
folder checks keep out other users (as ssh refuses key files others can write); the signature, an
HMAC-SHA256 under a per-user key kept outside the cache, keeps out anything tracegrad did not write
itself: a copied or planted file, an edited one whose plain checksum was recomputed, a damaged one.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import stat
import tempfile
from pathlib import Path

LOG = logging.getLogger("tracegrad")
_TEXT_SIGNATURE = "# tracegrad signature: "  # the first line of a signed source file
_DIGEST_BYTES = hashlib.sha256().digest_size  # the signature that prefixes a signed binary file
KEY_BYTES = 32


def key_path() -> Path:
    """The signing key's file: $TRACEGRAD_CACHE_KEY, else tracegrad/cache-key in the user's config folder."""
    configured = os.environ.get("TRACEGRAD_CACHE_KEY")
    if configured:
        return Path(configured)
    config = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config) / "tracegrad" / "cache-key"


def _owners() -> tuple:
    return (os.getuid(), 0)  # you, or root (a system-wide cache or key)


def problem_with(path: Path, folder: bool, sticky_ok: bool = False) -> str | None:
    """Why ``path`` must not be trusted (None when it can be): not yours or root's, writable by group or
    others (``sticky_ok``: unless it is a sticky folder like /tmp, where no one can rename or remove what
    others made), a symbolic link (for a file), or not the kind of thing expected."""
    try:
        st = os.stat(path) if folder else os.lstat(path)
    except OSError as error:
        return error.strerror or str(error)
    if folder != stat.S_ISDIR(st.st_mode) or not (folder or stat.S_ISREG(st.st_mode)):
        return "it is not a folder" if folder else "it is not a regular file"
    if st.st_uid not in _owners():
        return f"it belongs to another user (uid {st.st_uid})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH) and not (sticky_ok and st.st_mode & stat.S_ISVTX):
        return "group or others can write to it"
    return None


def signing_key() -> bytes | None:
    """This user's key, created (0600, in a 0700 folder) on first use; None, with a warning, when it can
    be neither read nor created or when others could have written it."""
    path = key_path()
    try:
        if not path.exists():
            _create_key(path)
        problem = problem_with(path, folder=False) or problem_with(path.parent, folder=True)
        if problem is None:
            key = path.read_bytes()
            if len(key) == KEY_BYTES:
                return key
            problem = f"it holds {len(key)} bytes, not {KEY_BYTES}"
    except OSError as error:
        problem = error.strerror or str(error)
    LOG.warning("the kernel cache's signing key %s can't be used (%s): kernels of this process are not kept. "
                "Remove the file to have a new one made, or set TRACEGRAD_CACHE_KEY to a key file of your own "
                "(%d random bytes, mode 0600)", path, problem, KEY_BYTES)
    return None


def _create_key(path: Path) -> None:
    """Write a new random key atomically: a process racing this one reads either no file or a whole key."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".cache-key-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(os.urandom(KEY_BYTES))
        os.link(temporary, path)  # fails if another process made the key first: theirs is kept
    except FileExistsError:
        pass
    finally:
        os.unlink(temporary)


def _digest(key: bytes, name: str, body: bytes) -> bytes:
    """The signature of a file's body under its name: a valid file can't be passed off as another one."""
    return hmac.new(key, name.encode() + b"\0" + body, hashlib.sha256).digest()


def sign_text(key: bytes, name: str, text: str) -> str:
    """Source text with its signature as a first comment line."""
    return f"{_TEXT_SIGNATURE}{_digest(key, name, text.encode()).hex()}\n{text}"


def sign_bytes(key: bytes, name: str, body: bytes) -> bytes:
    """Binary data prefixed with its signature."""
    return _digest(key, name, body) + body


def read_signed(key: bytes, path: Path, text: bool):
    """The verified content of a signed file (with the signature line, for text), None when there is
    no file; a file that is untrusted or fails its check is logged and reads as None too."""
    if not os.path.lexists(path):  # a plain cache miss
        return None
    problem = problem_with(path, folder=False)
    if problem is None:
        data = path.read_bytes()
        if text:
            head, _, body = data.partition(b"\n")
            signature, expected = head, (_TEXT_SIGNATURE + _digest(key, path.name, body).hex()).encode()
        else:
            signature, body = data[:_DIGEST_BYTES], data[_DIGEST_BYTES:]
            expected = _digest(key, path.name, body)
        if hmac.compare_digest(signature, expected):
            return data.decode() if text else body
        problem = "its signature does not match (it was changed outside tracegrad, copied from elsewhere or damaged)"
    LOG.warning("kernel cache file %s is not loaded: %s; compiling the kernel again", path, problem)
    return None


def write_private(path: Path, data: bytes) -> None:
    """Write a file only you can read (0600), atomically: a reader sees the old file or the whole new one."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise

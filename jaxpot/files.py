"""Atomic file writes: a file is either its old complete version or its new
complete one, never a half-written mix, even after ``kill -9`` or a full
disk. The new content goes to a temporary file in the same directory, is
flushed and fsync'ed, then replaces the target with ``os.replace`` (atomic
on POSIX and Windows within one file system); the directory is fsync'ed
too where the platform allows. No units.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


@contextlib.contextmanager
def atomic_open(path, mode: str = "wb", **kwargs):
    """``with atomic_open(path, "w") as fh: ...``: write ``path`` atomically.
    On an exception inside the block the target is left as it was and the
    temporary file is removed."""
    if "w" not in mode:
        raise ValueError(f"atomic_open writes whole files (mode 'w' or 'wb'), got {mode!r}")
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _mode(path))    # mkstemp makes 0600; keep what open() would give
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_directory(path.parent)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as fh:
        fh.write(data)


def _mode(path: Path) -> int:
    """The permission bits of ``path`` if it exists, else 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_directory(directory) -> None:
    """Make the rename itself durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)

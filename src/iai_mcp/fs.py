"""Two file habits every part of iai-mcp shares: atomic replacement and flock.

``write_atomic`` is the one way a file is replaced: the bytes go to a temp
file beside the target (named by ``temp_path``, so ``stray_temps`` can find
what a killed writer left), which is flushed, optionally fsynced, and renamed
over the target. A reader sees the old file or the new one, never half of
either, and a failed write removes its temp file, so a full disk does not
collect them.

``private_umask`` / ``make_private_dir``: everything iai-mcp creates is
owner-only (0700 directories, 0600 files), whichever process creates it.
Files we write ourselves pass an explicit mode; LanceDB and SQLite create
theirs with the process umask, so a process that opens a store narrows its
umask once (``MemoryStore`` and every CLI entry point call it).

``try_lock`` / ``open_locked`` take an exclusive, non-blocking ``flock``.
flock belongs to the open file description, so it is released when the fd
is closed or the process dies, even by SIGKILL: no stale locks to clean up.
"""
from __future__ import annotations

import fcntl
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

TEMP_SUFFIX = ".tmp"
#: Bits no file or directory of a store ever grants: group and other.
PRIVATE_UMASK = 0o077


def private_umask() -> None:
    """Narrow the process umask so group and other get nothing. Process-wide
    on purpose: LanceDB writes new data files and manifests on every write,
    from its own threads, so a umask set only around one call would miss
    them. Bits the caller already masks stay masked."""
    current = os.umask(PRIVATE_UMASK)
    os.umask(current | PRIVATE_UMASK)


def make_private_dir(path: Path) -> Path:
    """``mkdir -p`` where every directory created gets mode 0700, whatever
    the umask (``mkdir(mode=)`` is masked by it, and ``parents=True`` ignores
    it for the parents). An existing directory is left as it is."""
    missing: list[Path] = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for directory in reversed(missing):
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            continue  # made meanwhile by another process: not ours to change
        os.chmod(directory, 0o700)
    if not path.is_dir():
        raise NotADirectoryError(f"{path} is not a directory")
    return path


def temp_path(target: Path) -> Path:
    """A fresh name to stage ``target`` under: hidden, beside it, unique per
    call (two writers of one target never share a temp file)."""
    return target.with_name(f".{target.name}.{os.getpid()}-{secrets.token_hex(4)}{TEMP_SUFFIX}")


def stray_temps(directory: Path) -> Iterator[Path]:
    """Temp files a killed ``write_atomic`` left in ``directory``."""
    if directory.is_dir():
        yield from sorted(directory.glob(f".*{TEMP_SUFFIX}"))


def write_atomic(target: Path, data: bytes | str, *, mode: int = 0o600, fsync: bool = True) -> None:
    """Replace ``target`` with ``data`` in one rename; the file gets ``mode``."""
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_writer(target, mode=mode, fsync=fsync) as out:
        out.write(payload)


@contextmanager
def atomic_writer(target: Path, *, mode: int = 0o600, fsync: bool = True) -> Iterator[BinaryIO]:
    """``write_atomic`` for data written piece by piece (an export of every
    memory need not be held in memory): ``target`` is replaced when the block
    ends normally; if it raises, ``target`` is untouched and the temp removed."""
    tmp = temp_path(target)
    # O_EXCL: never write into a file that was already there (a planted temp or
    # symlink is refused, not reused or followed).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(fd, mode)  # O_CREAT's mode is masked by the umask
            yield out
            out.flush()
            if fsync:
                os.fsync(fd)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def writable(directory: Path) -> bool:
    """Whether this process may create files in ``directory`` (False on a
    read-only directory or file system). Root may write anywhere."""
    return os.access(directory, os.W_OK)


def try_lock(fd: int) -> bool:
    """Exclusive non-blocking flock on ``fd``; False if another open file holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def open_locked(path: Path, *, mode: int = 0o600) -> int | None:
    """Open (creating) ``path`` and lock it exclusively; the fd, or None if
    another process holds the lock. Closing the fd releases it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, mode)
    try:
        if try_lock(fd):
            return fd
    except BaseException:
        os.close(fd)
        raise
    os.close(fd)
    return None

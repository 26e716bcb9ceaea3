"""Sealed caches: data derived from a store's records, kept beside them so a
fresh process need not derive it again (recall's keyword index:
``core.recall_snapshot``).

A cache holds what the records hold (an index lists the store's words), so
it is sealed like them: AES-GCM with the store's key, bound to the cache's
name and the store (``MemoryStore.sealer``), in an owner-only file
``<name>.cache`` in the store root, replaced atomically. It is never
fsynced: after a power cut a torn file fails authentication and is derived
again, which is all a cache needs.

The caller decides whether what it reads still fits the records; this
module only keeps bytes private and whole. A purge deletes every cache
(``drop_all``): afterwards no file may hold a purged record's words.
"""
from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from iai_mcp.errors import InvalidInput, StoreError
from iai_mcp.fs import stray_temps, temp_path
from iai_mcp.log import logger
from iai_mcp.store.crypto import Sealer

_log = logger("iai_mcp.store")

SUFFIX = ".cache"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
#: What ``stage`` writes a cache to first (``fs.temp_path``): ``.<name>.cache.<pid>-<hex>.tmp``.
_STRAY = re.compile(rf"\.{_NAME.pattern}{re.escape(SUFFIX)}\.")


class SealedCache:
    """The caches of the store at ``root``, sealed by ``sealer(purpose)``."""

    def __init__(self, root: Path, sealer: Callable[[str], Sealer]) -> None:
        self._root = root
        self._sealer = sealer
        #: Guards ``_staged``: the temp files ``stage`` is writing now.
        self._staging = threading.Lock()
        self._staged: set[Path] = set()

    def path(self, name: str) -> Path:
        """Where cache ``name`` lives; InvalidInput for a name that is not
        lowercase letters, digits and dashes (never a path)."""
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInput(f"a cache name is lowercase letters, digits and dashes, not {name!r}")
        return self._root / f"{name}{SUFFIX}"

    def _bound(self, name: str) -> Sealer:
        return self._sealer(f"cache:{name}")

    def read(self, name: str) -> bytes | None:
        """The bytes last written as ``name``; None when there are none.
        CorruptData when the file does not open (damaged, truncated, or
        sealed by another store or key)."""
        try:
            blob = self.path(name).read_bytes()
        except FileNotFoundError:
            return None
        return self._bound(name).open(blob)

    def stage(self, name: str, parts: Iterable[bytes | bytearray | memoryview],
              refused: Callable[[], bool]) -> Path | None:
        """The concatenated ``parts`` sealed for ``name`` straight into a new
        owner-only temp file beside the cache (``fs.temp_path``): its path, or
        None when ``refused()`` (a purge ran). The file is made
        and registered under a short lock, so a purge's ``sweep`` (which marks
        the records first) either made this refuse or deletes the file, while
        the writing goes on unlocked (into the deleted file, then). ``commit``
        puts it in place; the caller unlinks it otherwise."""
        tmp = temp_path(self.path(name))
        with self._staging:
            if refused():
                return None
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)  # never a planted file
            self._staged.add(tmp)
        try:
            with os.fdopen(fd, "wb") as out:
                os.fchmod(fd, 0o600)
                self._bound(name).seal_stream(parts, out)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        finally:
            with self._staging:
                self._staged.discard(tmp)
        return tmp

    def commit(self, name: str, staged: Path) -> None:
        """Replace cache ``name`` with what ``stage`` wrote (one rename)."""
        os.replace(staged, self.path(name))

    def sweep(self) -> None:
        """For a purge, once its records are marked: delete every cache file
        being staged now (their writers then write into deleted files and are
        refused at ``commit``'s check) and every stray. A file that cannot be
        deleted is one log line: sealed, and the next open tries again."""
        with self._staging:
            for path in [*self._staged, *self._strays()]:
                _unlink_or_log(path, "the next open tries again")

    def drop_strays(self, *, strict: bool = True) -> None:
        """Delete what a killed ``stage`` left. ``strict``: a file that cannot
        be deleted is a ``StoreError`` naming it (a purge must not leave it);
        otherwise one log line (the open: it is sealed, and purges will name it)."""
        for path in self._strays():
            if strict:
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    raise StoreError(f"{path} cannot be deleted ({type(exc).__name__}: {exc}); it may hold the "
                                     "store's words, sealed, so no purge runs until it is removed") from exc
            else:
                _unlink_or_log(path, "no purge runs until it is removed")

    def _strays(self) -> list[Path]:
        return [path for path in stray_temps(self._root) if _STRAY.match(path.name)]

    def drop_all(self) -> int:
        """Delete every cache, and what a write cut short left of one (a
        killed ``stage`` leaves its temp file, as sealed as the cache and as
        full of the store's words); how many caches there were."""
        dropped = 0
        for path in self._root.glob(f"*{SUFFIX}"):
            if _NAME.fullmatch(path.name[: -len(SUFFIX)]):
                path.unlink(missing_ok=True)
                dropped += 1
        self.drop_strays()
        return dropped


def _unlink_or_log(path: Path, consequence: str) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        _log.warning("cache_temp_not_deleted", file=path.name, error=f"{type(exc).__name__}: {exc}",
                     consequence=consequence)

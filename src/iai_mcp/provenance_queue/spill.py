"""Spill files: batches the queue had no room for in memory, or could not write.

One file per spill in the overflow directory (``~/.iai-mcp/.provenance-overflow/``
by default, shared by every store of the user), in the pending-batch format
(``pending``), written under a temp name and renamed, so no reader sees half
of one. The name orders them: ``prov-<store id>-<time ns>-<counter>.jsonl``.
Not fsynced, like the journal: a spill outlives the process, not the OS.

A replayed file is removed; one that cannot be removed (a read-only
directory) stays, and is only tried for removal again, never re-applied by
this queue. A later process may apply it again: harmless, the log ignores an
entry id it holds.
"""
from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from iai_mcp import config
from iai_mcp.fs import make_private_dir, write_atomic
from iai_mcp.provenance_queue import pending
from iai_mcp.types import ProvenancePair


class SpillDir:
    """The spill files of one store in one directory."""

    def __init__(self, directory: Path, store_id: str) -> None:
        self.directory = directory
        self.store_id = store_id
        self._counter = 0
        self._applied: set[Path] = set()  # applied, but the removal failed

    def write(self, lines: Sequence[tuple[int, bytes]]) -> None:
        """One file holding ``(seq, sealed payload)`` lines; OSError if the disk refuses."""
        make_private_dir(self.directory)
        self._counter += 1
        name = f"prov-{self.store_id}-{time.time_ns():020d}-{self._counter:08d}{pending.SPILL_SUFFIX}"
        body = b"".join(pending.line(seq, payload) for seq, payload in lines)
        write_atomic(self.directory / name, pending.header(self.store_id) + body, fsync=False)

    def files(self) -> list[Path]:
        """Spill files this store may read, oldest first."""
        return [path for _order, path in pending.ours(self.directory, self.store_id, pending.SPILL_SUFFIX)]

    def replay(
        self,
        path: Path,
        apply: Callable[[list[ProvenancePair]], None],
        sealer: pending.Sealer,
        log: pending.Log,
    ) -> None:
        """Hand ``apply`` the pairs of one spill file, then remove it (or
        quarantine it, if ``pending.read`` found a problem). Whatever
        ``apply`` raises propagates, and the file stays for a retry."""
        if path in self._applied:
            self._remove(path, log)
            return
        try:
            data = pending.read_regular(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            pending.quarantine(path, f"{type(exc).__name__}: {exc}", log)
            return
        found = pending.read(data, self.store_id, sealer, log, path.name)
        apply([pair for _seq, batch in found.lines for pair in batch])
        if found.problem is None:
            self._remove(path, log)
        else:
            pending.quarantine(path, found.problem, log)

    def _remove(self, path: Path, log: pending.Log) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            if path not in self._applied:  # one line per file, not one per retry
                log("spill_remove_failed", file=path.name, error=f"{type(exc).__name__}: {exc}",
                    consequence="its entries are in the log; removal is retried, and a replay "
                    "of it is harmless")
            self._applied.add(path)
            return
        self._applied.discard(path)


def spill_state(store_id: str, spill_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """What the spill directory holds: ``pending`` files of ``store_id``
    still to replay, and ``quarantined`` files (of any store)."""
    directory = Path(spill_dir) if spill_dir is not None else config.overflow_dir()
    waiting, quarantined = pending.state(directory, store_id, pending.SPILL_SUFFIX)
    return {"dir": str(directory), "pending": waiting, "quarantined": quarantined}

"""When the records table is compacted, and what a compaction that fails does.

Every LanceDB write leaves a version and a small fragment; ``compact`` folds
them and prunes every old version. Counting writes in memory, as this store
once did, forgot the count at every restart: a store restarted often never
reached the threshold (1,565 versions and 122 MB after 56 restarts; its open
took 1.0 s instead of 0.08 s). The count that decides is therefore read from
the table itself at open: compaction leaves one version and each write adds
one, so ``versions - 1`` is the number of writes since the last compaction,
persisted by LanceDB with no file of ours to keep in step. A store opened
with that many or more already is compacted at open.

Automatic compaction is housekeeping: the write that triggered it has been
committed, so a compaction that fails (a full disk: ``OSError``,
``SQLITE_FULL``, or a panic from LanceDB's Rust core, which Python sees as a
``BaseException``) is one structured log line, and is tried again after the
next ``every`` writes. ``memory_compact`` asked for explicitly gets the same
failure as a ``StoreError`` naming the original error.

A compaction rewrites every fragment under lance's target size (a million
rows), so it costs the whole table: for the cached 100k bench store 0.45 s on a quiet machine
(the slowest single capture in ``bench.capture_throughput``), 1.5 s under load
(its one 227 MB data file written again), paid by whichever write or open
found it due, every 200 writes. An owner that stays open (the daemon) defers
it (``deferred``): writes and the open leave it to ``IDLE``, a call the owner
makes once no request has come for a moment, unless the writes never pause
(``OVERDUE_FACTOR`` times ``every`` pending), when the write compacts as before.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from iai_mcp.errors import StoreError
from iai_mcp.log import logger

_log = logger("iai_mcp.store")

T = TypeVar("T")

#: ``run_if_due``'s ``when`` for the owner's call in a quiet moment.
IDLE = "idle"
#: A deferred schedule still compacts on a write once this many times
#: ``every`` writes are pending: a store written to without pause.
OVERDUE_FACTOR = 4


def guarded(what: str, step: Callable[[], T]) -> T:
    """``step()``, with any failure but an exit turned into a ``StoreError``
    that names the original error (the one that says why: disk full)."""
    try:
        return step()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a pyo3 PanicException is not an Exception
        raise StoreError(
            f"{what} failed ({type(exc).__name__}: {exc}); the records are intact. "
            "If the disk is full, free space and run it again"
        ) from exc


class CompactionSchedule:
    """Writes since the last compaction, seeded from the table at open."""

    def __init__(self, versions: int, every: int, *, deferred: bool = False) -> None:
        #: Compact after this many writes; 0 turns automatic compaction off.
        self.every = every
        self.pending = max(0, versions - 1)
        #: Writes and the open leave a due compaction to an ``IDLE`` call.
        self.deferred = deferred

    @property
    def due(self) -> bool:
        return bool(self.every) and self.pending >= self.every

    def wrote(self) -> None:
        self.pending += 1

    def done(self) -> None:
        self.pending = 0

    def run_if_due(self, compact: Callable[[], dict[str, Any]], when: str) -> None:
        """Compact if due; a failure is reported, never raised (see the module
        docstring), and the count restarts so the next try waits ``every`` writes."""
        if not self.due:
            return
        if self.deferred and when != IDLE and self.pending < self.every * OVERDUE_FACTOR:
            return
        try:
            compact()
        except StoreError as exc:
            self.done()
            _log.warning("compaction_failed", when=when, error=str(exc),
                         action=f"retried after {self.every} more writes")

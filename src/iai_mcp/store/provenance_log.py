"""The append-only provenance log: one SQLite table in WAL mode.

Why not the records table? Provenance is written on every recall. Rewriting
the record row (``merge_insert``) costs 23-36 ms at 100k rows and leaves one
LanceDB version per recall; the store this project replaces grew to 10,841
versions and 3.66 GB for 7,130 rows in nine days. A second LanceDB table
would still cost 4-8 ms and a version per batch. An indexed SQLite WAL
append costs 0.05-0.4 ms whatever the size of the store, never rewrites
anything already written, and survives a killed process: a committed
transaction is in the WAL file before ``commit`` returns.

``synchronous=NORMAL`` in WAL mode keeps every commit across a process crash
(``kill -9``); only an OS crash or power loss can take the last commits back.

Rows are ``(seq, entry_id, record_id, sealed)``. ``entry_id`` is unique, so
a batch replayed after a crash (from a spill file or journal) is applied at
most once. The entry itself is sealed with its record id and entry id as
associated data, and comes back exactly as the caller appended it.
"""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

FILE_NAME = "provenance.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    entry_id TEXT NOT NULL UNIQUE,
    record_id TEXT NOT NULL,
    sealed BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_by_record ON entries (record_id, seq);
"""


class ProvenanceLog:
    def __init__(self, root: Path) -> None:
        self.path = root / FILE_NAME
        # One connection shared by the caller thread and the queue worker;
        # the lock serialises them (SQLite has one writer anyway).
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._conn.executescript(_SCHEMA)

    def append(self, rows: Iterable[tuple[str, str, bytes]]) -> int:
        """Append ``(entry_id, record_id, sealed)`` rows in one transaction.

        Returns how many were new (a replayed entry id is ignored).
        """
        rows = list(rows)
        if not rows:
            return 0
        with self._lock:
            before = self._conn.total_changes
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.executemany(
                    "INSERT OR IGNORE INTO entries (entry_id, record_id, sealed) VALUES (?, ?, ?)",
                    rows,
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return self._conn.total_changes - before

    def for_record(self, record_id: str) -> list[tuple[int, str, bytes]]:
        """``(seq, entry_id, sealed)`` of one record, in append order."""
        with self._lock:
            cur = self._conn.execute(
                "SELECT seq, entry_id, sealed FROM entries WHERE record_id = ? ORDER BY seq",
                (record_id,),
            )
            return cur.fetchall()

    def count(self) -> int:
        with self._lock:
            return self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]

    def counts_by_record(self) -> dict[str, int]:
        with self._lock:
            cur = self._conn.execute("SELECT record_id, COUNT(*) FROM entries GROUP BY record_id")
            return dict(cur.fetchall())

    def latest_per_record(self, limit: int) -> list[tuple[str, str, bytes]]:
        """``(record_id, entry_id, sealed)`` of each record's newest entry,
        most recently appended first (append order is time order)."""
        with self._lock:
            return self._conn.execute(
                "SELECT record_id, entry_id, sealed FROM entries WHERE seq IN "
                "(SELECT MAX(seq) FROM entries GROUP BY record_id) ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()

    def iter_all(self, visit: Callable[[int, str, str, bytes], None]) -> None:
        """Call ``visit(seq, entry_id, record_id, sealed)`` for every entry, in order."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, entry_id, record_id, sealed FROM entries ORDER BY seq"
            ).fetchall()
        for row in rows:
            visit(*row)

    def checkpoint(self) -> None:
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

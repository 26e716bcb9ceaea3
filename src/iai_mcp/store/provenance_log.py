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

``purge`` deletes a record's entries so that no byte of them stays in the
database file, its WAL or its free pages: ``secure_delete`` makes SQLite
overwrite deleted cells and freed pages with zeros (nothing else here ever
deletes, so appends do not pay for it), and a ``TRUNCATE`` checkpoint copies
the WAL into the database and cuts the WAL to zero bytes.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from uuid import UUID

from iai_mcp.errors import CorruptData
from iai_mcp.log import logger
from iai_mcp.store.crypto import Cipher
from iai_mcp.store.damage import Damage, read_ranges
from iai_mcp.types import ProvenanceEntry, ProvenancePair, new_entry_id

_log = logger("iai_mcp.store")

#: ``(entry_id, record_id, sealed entry)``: a row as the table holds it.
SealedEntry = tuple[str, str, bytes]


def _aad(record_id: str, entry_id: str) -> bytes:
    return f"prov:{record_id}:{entry_id}".encode()

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


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that writes nothing beside the log: ``immutable=1`` when
    no WAL is waiting (SQLite then creates no ``-shm`` or ``-wal``); with a
    WAL a killed writer left, ``mode=ro`` so its commits are read too."""
    waiting = path.with_name(path.name + "-wal").exists()
    uri = f"{path.absolute().as_uri()}?{'mode=ro' if waiting else 'immutable=1'}"
    return sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)


class ProvenanceLog:
    """The log of one store, sealing entries with the store's cipher."""

    def __init__(self, root: Path, cipher: Cipher, *, read_only: bool = False) -> None:
        self.path = root / FILE_NAME
        self._cipher = cipher
        self._lock = threading.Lock()
        self._refused: set[str] = set()  # ids of purged records: their entries are never written
        #: Why the log cannot be opened (a damaged page 1: header or schema), or
        #: None. The store still opens and serves its records without provenance;
        #: ``doctor --repair`` rebuilds the log from what can be read.
        self.unavailable: str | None = None
        if read_only:
            self._open_read_only()
            return
        # One connection shared by the caller thread and the queue worker;
        # the lock serialises them (SQLite has one writer anyway).
        self._conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            with self._lock:
                self._conn.execute("PRAGMA journal_mode=WAL")
                self._conn.execute("PRAGMA synchronous=NORMAL")
                self._conn.execute("PRAGMA busy_timeout=10000")
                self._conn.execute("PRAGMA secure_delete=ON")
                self._conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self.unavailable = f"{self.path} cannot be opened ({exc})"
            _log.warning("provenance_log_unavailable", error=str(exc),
                         consequence="records are served without provenance; run iai-mcp doctor --repair")

    def _open_read_only(self) -> None:
        """The log read as it is (``_connect_read_only``). No log yet reads as
        an empty one, as the first writable open would create it; a log whose
        schema cannot be read is ``unavailable``, as a writable open finds it
        (``doctor --repair --dry-run`` diagnoses through a read-only open)."""
        if not self.path.exists():
            self._conn = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            self._conn.executescript(_SCHEMA)
            return
        self._conn = _connect_read_only(self.path)
        try:
            self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()
        except sqlite3.DatabaseError as exc:
            self.unavailable = f"{self.path} cannot be opened ({exc})"

    def _usable(self) -> bool:
        return self.unavailable is None

    def _refuse_writes(self) -> None:
        if self.unavailable is not None:
            raise CorruptData(f"{self.unavailable}; provenance cannot be written until "
                              "`iai-mcp doctor --repair` rebuilds the log")

    def seal(
        self, pairs: Iterable[ProvenancePair | tuple[Any, ...]], exists: Callable[[UUID], bool]
    ) -> list[SealedEntry]:
        """Seal ``(record_id, entry[, entry_id])`` pairs for ``append``. A pair
        whose record does not ``exist``, or whose entry is not a JSON object,
        is skipped (and reported when it is malformed); the rest are kept."""
        sealed = []
        for pair in pairs:
            if len(pair) == 3:
                record_id, entry, entry_id = pair
            else:
                (record_id, entry), entry_id = pair, new_entry_id()
            try:
                rid = record_id if isinstance(record_id, UUID) else UUID(str(record_id))
            except ValueError:
                _log.warning("provenance_skipped", reason="record id is not a UUID")
                continue
            if not exists(rid):
                continue  # not in the store: skipped, the rest applied
            try:
                if not isinstance(entry, dict):
                    raise TypeError("a provenance entry is a dict")
                plain = json.dumps(entry, ensure_ascii=False).encode("utf-8")
            except (TypeError, ValueError) as exc:
                # Log lines never name a record in clear (see MemoryStore.log_name).
                _log.warning("provenance_skipped", record=self._cipher.digest(str(rid).encode()), reason=str(exc))
                continue
            sealed.append((str(entry_id), str(rid), self._cipher.seal(plain, _aad(str(rid), str(entry_id)))))
        return sealed

    def entries(self, record_id: UUID) -> list[ProvenanceEntry]:
        """One record's readable entries in append order (see ``read``)."""
        return self.read(record_id)[0]

    def read(self, record_id: UUID) -> tuple[list[ProvenanceEntry], int]:
        """``(entries, damaged)``: one record's entries in append order, and
        how many of its entries could not be read (skipped, reported, left in
        the log exactly as they are). A query the log cannot answer at all (a
        damaged page) counts as one."""
        rid = str(record_id)
        try:
            rows = self._for_record(rid)
        except sqlite3.DatabaseError as exc:
            _log.warning("provenance_unreadable", record=self._cipher.digest(rid.encode()), error=str(exc))
            return [], 1
        out, damaged = [], 0
        for seq, entry_id, sealed in rows:
            try:
                out.append(json.loads(self._cipher.open(sealed, _aad(rid, entry_id))))
            except (CorruptData, ValueError) as exc:
                damaged += 1
                _log.warning("provenance_unreadable", record=self._cipher.digest(rid.encode()), seq=seq,
                             error=str(exc))
        return out, damaged

    def latest(self, limit: int) -> list[tuple[UUID, ProvenanceEntry]]:
        """Each record's newest entry, most recent first (at most ``limit``);
        an entry that cannot be read is reported and left out."""
        out: list[tuple[UUID, ProvenanceEntry]] = []
        try:
            latest = self._latest_per_record(limit)
        except sqlite3.DatabaseError as exc:
            _log.warning("provenance_unreadable", error=str(exc))
            return out
        for rid, entry_id, sealed in latest:
            try:
                out.append((UUID(rid), json.loads(self._cipher.open(sealed, _aad(rid, entry_id)))))
            except (CorruptData, ValueError) as exc:
                _log.warning("provenance_unreadable", record=self._cipher.digest(rid.encode()),
                             error=str(exc))
        return out

    def append(self, rows: Iterable[SealedEntry]) -> int:
        """Append ``(entry_id, record_id, sealed)`` rows in one transaction.

        Returns how many were new (a replayed entry id is ignored).
        """
        rows = list(rows)
        if not rows:
            return 0
        self._refuse_writes()
        with self._lock:
            if self._refused:  # sealed before its record was purged, written after: dropped
                rows = [row for row in rows if row[1] not in self._refused]
            before = self._conn.total_changes
            with self._transaction():
                self._conn.executemany(
                    "INSERT OR IGNORE INTO entries (entry_id, record_id, sealed) VALUES (?, ?, ?)",
                    rows,
                )
            return self._conn.total_changes - before

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (lock held), rolled back on failure.

        On a full disk SQLite answers ``SQLITE_FULL`` and has already rolled
        the transaction back itself, so a blind ``ROLLBACK`` fails with "no
        transaction is active" and that error would replace the one that
        matters. The rollback is issued only while a transaction is open, and
        if it fails the original error is the one raised (the rollback's is
        logged). A transaction a failed rollback left open is rolled back
        before the next one starts, so one bad moment never leaves the log
        refusing every later append ("cannot start a transaction within a
        transaction") until a restart.
        """
        if self._conn.in_transaction:
            self._conn.execute("ROLLBACK")
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:
                try:
                    self._conn.execute("ROLLBACK")
                except sqlite3.Error as failed:
                    _log.warning("provenance_rollback_failed", error=f"{type(failed).__name__}: {failed}",
                                 original=f"{type(exc).__name__}: {exc}",
                                 action="rolled back before the next write")
            raise

    def _for_record(self, record_id: str) -> list[tuple[int, str, bytes]]:
        """``(seq, entry_id, sealed)`` of one record, in append order."""
        with self._lock:
            cur = self._conn.execute(
                "SELECT seq, entry_id, sealed FROM entries WHERE record_id = ? ORDER BY seq",
                (record_id,),
            )
            return cur.fetchall()

    def count(self) -> int:
        """Entries in the log; 0 when it cannot be opened or counted (``unavailable``, doctor)."""
        if not self._usable():
            return 0
        try:
            with self._lock:
                return self._conn.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            _log.warning("provenance_unreadable", error=str(exc))
            return 0

    def _latest_per_record(self, limit: int) -> list[tuple[str, str, bytes]]:
        """``(record_id, entry_id, sealed)`` of each record's newest entry,
        most recently appended first (append order is time order)."""
        with self._lock:
            return self._conn.execute(
                "SELECT record_id, entry_id, sealed FROM entries WHERE seq IN "
                "(SELECT MAX(seq) FROM entries GROUP BY record_id) ORDER BY seq DESC LIMIT ?",
                (limit,),
            ).fetchall()

    def refuse(self, record_ids: Iterable[str]) -> None:
        """Never write entries of these records again (they are being purged)."""
        with self._lock:
            self._refused.update(map(str, record_ids))

    def purge(self, record_ids: Iterable[UUID | str]) -> int:
        """Delete every entry of these records (one transaction), zeroing
        their bytes, then checkpoint and truncate the WAL; returns how many
        entries went. Idempotent."""
        ids = sorted({str(rid) for rid in record_ids})
        self._refuse_writes()
        with self._lock:
            before = self._conn.total_changes
            with self._transaction():
                for start in range(0, len(ids), 500):  # under SQLite's bound-parameter limit
                    chunk = ids[start:start + 500]
                    self._conn.execute(
                        f"DELETE FROM entries WHERE record_id IN ({','.join('?' * len(chunk))})", chunk
                    )
            deleted = self._conn.total_changes - before
            busy, *_ = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            # Only this connection writes; a reader elsewhere (a backup tool)
            # can hold the WAL. The next purge or compaction truncates it.
            _log.warning("provenance_wal_not_truncated", consequence="purged entries stay in the WAL "
                         "until the next checkpoint completes")
        return deleted

    def counts(self, up_to: int | None = None) -> tuple[dict[str, int], int]:
        """``({record_id: entries}, newest seq)``, counting only entries up to
        seq ``up_to`` when given, so a paged listing can keep the counts it
        started with. One indexed GROUP BY; entries stay sealed. Empty when
        the log cannot be read (the order then ignores recalls)."""
        if not self._usable():
            return {}, 0
        try:
            with self._lock:
                newest = self._conn.execute("SELECT COALESCE(MAX(seq), 0) FROM entries").fetchone()[0]
                limit = newest if up_to is None else min(up_to, newest)
                rows = self._conn.execute(
                    "SELECT record_id, COUNT(*) FROM entries WHERE seq <= ? GROUP BY record_id", (limit,)
                ).fetchall()
        except sqlite3.DatabaseError as exc:
            _log.warning("provenance_unreadable", error=str(exc))
            return {}, 0
        return dict(rows), limit

    def verify(self) -> dict[str, Any]:
        """Every entry read and opened once (doctor): ``{"entries": readable,
        "damaged": unreadable or unauthenticated, "problem": why the log
        cannot be opened or null, "errors": a few, in the library's words}``."""
        if not self._usable():
            return {"entries": 0, "damaged": 0, "problem": self.unavailable, "errors": []}
        damage = Damage()
        readable = 0
        with self._lock:
            for _seq, entry_id, record_id, sealed in readable_rows(self._conn, damage):
                try:
                    self._cipher.open(sealed, _aad(record_id, entry_id))
                    readable += 1
                except CorruptData as exc:
                    damage.add(1, exc)
        return {"entries": readable, "damaged": damage.rows, "problem": None, "errors": damage.errors}

    def checkpoint(self) -> None:
        if not self._usable():
            return
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def readable_rows(conn: sqlite3.Connection, damage: Damage) -> Iterator[tuple[int, str, str, bytes]]:
    """Every ``(seq, entry_id, record_id, sealed)`` of the log ``conn`` can
    still read, in seq order, read by seq range around damaged pages (each
    seq it cannot read counted in ``damage``; a gap a purge left inside a
    damaged page counts too, so the count is an upper bound)."""
    try:
        newest = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'entries'").fetchone()
    except sqlite3.DatabaseError:
        newest = None
    if newest is None:
        try:
            newest = conn.execute("SELECT MAX(seq) FROM entries").fetchone()
        except sqlite3.DatabaseError as exc:
            damage.add(1, exc)  # nothing says how many entries there were
            return
    query = "SELECT seq, entry_id, record_id, sealed FROM entries WHERE seq >= ? AND seq < ? ORDER BY seq"
    yield from read_ranges(lambda lo, hi: conn.execute(query, (lo, hi)).fetchall(), 1, int(newest[0] or 0) + 1,
                           damage, chunk=1024)


def copy_readable(source: Path, target: Path) -> tuple[int, Damage]:
    """Copy every entry of the log at ``source`` that can be read into a new
    log at ``target`` (sealed as they are: no key needed); ``(copied, damage)``.

    ``source`` is never opened itself: SQLite would add ``-shm`` and ``-wal``
    files beside it, even read-only. It is read from a copy (with its WAL,
    which may hold the last commits) beside ``target``, removed afterwards."""
    damage = Damage()
    staged = target.with_name(f"{target.name}.source")
    for suffix in ("", "-wal"):
        if Path(f"{source}{suffix}").exists():
            shutil.copyfile(f"{source}{suffix}", f"{staged}{suffix}")
    dst = sqlite3.connect(target, isolation_level=None)
    try:
        dst.executescript(_SCHEMA)
        copied = 0
        src = sqlite3.connect(staged)  # reads nothing yet
        try:
            src.execute("SELECT 1 FROM sqlite_master").fetchall()
        except sqlite3.DatabaseError as exc:
            src.close()
            damage.add(1, exc)  # nothing in it can be read
            return 0, damage
        try:
            dst.execute("BEGIN")
            for row in readable_rows(src, damage):
                dst.execute("INSERT OR IGNORE INTO entries (seq, entry_id, record_id, sealed) VALUES (?, ?, ?, ?)", row)
                copied += 1
            dst.execute("COMMIT")
        finally:
            src.close()
        return copied, damage
    finally:
        dst.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{staged}{suffix}").unlink(missing_ok=True)

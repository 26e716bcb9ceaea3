"""MemoryStore: the one owner of the on-disk store and its key.

Layout of a store root::

    meta.json             store id, key source, key check, embedder identity
    store.lock            flock held by the one process that has the store open
    key                   the AES key (mode 0600) when no keyring is used
    records.lance/        LanceDB table of sealed records (see records_table)
    provenance.sqlite3    append-only provenance log (see provenance_log)
    journal/              provenance queue journal segments (see iai_mcp.provenance_queue)
    purge.pending         while a purge runs: what it removes (see store.purge)
    http_token            bearer token of `serve --http` (mode 0600; see store.http_token)
    <name>.cache          sealed data derived from the records (see store.sealed_cache)

At open the store checks the key, decrypts every record once and keeps them
in memory (``store.slots``): rows as slotted objects, vectors as one int8
matrix for the candidate pass, their sealed exact copies in a nameless file
for re-scoring (``store.sealed_vectors``). Reads and recall never query
LanceDB again; writes go to disk first, then to memory, so what memory shows
has always been written.

Because of that in-memory state, one process at a time may hold a store
open: ``MemoryStore`` takes an exclusive ``flock`` on ``store.lock`` at open
and a second opener gets ``StoreLocked``. Everyone else goes through the
daemon that owns the store (``iai_mcp.daemon``, reached via ``backend.connect``).
"""
from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol
from uuid import UUID

import numpy as np

from iai_mcp import config
from iai_mcp.fs import make_private_dir, private_umask
from iai_mcp.errors import (
    CorruptData,
    EmbedderMismatch,
    InvalidInput,
    NotFound,
    StoreError,
)
from iai_mcp.provenance_queue import ProvenanceWriteQueue
from iai_mcp.int8_kernel import int8_dots
from iai_mcp.retrieval.quantized import approx_cosines
from iai_mcp.store import purge as purging
from iai_mcp.store.codec import open_row, seal_row
from iai_mcp.store.compaction import IDLE, CompactionSchedule, guarded
from iai_mcp.store.crypto import Sealer
from iai_mcp.store.meta import (
    EXPECTED_KEY,
    META_FILE,
    UNDO_WINDOW_KEY,
    check_expected,
    fix_key_file_mode,
    log_event,
    open_meta,
    release_lock,
    record_expected,
    take_owner_lock,
    take_reader_lock,
    undo_window,
    write_json_atomic,
)
from iai_mcp.store.provenance_log import ProvenanceLog
from iai_mcp.store.records_table import RecordsTable
from iai_mcp.store.sealed_cache import SealedCache
from iai_mcp.store.slots import PURGED, STATE_CODES, Slots
from iai_mcp.types import (
    EMBED_DIM,
    ROW_FIELDS,
    HistoryItem,
    MemoryRecord,
    MemoryRow,
    ProvenanceEntry,
    ProvenancePair,
    new_entry_id,
)

__all__ = [
    "JOURNAL_DIR", "META_FILE", "PURGED", "STATE_CODES", "MemoryStore", "fix_key_file_mode", "log_event",
]

JOURNAL_DIR = "journal"
#: How long a purge waits for queued provenance to reach the log before it
#: deletes the purged records' entries (the log refuses later ones anyway).
PURGE_FLUSH_S = 10.0
#: Rows per range the open reads from the table. Each range is an Arrow
#: table, its rows as Python bytes, and lance's read buffers, all alive at
#: once. Read-only open of the cached 100k bench store (``python -m
#: bench.row_footprint``, two runs each): peak VmHWM 357 MB in ranges of
#: 4,096 rows, 330-335 in ranges of 2,048, 317-318 in ranges of 1,024 (with
#: the daemon's two malloc arenas: 323-327, 318-319, 310-311). Each range is
#: one more query, ~2 ms on a busy 2-core machine: the open of the 10k store
#: took 244 ms against 228 (median of 9), of the 100k one ~0.1 s longer.
OPEN_BATCH_ROWS = 1024


class NamedEmbedder(Protocol):
    name: str
    dim: int


class MemoryStore:
    """Encrypted verbatim memory on LanceDB, with an append-only provenance log.

    ``path`` wins over ``IAI_MCP_STORE``, which wins over ``~/.iai-mcp``.
    ``embedder`` is the embedder capture and recall will use; the store
    records its name on first use and refuses a different one later.
    ``compact_when_idle``: the owner calls ``compact_if_due`` when no request
    is running, and writes compact only when overdue (``store.compaction``).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        embedder: NamedEmbedder | None = None,
        compact_every: int = 200,
        compact_when_idle: bool = False,
        read_only: bool = False,
        key_settings: config.KeySettings | None = None,
    ) -> None:
        self.root = Path(path).expanduser() if path is not None else config.default_store_path()
        #: Opened only to read (a read-only directory or disk): nothing under
        #: ``root`` is created or changed, recall's provenance is not recorded.
        self.read_only = read_only
        # Owner-only, whichever process opens the store first (a CLI in
        # IAI_MCP_LOCAL mode, a test, the daemon): LanceDB and SQLite files
        # take the umask, the root its own mode.
        private_umask()
        if not read_only:
            make_private_dir(self.root)
        # A store dropped without close() still frees its lock when collected:
        # nothing can write through an unreachable store (a running provenance
        # queue holds a reference, so a store with pending writes is never collected).
        lock = take_reader_lock(self.root) if read_only else take_owner_lock(self.root)
        self._owner_lock = weakref.finalize(self, release_lock, lock)
        try:
            self._open(embedder, compact_every, compact_when_idle, key_settings or config.key_settings())
        except BaseException:
            slots = getattr(self, "_slots", None)
            if slots is not None:  # its file holds 1.5 KB a record (156 MB at 100k) until closed
                slots.sealed.close()
            self._release_owner_lock()
            raise

    def _open(self, embedder: NamedEmbedder | None, compact_every: int, compact_when_idle: bool,
              key_settings: config.KeySettings) -> None:
        self._lock = threading.RLock()
        # Only the key settings, never the whole environment: nothing else here needs it.
        self._meta, self._cipher = open_meta(self.root, key_settings)
        self.store_id: str = self._meta["store_id"]
        expected = self._meta.get(EXPECTED_KEY)
        self._records = RecordsTable(self.root, read_only=self.read_only, create=expected is None,
                                     on_commit=self._record_expected)
        version = self._records.version()
        rows = self._records.count() if version is not None else 0
        check_expected(self.root, self._meta, self._cipher, version, rows)
        # Never reuse a seq, not even one a damaged data file hides from the scan.
        self._next_seq = int(expected.get("next_seq", 0)) if expected else 0
        self._log = ProvenanceLog(self.root, self._cipher, read_only=self.read_only)
        self._caches = SealedCache(self.root, self.sealer)
        self._purger = purging.Purger(self.root, self.sealer(purging.SEAL_PURPOSE), self._records, self._log,
                                      rows=self.rows, commit=self._commit_rows)
        # A purge a killed (or failed) process left: its rows are never loaded...
        pending = self._purger.pending()
        self._compaction = CompactionSchedule(self._records.readable_version_count() or 0, compact_every,
                                              deferred=compact_when_idle)
        self.load_problems: list[str] = []
        self._slots = Slots.load(rows, self._opened(skip=set(pending.seqs) if pending else set()),
                                 None if self.read_only else self.root)
        stale = expected is None or version != expected["version"] or self._next_seq != expected.get("next_seq")
        if stale and not self.read_only:  # an older store, or a commit whose meta write was cut
            self._record_expected(version, rows)
        self._provenance_queue: ProvenanceWriteQueue | None = None
        self.embedder: NamedEmbedder | None = None
        if not self.read_only:
            self._caches.drop_strays(strict=False)  # what a killed cache write left
        if pending is not None and not self.read_only:  # ...and finished once the rows it relinks are loaded
            guarded("deleting the store's caches", self._caches.drop_all)  # they may hold the rows' words
            self._purger.finish()
        if embedder is not None:
            self.bind_embedder(embedder)
        if not self.read_only:
            self._compaction.run_if_due(self.compact, "open")  # versions left by earlier processes

    # ------------------------------------------------------------------ open

    def _opened(self, skip: set[int]) -> Iterator[tuple[MemoryRow, np.ndarray, bytes, int]]:
        """Every row decrypted once, ``(row, vector, sealed vector, seq)``; rows of ``skip``
        (a purge that could not finish) are left out."""
        for sealed in self._records.scan(OPEN_BATCH_ROWS):
            self._next_seq = max(self._next_seq, sealed.seq + 1)
            if sealed.seq in skip:
                continue
            try:
                row, vec = open_row(self._cipher, sealed)
            except (CorruptData, ValueError, KeyError, TypeError) as exc:
                # Never drop or rewrite it: report, keep it on disk, carry on.
                problem = f"record {sealed.id} (seq {sealed.seq}) cannot be read: {exc}"
                self.load_problems.append(problem)
                log_event.warning("record_unreadable", record=self.log_name(sealed.id), error=str(exc))
                continue
            yield row, vec, sealed.vector, sealed.seq

    def _record_expected(self, version: int, rows: int) -> None:
        """After each commit: what the records table must hold from now on
        (``meta.check_expected`` refuses a table that is behind it).

        Never raises: it runs after LanceDB has committed, so failing here (a
        full disk: ENOSPC on meta.json) would report a write that happened as
        failed, and the client's retry would store the record twice. The
        expectation on disk is then older than the table, which
        ``check_expected`` accepts (a newer version); the next commit, or the
        next open, records it."""
        with self._lock:
            record_expected(self._meta, self._cipher, version, rows, self._next_seq)
            try:
                write_json_atomic(self.root / META_FILE, self._meta)
            except Exception as exc:  # OSError from the disk, whatever else the write raises
                log_event.warning("expectation_not_recorded", version=version, rows=rows,
                                  error=f"{type(exc).__name__}: {exc}"[:300],
                                  consequence="the commit stands; recorded at the next commit or open")

    @property
    def damaged(self) -> int:
        """Rows of the records table that could not be read at open (a
        damaged data file) plus rows that fail decryption: served without them."""
        return self._records.damage.rows + len(self.load_problems)

    # ------------------------------------------------------------- embedder

    def bind_embedder(self, embedder: NamedEmbedder) -> None:
        """Use ``embedder`` for this store; refuse one that differs from the recorded one."""
        recorded = self._meta.get("embedder")
        if recorded and (recorded["name"] != embedder.name or recorded["dim"] != embedder.dim):
            raise EmbedderMismatch(
                f"store {self.root} holds vectors from {recorded['name']} "
                f"({recorded['dim']}-d); this process uses {embedder.name} ({embedder.dim}-d). "
                "Use the same embedder, or export the store and import it into a new one "
                "to re-embed"
            )
        if embedder.dim != EMBED_DIM:
            raise EmbedderMismatch(f"embedder {embedder.name} gives {embedder.dim}-d vectors, not {EMBED_DIM}")
        if not recorded and not self.read_only:
            with self._lock:
                self._meta["embedder"] = {"name": embedder.name, "dim": embedder.dim}
                write_json_atomic(self.root / META_FILE, self._meta)
        self.embedder = embedder

    @property
    def embedder_name(self) -> str | None:
        recorded = self._meta.get("embedder")
        return recorded["name"] if recorded else None

    # ---------------------------------------------------------------- write

    def insert(self, record: MemoryRecord) -> None:
        self.insert_many([record])

    def insert_many(self, records: Sequence[MemoryRecord]) -> None:
        """Insert new records in one LanceDB commit; any provenance they carry
        goes to the log. Raises InvalidInput (and writes nothing) on a bad
        record or an id already present."""
        if not records:
            return
        with self._lock:
            seen: set[UUID] = set()
            prepared: list[tuple[MemoryRow, np.ndarray]] = []
            for record in records:
                if not isinstance(record, MemoryRecord):
                    raise InvalidInput("insert takes MemoryRecord objects")
                if record.id in self._slots.index_of or record.id in seen:
                    raise InvalidInput(f"record {record.id} is already in the store")
                seen.add(record.id)
                vector = np.asarray(record.embedding, dtype=np.float32)
                if not np.all(np.isfinite(vector)):
                    raise InvalidInput(f"record {record.id} has a non-finite embedding value")
                prepared.append((MemoryRow.from_record(record), vector))
            pairs = [
                ProvenancePair(record.id, entry, new_entry_id())
                for record in records
                for entry in record.provenance
            ]
            known = {r.id for r in records}
            sealed_entries = self._log.seal(pairs, lambda rid: rid in self._slots.index_of or rid in known)
            seq0 = self._next_seq
            # Taken before the commit, so the expectation it records holds them (a failed
            # append only leaves a gap in the seqs, which nothing minds).
            self._next_seq = seq0 + len(prepared)
            sealed_rows = [seal_row(self._cipher, row, vec, seq0 + i) for i, (row, vec) in enumerate(prepared)]
            self._records.append(sealed_rows)
            # The rows are committed: memory must show them before anything
            # else can fail, or a retry would write the same ids twice.
            self._slots.reserve(len(prepared))
            for (row, vector), sealed in zip(prepared, sealed_rows):
                self._slots.add(row, vector, sealed.vector, sealed.seq)
            if self._log.unavailable is not None:
                if pairs:  # a damaged log: the records stand, their provenance waits for the rebuild
                    self._provenance_deferred(pairs, self._log.unavailable)
            else:
                try:
                    self._log.append(sealed_entries)
                except (sqlite3.Error, OSError) as exc:
                    # A full disk (SQLITE_FULL) after the records committed: the
                    # capture did happen, so it must not be reported as failed (a
                    # retry would reinforce it); its provenance takes the queue's
                    # retries, or one line says it is missing.
                    self._provenance_deferred(pairs, f"{type(exc).__name__}: {exc}")
            self._after_write()

    def _provenance_deferred(self, pairs: list[ProvenancePair], problem: str) -> None:
        """Provenance of committed records that the unavailable log cannot
        take: failing the call would report a stored record as not stored.
        With the queue running it takes them (journaled, retried, spilled: in
        the log once ``doctor --repair`` has rebuilt it); without it, one log
        line says what is missing."""
        queue = self._provenance_queue
        if queue is not None:
            queue.enqueue(pairs)
        log_event.warning("provenance_deferred", pairs=len(pairs), error=problem[:300],
                          action="queued for retry" if queue is not None else "not recorded")

    def update(self, record_id: UUID, *, history: HistoryItem | None = None, **changes: Any) -> MemoryRow:
        """Change fields of a stored record (not its text or vector), and
        append ``history`` to its lifecycle history; one commit."""
        return self.update_many([(record_id, changes, history)])[0]

    def update_many(
        self, updates: Sequence[tuple[UUID, dict[str, Any], HistoryItem | None]]
    ) -> list[MemoryRow]:
        """``update`` for several records in one LanceDB commit: every change
        is checked first, so a bad one (unknown id, bad field or value)
        raises and nothing is written."""
        with self._lock:
            planned: list[tuple[int, MemoryRow]] = []
            for record_id, changes, item in updates:
                bad = set(changes) - set(ROW_FIELDS) | ({"literal_surface", "history"} & set(changes))
                if bad:
                    raise InvalidInput(f"cannot update {sorted(bad)}")
                index = self._slots.index_of.get(record_id)
                if index is None:
                    raise NotFound(f"no record {record_id}")
                current = next((row for i, row in reversed(planned) if i == index), self._slots.rows[index])
                if item is not None:
                    changes = {**changes, "history": [*current.history, dict(item)]}
                row = replace(current, **changes)
                row.to_record([0.0] * EMBED_DIM, [])  # validates the change (the vector never changes)
                planned.append((index, row))
            if not planned:
                return []
            self._commit_rows(dict(planned))  # one row per record, its last planned state
            return [row for _, row in planned]

    def _commit_rows(self, latest: dict[int, MemoryRow]) -> None:
        """Write rewritten rows ``{slot: row}`` in one commit, then show them."""
        slots = self._slots
        vectors = {i: self._exact(i) for i in latest}
        self._records.replace([seal_row(self._cipher, row, vectors[i], slots.seqs[i]) for i, row in latest.items()])
        for index, row in latest.items():
            slots.put(index, row, vectors[index])
        self._after_write()

    def _after_write(self) -> None:
        self._compaction.wrote()
        self._compaction.run_if_due(self.compact, "after_write")

    @property
    def compact_every(self) -> int:
        return self._compaction.every

    @property
    def compaction_due(self) -> bool:
        """A compaction is due (one the writes left for ``compact_if_due``)."""
        return self._compaction.due

    def compact_if_due(self) -> None:
        """The compaction a store opened with ``compact_when_idle`` leaves to
        its owner's quiet moments; a failure is logged, never raised."""
        with self._lock:
            if not self.read_only:
                self._compaction.run_if_due(self.compact, IDLE)

    def compact(self) -> dict[str, Any]:
        """Fold fragments and prune old LanceDB versions; checkpoint the log.
        StoreError, naming the original error, if it fails (store.compaction)."""
        with self._lock:
            result = guarded("compaction", self._records.compact)
            guarded("the provenance log checkpoint", self._log.checkpoint)
            self._compaction.done()
            return result

    # ---------------------------------------------------------------- purge

    @property
    def undo_window(self) -> timedelta:
        """How long a forgotten (hidden) memory can be restored before it is
        purged: a store setting in meta.json, 30 days unless set."""
        return undo_window(self._meta)

    def set_undo_window(self, window: timedelta) -> None:
        if not isinstance(window, timedelta) or window < timedelta(0):
            raise InvalidInput("the undo window is a duration of zero or more")
        with self._lock:
            self._meta[UNDO_WINDOW_KEY] = window.total_seconds()
            write_json_atomic(self.root / META_FILE, self._meta)

    def purge(self, record_ids: Sequence[UUID]) -> list[UUID]:
        """Remove these records for good: afterwards no file of the store
        holds their id, text, vector or provenance, and no other record names
        them (see ``store.purge``). NotFound (and nothing removed) if one is
        not in the store; StoreError if a step fails (the purge stays pending).

        In memory each record's slot stays, emptied (``PURGED`` in
        ``states()``, a blank row, a zero vector), so every array keeps its
        alignment until the next open, which never sees it.
        """
        with self._lock:
            indexes = []
            for rid in dict.fromkeys(record_ids):
                index = self._slots.index_of.get(rid) if isinstance(rid, UUID) else None
                if index is None:
                    raise NotFound(f"no record {rid}")
                indexes.append(index)
            if not indexes:
                return []
            # Caches hold the records' words: none may outlive the purge. Before
            # anything is removed, so a failure here leaves the store as it was.
            guarded("deleting the store's caches before the purge", self._caches.drop_all)
            self._purger.finish()  # one an earlier failure left: alone first, merged below if it still fails
            ids = [self._slots.rows[i].id for i in indexes]
            vectors = self._vectors_to_purge(indexes)  # before begin(): a failure here changes nothing
            self._purger.begin(purging.Intent(tuple(map(str, ids)), tuple(self._slots.seqs[i] for i in indexes)))
            self._slots.empty(indexes, purging.blank_row(), vectors)
            self._caches.sweep()  # a cache staged since drop_all above holds the words too
            # Provenance a recall queued for them reaches the log now, and
            # what is queued later is refused: the purge then removes all of it.
            self.flush_provenance(PURGE_FLUSH_S)
            self._finish_pending(f"the purge of {len(ids)} record(s)")
            self._compaction.done()
            return ids

    def _vectors_to_purge(self, indexes: list[int]) -> np.ndarray:
        """The exact vectors of slots about to be emptied (their share of
        ``ranked_unit_sum`` comes off); StoreError when one cannot be read."""
        try:
            return self.exact_vectors(np.asarray(indexes))
        except (CorruptData, OSError) as exc:
            raise StoreError(
                f"the purge cannot read the exact vector of a record it removes ({type(exc).__name__}: {exc}); "
                "nothing was removed: open the store again (the open rebuilds the vectors) and repeat the purge"
            ) from exc

    def finish_pending_purge(self) -> None:
        """Finish a purge an earlier failure left pending (nothing to do when
        none is); the automatic purge calls it on every run. StoreError if it
        still cannot finish."""
        with self._lock:
            self._finish_pending("an earlier purge")

    def _finish_pending(self, what: str) -> None:
        unfinished = self._purger.finish()
        if unfinished is not None:
            raise StoreError(
                f"{what} could not finish (see the log); its {len(unfinished.record_ids)} record(s) are gone "
                "from this process, and the purge is retried at the next purge, automatic purge or open"
            )

    def log_name(self, record_id: UUID | str) -> str:
        """How log lines name a record: a short digest keyed by the store's
        key, never its id (a purged record's id must not outlive it in a log)."""
        return self._cipher.digest(str(record_id).encode())

    def keyed_digest(self, purpose: str, value: str) -> str:
        """``value`` digested with a subkey of this store's key for ``purpose``
        (``Cipher.purpose_digest``): lets an adapter name something (a hook
        cursor names its transcript) without keeping it in clear."""
        return self._cipher.purpose_digest(purpose, value.encode("utf-8", "surrogatepass"))

    # ----------------------------------------------------------------- read

    def __len__(self) -> int:
        return len(self._slots.rows)

    def rows(self) -> list[MemoryRow]:
        """The live row list, in insertion order (read it, never mutate it)."""
        return self._slots.rows

    def seqs(self) -> Sequence[int]:
        """Each row's insertion number (its LanceDB ``seq``), aligned with
        ``rows()``: strictly increasing, kept by updates and across opens, so
        a position in it survives forgetting (export pages by it)."""
        return self._slots.seqs

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """``(matrix, norms)``: the exact float32 vectors of the first
        ``len(self)`` rows, decrypted now into a new matrix (100k rows: 154
        MB and a fraction of a second), and their norms, clamped above 0 so
        callers can divide by them. For tools and benchmarks; recall and
        capture scan the int8 codes (``approx_cosines``) and re-score the
        candidates (``exact_cosines``)."""
        n = len(self._slots.rows)
        return self.exact_vectors(np.arange(n)), self._slots.norms[:n]

    def approx_cosines(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(approx, bound)`` for the first ``len(self)`` rows: each one's
        cosine to ``query`` from its int8 codes, and how far its exact cosine
        can be from that (``retrieval.quantized``). A purged slot scores 0."""
        slots = self._slots
        # The row count first, then the arrays in one read: every row counted
        # is in them (a growth copies the rows it had, then swaps them all).
        n = len(slots.rows)
        arrays = slots.arrays
        n = min(n, len(arrays.codes))
        return approx_cosines(arrays.codes[:n], arrays.scales, arrays.norms, arrays.slack, query, int8_dots)

    def ranked_unit_sum(self) -> tuple[int, np.ndarray]:
        """``(rows, sum)``: how many rows recall ranks (neither hidden nor
        purged) and the float64 sum of their unit vectors: the sum of their
        exact cosines to a unit query is one dot product with it."""
        return self._slots.alive_sum

    def exact_cosines(self, indexes: np.ndarray, query: np.ndarray) -> np.ndarray:
        """The exact float32 cosines of rows ``indexes`` to ``query``, from
        their sealed vectors (about 3 us a row)."""
        indexes = np.asarray(indexes, dtype=np.int64)
        if not len(indexes):
            return np.zeros(0, dtype=np.float32)
        dots = self.exact_vectors(indexes) @ np.asarray(query, dtype=np.float32)
        return dots / np.float32(np.linalg.norm(query) or 1.0) / self._slots.norms[indexes]

    def exact_vectors(self, indexes: np.ndarray) -> np.ndarray:
        """The exact float32 vectors of rows ``indexes`` (a purged slot's is zeros)."""
        return self._slots.exact_many(indexes, self._cipher.open)

    def _exact(self, index: int) -> np.ndarray:
        return self._slots.exact(index, self._cipher.open)

    def states(self) -> np.ndarray:
        """Each row's ``STATE_CODES`` value (int8), aligned with ``rows()`` and
        ``vectors()``: recall and packing mask hidden, superseded and purged
        rows with one vectorised comparison instead of a pass over 100k rows."""
        return self._slots.states[: len(self._slots.rows)]

    def row(self, record_id: UUID) -> MemoryRow | None:
        index = self._slots.index_of.get(record_id)
        return None if index is None else self._slots.rows[index]

    def find_identical(self, text: str) -> MemoryRow | None:
        index = self._slots.by_text.get(text)
        return None if index is None else self._slots.rows[index]

    def get(self, record_id: UUID | str) -> MemoryRecord | None:
        """The record with its provenance in append order, or None."""
        try:
            rid = record_id if isinstance(record_id, UUID) else UUID(str(record_id))
        except ValueError:
            return None
        index = self._slots.index_of.get(rid)
        if index is None:
            return None
        return self._slots.rows[index].to_record(self._exact(index).tolist(), self.provenance_of(rid))

    def provenance_of(self, record_id: UUID) -> list[ProvenanceEntry]:
        """The record's readable provenance in append order (see ``read_provenance``)."""
        return self._log.entries(record_id)

    def read_provenance(self, record_id: UUID) -> tuple[list[ProvenanceEntry], int]:
        """``(entries, damaged)``: the record's provenance in append order, and
        how many of its entries cannot be read (skipped and logged, left on
        disk as they are: ``doctor`` reports them)."""
        return self._log.read(record_id)

    def verify(self) -> dict[str, Any]:
        """What is damaged, read in full (doctor): ``records`` (``damaged``: rows
        a damaged data file hides, ``unreadable``: rows that fail decryption,
        ``errors``, ``history_problem``: why the table's version list cannot be
        read, or None) and ``provenance`` (``ProvenanceLog.verify``)."""
        with self._lock:
            try:
                self._records.version_count()
                history = None
            except Exception as exc:  # an old manifest LanceDB cannot read: compaction would fail on it
                history = f"{type(exc).__name__}: {exc}"[:300]
            return {
                "records": {"damaged": self._records.damage.rows, "unreadable": len(self.load_problems),
                            "errors": [*self._records.damage.errors, *self.load_problems[:5]],
                            "history_problem": history},
                "provenance": self._log.verify(),
            }

    def provenance_counts(self, as_of: int | None = None) -> tuple[dict[UUID, int], int]:
        """``({record_id: provenance entries}, as_of)``: how often each record
        was recalled (a capture's cue counts once), counting entries up to
        the log position ``as_of`` (default: now), and that position."""
        counts, upto = self._log.counts(as_of)
        return {UUID(rid): n for rid, n in counts.items()}, upto

    def latest_provenance(self, limit: int = 1000) -> list[tuple[UUID, ProvenanceEntry]]:
        """Each record's newest provenance entry, most recent first (at most ``limit``)."""
        return self._log.latest(limit)

    # ----------------------------------------------------------- provenance

    def append_provenance_batch(
        self,
        pairs: Sequence[ProvenancePair | tuple[Any, ...]],
        records_cache: dict[Any, Any] | None = None,
    ) -> int:
        """Append ``(record_id, entry[, entry_id])`` pairs in one transaction.

        Ids not in the store are skipped and the rest applied; an entry id
        already in the log is not applied twice. Returns how many were new.
        ``records_cache`` is accepted for callers of the older API and not
        needed: existence is answered from memory.
        """
        del records_cache
        return self._log.append(self._log.seal(pairs, self._slots.index_of.__contains__))

    def queue_provenance_batch(self, pairs: Sequence[tuple[Any, ...]]) -> None:
        """The one entry point recall uses: hand off to the queue when it is
        enabled, else write synchronously on the caller's thread."""
        if not pairs:
            return
        if self.read_only:
            log_event.warning("provenance_not_recorded", pairs=len(pairs), reason="the store is read-only")
            return
        queue = self._provenance_queue
        if queue is not None:
            queue.enqueue(pairs)
        else:
            self.append_provenance_batch(pairs)

    def enable_provenance_queue(self, coalesce_ms: int = 50, **options: Any) -> ProvenanceWriteQueue:
        """Start a queue writing behind recall (see ``iai_mcp.provenance_queue``):
        it replays what a killed process left, then takes every batch recall
        hands over. The store is its ``ProvenanceSink``."""
        with self._lock:
            if self._provenance_queue is None:
                queue = ProvenanceWriteQueue(self, coalesce_ms=coalesce_ms, **options)
                queue.start()
                self._provenance_queue = queue
            return self._provenance_queue

    def flush_provenance(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for queued provenance to reach the log; False
        at once when the log is unavailable (nothing can reach it before
        ``doctor --repair``: memory_get must not wait for it)."""
        if self._log.unavailable is not None:
            return False
        queue = self._provenance_queue
        return queue.flush(timeout) if queue is not None else True

    def disable_provenance_queue(self, timeout: float = 30.0) -> None:
        """Drain the queue, then stop it; later batches are written synchronously."""
        with self._lock:
            queue, self._provenance_queue = self._provenance_queue, None
        if queue is not None:
            queue.stop(timeout=timeout)

    @property
    def journal_dir(self) -> Path:
        """Where this store's provenance queue journals what it was handed."""
        return self.root / JOURNAL_DIR

    def sealer(self, purpose: str) -> Sealer:
        """Seal and open bytes with this store's key, bound to ``purpose`` and
        this store (a blob sealed for one does not open for another). The
        provenance queue seals its pending batches with it."""
        return Sealer(self._cipher, f"{purpose}:{self.store_id}".encode())

    # ---------------------------------------------------------------- caches

    def read_cache(self, name: str) -> bytes | None:
        """The bytes last cached as ``name`` (``store.sealed_cache``), None when
        there are none; CorruptData when they do not open. Whether they still
        fit the records is the caller's to check."""
        return self._caches.read(name)

    def write_cache(self, name: str, data: bytes) -> bool:
        """Cache ``data`` as ``name``, sealed, owner-only, atomically. False,
        and nothing written, on a read-only store, once a purge ran in this
        process, or while one is unfinished (its records may still be in
        memory, and in ``data``): whatever was derived here may hold a
        purged record's words."""
        return self.write_cache_parts(name, [data])

    def write_cache_parts(self, name: str, parts: Iterable[bytes | bytearray | memoryview]) -> bool:
        """``write_cache`` of the concatenated ``parts``, sealed as they are
        written (neither the joined bytes nor their sealed copy is ever held).
        Sealed outside the lock (captures go on meanwhile) into a temp file,
        put in place under it if no purge ran by then; a purge in between
        deletes the temp file, and a kill leaves it to the next open."""
        if self.read_only:
            return False
        staged = self._caches.stage(name, parts, refused=self._purged_here)
        if staged is None:
            return False
        try:
            with self._lock:
                if self._purged_here():
                    return False
                self._caches.commit(name, staged)
                return True
        finally:
            staged.unlink(missing_ok=True)  # gone already when committed

    def _purged_here(self) -> bool:
        return bool(np.any(self.states() == PURGED)) or self._purger.pending() is not None

    # -------------------------------------------------------------- admin

    @property
    def key_source(self) -> str:
        """Where the key comes from: ``file``, ``keyring`` or ``passphrase``."""
        return str(self._meta["key_source"]["kind"])

    def stats(self) -> dict[str, Any]:
        return {
            "path": str(self.root),
            "store_id": self.store_id,
            "records": len(self) - int(np.count_nonzero(self.states() == PURGED)),
            "provenance_entries": self._log.count(),
            # None when an old manifest cannot be read: stats still answers, and
            # verify (doctor) names the problem.
            "versions": self._records.readable_version_count(),
            "fragments": self._records.fragment_count(),
            "embedder": self.embedder_name,
            "key_source": self.key_source,
            "unreadable_records": len(self.load_problems),
            "damaged": self.damaged,
            "provenance_log_problem": self._log.unavailable,
        }

    def close(self) -> None:
        """Drain the provenance queue, close the log, release the owner lock."""
        if not self._owner_lock.alive:
            return
        try:
            self.disable_provenance_queue()  # outside the lock: its worker writes through the store
        finally:
            # Under the lock: a compaction or write still running (another
            # thread's) ends before the files are closed and the flock goes.
            with self._lock:
                try:
                    self._log.close()
                    self._slots.sealed.close()
                finally:
                    self._release_owner_lock()

    def _release_owner_lock(self) -> None:
        self._owner_lock()  # closes the fd once; closing it drops the flock

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

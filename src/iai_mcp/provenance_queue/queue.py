"""ProvenanceWriteQueue: provenance writes off the recall path, nothing lost.

Recall hands its ``(record_id, entry)`` pairs to ``enqueue``, which appends
to an in-memory deque and returns in microseconds. One daemon worker thread
coalesces what arrives within ``coalesce_ms`` (up to ``max_batch_pairs``
pairs) and writes it with ``store.append_provenance_batch``.

When the deque holds ``max_queue_size`` batches, new batches spill to disk
instead of being dropped or blocking the caller: one sealed file per batch
under ``~/.iai-mcp/.provenance-overflow/`` (see ``iai_mcp.provenance_queue.spill``). While
any spilled batch is pending, every new batch spills too, and the worker
empties the deque before it replays spill files oldest first, so each
record's entries reach the log in the order they were enqueued. The drain
starts as soon as the worker is idle; the 5 s poll only picks up files left
by an earlier process. Every pair carries an entry id, and the log ignores
an id it already holds, so a batch replayed twice is applied once.

Under the lock that queues a batch, enqueue also appends it, sealed, to the
store's journal (see ``iai_mcp.provenance_queue.journal``): one ``os.write``, no fsync. A
batch that ``enqueue`` accepted therefore survives ``kill -9``: ``start``
replays what dead queues of the store left in the journal before anything
else, and the worker trims the journal once the log holds its batches.

A failed write is reported as one JSON line on stderr and the batch is
spilled for a later retry; if even the spill fails (disk full) the batch
stays in memory and is retried with backoff until the disk has room again.
What can still be lost: the journal's last writes when the OS crashes or
the power fails (they were never fsynced, like the log's last commits), and
batches enqueued while the journal could not be written (disk full, journal
directory unwritable: a ``journal_write_failed`` line says so) if the
process dies before the worker has written them or the journal has taken
them on its next successful write.

Pure stdlib. The store it writes to provides ``store_id``,
``append_provenance_batch(pairs)``, ``seal_spill(bytes)``,
``open_spill(bytes)`` and, for the journal, ``journal_dir``.
"""
from __future__ import annotations

import atexit
import collections
import os
import threading
import time
from pathlib import Path
from typing import Any, Protocol, Sequence

from iai_mcp import config
from iai_mcp.errors import InvalidInput
from iai_mcp.log import logger
from iai_mcp.provenance_queue.journal import Journal
from iai_mcp.provenance_queue.spill import SpillDir, spill_state
from iai_mcp.types import ProvenancePair

__all__ = ["ProvenanceSink", "ProvenanceWriteQueue", "spill_state"]

WORKER_IDLE_POLL_S = 5.0
_RETRY_BACKOFF_S = (0.05, 0.2, 1.0, 5.0)


class ProvenanceSink(Protocol):
    store_id: str

    def append_provenance_batch(self, pairs: Sequence[Any], records_cache: Any = None) -> Any: ...

    def seal_spill(self, data: bytes) -> bytes: ...

    def open_spill(self, blob: bytes) -> bytes: ...


_log = logger("iai_mcp.provenance_queue")


def _with_ids(pairs: Sequence[Any]) -> list[ProvenancePair]:
    # One urandom call for the whole batch: uuid4() per pair costs ~2 us each,
    # most of the enqueue budget for a ten-hit recall.
    ids = os.urandom(16 * len(pairs)).hex()
    out = []
    for i, pair in enumerate(pairs):
        if isinstance(pair, ProvenancePair):
            out.append(pair)
        else:
            record_id, entry = pair
            out.append(ProvenancePair(record_id, entry, ids[32 * i : 32 * i + 32]))
    return out


class ProvenanceWriteQueue:
    def __init__(
        self,
        store: ProvenanceSink,
        coalesce_ms: float = 50,
        max_queue_size: int = 10_000,
        max_batch_pairs: int = 512,
        spill_dir: str | os.PathLike[str] | None = None,
        journal: bool = True,
        journal_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        """``journal_dir`` defaults to the store's ``journal_dir``; a sink
        without one (or ``journal=False``) runs without a journal."""
        if max_queue_size < 1 or max_batch_pairs < 1 or coalesce_ms < 0:
            raise ValueError("max_queue_size and max_batch_pairs must be >= 1, coalesce_ms >= 0")
        self._store = store
        self._coalesce_s = coalesce_ms / 1000.0
        self._max_queue = max_queue_size
        self._max_batch = max_batch_pairs
        self._spills = SpillDir(
            Path(spill_dir) if spill_dir is not None else config.overflow_dir(),
            store.store_id, store.seal_spill, store.open_spill, _log,
        )
        self._cv = threading.Condition()
        # (seq of its first enqueue call, pairs); seqs grow left to right.
        self._items: collections.deque[tuple[int, list[ProvenancePair]]] = collections.deque()
        self._seq = 0  # number of the last enqueue call
        self._inflight: int | None = None  # first seq of the batch being written
        default_dir = getattr(store, "journal_dir", None)
        chosen = journal_dir if journal_dir is not None else default_dir
        self._journal_dir = Path(chosen) if journal and chosen is not None else None
        self._journal: Journal | None = None
        self._journal_down = False  # the last journal write failed
        # (seq, payload) of batches the journal refused, to append once it can.
        self._unjournaled: collections.deque[tuple[int, bytes]] = collections.deque()
        self._replay_pending = False  # a start-time replay failed: retry when idle
        self._spill_backlog = False  # some batch of ours is on disk, not yet replayed
        self._busy = False  # the worker holds a batch it has not finished
        self._idle = False  # the worker waits for work (not coalescing, not writing)
        self._worker_gone = False  # stopped: set by the worker, under the lock, as it exits
        self._gave_up = False  # stopping, and the store keeps failing: leave the rest on disk
        self._urgent = False  # flush/stop asked: skip the coalescing wait
        self._scan_requested = True  # look at the spill dir on the first idle moment
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._atexit_registered = False
        self._owner_pid = os.getpid()
        self._failures = 0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Replay the journal left by dead queues of this store, open ours,
        start the worker. Callers that enqueue meanwhile wait, so replayed
        entries stay older than new ones."""
        with self._cv:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._worker_gone = False
            self._gave_up = False
            self._owner_pid = os.getpid()
            self._open_journal()
            self._thread = threading.Thread(
                target=self._run, name="iai-mcp-provenance", daemon=True
            )
            self._thread.start()
            if not self._atexit_registered:
                atexit.register(self._drain_at_exit)
                self._atexit_registered = True

    def _drain_at_exit(self) -> None:
        # A child forked without exec inherits this handler, not the worker:
        # draining there would close (and remove) the parent's journal.
        if os.getpid() == self._owner_pid:
            self.stop()

    def _open_journal(self) -> None:
        if self._journal_dir is None or self._journal is not None:
            return
        journal = Journal(
            self._journal_dir, self._store.store_id, self._store.seal_spill, self._store.open_spill, _log
        )
        self._replay_journal(journal)
        journal.open()
        self._journal = journal

    def _replay_journal(self, journal: Journal) -> None:
        try:
            self._replay_pending = not journal.replay(self._apply_replayed)
        except Exception as exc:  # e.g. the directory cannot be listed: never fail start()
            _log("journal_replay_failed", error=f"{type(exc).__name__}: {exc}", action="retried when idle")
            self._replay_pending = True

    def _apply_replayed(self, pairs: list[ProvenancePair]) -> None:
        for start in range(0, len(pairs), self._max_batch):
            self._store.append_provenance_batch(pairs[start : start + self._max_batch])

    def _durable_upto(self) -> int:
        """Every batch with a seq up to this is in the log (lock held). Spilled
        batches are not in the log yet, so a spill backlog holds the journal."""
        if self._spill_backlog:
            return 0
        low = self._seq + 1
        if self._inflight is not None:
            low = min(low, self._inflight)
        if self._items:
            low = min(low, self._items[0][0])
        return low - 1

    def stop(self, timeout: float = 30.0) -> None:
        """Drain everything (memory and our spill files), then stop the worker.

        If the worker cannot finish in ``timeout`` (a hung store), whatever
        is still in memory is spilled to disk, so nothing is dropped.
        """
        with self._cv:
            thread = self._thread
            self._stopping = True
            self._urgent = True
            self._scan_requested = True
            self._cv.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cv:
            # The worker is hung (timeout) or gave up on a failing store: spill
            # what memory still holds. The journal keeps every line not yet in
            # the log, so that is computed before memory is emptied.
            upto = self._durable_upto()
            leftovers = list(self._items)
            self._items.clear()
            kept = [(seq, batch) for seq, batch in leftovers if not self._spill(batch)]
            if kept:
                _log("provenance_left_in_journal", batches=len(kept),
                     reason="the spill refused too; the journal replays them at next start")
            if thread is None or not thread.is_alive():
                self._thread = None  # a hung worker stays referenced: start() will not add a second
            if self._atexit_registered:
                atexit.unregister(self._drain_at_exit)
                self._atexit_registered = False
            journal, self._journal = self._journal, None
        if journal is not None:
            kept = journal.close(upto)
            if kept:
                _log("journal_kept", files=kept, reason="not all of it is in the log; replayed at next start")

    # -------------------------------------------------------------- callers

    def enqueue(self, pairs: Sequence[Any]) -> None:
        """Hand over a batch; returns at once. Never drops and never blocks on I/O
        except to spill when the queue is full."""
        batch = _with_ids(pairs)
        if not batch:
            return
        journal = self._journal
        payload = None
        if journal is not None:
            try:
                payload = journal.encode(batch)  # sealing stays outside the lock
            except Exception as exc:  # never fail a recall over its journal line
                _log(
                    "journal_encode_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    pairs=len(batch),
                    consequence="this batch is in memory only until written",
                )
        with self._cv:
            self._seq += 1
            seq = self._seq
            if self._worker_gone:
                # Stopped: no worker will write it. A spill file is replayed by
                # the next queue of this store; memory would die with us.
                if not self._spill(batch):
                    _log("provenance_lost", pairs=len(batch), reason="queue stopped and spill refused")
            elif not self._spill_backlog and len(self._items) < self._max_queue:
                self._items.append((seq, batch))
            # Spill under the lock so that the order of spill files is the
            # order of enqueue calls.
            elif not self._spill(batch):
                # The disk refused too: keep it in memory past the bound rather than lose it.
                self._items.append((seq, batch))
            # Still under the lock, so the worker cannot have written it yet.
            if journal is not None and payload is not None:
                self._journal_append(journal, seq, payload)
            if self._idle:  # a coalescing worker collects it when its window ends
                self._cv.notify()

    def _journal_append(self, journal: Journal, seq: int, payload: bytes) -> None:
        """Journal one batch (lock held). A batch the journal refuses (disk
        full, directory gone) is appended once a later write succeeds, unless
        the log has it by then. Only the journal going down or coming back is
        reported, never each batch."""
        error = journal.append(seq, payload)
        if error is None:
            upto = self._durable_upto()
            while self._unjournaled:
                old_seq, old_payload = self._unjournaled[0]
                if old_seq > upto and journal.append(old_seq, old_payload) is not None:
                    return  # refused again: the rest waits for the next try
                self._unjournaled.popleft()
            if self._journal_down:
                self._journal_down = False
                _log("journal_write_recovered")
            return
        self._unjournaled.append((seq, payload))
        upto = self._durable_upto()
        while self._unjournaled and self._unjournaled[0][0] <= upto:
            self._unjournaled.popleft()  # in the log already: no longer needs the journal
        if not self._journal_down:
            self._journal_down = True
            _log(
                "journal_write_failed",
                error=f"{type(error).__name__}: {error}",
                dir=str(journal.directory),
                consequence="batches stay in memory and reach the log as usual; they are "
                "journaled once a journal write succeeds again, and lost only if the process "
                "dies before either",
            )

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything enqueued so far, and every spilled batch of
        this store, is written. True if that happened within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._urgent = True
            self._scan_requested = True
            self._cv.notify_all()
            while self._items or self._busy or self._spill_backlog or self._scan_requested:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._thread is None:
                    return False
                self._cv.wait(min(remaining, 0.05))
                self._urgent = True
            return True

    def pending(self) -> int:
        """Batches in memory not yet written, plus one for any spilled backlog."""
        with self._cv:
            return len(self._items) + int(self._spill_backlog) + int(self._busy)

    # --------------------------------------------------------------- worker

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._items and not self._stopping and not (
                    self._spill_backlog or self._scan_requested
                ):
                    self._idle = True
                    if not self._cv.wait(WORKER_IDLE_POLL_S):
                        self._scan_requested = True
                self._idle = False
                if self._gave_up:
                    self._worker_gone = True
                    self._cv.notify_all()
                    return
                if self._items:
                    seq, batch = self._take_batch()
                    job: Any = ("write", seq, batch)
                elif self._spill_backlog or self._scan_requested:
                    self._scan_requested = False
                    self._busy = True
                    job = ("spill", 0, None)
                else:  # stopping, nothing left in memory, nothing spilled
                    self._worker_gone = True
                    self._cv.notify_all()
                    return
            try:
                if job[0] == "write":
                    self._write(job[1], job[2])
                else:
                    if self._replay_pending and self._journal is not None:
                        self._replay_journal(self._journal)
                    self._drain_spill_dir()
            finally:
                with self._cv:
                    self._busy = False
                    self._inflight = None
                    upto = self._durable_upto()
                    journal = self._journal
                    self._cv.notify_all()
            if journal is not None:
                try:
                    journal.maintain(upto)
                except Exception as exc:  # housekeeping only: the data is safe either way
                    _log("journal_maintenance_failed", error=f"{type(exc).__name__}: {exc}")

    def _take_batch(self) -> tuple[int, list[ProvenancePair]]:
        """Pop one batch, then coalesce what arrives within coalesce_ms (lock
        held). Returns the first seq it covers, and the pairs."""
        seq, first = self._items.popleft()
        # Set before the coalescing wait releases the lock: flush() and
        # enqueue() must not see the batch as neither queued nor in flight.
        self._busy = True
        self._inflight = seq
        batch = list(first)
        # Sleep out the coalescing window instead of waking per arrival:
        # enqueue does not notify a coalescing worker, so a recall never
        # hands the GIL to this thread mid-call (p50 enqueue 142 -> ~20 us
        # at one enqueue per 2 ms). flush() and stop() still cut it short.
        deadline = time.monotonic() + self._coalesce_s
        while len(batch) < self._max_batch and not (self._urgent or self._stopping):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cv.wait(remaining)
        while self._items and len(batch) + len(self._items[0][1]) <= self._max_batch:
            batch.extend(self._items.popleft()[1])
        if not self._items:
            self._urgent = False
        return seq, batch

    def _write(self, seq: int, batch: list[ProvenancePair]) -> None:
        try:
            self._store.append_provenance_batch(batch)
            self._failures = 0
        except Exception as exc:  # background work: report, keep the data
            self._failures += 1
            with self._cv:
                # Spill only when nothing newer waits in memory: a spill file is
                # replayed after memory, so spilling ahead of newer batches would
                # reorder a record's entries.
                spilled = (
                    not self._items and not isinstance(exc, InvalidInput) and self._spill(batch)
                )
                if not spilled:
                    self._items.appendleft((seq, batch))
            _log(
                "provenance_write_failed",
                error=f"{type(exc).__name__}: {exc}",
                pairs=len(batch),
                action="spilled for retry" if spilled else "kept in memory for retry",
            )
            self._backoff()

    def _backoff(self) -> None:
        """Wait before retrying a failed write; while stopping, give up after
        the last step (what is left stays on disk: journal and spill files)."""
        delay = _RETRY_BACKOFF_S[min(self._failures, len(_RETRY_BACKOFF_S)) - 1]
        with self._cv:
            if self._stopping and self._failures >= len(_RETRY_BACKOFF_S):
                self._gave_up = True
                return
            self._cv.wait(delay)

    # ---------------------------------------------------------------- spill

    def _spill(self, batch: list[ProvenancePair]) -> bool:
        """Write one batch to its own sealed spill file; False if the disk refused."""
        try:
            self._spills.write(batch)
        except Exception as exc:
            _log("provenance_spill_failed", error=f"{type(exc).__name__}: {exc}", pairs=len(batch))
            return False
        self._spill_backlog = True
        return True

    def _drain_spill_dir(self) -> None:
        """Replay our spill files oldest first; quarantine what cannot be read.

        The backlog flag is cleared only by a listing taken under the lock
        that finds nothing, so no spill can slip in between.
        """
        handled: set[Path] = set()  # guards against a file we could neither read nor move
        while True:
            files = [p for p in self._spills.ours() if p not in handled]
            if not files:
                with self._cv:
                    if not [p for p in self._spills.ours() if p not in handled]:
                        self._spill_backlog = False
                        return
                continue
            for path in files:
                handled.add(path)
                with self._cv:
                    if self._items:
                        return  # what is in memory is older than any spill: write it first
                if not self._replay(path):
                    with self._cv:
                        self._scan_requested = True
                    return

    def _replay(self, path: Path) -> bool:
        """Apply one spill file and remove it; False if the store failed (kept for retry)."""
        try:
            pairs = self._spills.read(path)
        except FileNotFoundError:
            return True
        except Exception as exc:
            self._spills.quarantine(path, f"{type(exc).__name__}: {exc}")
            return True
        try:
            for start in range(0, len(pairs), self._max_batch):
                self._store.append_provenance_batch(pairs[start : start + self._max_batch])
        except Exception as exc:
            self._failures += 1
            _log(
                "provenance_replay_failed",
                file=path.name,
                error=f"{type(exc).__name__}: {exc}",
                action="kept on disk for retry",
            )
            self._backoff()
            return False
        self._failures = 0
        path.unlink(missing_ok=True)
        return True

"""ProvenanceWriteQueue: provenance writes off the recall path, nothing lost.

Why a queue at all, when the log appends in well under a millisecond? Measured
with ``python -m bench.provenance --paths-only`` (one recall's 10 pairs, one
call per 2 ms, a log of ~10k and ~100k entries, 2 shared cores, runs at load
1 and 3; table in bench/README.md): the synchronous
``store.append_provenance_batch`` on the request thread costs p50 0.2-0.5 ms
and p99 6-20 ms (WAL commits and checkpoints); ``enqueue`` with its journal
line p50 24-63 us and p99 0.14-3.3 ms. Recall p95 end to end barely moves
with the path, its p99 does (100k entries: 9.5 ms queued, 15.2 ms
synchronous). And a slow or failing log
(a 500 ms write in the spec) must never slow or fail a recall, which only a
hand-off can promise. So the queue stays, and the journal is what makes the
hand-off safe.

Recall hands its ``(record_id, entry)`` pairs to ``enqueue``, which seals the
batch once (``pending.seal_batch``), appends that line to the store's journal
(``journal``: a batch ``enqueue`` accepted survives ``kill -9``) and to an
in-memory deque, and returns. One daemon worker thread coalesces what
arrives within ``coalesce_ms`` (up to ``max_batch_pairs`` pairs), writes it
with ``store.append_provenance_batch`` and trims the journal once the log
holds it.

When the deque holds ``max_queue_size`` batches, or a write fails, batches go
to a spill file instead (``spill``; the same sealed lines, no second
encryption): nothing is dropped and the caller never waits for the log.
While any spilled batch is pending every new batch spills too, and the worker
empties memory before it replays spill files oldest first, so each record's
entries reach the log in the order they were enqueued. Replays are
idempotent: every pair carries an entry id and the log ignores one it holds.

The worker looks at the disk (journal segments dead queues left, then spill
files) at start, after a spill, on ``flush`` and every ``WORKER_IDLE_POLL_S``
when idle. A failure is one JSON line on stderr, then a retry with backoff;
anything unexpected in the worker is too (``provenance_worker_error``): the
batch it carried goes back to memory and the worker carries on.
What can still be lost: the journal's last writes when the OS crashes or the
power fails (never fsynced, like the log's last commits), and batches
enqueued while the journal could not be written (disk full: a
``journal_write_failed`` line says so) or that could not be sealed
(``provenance_seal_failed``) if the queue stops or dies before the log has
them (at stop, a ``provenance_lost`` line counts them).

Pure stdlib, and below the store in the layering: what it needs from the
store comes in through ``ProvenanceSink``.
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
from iai_mcp.provenance_queue import pending
from iai_mcp.provenance_queue.batch import Batch, seal, with_ids
from iai_mcp.provenance_queue.journal import Journal
from iai_mcp.provenance_queue.spill import SpillDir, spill_state
from iai_mcp.types import ProvenancePair

__all__ = ["ProvenanceSink", "ProvenanceWriteQueue", "spill_state"]

WORKER_IDLE_POLL_S = 5.0
_RETRY_BACKOFF_S = (0.05, 0.2, 1.0, 5.0)

_log = logger("iai_mcp.provenance_queue")


class ProvenanceSink(Protocol):
    """What the queue needs from a store. ``append_provenance_batch`` is
    looked up on every write (a test or benchmark may wrap it); a
    ``journal_dir`` attribute, if the sink has one, is where the journal goes."""

    store_id: str

    def append_provenance_batch(self, pairs: Sequence[Any], records_cache: Any = None) -> Any: ...

    def sealer(self, purpose: str) -> pending.Sealer: ...


# Lifecycle. new: enqueue keeps batches for start(). running. stopping: drain,
# then exit. stopped: no worker; enqueue spills for the next queue of the store.
_NEW, _RUNNING, _STOPPING, _STOPPED = "new", "running", "stopping", "stopped"


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
        self._sealer = store.sealer(pending.SEAL_PURPOSE)
        self._coalesce_s = coalesce_ms / 1000.0
        self._max_queue = max_queue_size
        self._max_batch = max_batch_pairs
        self._spills = SpillDir(
            Path(spill_dir) if spill_dir is not None else config.overflow_dir(), store.store_id
        )
        chosen = journal_dir if journal_dir is not None else getattr(store, "journal_dir", None)
        self._journal_dir = Path(chosen) if journal and chosen is not None else None
        self._journal: Journal | None = None
        self._cv = threading.Condition()
        self._items: collections.deque[Batch] = collections.deque()  # seqs grow left to right
        self._seq = 0  # number of the last enqueue call
        self._writing: list[Batch] | None = None  # what the worker is writing now
        self._state = _NEW
        self._spill_backlog = False  # a batch of ours is spilled, not yet replayed
        self._check_disk = True  # journal leftovers or spill files may wait: look when idle
        self._idle = False  # the worker waits for work (not coalescing, not writing)
        self._urgent = False  # flush/stop asked: skip the coalescing wait
        self._thread: threading.Thread | None = None
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
            self._state = _RUNNING
            self._owner_pid = os.getpid()
            if self._journal_dir is not None and self._journal is None:
                journal = Journal(self._journal_dir, self._store.store_id, self._sealer, _log)
                self._replay_journal(journal)  # a failure is retried when idle (_check_disk)
                journal.open()
                self._journal = journal
            self._thread = threading.Thread(target=self._run, name="iai-mcp-provenance", daemon=True)
            self._thread.start()
            atexit.register(self._drain_at_exit)

    def _drain_at_exit(self) -> None:
        # A child forked without exec inherits this handler, not the worker:
        # draining there would close (and remove) the parent's journal.
        if os.getpid() == self._owner_pid:
            self.stop()

    def stop(self, timeout: float = 30.0) -> None:
        """Drain everything (memory and our spill files), then stop the worker.

        If the worker cannot finish in ``timeout`` (a hung store) or gives up
        on a failing one, what memory still holds is spilled; what the spill
        refuses stays in the journal. Nothing is dropped.
        """
        with self._cv:
            thread = self._thread
            was_running = self._state == _RUNNING
            if self._state != _STOPPED:
                self._state = _STOPPING
            self._urgent = self._check_disk = True
            self._cv.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        with self._cv:
            # Taken before memory is emptied: the journal keeps every line not yet in the log.
            upto = self._durable_upto()
            leftovers = list(self._items)
            self._items.clear()
            if leftovers:
                self._keep_at_stop(leftovers)
            if thread is None or not thread.is_alive():
                self._thread = None  # a hung worker stays referenced: start() will not add a second
                self._state = _STOPPED
            if was_running:
                atexit.unregister(self._drain_at_exit)
            journal, self._journal = self._journal, None
        if journal is not None:
            kept = journal.close(upto)
            if kept:
                _log.warning("journal_kept", files=kept, reason="not all of it is in the log; replayed at next start")

    def _keep_at_stop(self, leftovers: list[Batch]) -> None:
        """Spill what memory still holds at stop (lock held), and say truly
        where each batch the spill could not take is.

        A batch that could not be sealed can be neither spilled nor
        journaled: it is left out of the spill instead of refusing it for
        all, and reported lost. The rest the journal holds unless a journal
        write refused them (or there is no journal): those are lost too.
        """
        sealed = [b for b in leftovers if b.payload is not None]
        lost = [b for b in leftovers if b.payload is None]
        if sealed and not self._spill(sealed):
            refused = self._journal.refused() if self._journal is not None else None
            in_journal = [b for b in sealed if refused is not None and b.seq not in refused]
            lost += [b for b in sealed if refused is None or b.seq in refused]
            if in_journal:
                _log("provenance_left_in_journal", batches=len(in_journal),
                     reason="the spill refused; the journal replays them at next start")
        if lost:
            _log.warning("provenance_lost", batches=len(lost), pairs=sum(len(b.pairs) for b in lost),
                         reason="at stop, neither written, spilled nor journaled (not sealed, or "
                         "the disk refused spill and journal)")

    # -------------------------------------------------------------- callers

    def enqueue(self, pairs: Sequence[Any]) -> None:
        """Hand over a batch; returns at once. Never drops and never blocks on
        I/O except one journal append, and a spill when the queue is full."""
        batch_pairs = with_ids(pairs)
        if not batch_pairs:
            return
        payload = seal(self._sealer, batch_pairs, _log)  # outside the lock
        with self._cv:
            self._seq += 1
            batch = Batch(self._seq, batch_pairs, payload)
            if self._state == _STOPPED:
                # No worker will write it. A spill file is replayed by the next
                # queue of this store; memory would die with us.
                if not self._spill([batch]):
                    _log.warning("provenance_lost", pairs=len(batch_pairs), reason="queue stopped and "
                                 + ("the batch could not be sealed" if payload is None else "spill refused"))
            elif not self._spill_backlog and len(self._items) < self._max_queue:
                self._items.append(batch)
            # Spilled under the lock, so the order of spill files is the order of enqueue calls.
            elif not self._spill([batch]):
                self._items.append(batch)  # the disk refused: past the bound rather than lost
            # Still under the lock, so the worker cannot have written it yet.
            if self._journal is not None and payload is not None:
                self._journal.append(batch.seq, payload, self._durable_upto())
            if self._idle:  # a coalescing worker collects it when its window ends
                self._cv.notify()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything enqueued so far, and every spilled batch of
        this store, is written. True if that happened within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._urgent = self._check_disk = True
            self._cv.notify_all()
            while self._items or self._writing is not None or self._spill_backlog or self._check_disk:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._state != _RUNNING:
                    return False
                self._cv.wait(min(remaining, 0.05))
                self._urgent = True
            return True

    def pending(self) -> int:
        """Batches in memory not yet written, plus one for any spilled backlog."""
        with self._cv:
            return len(self._items) + int(self._spill_backlog) + int(self._writing is not None)

    def _durable_upto(self) -> int:
        """Every batch with a seq up to this is in the log (lock held). Spilled
        batches are not in the log yet, so a spill backlog holds the journal."""
        if self._spill_backlog:
            return 0
        low = self._seq + 1
        if self._writing:
            low = min(low, self._writing[0].seq)
        if self._items:
            low = min(low, self._items[0].seq)
        return low - 1

    # --------------------------------------------------------------- worker

    def _run(self) -> None:
        while True:
            try:
                if not self._step():
                    return
            except BaseException as exc:  # background work survives anything: keep the data, carry on
                # BaseException: a Rust extension's panic arrives as one (pyo3's
                # PanicException). Only an exit asked of this thread ends it.
                if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                    raise
                if not self._recover(exc):
                    return

    def _step(self) -> bool:
        """One turn of the worker: write from memory, or replay from disk.
        False once it has stopped."""
        with self._cv:
            while not self._items and self._state == _RUNNING and not (
                self._spill_backlog or self._check_disk
            ):
                self._idle = True
                if not self._cv.wait(WORKER_IDLE_POLL_S):
                    self._check_disk = True  # files an earlier process may have left
            self._idle = False
            if self._items:
                batches: list[Batch] | None = self._take()
            elif self._spill_backlog or self._check_disk:
                batches = None
            else:  # stopping, and nothing is left in memory or on disk
                self._state = _STOPPED
                self._cv.notify_all()
                return False
        done = self._write(batches) if batches is not None else self._from_disk()
        if not done and not self._backoff():
            return self._give_up()
        with self._cv:
            upto = self._durable_upto()
            journal = self._journal
        if journal is not None:
            try:
                journal.maintain(upto)
            except Exception as exc:  # housekeeping only: the data is safe either way
                _log.warning("journal_maintenance_failed", error=f"{type(exc).__name__}: {exc}")
        return True

    def _recover(self, exc: BaseException) -> bool:
        """After an unexpected failure in a turn: put the batch it carried
        back in front of memory (older than anything there; if the log has
        it already, its entry ids make the rewrite a no-op), report, back
        off. False if the worker stops (stopping, and failing still)."""
        with self._cv:
            carried, self._writing = self._writing, None
            if carried:
                self._items.extendleft(reversed(carried))
            self._failures += 1
            self._cv.notify_all()
        _log.warning("provenance_worker_error", error=f"{type(exc).__name__}: {exc}",
                     action=f"kept {len(carried or ())} batch(es) in memory; retrying after a backoff")
        return self._backoff() or self._give_up()

    def _give_up(self) -> bool:
        """Stopping, and the store keeps failing: the rest stays on disk."""
        with self._cv:
            self._state = _STOPPED
            self._cv.notify_all()
        return False

    def _take(self) -> list[Batch]:
        """Pop one batch, then coalesce what arrives within coalesce_ms (lock held)."""
        batches = [self._items.popleft()]
        # Set before the coalescing wait releases the lock: flush() and
        # enqueue() must not see the batch as neither queued nor in flight.
        self._writing = batches
        size = len(batches[0].pairs)
        # Sleep out the coalescing window instead of waking per arrival:
        # enqueue does not notify a coalescing worker, so a recall never
        # hands the GIL to this thread mid-call (p50 enqueue 142 -> ~20 us
        # at one enqueue per 2 ms). flush() and stop() still cut it short.
        deadline = time.monotonic() + self._coalesce_s
        while size < self._max_batch and not self._urgent and self._state == _RUNNING:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._cv.wait(remaining)
        while self._items and size + len(self._items[0].pairs) <= self._max_batch:
            size += len(self._items[0].pairs)
            batches.append(self._items.popleft())
        if not self._items:
            self._urgent = False
        return batches

    def _write(self, batches: list[Batch]) -> bool:
        """Write coalesced batches; on failure spill them (or put them back). False if it failed."""
        error: Exception | None = None
        try:
            self._store.append_provenance_batch([p for b in batches for p in b.pairs])
        except Exception as exc:  # background work: report, keep the data
            error = exc
        with self._cv:
            self._writing = None
            if error is None:
                self._failures = 0
                self._cv.notify_all()
                return True
            self._failures += 1
            # Spill only when nothing newer waits in memory: a spill file is
            # replayed after memory, so spilling ahead of newer batches would
            # reorder a record's entries.
            spilled = not self._items and not isinstance(error, InvalidInput) and self._spill(batches)
            if not spilled:
                self._items.extendleft(reversed(batches))
            self._cv.notify_all()
        _log.warning("provenance_write_failed", error=f"{type(error).__name__}: {error}",
             pairs=sum(len(b.pairs) for b in batches),
             action="spilled for retry" if spilled else "kept in memory for retry")
        return False

    def _backoff(self) -> bool:
        """Wait before retrying a failed write; False (give up) while stopping
        once the last step has passed: what is left stays on disk."""
        delay = _RETRY_BACKOFF_S[min(self._failures, len(_RETRY_BACKOFF_S)) - 1]
        with self._cv:
            if self._state != _RUNNING and self._failures >= len(_RETRY_BACKOFF_S):
                return False
            self._cv.wait(delay)
        return True

    # ----------------------------------------------------------------- disk

    def _spill(self, batches: list[Batch]) -> bool:
        """Write batches, sealed lines as they are, to one spill file (lock
        held); False if the disk refused or a batch has no sealed line."""
        if any(b.payload is None for b in batches):
            return False
        try:
            self._spills.write([(b.seq, b.payload) for b in batches])  # type: ignore[misc]
        except Exception as exc:
            _log.warning("provenance_spill_failed", error=f"{type(exc).__name__}: {exc}",
                 pairs=sum(len(b.pairs) for b in batches))
            return False
        self._spill_backlog = True
        return True

    def _apply(self, pairs: list[ProvenancePair]) -> None:
        for start in range(0, len(pairs), self._max_batch):
            self._store.append_provenance_batch(pairs[start : start + self._max_batch])

    def _replay_journal(self, journal: Journal) -> bool:
        """False if the store refused the journal's entries (see ``Journal.replay``)."""
        try:
            return journal.replay(self._apply)
        except Exception as exc:  # never fail start(); a journal we cannot read orders nothing
            _log.warning("journal_replay_failed", error=f"{type(exc).__name__}: {exc}",
                         action="passed over; retried at the next disk check")
            return True

    def _from_disk(self) -> bool:
        """Replay what dead queues left in the journal, then our spill files,
        oldest first. False if the store failed (all of it kept for retry).

        The disk is marked clean only by a listing taken under the lock that
        finds nothing, so no spill can slip in between.
        """
        journal = self._journal
        # A dead queue's segments are older than anything we were handed, so
        # when the store refuses them our spill files wait: written first,
        # they would put a record's newer entries before its older ones (and
        # the same store would most likely refuse them too). flush() then
        # says False, which is true. Only the store refusing stops us here;
        # a journal that cannot be listed, or a segment applied but not
        # removable, is passed over by the journal itself.
        if journal is not None and not self._replay_journal(journal):
            self._failures += 1
            return False
        handled: set[Path] = set()  # guards against a file we could neither read nor move
        while True:
            files = [p for p in self._spills.files() if p not in handled]
            with self._cv:
                if self._items:
                    return True  # what is in memory is older than any spill: write it first
                if not files and not [p for p in self._spills.files() if p not in handled]:
                    self._spill_backlog = self._check_disk = False
                    self._cv.notify_all()
                    return True
            for path in files:
                handled.add(path)
                with self._cv:
                    if self._items:
                        return True
                if not self._replay_spill(path):
                    return False

    def _replay_spill(self, path: Path) -> bool:
        """Apply one spill file, then remove (or quarantine) it; False if the
        store failed (the file stays for retry)."""
        try:
            self._spills.replay(path, self._apply, self._sealer, _log)
        except Exception as exc:
            self._failures += 1
            _log.warning("provenance_replay_failed", file=path.name, error=f"{type(exc).__name__}: {exc}",
                 action="kept on disk for retry")
            return False
        self._failures = 0
        return True

"""The provenance journal: a recall that returned survives ``kill -9``.

``ProvenanceWriteQueue.enqueue`` keeps batches in memory until its worker
writes them to the log. So that none is lost when the process is killed,
enqueue also appends each batch's sealed line (``pending``: the one format
journal and spill files share) to a journal segment before it returns: one
``os.write`` on an ``O_APPEND`` fd, no fsync. What is written that way sits
in the page cache and survives the death of the process; an OS crash or
power loss can still take the tail of the journal, as it can the last
SQLite commits (``synchronous=NORMAL``).

Measured (``python -m bench.provenance --paths-only``, see bench/README.md):
enqueue with its journal line costs p50 24-63 us and p99 0.14-3.3 ms, a
synchronous SQLite append of the same batch p50 0.2-0.5 ms and p99 6-20 ms
(its tail follows WAL commits and checkpoints). That is why the journal, and not a
synchronous append on the request thread, carries a recall's entries
until the worker writes them.

Segments live in ``<store root>/journal/``, one directory per store, named
``prov-<store id>-<queue id>-<slot>.journal``. A queue holds an exclusive
``flock`` on each of its segments for as long as it has them open: a segment
nobody holds was left by a process that died, and the next queue of that
store replays it at start, lines ordered by (queue id, seq), which is the
order they were enqueued in. Then the files go (or, if ``pending.read``
found a problem, are quarantined after their good lines were applied). A
file named for another store is never read, applied or removed.

A queue writes to one active segment and keeps a truncated spare. When every
batch in the active segment is in the log, the worker swaps them and
truncates the old one, off the enqueue path, so the journal holds only what
the log may not have yet.
"""
from __future__ import annotations

import collections
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iai_mcp import fs
from iai_mcp.provenance_queue import pending
from iai_mcp.provenance_queue.pending import Log
from iai_mcp.types import ProvenancePair

#: An active segment this large is retired even while some of it is not yet
#: durable; retired segments are truncated once the log has all their lines.
SEGMENT_ROTATE_BYTES = 1 << 20


@dataclass
class _Segment:
    path: Path
    fd: int
    header_len: int
    size: int  # bytes in the file: this queue is its only writer
    last_seq: int = 0  # seq of its last line; 0 while it holds none


@dataclass
class _Leftover:
    path: Path
    fd: int
    queue: str
    found: pending.Contents = field(default_factory=pending.Contents)


class Journal:
    """The journal segments of one queue, and the replay of dead queues' ones.

    ``append`` runs on the enqueue path under the queue's lock; the rest runs
    on the worker or at start/stop. Our own state has its own small lock
    (always taken after the queue's).
    """

    def __init__(self, directory: Path, store_id: str, sealer: pending.Sealer, log: Log) -> None:
        self.directory = directory
        self.store_id = store_id
        self._sealer = sealer
        self._log = log
        self.queue_id = f"{time.time_ns():020d}-{os.getpid()}"
        self._slot = 0
        self._state = threading.Lock()
        self._active: _Segment | None = None
        self._spare: _Segment | None = None
        self._retired: list[_Segment] = []  # hold lines, no longer appended to
        # (seq, payload) of batches a write refused, appended once one succeeds.
        self._refused: collections.deque[tuple[int, bytes]] = collections.deque()
        self._down = False  # the last write failed (reported once per outage)
        self._create_failed = False  # the last segment creation failed (idem)
        self._closed = False
        self._unlisted = False  # the last replay could not list the directory (reported once)
        self._applied: set[Path] = set()  # dead queues' segments applied but not removable

    # ------------------------------------------------------------- writing

    def append(self, seq: int, payload: bytes, durable_upto: int) -> None:
        """Journal one batch (under the queue's lock; ``durable_upto``: every
        seq up to it is in the log). A batch a write refuses (disk full,
        directory gone) is appended once a later write succeeds, unless the
        log has it by then. Only the journal going down or coming back is
        reported, never each batch."""
        error = self._write(seq, payload)
        if error is None:
            while self._refused:
                old_seq, old_payload = self._refused[0]
                if old_seq > durable_upto and self._write(old_seq, old_payload) is not None:
                    return  # refused again: the rest waits for the next try
                self._refused.popleft()
            if self._down:
                self._down = False
                self._log("journal_write_recovered")
            return
        self._refused.append((seq, payload))
        while self._refused and self._refused[0][0] <= durable_upto:
            self._refused.popleft()  # in the log already: no longer needs the journal
        if not self._down:
            self._down = True
            self._log(
                "journal_write_failed",
                error=f"{type(error).__name__}: {error}",
                dir=str(self.directory),
                consequence="batches stay in memory and reach the log as usual; they are "
                "journaled once a journal write succeeds again, and lost only if the process "
                "dies before either",
            )

    def refused(self) -> set[int]:
        """Seqs of batches a write refused that no later write journaled (under
        the queue's lock, like ``append``): the journal does not hold them."""
        return {seq for seq, _payload in self._refused}

    def _write(self, seq: int, payload: bytes) -> OSError | None:
        """Append one line; None when it is in the file, else the error.

        A failed write leaves nothing behind: a short write (disk full) is cut
        back, and if even that fails the segment is retired as it is (its torn
        tail is ignored at replay) and the spare takes over.
        """
        data = pending.line(seq, payload)
        with self._state:
            seg = self._active
            if seg is None:
                return OSError("no journal segment is open")
            try:
                written = os.write(seg.fd, data)
            except OSError as exc:
                return exc  # a failed write(2) wrote nothing
            if written == len(data):
                seg.size += written
                # max: a batch the journal refused earlier is re-appended after newer ones.
                seg.last_seq = max(seg.last_seq, seq)
                return None
            try:
                os.ftruncate(seg.fd, seg.size)
            except OSError:
                self._retired.append(seg)
                self._active, self._spare = self._spare, None
            return OSError(f"short write to the journal ({written} of {len(data)} bytes)")

    def open(self) -> None:
        """Open the first segment and its spare (at start; logs and carries on
        without a journal if the directory refuses)."""
        self._create_spare()
        self._create_spare()

    def _create(self) -> _Segment:
        fs.make_private_dir(self.directory)
        self._slot += 1
        target = self.directory / f"prov-{self.store_id}-{self.queue_id}-{self._slot:06d}{pending.JOURNAL_SUFFIX}"
        tmp = fs.temp_path(target)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            fs.try_lock(fd)
            head = pending.header(self.store_id)
            _write_all(fd, head)
            # Renamed only once locked and headed: a replayer never sees it half made.
            os.replace(tmp, target)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return _Segment(target, fd, len(head), len(head))

    def maintain(self, durable_upto: int) -> None:
        """Worker housekeeping: keep a spare ready, retire the active segment
        once every line in it is durable (``seq <= durable_upto``) and
        truncate retired segments back into the spare. Call it without the
        queue's lock held, with ``durable_upto`` taken under that lock."""
        if self._spare is None or self._active is None:
            self._create_spare()
        with self._state:
            if self._closed:
                return
            seg = self._active
            # Retire when all of it is durable, or when it has grown past the
            # cap: under steady traffic something newer is always in flight,
            # and the segment would otherwise grow for as long as traffic lasts.
            full = seg is not None and seg.size >= SEGMENT_ROTATE_BYTES
            if (
                seg is not None
                and seg.last_seq
                and (seg.last_seq <= durable_upto or full)
                and self._spare
            ):
                self._retired.append(seg)
                self._active, self._spare = self._spare, None
            covered = [s for s in self._retired if s.last_seq <= durable_upto]
            self._retired = [s for s in self._retired if s.last_seq > durable_upto]
        for seg in covered:
            try:
                os.ftruncate(seg.fd, seg.header_len)
            except OSError:
                self._discard(seg)
                continue
            seg.size, seg.last_seq = seg.header_len, 0
            self._adopt(seg)

    def _create_spare(self) -> None:
        try:
            seg = self._create()
        except OSError as exc:
            if not self._create_failed:
                self._log(
                    "journal_unavailable",
                    dir=str(self.directory),
                    error=str(exc),
                    consequence="batches enqueued meanwhile live only in memory until written",
                )
            self._create_failed = True
            return
        if self._create_failed:
            self._log("journal_available_again", dir=str(self.directory))
        self._create_failed = False
        self._adopt(seg)

    def _adopt(self, seg: _Segment) -> None:
        """Make an empty segment the active one (the journal was down) or the
        spare; discard it if neither place is free or we are closed."""
        with self._state:
            if not self._closed and self._active is None:
                self._active, seg = seg, None  # type: ignore[assignment]
            elif not self._closed and self._spare is None:
                self._spare, seg = seg, None  # type: ignore[assignment]
        if seg is not None:
            self._discard(seg)

    def _discard(self, seg: _Segment) -> None:
        seg.path.unlink(missing_ok=True)
        os.close(seg.fd)

    def close(self, durable_upto: int) -> list[str]:
        """Close every segment; remove those whose lines are all durable and
        leave the rest (unlocked) for the next start. Returns what was left."""
        with self._state:
            self._closed = True
            segments = [s for s in (self._active, self._spare, *self._retired) if s is not None]
            self._active, self._spare, self._retired = None, None, []
        left = []
        for seg in segments:
            if seg.last_seq <= durable_upto:
                self._discard(seg)
            else:
                os.close(seg.fd)
                left.append(seg.path.name)
        return left

    # ------------------------------------------------------------- replay

    def replay(self, apply: Callable[[list[ProvenancePair]], None]) -> bool:
        """Hand ``apply`` every pair the segments of dead queues of this store
        hold, in enqueue order, then remove those files.

        False only if ``apply`` raised (the store refused): the files stay for
        the next attempt, and nothing newer should reach the log before them.
        Trouble with the files themselves is reported and passed over, and
        True returned: a directory that cannot be listed hides nothing that
        could be ordered anyway, and a segment applied but not removable is
        only tried for removal again (its entries are in the log).
        """
        try:
            leftovers = self._claim_leftovers()
        except OSError as exc:
            if not self._unlisted:  # one line per outage, not one per disk check
                self._log("journal_unlisted", dir=str(self.directory), error=f"{type(exc).__name__}: {exc}",
                          action="passed over; retried at each disk check")
            self._unlisted = True
            return True
        self._unlisted = False
        if not leftovers:
            return True
        try:
            ordered = sorted(
                ((left.queue, seq, pairs) for left in leftovers for seq, pairs in left.found.lines),
                key=lambda line: (line[0], line[1]),
            )
            pairs = [pair for _queue, _seq, batch in ordered for pair in batch]
            try:
                apply(pairs)
            except Exception as exc:  # the store failed: keep the files, retry later
                self._log(
                    "journal_replay_failed",
                    error=f"{type(exc).__name__}: {exc}",
                    files=len(leftovers),
                    action="kept on disk for retry",
                )
                return False
            for left in leftovers:
                if left.found.problem is None:
                    self._remove_replayed(left.path)
                else:
                    pending.quarantine(left.path, left.found.problem, self._log)
            self._log("journal_replayed", files=len(leftovers), lines=len(ordered), pairs=len(pairs))
            return True
        finally:
            for left in leftovers:
                os.close(left.fd)

    def _remove_replayed(self, path: Path) -> None:
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            if path not in self._applied:
                self._log("journal_remove_failed", file=path.name, error=f"{type(exc).__name__}: {exc}",
                          consequence="its entries are in the log; removal is retried, and a replay "
                          "of it is harmless")
            self._applied.add(path)
            return
        self._applied.discard(path)

    def _claim_leftovers(self) -> list[_Leftover]:
        """Lock and read every segment of this store that no live queue holds.
        OSError only if the directory cannot be listed (nothing is claimed
        then); a file that cannot be opened or read is reported and left."""
        temps = [temp for temp in fs.stray_temps(self.directory) if self.store_id in temp.name]
        found = pending.ours(self.directory, self.store_id, pending.JOURNAL_SUFFIX)
        for temp in temps:
            _remove_if_dead(temp)
        claimed = []
        for order, path in found:
            if path in self._applied:
                self._remove_replayed(path)  # applied already: only its removal is left
                continue
            fd = -1
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
                if not fs.try_lock(fd):
                    os.close(fd)
                    continue  # a live queue is writing it
                data = _read_all(fd)
            except FileNotFoundError:
                if fd >= 0:
                    os.close(fd)
                continue  # its queue closed it just now
            except OSError as exc:
                if fd >= 0:
                    os.close(fd)
                self._log("journal_unreadable", file=path.name, error=str(exc), action="left alone")
                continue
            queue = order.rsplit("-", 1)[0]  # order is <queue id>-<slot>
            contents = pending.read(data, self.store_id, self._sealer, self._log, path.name)
            claimed.append(_Leftover(path, fd, queue, contents))
        return claimed


def _remove_if_dead(path: Path) -> None:
    """A temp segment is renamed before any line goes in: it holds no data.
    Removed unless its creator still holds it; left if it cannot be."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        if fs.try_lock(fd):
            path.unlink(missing_ok=True)
    except OSError:
        pass  # housekeeping only: it holds no data, and repair moves stray temps
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def journal_state(journal_dir: str | os.PathLike[str], store_id: str) -> dict[str, Any]:
    """What a store's journal directory holds, read without opening the
    store or touching a lock: ``segments`` of this store (a running queue's,
    or left by a dead process for the next start to replay) and
    ``quarantined`` files."""
    segments, quarantined = pending.state(Path(journal_dir), store_id, pending.JOURNAL_SUFFIX)
    return {"dir": str(journal_dir), "segments": segments, "quarantined": quarantined}

"""The provenance journal: a recall that returned survives ``kill -9``.

``ProvenanceWriteQueue.enqueue`` keeps batches in memory until its worker
writes them to the log. To lose none of them when the process is killed,
enqueue also appends each batch, sealed, as one line to a journal segment
before it returns (``os.write`` on an ``O_APPEND`` fd: microseconds, no
fsync). Data written that way is in the page cache and survives the death
of the process; an OS crash or power loss can still take the tail of the
journal, just as it can the last SQLite commits (``synchronous=NORMAL``).

Files live in ``<store root>/journal/``, one directory per store::

    prov-<store id>-<queue id>-<slot>.journal

Line 1 is a JSON header naming the store; every other line is one enqueued
batch, ``<seq> <base64(seal(json))>`` (see ``encode_pairs``), so no cue is
ever in the clear. A queue holds an exclusive ``flock`` on each of
its segments for as long as it has them open: a segment nobody holds is
left over from a process that died, and the next queue of that store
replays it at start. Every pair carries its entry id and the log ignores an
id it already holds, so replaying a line that was already written changes
nothing.

A queue writes to one active segment and keeps a truncated spare. When
every batch in the active segment is in the log, the worker swaps them and
truncates the old one, off the enqueue path, so the journal holds only what
the log may not have yet.

Replay applies lines ordered by (queue id, seq), oldest queue first, which is
the order they were enqueued in. A torn last line (a write cut short) is
ignored with a log line; a file with any other unreadable line is applied
for its good lines and then quarantined as ``*.failed-<ns>``, never read
again. A file named for another store is never read, applied or removed; a
file named for ours whose header disagrees is quarantined.
"""
from __future__ import annotations

import base64
import json
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

from iai_mcp.provenance_queue.spill import SealedFiles
from iai_mcp.types import ProvenancePair

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock
    fcntl = None  # type: ignore[assignment]

JOURNAL_FORMAT = 1
_NAME = re.compile(
    r"^prov-(?P<store>[0-9a-f]{32})-(?P<queue>\d{20}-\d+)-(?P<slot>\d{6})\.journal$"
)
_TEMP = re.compile(r"^\.prov-(?P<store>[0-9a-f]{32})-.*\.journal\.tmp$")
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

Log = Callable[..., None]


def encode_pairs(pairs: Sequence[ProvenancePair]) -> bytes:
    """JSON body of one line: runs of pairs that share an entry,
    ``[[entry, [record_id, entry_id, record_id, entry_id, ...]], ...]``.

    A recall gives every hit the same entry, so runs halve the bytes and the
    encoding time of the obvious ``[[record_id, entry, entry_id], ...]``.
    A pair whose entry is not JSON is left out (the log would skip it too).
    """
    runs: list[list[Any]] = []
    previous: Any = None
    ids: list[str] = []
    for p in pairs:
        if p.entry is not previous and (previous is None or p.entry != previous):
            previous, ids = p.entry, []
            runs.append([previous, ids])
        ids.append(p.record_id.hex if isinstance(p.record_id, UUID) else str(p.record_id))
        ids.append(p.entry_id)
    try:
        return _encode_json(runs).encode("utf-8")
    except (TypeError, ValueError):  # UnicodeEncodeError (a lone surrogate) is a ValueError
        good = []
        for run in runs:
            try:
                _encode_json(run).encode("utf-8")
            except (TypeError, ValueError):
                continue
            good.append(run)
        return _encode_json(good).encode("utf-8")


def decode_pairs(body: bytes) -> list[ProvenancePair]:
    """Inverse of ``encode_pairs``; ValueError on anything else."""
    pairs = []
    for entry, ids in json.loads(body):
        if not isinstance(entry, dict) or not isinstance(ids, list) or len(ids) % 2:
            raise ValueError("journal line is not [[entry, [record_id, entry_id, ...]], ...]")
        for i in range(0, len(ids), 2):
            record_id, entry_id = ids[i], ids[i + 1]
            if not isinstance(record_id, str) or not isinstance(entry_id, str):
                raise ValueError("journaled ids must be strings")
            pairs.append(ProvenancePair(record_id, dict(entry), entry_id))
    return pairs


def _lock(fd: int) -> bool:
    """Exclusive non-blocking flock; False if another open file holds it."""
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


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
    lines: list[tuple[int, list[ProvenancePair]]] = field(default_factory=list)
    problem: str | None = None  # set: quarantine after applying the good lines


#: An active segment this large is retired even while some of it is not yet
#: durable; retired segments are truncated once the log has all their lines.
SEGMENT_ROTATE_BYTES = 1 << 20


class Journal(SealedFiles):
    """The journal segments of one queue, and the replay of dead queues' ones.

    ``append`` runs on the enqueue path under the queue's lock; the rest runs
    on the worker or at start/stop. Our own state has its own small lock
    (always taken after the queue's).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue_id = f"{time.time_ns():020d}-{os.getpid()}"
        self._slot = 0
        self._state = threading.Lock()
        self._active: _Segment | None = None
        self._spare: _Segment | None = None
        self._retired: list[_Segment] = []  # hold lines, no longer appended to
        self._create_failed = False
        self._closed = False

    # ------------------------------------------------------------- writing

    def encode(self, pairs: Sequence[ProvenancePair]) -> bytes:
        """The sealed payload of one line (done outside the queue's lock)."""
        return base64.b64encode(self._seal(encode_pairs(pairs)))

    def append(self, seq: int, payload: bytes) -> OSError | None:
        """Append one line; None when it is in the file, else the error.

        A failed write leaves nothing behind: a short write (disk full) is cut
        back, and if even that fails the segment is retired as it is (its torn
        tail is ignored at replay) and the spare takes over.
        """
        line = b"%d %s\n" % (seq, payload)
        with self._state:
            seg = self._active
            if seg is None:
                return OSError("no journal segment is open")
            try:
                written = os.write(seg.fd, line)
            except OSError as exc:
                return exc  # a failed write(2) wrote nothing
            if written == len(line):
                seg.size += written
                # max: a batch the journal refused earlier is re-appended after newer ones.
                seg.last_seq = max(seg.last_seq, seq)
                return None
            try:
                os.ftruncate(seg.fd, seg.size)
            except OSError:
                self._retired.append(seg)
                self._active, self._spare = self._spare, None
            return OSError(f"short write to the journal ({written} of {len(line)} bytes)")

    def open(self) -> None:
        """Open the first segment and its spare (at start; logs and carries on
        without a journal if the directory refuses)."""
        self._create_spare()
        self._create_spare()

    def _create(self) -> _Segment:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._slot += 1
        name = f"prov-{self.store_id}-{self.queue_id}-{self._slot:06d}.journal"
        tmp = self.directory / f".{name}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o600)
        try:
            _lock(fd)
            header = json.dumps({"iai_mcp_journal": JOURNAL_FORMAT, "store_id": self.store_id})
            _write_all(fd, header.encode("ascii") + b"\n")
            # Renamed only once locked and headed: a replayer never sees it half made.
            os.replace(tmp, self.directory / name)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        size = len(header) + 1
        return _Segment(self.directory / name, fd, size, size)

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
        hold, in enqueue order, then remove those files. False if ``apply``
        raised: the files stay for the next attempt."""
        leftovers = self._claim_leftovers()
        if not leftovers:
            return True
        try:
            ordered = sorted(
                ((left.queue, seq, pairs) for left in leftovers for seq, pairs in left.lines),
                key=lambda line: (line[0], line[1]),
            )
            pairs = [pair for _queue, _seq, batch in ordered for pair in batch]
            apply(pairs)
            for left in leftovers:
                if left.problem is None:
                    left.path.unlink(missing_ok=True)
                else:
                    self._quarantine(left.path, left.problem)
            self._log(
                "journal_replayed",
                files=len(leftovers),
                lines=len(ordered),
                pairs=len(pairs),
            )
            return True
        except Exception as exc:  # the store failed: keep the files, retry later
            self._log(
                "journal_replay_failed",
                error=f"{type(exc).__name__}: {exc}",
                files=len(leftovers),
                action="kept on disk for retry",
            )
            return False
        finally:
            for left in leftovers:
                os.close(left.fd)

    def _claim_leftovers(self) -> list[_Leftover]:
        """Lock and read every segment of this store that no live queue holds."""
        if not self.directory.is_dir():
            return []
        claimed = []
        for path in sorted(self.directory.iterdir()):
            temp = _TEMP.match(path.name)
            if temp and temp["store"] == self.store_id:
                self._remove_stale_temp(path)
                continue
            match = _NAME.match(path.name)
            if not match or match["store"] != self.store_id:
                continue  # another store's, or not a segment: not ours to touch
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue  # its queue closed it just now
            if not _lock(fd):
                os.close(fd)
                continue  # a live queue is writing it
            left = _Leftover(path, fd, match["queue"])
            try:
                self._parse(left, _read_all(fd))
            except OSError as exc:
                os.close(fd)
                self._log("journal_unreadable", file=path.name, error=str(exc), action="left alone")
                continue
            claimed.append(left)
        return claimed

    def _parse(self, left: _Leftover, data: bytes) -> None:
        header, newline, rest = data.partition(b"\n")
        try:
            meta = json.loads(header)
            ok = isinstance(meta, dict) and meta.get("iai_mcp_journal") == JOURNAL_FORMAT
        except ValueError:
            ok = False
        if not ok or not newline:
            left.problem = "no journal header"
            return
        if meta.get("store_id") != self.store_id:
            left.problem = "named for this store but its header names another"
            return
        lines = rest.split(b"\n")
        torn = lines.pop()  # b"" when the file ends with a newline
        if torn:
            self._log("journal_torn_tail", file=left.path.name, bytes=len(torn), action="ignored")
        bad = 0
        for number, line in enumerate(lines, start=2):
            try:
                seq_text, payload = line.split(b" ", 1)
                body = self._open_blob(base64.b64decode(payload, validate=True))
                left.lines.append((int(seq_text), decode_pairs(body)))
            except Exception as exc:
                bad += 1
                self._log(
                    "journal_line_unreadable",
                    file=left.path.name,
                    line=number,
                    error=f"{type(exc).__name__}: {exc}",
                    action="skipped; file will be quarantined",
                )
        if bad:
            left.problem = f"{bad} unreadable line(s)"

    def _quarantine(self, path: Path, reason: str) -> None:
        target = path.with_name(f"{path.name}.failed-{time.time_ns()}")
        try:
            os.replace(path, target)
            self._log("journal_quarantined", file=path.name, moved_to=target.name, reason=reason)
        except OSError as exc:
            self._log("journal_quarantine_failed", file=path.name, reason=reason, error=str(exc))

    def _remove_stale_temp(self, path: Path) -> None:
        # A temp segment is renamed before any line goes in: it holds no data.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            if _lock(fd):
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)


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
    directory = Path(journal_dir)
    segments = quarantined = 0
    if directory.is_dir():
        for path in directory.iterdir():
            if ".failed-" in path.name:
                quarantined += 1
            elif (match := _NAME.match(path.name)) and match["store"] == store_id:
                segments += 1
    return {"dir": str(directory), "segments": segments, "quarantined": quarantined}

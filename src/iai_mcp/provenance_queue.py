"""ProvenanceWriteQueue: provenance writes off the recall path, nothing lost.

Recall hands its ``(record_id, entry)`` pairs to ``enqueue``, which appends
to an in-memory deque and returns in microseconds. One daemon worker thread
coalesces what arrives within ``coalesce_ms`` (up to ``max_batch_pairs``
pairs) and writes it with ``store.append_provenance_batch``.

When the deque holds ``max_queue_size`` batches, new batches spill to disk
instead of being dropped or blocking the caller: one sealed JSONL file per
batch under ``~/.iai-mcp/.provenance-overflow/``, named after the owning
store. While any spilled batch is pending, every new batch spills too, and
the worker empties the deque before it replays spill files oldest first, so
each record's entries reach the log in the order they were enqueued. The
drain starts as soon as the worker is idle; the 5 s poll only picks up files
left by an earlier process.

Spill files belong to one store. A file named for another store is left
alone; a file that cannot be parsed, or claims our name but not our store,
is quarantined as ``*.failed-<ns>.jsonl`` and never read again. Every pair
carries an entry id, and the log ignores an id it already holds, so a batch
replayed after a crash between "written" and "file removed" is applied once.

A failed write is reported as one JSON line on stderr and the batch is
spilled for a later retry; if even the spill fails (disk full) the batch
stays in memory and is retried with backoff. What can still be lost: pairs
in memory when the process is killed with SIGKILL or the machine dies.

Pure stdlib. The store it writes to provides ``store_id``,
``append_provenance_batch(pairs)``, ``seal_spill(bytes)`` and
``open_spill(bytes)``.
"""
from __future__ import annotations

import atexit
import base64
import collections
import json
import os
import re
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol, Sequence

from iai_mcp import config
from iai_mcp.errors import InvalidInput
from iai_mcp.types import ProvenancePair, new_entry_id

WORKER_IDLE_POLL_S = 5.0
SPILL_FORMAT = 1
_RETRY_BACKOFF_S = (0.05, 0.2, 1.0, 5.0)
_SPILL_NAME = re.compile(r"^prov-(?P<store>[0-9a-f]{32})-(?P<order>\d{20}-\d{8})\.jsonl$")


class ProvenanceSink(Protocol):
    store_id: str

    def append_provenance_batch(self, pairs: Sequence[Any], records_cache: Any = None) -> Any: ...

    def seal_spill(self, data: bytes) -> bytes: ...

    def open_spill(self, blob: bytes) -> bytes: ...


def _log(event: str, **fields: Any) -> None:
    line = {"ts": time.time(), "component": "iai_mcp.provenance_queue", "event": event, **fields}
    print(json.dumps(line, default=str), file=sys.stderr, flush=True)


def _with_ids(pairs: Sequence[Any]) -> list[ProvenancePair]:
    out = []
    for pair in pairs:
        if isinstance(pair, ProvenancePair):
            out.append(pair)
        else:
            record_id, entry = pair
            out.append(ProvenancePair(record_id, entry, new_entry_id()))
    return out


class ProvenanceWriteQueue:
    def __init__(
        self,
        store: ProvenanceSink,
        coalesce_ms: float = 50,
        max_queue_size: int = 10_000,
        max_batch_pairs: int = 512,
        spill_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if max_queue_size < 1 or max_batch_pairs < 1 or coalesce_ms < 0:
            raise ValueError("max_queue_size and max_batch_pairs must be >= 1, coalesce_ms >= 0")
        self._store = store
        self._coalesce_s = coalesce_ms / 1000.0
        self._max_queue = max_queue_size
        self._max_batch = max_batch_pairs
        self._spill_dir = Path(spill_dir) if spill_dir is not None else config.overflow_dir()
        self._cv = threading.Condition()
        self._items: collections.deque[list[ProvenancePair]] = collections.deque()
        self._spill_backlog = False  # some batch of ours is on disk, not yet replayed
        self._spill_counter = 0
        self._busy = False  # the worker holds a batch it has not finished
        self._urgent = False  # flush/stop asked: skip the coalescing wait
        self._scan_requested = True  # look at the spill dir on the first idle moment
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._atexit_registered = False
        self._failures = 0

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        with self._cv:
            if self._thread is not None and self._thread.is_alive():
                return
            self._stopping = False
            self._thread = threading.Thread(
                target=self._run, name="iai-mcp-provenance", daemon=True
            )
            self._thread.start()
            if not self._atexit_registered:
                atexit.register(self._drain_at_exit)
                self._atexit_registered = True

    def _drain_at_exit(self) -> None:
        self.stop()

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
            if thread.is_alive():
                with self._cv:
                    leftovers = list(self._items)
                    self._items.clear()
                for batch in leftovers:
                    if not self._spill(batch):
                        _log("provenance_lost_on_stop", pairs=len(batch))
        with self._cv:
            self._thread = None
            if self._atexit_registered:
                atexit.unregister(self._drain_at_exit)
                self._atexit_registered = False

    # -------------------------------------------------------------- callers

    def enqueue(self, pairs: Sequence[Any]) -> None:
        """Hand over a batch; returns at once. Never drops and never blocks on I/O
        except to spill when the queue is full."""
        batch = _with_ids(pairs)
        if not batch:
            return
        with self._cv:
            if not self._spill_backlog and len(self._items) < self._max_queue:
                self._items.append(batch)
                self._cv.notify()
                return
            # Spill under the lock so that the order of spill files is the
            # order of enqueue calls.
            if self._spill(batch):
                self._cv.notify()
                return
            # The disk refused too: keep it in memory past the bound rather than lose it.
            self._items.append(batch)
            self._cv.notify()

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything enqueued so far, and every spilled batch of
        this store, is written. True if that happened within ``timeout``."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._urgent = True
            self._scan_requested = True
            self._cv.notify_all()
            while self._items or self._busy or self._spill_backlog:
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
                    if not self._cv.wait(WORKER_IDLE_POLL_S):
                        self._scan_requested = True
                if self._items:
                    batch = self._take_batch()
                    self._busy = True
                    job: Any = ("write", batch)
                elif self._spill_backlog or self._scan_requested:
                    self._scan_requested = False
                    self._busy = True
                    job = ("spill", None)
                else:  # stopping, nothing left in memory, nothing spilled
                    self._cv.notify_all()
                    return
            try:
                if job[0] == "write":
                    self._write(job[1])
                else:
                    self._drain_spill_dir()
            finally:
                with self._cv:
                    self._busy = False
                    self._cv.notify_all()

    def _take_batch(self) -> list[ProvenancePair]:
        """Pop one batch, then coalesce what arrives within coalesce_ms (lock held)."""
        batch = list(self._items.popleft())
        deadline = time.monotonic() + self._coalesce_s
        while len(batch) < self._max_batch:
            if self._items:
                if len(batch) + len(self._items[0]) > self._max_batch:
                    break
                batch.extend(self._items.popleft())
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._urgent or self._stopping:
                break
            self._cv.wait(remaining)
        if not self._items:
            self._urgent = False
        return batch

    def _write(self, batch: list[ProvenancePair]) -> None:
        try:
            self._store.append_provenance_batch(batch)
            self._failures = 0
        except Exception as exc:  # background work: report, keep the data
            self._failures += 1
            spilled = self._spill(batch) if not isinstance(exc, InvalidInput) else False
            _log(
                "provenance_write_failed",
                error=f"{type(exc).__name__}: {exc}",
                pairs=len(batch),
                action="spilled for retry" if spilled else "kept in memory for retry",
            )
            if not spilled:
                with self._cv:
                    self._items.appendleft(batch)
            self._backoff()

    def _backoff(self) -> None:
        delay = _RETRY_BACKOFF_S[min(self._failures, len(_RETRY_BACKOFF_S)) - 1]
        with self._cv:
            if not self._stopping or self._failures < len(_RETRY_BACKOFF_S):
                self._cv.wait(delay)

    # ---------------------------------------------------------------- spill

    def _spill(self, batch: list[ProvenancePair]) -> bool:
        """Write one batch to its own sealed spill file; False if the disk refused."""
        try:
            self._spill_dir.mkdir(parents=True, exist_ok=True)
            body = json.dumps(
                [[str(p.record_id), p.entry, p.entry_id] for p in batch], ensure_ascii=False
            ).encode("utf-8")
            sealed = base64.b64encode(self._store.seal_spill(body)).decode("ascii")
            header = {"iai_mcp_spill": SPILL_FORMAT, "store_id": self._store.store_id}
            self._spill_counter += 1
            name = f"prov-{self._store.store_id}-{time.time_ns():020d}-{self._spill_counter:08d}"
            tmp = self._spill_dir / f".{name}.tmp"
            with open(tmp, "w", encoding="ascii") as fh:
                fh.write(json.dumps(header) + "\n" + json.dumps({"sealed": sealed}) + "\n")
            # Rename last: a reader never sees half a file under a *.jsonl name.
            os.replace(tmp, self._spill_dir / f"{name}.jsonl")
        except Exception as exc:
            _log("provenance_spill_failed", error=f"{type(exc).__name__}: {exc}", pairs=len(batch))
            return False
        self._spill_backlog = True
        return True

    def _read_spill(self, path: Path) -> list[ProvenancePair]:
        """Pairs of one of our spill files; ValueError if it is not one."""
        lines = path.read_text("ascii").splitlines()
        header = json.loads(lines[0])
        if not isinstance(header, dict) or header.get("iai_mcp_spill") != SPILL_FORMAT:
            raise ValueError("not an iai-mcp spill file")
        if header.get("store_id") != self._store.store_id:
            # Named for us (or for nobody) but written for another store.
            raise ValueError("spill file name and header disagree about its store")
        pairs: list[ProvenancePair] = []
        for line in lines[1:]:
            blob = base64.b64decode(json.loads(line)["sealed"], validate=True)
            for record_id, entry, entry_id in json.loads(self._store.open_spill(blob)):
                if not isinstance(entry, dict):
                    raise ValueError("spilled entry is not an object")
                pairs.append(ProvenancePair(record_id, entry, str(entry_id)))
        return pairs

    def _quarantine(self, path: Path, reason: str) -> None:
        target = path.with_name(f"{path.stem}.failed-{time.time_ns()}.jsonl")
        try:
            os.replace(path, target)
            _log("spill_file_quarantined", file=path.name, moved_to=target.name, reason=reason)
        except FileNotFoundError:
            pass  # another queue got there first
        except OSError as exc:
            _log("spill_file_unreadable", file=path.name, reason=reason, error=str(exc))

    def _our_spill_files(self) -> list[Path]:
        """Spill files this queue may read, oldest first (unknown names first,
        so that malformed strays are quarantined early)."""
        if not self._spill_dir.is_dir():
            return []
        found = []
        for path in self._spill_dir.glob("*.jsonl"):
            if ".failed-" in path.name:
                continue  # quarantined: never read again
            match = _SPILL_NAME.match(path.name)
            if match and match["store"] != self._store.store_id:
                continue  # another store's: not ours to read or remove
            found.append((match["order"] if match else "", path.name, path))
        return [path for *_, path in sorted(found)]

    def _drain_spill_dir(self) -> None:
        """Replay our spill files oldest first; quarantine what cannot be read.

        The backlog flag is cleared only by a listing taken under the lock
        that finds nothing, so no spill can slip in between.
        """
        handled: set[Path] = set()  # guards against a file we could neither read nor move
        while True:
            files = [p for p in self._our_spill_files() if p not in handled]
            if not files:
                with self._cv:
                    if not [p for p in self._our_spill_files() if p not in handled]:
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
            pairs = self._read_spill(path)
        except FileNotFoundError:
            return True
        except Exception as exc:
            self._quarantine(path, f"{type(exc).__name__}: {exc}")
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

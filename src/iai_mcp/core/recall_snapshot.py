"""A sealed snapshot of recall's keyword index, so a fresh daemon loads it
instead of tokenising every memory again (issue 14: the first call after the
idle timeout).

What is kept: the BM25 index (``KeywordIndex.export``) of the first ``rows``
slots, packed as arrays and a JSON header (``retrieval.packed``, no pickle)
and sealed by the store (``MemoryStore.write_cache``). The session, project,
role and time codes are not kept: ``_RecallIndex.sync`` derives them from
the rows at every start, which costs little next to tokenising and cannot go
stale.

When it is used: only if it fits exactly. The header names the format, the
tokeniser (a digest of what it makes of a probe text, so a changed stemmer
or stopword list does not reuse old terms), how many slots it covers and a
digest of those slots' ids and texts, in order, computed again at load over
the open store's first ``rows`` rows. A record's text never changes while it
exists (``MemoryStore.update`` refuses it, a purge empties the slot and
deletes every cache), so the ids and texts are all the keyword index was
derived from. Rows beyond the snapshot are added by ``sync`` as at any
capture; hides, purges and restores since are applied by ``_follow`` as at
any recall. Anything else (no fit, a file that does not open, another format)
is one log line and a rebuild, and the next save replaces the file.

When it is written: by the daemon only (``Keeper``), in the background:
after its warm-up, when ``RESAVE_ROWS`` rows arrived since, and at shutdown,
never on a request's path; a failure is one log line and the daemon serves on.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import threading
import time
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from iai_mcp.errors import CorruptData
from iai_mcp.heap import return_freed_heap
from iai_mcp.log import logger
from iai_mcp.retrieval import KeywordIndex, tokenize
from iai_mcp.retrieval.packed import Pieces, pack_parts, unpack
from iai_mcp.retrieval import text as text_module
from iai_mcp.retrieval.text import speaker_label
from iai_mcp.store import PURGED, MemoryStore
from iai_mcp.types import MemoryRow

if TYPE_CHECKING:
    from iai_mcp.core.recall import _RecallIndex

#: The store cache the snapshot lives in (``<root>/recall-index.cache``).
NAME = "recall-index"
#: Bumped whenever what is packed, or how, changes: an older snapshot is then rebuilt.
FORMAT = 1
#: New rows since the snapshot on disk before the daemon writes another. A
#: row beyond it costs a start ~12 us to index (10k rows: 0.12 s), so a
#: thousand of them are ~12 ms, and a save at 100k rows costs ~0.1 s of
#: background CPU.
RESAVE_ROWS = 1000
#: How often the daemon checks for that.
CHECK_EVERY_S = 300.0
#: What the tokeniser fingerprint is taken of: stopwords, stems, digits,
#: snake_case, a non-ASCII word, CJK bigrams and a speaker label.
_PROBE = "Dr Lee: The painters were painting 12 walls in snake_case, café, 東京タワー and 2024's relational ponies"

#: Texts per block fed to the digest (~2 MB of text).
_DIGEST_BLOCK = 8192

_log = logger("iai_mcp.recall")


@lru_cache(maxsize=1)
def tokenizer_mark() -> str:
    """A digest of everything that decides what the index holds and how it
    scores: what the tokeniser makes of ``_PROBE``, the tokeniser's own
    source (a new stopword or stemming rule the probe does not meet), and a
    fresh index's BM25 parameters (a snapshot carries its own ``k1`` and
    ``b``, which a re-tuned release must not keep using)."""
    fresh = KeywordIndex()
    made = json.dumps([tokenize(_PROBE), speaker_label(_PROBE), fresh.k1, fresh.b,
                       hashlib.sha256(inspect.getsource(text_module).encode("utf-8")).hexdigest()],
                      ensure_ascii=True)
    return hashlib.sha256(made.encode("ascii")).hexdigest()[:16]


def rows_digest(rows: Sequence[MemoryRow]) -> str:
    """A digest of ``rows``' ids and texts, in order. By blocks of
    ``_DIGEST_BLOCK`` rows, each as columns (fixed-width ids, text lengths,
    then the texts joined), so the layout is unambiguous and the cost is a
    few C-level passes: measured ~3 ms for 10k rows and ~60 ms for 100k (in
    process, under load). Blocks, not whole columns: 100k texts joined at
    once are a 36 MB transient, at what may be a daemon's peak memory."""
    digest = hashlib.sha256(len(rows).to_bytes(8, "little"))
    for start in range(0, len(rows), _DIGEST_BLOCK):
        block = rows[start:start + _DIGEST_BLOCK]
        texts = [row.literal_surface for row in block]
        digest.update(b"".join([row.id.bytes for row in block]))
        digest.update(np.fromiter(map(len, texts), dtype=np.int64, count=len(texts)).tobytes())
        digest.update("".join(texts).encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _ignored(reason: str, detail: str) -> None:
    _log.warning("recall_snapshot_ignored", reason=reason, detail=detail[:300],
                 consequence="the keyword index is rebuilt; the daemon saves a new snapshot")


def restore(index: _RecallIndex, store: MemoryStore) -> None:
    """Give the fresh ``index`` the keyword index of ``store``'s snapshot if
    one fits its rows exactly (see the module docstring); otherwise leave it
    empty for ``sync`` to build, with one log line saying why."""
    try:
        data = store.read_cache(NAME)
    except (CorruptData, OSError) as exc:
        _ignored("unreadable", f"{type(exc).__name__}: {exc}")
        return
    if data is None:
        return  # none written yet: nothing to report
    started = time.perf_counter()
    loaded = _loaded(store, data)
    del data
    return_freed_heap()  # the snapshot's bytes, decrypted and copied: ~40 MB of heap at 100k rows
    if loaded is not None:
        index.keywords, index.snapshot_rows = loaded
        _log("recall_snapshot_loaded", rows=loaded[1], ms=round((time.perf_counter() - started) * 1000, 1))


def _loaded(store: MemoryStore, data: bytes) -> tuple[KeywordIndex, int] | None:
    """The keyword index in ``data`` and the rows it covers, if it fits the store."""
    try:
        meta, arrays = unpack(data)
        if meta.get("format") != FORMAT or meta.get("tokenizer") != tokenizer_mark():
            _ignored("version", f"format {meta.get('format')!r}, tokenizer {meta.get('tokenizer')!r}; "
                                f"this process reads format {FORMAT}, tokenizer {tokenizer_mark()}")
            return None
        n, rows = meta["rows"], store.rows()
        if not isinstance(n, int) or not 0 < n <= len(rows) or rows_digest(rows[:n]) != meta["digest"]:
            _ignored("stale", f"the snapshot's {n!r} rows are not the store's first rows (of {len(rows)})")
            return None
        keywords = KeywordIndex.restored(meta["keywords"], arrays)
        if len(keywords) != n:
            raise ValueError(f"the keyword index holds {len(keywords)} rows, the header says {n}")
    except Exception as exc:  # any shape the parts cannot have: rebuilding is always right
        _ignored("malformed", f"{type(exc).__name__}: {exc}")
        return None
    return keywords, n


@dataclass(frozen=True)
class _Taken:
    """The keyword index as ``save`` read it, to be written outside the locks."""

    index: _RecallIndex
    rows: int
    meta: dict[str, Any]
    arrays: dict[str, np.ndarray | Pieces]  # the postings read when written (``KeywordIndex.export``)
    started: float


def save(store: MemoryStore, *, reason: str, min_new: int = 1,
         lock: AbstractContextManager[Any] | None = None) -> bool:
    """Write the snapshot of ``store``'s recall index if this process built
    one and the store holds at least ``min_new`` rows more than the snapshot
    on disk covers. The index is brought up to date and read under ``lock``
    (the daemon's store lock: no recall may score while rows are added), the
    rest runs outside it. True when written. Never raises: a failure is one
    log line, and the old snapshot stays or the next start rebuilds."""
    try:
        taken = _take(store, min_new, lock)
        return taken is not None and _write(store, taken, reason)
    except Exception as exc:  # whatever it was, the daemon serves on
        _failed(reason, exc)
        return False


def _failed(reason: str, exc: Exception) -> None:
    _log.warning("recall_snapshot_save_failed", reason=reason, error=f"{type(exc).__name__}: {exc}"[:300],
                 consequence="the snapshot on disk stays as it was; a start may rebuild the index")


def _take(store: MemoryStore, min_new: int, lock: AbstractContextManager[Any] | None) -> _Taken | None:
    from iai_mcp.core.recall import built_index, keyword_index  # recall imports this module

    index = built_index(store)
    if store.read_only or index is None or len(store) - index.snapshot_rows < min_new:
        return None
    started = time.perf_counter()
    with lock or nullcontext():
        keyword_index(store)  # indexes only the rows that arrived since the last recall
        with index.lock:
            meta, arrays = index.keywords.export()
            return _Taken(index, len(index.keywords), meta, arrays, started)


def _write(store: MemoryStore, taken: _Taken, reason: str) -> bool:
    n, rows = taken.rows, store.rows()
    if np.any(store.states()[:n] == PURGED):
        _log("recall_snapshot_not_saved", reason=reason, why="a purge ran in this process")
        return False
    header: dict[str, Any] = {"format": FORMAT, "tokenizer": tokenizer_mark(), "rows": n,
                              "digest": rows_digest(rows[:n]), "keywords": taken.meta}
    # Sealed as written, the postings read term by term meanwhile: never
    # copied whole, joined or held sealed (each was 13 MB at 100k rows).
    size, parts = pack_parts(header, taken.arrays)
    written = store.write_cache_parts(NAME, parts)
    del parts
    taken.arrays.clear()
    return_freed_heap()
    if not written:  # a purge since the check above
        _log("recall_snapshot_not_saved", reason=reason, why="a purge ran in this process")
        return False
    with taken.index.lock:
        taken.index.snapshot_rows = max(taken.index.snapshot_rows, n)
    _log("recall_snapshot_saved", reason=reason, rows=n, bytes=size,
         ms=round((time.perf_counter() - taken.started) * 1000, 1))
    return True


class Keeper:
    """The daemon's snapshot writer: ``save`` after its warm-up, ``run`` on a
    thread (a save when ``RESAVE_ROWS`` rows arrived), ``close`` at shutdown
    (the last save, then none: the store is about to close, and a write after
    that could land in a store another process owns by then).

    Lock order: the store lock, then the keeper's own. ``save`` reads the
    index under the store lock and writes under its own lock only, so a
    shutdown holding the store lock waits for a write in flight, never the
    reverse."""

    def __init__(self, store: MemoryStore, store_lock: AbstractContextManager[Any]) -> None:
        self._store, self._store_lock = store, store_lock
        self._lock = threading.Lock()
        self._closed = False

    def save(self, reason: str, min_new: int = 1) -> bool:
        try:
            taken = None if self._closed else _take(self._store, min_new, self._store_lock)
            if taken is None:
                return False
            with self._lock:
                return not self._closed and _write(self._store, taken, reason)
        except Exception as exc:
            _failed(reason, exc)
            return False

    def run(self, stop: threading.Event, every: float = CHECK_EVERY_S) -> None:
        while not stop.wait(every) and not self._closed:
            self.save("new_rows", RESAVE_ROWS)

    def close(self, *, last_save: bool) -> None:
        """Called holding the store lock (``last_save``: the daemon got it, so
        no request runs); no save writes after this returns."""
        with self._lock:
            if last_save and not self._closed:
                save(self._store, reason="shutdown")
            self._closed = True

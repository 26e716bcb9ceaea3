"""Recall: the right few memories for a cue, fast.

Hybrid ranking over what the store holds in memory: cosine similarity of
the cue's embedding against every vector (one matvec), BM25 over the
decrypted text, fused by ``iai_mcp.retrieval``; filters (tier, tags, time window) are
applied to the best candidates, then hits are packed into the caller's
token budget in score order. Provenance is not written here: the caller
hands the hits to ``store.queue_provenance_batch``.
"""
from __future__ import annotations

import itertools
import threading
import weakref
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from iai_mcp.retrieval import KeywordIndex, fuse, top_k
from iai_mcp.embed import Embedder
from iai_mcp.store import MemoryStore
from iai_mcp.types import MemoryRow

#: About four characters a token, the usual rule of thumb for English text.
CHARS_PER_TOKEN = 4


@dataclass(frozen=True)
class RecallQuery:
    cue: str
    cue_embedding: np.ndarray | None = None
    k: int = 10
    budget_tokens: int = 1500
    tier: str | None = None
    tags: tuple[str, ...] = ()
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Hit:
    row: MemoryRow
    score: float
    reason: str


@dataclass(frozen=True)
class RecallResult:
    hits: list[Hit]
    budget_used: int


def estimate_tokens(text: str) -> int:
    return max(1, -(-len(text) // CHARS_PER_TOKEN))


class _RecallIndex:
    """What recall derives from a store's append-only row list, kept in step
    with it: the BM25 index, an integer session code per row, and the order
    that groups each session's rows together (capture order within a session).

    The grouping matters because ranking lends context between nearby turns
    of one session; with several windows capturing at once, one session's
    turns are interleaved with others' in the row list.
    """

    def __init__(self) -> None:
        self.keywords = KeywordIndex()
        self.lock = threading.Lock()
        self._codes: dict[str, int] = {}
        self._session = np.zeros(0, dtype=np.int64)
        self._order: np.ndarray | None = None
        self._grouped = np.zeros(0, dtype=np.int64)
        self._solo = itertools.count(1 << 40)  # codes for rows without a session

    def _code(self, session_id: str | None) -> int:
        if session_id is None:
            # No session: a conversation of its own, lending nothing to others.
            return next(self._solo)
        return self._codes.setdefault(session_id, len(self._codes))

    def sync(
        self, rows: list[MemoryRow]
    ) -> tuple[KeywordIndex, np.ndarray, np.ndarray, np.ndarray]:
        """``(keyword index, session code per row, grouping order, session
        codes in that order)`` for ``rows``."""
        with self.lock:
            start = len(self.keywords)
            if start < len(rows):
                codes = np.empty(len(rows) - start, dtype=np.int64)
                for offset, doc in enumerate(range(start, len(rows))):
                    self.keywords.add(doc, rows[doc].literal_surface)
                    codes[offset] = self._code(rows[doc].session_id)
                self._session = np.concatenate([self._session, codes])
                self._order = None
            if self._order is None:
                self._order = np.argsort(self._session, kind="stable")
                self._grouped = self._session[self._order]
            return self.keywords, self._session, self._order, self._grouped


_indexes: weakref.WeakKeyDictionary[MemoryStore, _RecallIndex] = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def _recall_index(store: MemoryStore) -> _RecallIndex:
    with _indexes_lock:
        index = _indexes.get(store)
        if index is None:
            index = _indexes[store] = _RecallIndex()
    return index


def keyword_index(store: MemoryStore) -> KeywordIndex:
    """The store's BM25 index, brought up to date."""
    return _recall_index(store).sync(store.rows())[0]


def fused_scores(
    store: MemoryStore, dense: np.ndarray, cue: str, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(fused, keyword)`` scores of the first ``n`` rows for ``cue``."""
    keywords, session, order, grouped_session = _recall_index(store).sync(store.rows())
    keyword = keywords.scores(cue)[:n]
    label = keywords.label_match(cue)[:n]
    if len(order) != n:  # rows arrived between the two reads: group the first n only
        order = np.argsort(session[:n], kind="stable")
        grouped_session = session[:n][order]
    grouped = fuse(dense[order], keyword[order], grouped_session, label=label[order])
    fused = np.empty_like(grouped)
    fused[order] = grouped
    return fused, keyword


def _cue_vector(query: RecallQuery, embedder: Embedder | None) -> np.ndarray:
    if query.cue_embedding is not None:
        vec = np.asarray(query.cue_embedding, dtype=np.float32)
    else:
        if embedder is None:
            raise ValueError("recall without cue_embedding needs an embedder")
        vec = embedder.embed([query.cue])[0]
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


def _passes(row: MemoryRow, query: RecallQuery) -> bool:
    if query.tier is not None and row.tier != query.tier:
        return False
    if query.tags and not set(query.tags).issubset(row.tags):
        return False
    said = row.said_at
    if query.since is not None and said < query.since:
        return False
    if query.until is not None and said > query.until:
        return False
    return True


def _filtered(order: np.ndarray, rows: list[MemoryRow], query: RecallQuery, want: int) -> list[int]:
    picked = []
    for i in order:
        if _passes(rows[i], query):
            picked.append(int(i))
            if len(picked) >= want:
                break
    return picked


def rank(store: MemoryStore, embedder: Embedder | None, query: RecallQuery) -> list[Hit]:
    """The best ``query.k`` rows that pass the filters, best first."""
    rows = store.rows()
    matrix, norms = store.vectors()
    n = min(len(rows), matrix.shape[0])
    if n == 0 or query.k <= 0:
        return []
    dense = matrix[:n] @ _cue_vector(query, embedder)
    np.divide(dense, norms[:n], out=dense)  # the store keeps norms clamped above 0
    fused, keyword = fused_scores(store, dense, query.cue, n)
    filtering = query.tier is not None or query.tags or query.since or query.until
    # Filters are checked on a generous head of the ranking; only when they
    # reject most of it do we walk the whole order.
    head = min(n, max(query.k * (20 if filtering else 1), 64))
    picked = _filtered(top_k(fused, head), rows, query, query.k)
    if len(picked) < query.k and filtering and head < n:
        picked = _filtered(np.argsort(-fused, kind="stable"), rows, query, query.k)
    return [
        Hit(rows[i], float(fused[i]), _reason(float(dense[i]), float(keyword[i])))
        for i in picked
    ]


def _reason(dense: float, keyword: float) -> str:
    parts = [f"semantic similarity {dense:.2f}"]
    if keyword > 0:
        parts.append(f"keyword match {keyword:.2f}")
    return ", ".join(parts)


def recall(store: MemoryStore, embedder: Embedder | None, query: RecallQuery) -> RecallResult:
    """Rank, then pack hits in score order until k or the token budget; the
    first hit is always returned when there is one."""
    packed: list[Hit] = []
    used = 0
    for hit in rank(store, embedder, query):
        cost = estimate_tokens(hit.row.literal_surface)
        if packed and used + cost > query.budget_tokens:
            break
        packed.append(hit)
        used += cost
    return RecallResult(packed, used)

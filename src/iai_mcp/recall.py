"""Recall: the right few memories for a cue, fast.

Hybrid ranking over what the store holds in memory: cosine similarity of
the cue's embedding against every vector (one matvec), BM25 over the
decrypted text, fused by ``ranking``; filters (tier, tags, time window) are
applied to the best candidates, then hits are packed into the caller's
token budget in score order. Provenance is not written here: the caller
hands the hits to ``store.queue_provenance_batch``.
"""
from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from iai_mcp import ranking
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


class _KeywordCache:
    """A KeywordIndex kept in step with a store's append-only row list."""

    def __init__(self) -> None:
        self.index = ranking.KeywordIndex()
        self.lock = threading.Lock()

    def sync(self, rows: list[MemoryRow]) -> ranking.KeywordIndex:
        with self.lock:
            for doc in range(len(self.index), len(rows)):
                self.index.add(doc, rows[doc].literal_surface)
        return self.index


_keyword_caches: weakref.WeakKeyDictionary[MemoryStore, _KeywordCache] = weakref.WeakKeyDictionary()
_caches_lock = threading.Lock()


def keyword_index(store: MemoryStore) -> ranking.KeywordIndex:
    with _caches_lock:
        cache = _keyword_caches.get(store)
        if cache is None:
            cache = _keyword_caches[store] = _KeywordCache()
    return cache.sync(store.rows())


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
    rows = rows[:n]
    dense = (matrix[:n] @ _cue_vector(query, embedder)) / np.maximum(norms[:n], 1e-12)
    keyword = keyword_index(store).scores(query.cue)[:n]
    fused = ranking.fuse(dense, keyword)
    filtering = query.tier is not None or query.tags or query.since or query.until
    # Filters are checked on a generous head of the ranking; only when they
    # reject most of it do we walk the whole order.
    head = min(n, max(query.k * (20 if filtering else 1), 64))
    top = np.argpartition(-fused, head - 1)[:head] if head < n else np.arange(n)
    order = top[np.argsort(-fused[top], kind="stable")]
    picked = _filtered(order, rows, query, query.k)
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

"""Recall: the right few memories for a cue, fast.

Hybrid ranking over what the store holds in memory: cosine similarity of
the cue's embedding against every vector (one pass over int8 codes, exact
float32 cosines for the rows that decide the answer: ``core.dense``), BM25 over the
decrypted text, fused by ``iai_mcp.retrieval``; filters (tier, tags, time window) are
applied to the best candidates, then hits are packed into the caller's
token budget in score order, a hit too long for it as an excerpt
(``pack``). Provenance is not written here: the caller hands the hits to
``store.queue_provenance_batch``.

Where a memory is in its life (``store.states()``) is applied with array
masks, never a pass over the rows: hidden and purged rows neither rank nor
lend context (``fuse(alive=...)``) and leave the keyword index at the next
recall; superseded rows rank and lend context as the turns they were, but
come back as ``anti_hits`` (what was corrected, by what) unless
``include_superseded``.
"""
from __future__ import annotations

import itertools
import threading
import weakref
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from iai_mcp.core.dense import MAX_ROUNDS, Context, Cosines
from iai_mcp.core.excerpt import Excerpt, excerpt
from iai_mcp.core.filters import RowFilter, filter_of
from iai_mcp.embed import Embedder, relevance_floor
from iai_mcp.log import logger
from iai_mcp.retrieval import KeywordIndex, fuse, top_k
from iai_mcp.retrieval.fusion import floor_mask
from iai_mcp.retrieval.person import cue_role
from iai_mcp.retrieval.when import TimeWindow, time_window, window_match
from iai_mcp.store import PURGED, STATE_CODES, MemoryStore
from iai_mcp.types import MemoryRow, utcnow

_log = logger("iai_mcp.recall")

_HIDDEN = STATE_CODES["hidden"]
#: Row roles as small codes for ``_RecallIndex.role_match`` (0: none or other).
_ROLE_CODES = {"user": 1, "assistant": 2}
_SUPERSEDED = STATE_CODES["superseded"]

#: About four characters a token, the usual rule of thumb for English text.
CHARS_PER_TOKEN = 4
#: Fewer tokens than this (about one sentence) make no useful excerpt of a
#: hit after the best one: it is left out instead.
MIN_EXCERPT_TOKENS = 25
#: Added to the fused score of a memory of the caller's project. About a
#: tenth of a top hit's score (~1.6): it reorders near ties and never lifts an
#: unrelated memory over a real match. Not tuned: the dev sets have no projects.
PROJECT_PRIOR = 0.15


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
    include_superseded: bool = False
    #: Least cosine similarity between cue and memory for a hit; None: the
    #: floor calibrated for the embedder (``embed.relevance_floor``), if any.
    min_score: float | None = None
    #: The caller's project: its memories get ``PROJECT_PRIOR`` (a preference, not a filter).
    prefer_project: str | None = None
    #: When the cue is asked: "last week" in it is read against this (None: the clock).
    now: datetime | None = None


@dataclass(frozen=True)
class Hit:
    row: MemoryRow
    score: float
    reason: str
    #: A superseded memory that matched (an anti-hit), not a hit.
    anti: bool = False
    #: Set when only this window of the text fits the budget.
    excerpt: Excerpt | None = None


@dataclass(frozen=True)
class RecallResult:
    hits: list[Hit]
    budget_used: int
    #: Superseded memories that matched the cue (empty with include_superseded).
    anti_hits: list[Hit] = field(default_factory=list)
    #: Memories that would have ranked among the hits but fell below ``min_score``.
    below_floor: int = 0


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
        self._pos: np.ndarray | None = None  # the inverse of _order, made when first asked for
        self._grouped = np.zeros(0, dtype=np.int64)
        self._solo = itertools.count(1 << 40)  # codes for rows without a session
        self._project_codes: dict[str | None, int] = {None: -1}
        self._project = np.zeros(0, dtype=np.int32)
        self._role = np.zeros(0, dtype=np.int8)
        self._said = np.zeros(0, dtype=np.float32)  # when each row was said, POSIX seconds
        #: Rows the sealed snapshot on disk covers, as far as this process
        #: knows (``core.recall_snapshot``): the daemon writes a new one when
        #: enough rows arrived since.
        self.snapshot_rows = 0

    def _code(self, session_id: str | None) -> int:
        if session_id is None:
            # No session: a conversation of its own, lending nothing to others.
            return next(self._solo)
        return self._codes.setdefault(session_id, len(self._codes))

    def sync(
        self, rows: list[MemoryRow], states: np.ndarray | None = None
    ) -> tuple[KeywordIndex, np.ndarray, np.ndarray, np.ndarray]:
        """``(keyword index, session code per row, grouping order, session
        codes in that order)`` for ``rows``; with ``states`` (the store's),
        hidden and purged rows are removed from the keyword index and
        restored ones put back: one vectorised comparison against what the
        index last saw (~0.1 ms at 100k rows), then work only for the rows
        whose state changed."""
        with self.lock:
            # A keyword index restored from a snapshot (``core.recall_snapshot``)
            # already holds its first rows; the codes below are always derived
            # here (cheap next to tokenising, and never stale).
            start = len(self._session)
            if start < len(rows):
                codes = np.empty(len(rows) - start, dtype=np.int64)
                projects = np.empty(len(rows) - start, dtype=np.int32)
                roles = np.empty(len(rows) - start, dtype=np.int8)
                said = np.empty(len(rows) - start, dtype=np.float32)
                for doc in range(len(self.keywords), len(rows)):
                    self.keywords.add(doc, rows[doc].literal_surface)
                for offset, doc in enumerate(range(start, len(rows))):
                    codes[offset] = self._code(rows[doc].session_id)
                    projects[offset] = self._project_codes.setdefault(rows[doc].project, len(self._project_codes))
                    roles[offset] = _ROLE_CODES.get(rows[doc].role, 0)
                    said[offset] = (rows[doc].event_time or rows[doc].created_at).timestamp()
                self._session = np.concatenate([self._session, codes])
                self._project = np.concatenate([self._project, projects])
                self._role = np.concatenate([self._role, roles])
                self._said = np.concatenate([self._said, said])
                self._order = None
            if states is not None:
                self._follow(states)
            if self._order is None:
                self._order = np.argsort(self._session, kind="stable")
                self._grouped = self._session[self._order]
                self._pos = None
            return self.keywords, self._session, self._order, self._grouped

    def positions(self, order: np.ndarray) -> np.ndarray:
        """Each row's place in ``order`` (its inverse), kept for the index's own order."""
        with self.lock:
            if order is self._order and self._pos is not None:
                return self._pos
        pos = np.empty(len(order), dtype=np.int64)
        pos[order] = np.arange(len(order))
        with self.lock:
            if order is self._order:
                self._pos = pos
        return pos

    def role_match(self, cue: str, n: int) -> np.ndarray | None:
        """True for the first ``n`` rows spoken by the role ``cue`` points at
        (``person.cue_role``); None when it points at none."""
        role = cue_role(cue)
        if role is None:
            return None
        with self.lock:
            return self._role[:n] == _ROLE_CODES[role]

    def when_match(self, window: TimeWindow | None, n: int) -> np.ndarray | None:
        """How well each of the first ``n`` rows' time fits ``window`` (0..1,
        ``when.window_match``); None without a window."""
        if window is None:
            return None
        with self.lock:
            said = self._said[:n]
        return window_match(said, window)

    def in_project(self, project: str, n: int) -> np.ndarray | None:
        """True for the first ``n`` rows said in ``project`` (as of the last
        sync); None when no row is. One vectorised comparison."""
        with self.lock:
            code = self._project_codes.get(project)
            return None if code is None else self._project[:n] == code

    def _follow(self, states: np.ndarray) -> None:
        removed = self.keywords.removed_mask()
        m = min(len(states), len(removed))
        dead = (states[:m] == _HIDDEN) | (states[:m] == PURGED)
        for slot in np.flatnonzero(dead != removed[:m]):
            if dead[slot]:
                self.keywords.remove(int(slot))
            else:
                self.keywords.restore(int(slot))


_indexes: weakref.WeakKeyDictionary[MemoryStore, _RecallIndex] = weakref.WeakKeyDictionary()
_indexes_lock = threading.Lock()


def _recall_index(store: MemoryStore) -> _RecallIndex:
    with _indexes_lock:
        index = _indexes.get(store)
        if index is None:
            from iai_mcp.core.recall_snapshot import restore  # it builds on this module

            index = _RecallIndex()
            restore(index, store)  # a snapshot that still fits spares the keyword index's build
            _indexes[store] = index
    return index


def built_index(store: MemoryStore) -> _RecallIndex | None:
    """The store's recall index if this process has made one (never builds it)."""
    with _indexes_lock:
        return _indexes.get(store)


def keyword_index(store: MemoryStore) -> KeywordIndex:
    """The store's BM25 index, brought up to date."""
    return _recall_index(store).sync(store.rows(), store.states())[0]


def fused_scores(
    store: MemoryStore, dense: np.ndarray, cue: str, n: int, alive: np.ndarray | None = None,
    window: TimeWindow | None = None, context: list[Context] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(fused, keyword, time match)`` scores of the first ``n`` rows for
    ``cue``; rows not ``alive`` score ``-inf`` and lend nothing; rows said
    in or near ``window`` (the cue's time, ``when.time_window``) rank higher.
    ``context`` receives the context term's ``Context`` (when there is one)."""
    index = _recall_index(store)
    keywords, session, order, grouped_session = index.sync(store.rows(), store.states())
    keyword = keywords.scores(cue)[:n]
    label = keywords.label_match(cue)[:n]
    role = index.role_match(cue, n)
    when = index.when_match(window, n)
    if len(order) != n:  # rows arrived between the two reads: group the first n only
        order = np.argsort(session[:n], kind="stable")
        grouped_session = session[:n][order]
    parts: dict[str, np.ndarray] = {}
    grouped = fuse(dense[order], keyword[order], grouped_session, label=label[order],
                   role=None if role is None else role[order], when=None if when is None else when[order],
                   alive=None if alive is None else alive[order], parts=parts)
    fused = np.empty_like(grouped)
    fused[order] = grouped
    if context is not None and parts:
        context.append(Context(parts, order, index.positions(order), grouped_session, alive))
    return fused, keyword, when


def _cue_vector(query: RecallQuery, embedder: Embedder | None) -> np.ndarray:
    if query.cue_embedding is not None:
        vec = np.asarray(query.cue_embedding, dtype=np.float32)
    else:
        if embedder is None:
            raise ValueError("recall without cue_embedding needs an embedder")
        vec = embedder.embed([query.cue])[0]
    norm = float(np.linalg.norm(vec))
    return vec / norm if norm > 0 else vec


def _walk(
    order: np.ndarray, rows: list[MemoryRow], states: np.ndarray, query: RecallQuery, keep: RowFilter,
    relevant: np.ndarray,
) -> tuple[list[int], list[int], int, np.ndarray]:
    """``(hits, anti-hits, below floor, rows met)``: rows in ``order`` that pass the
    filters, until ``query.k`` hits; superseded ones met on the way are
    anti-hits (at most k); rows not ``relevant`` (below ``min_score``) are
    skipped and counted while they would have been among the first k."""
    hits: list[int] = []
    anti: list[int] = []
    below = 0
    met = 0
    for i in order:
        met += 1
        code = states[i]
        if code == _HIDDEN or code == PURGED or not keep.passes(rows[i]):
            continue
        if not relevant[i]:
            if len(hits) + below < query.k:
                below += 1
            continue
        if code == _SUPERSEDED and not query.include_superseded:
            if len(anti) < query.k:
                anti.append(int(i))
            continue
        hits.append(int(i))
        if len(hits) >= query.k:
            break
    return hits, anti, below, order[:met]


def _whole(row: MemoryRow, store: MemoryStore) -> bool:
    """A row still fit to return: a hide or a purge that landed after the
    state snapshot leaves either the row as it was (returned: it was alive
    when ranked) or a forgotten one or a purged slot (not returned), never
    half of each."""
    return row.state != "hidden" and store.row(row.id) is not None


def _anchored(clears: np.ndarray, rows: list[MemoryRow], states: np.ndarray, dead: np.ndarray,
              query: RecallQuery, keep: RowFilter) -> bool:
    """Whether a row this query could return clears the cosine floor: alive,
    not superseded unless asked for, and through the filters. Only then may
    keyword support rescue rows below it (a tag whose memories are all off
    the cue must come back empty, not with its keyword neighbours). The
    filters run on the rows that clear the floor only, and stop at the first
    that passes."""
    fit = clears & ~dead
    if not query.include_superseded:
        fit &= states != _SUPERSEDED
    if not keep:
        return bool(fit.any())
    return any(keep.passes(rows[i]) for i in np.flatnonzero(fit).tolist())


def _eligible(states: np.ndarray, dead: np.ndarray, relevant: np.ndarray, query: RecallQuery) -> int:
    """How many rows could be hits at all (counted only when the head fell short):
    alive, above the floor, and not superseded unless those are asked for."""
    fit = relevant & ~dead
    if not query.include_superseded:
        fit &= states != _SUPERSEDED
    return int(np.count_nonzero(fit))


def rank(store: MemoryStore, embedder: Embedder | None, query: RecallQuery) -> tuple[list[Hit], int]:
    """``(hits, below floor)``: the best ``query.k`` rows that pass the
    filters and the floor, and the superseded rows that ranked among them
    (``anti``), best first; and how many of the first k were below the floor.

    The floor (``query.min_score``) is on the cosine, not the fused score:
    the fused score is normalised to each query's best row, so the top hit
    scores about the same whether it answers the cue or not. The cosine of
    MiniLM vectors is absolute. Once some row clears it, rows with strong
    keyword support pass too (``retrieval.fusion.floor_mask``). Calibration (``bench.locomo``,
    ``bench.longmemeval``: questions against their own store and against
    another conversation's or question's store) is in ``MiniLMEmbedder.relevance_floor``.
    A hit below the floor is skipped, not the whole recall: gating the query
    on its best hit instead kept more recall at high floors (LongMemEval
    R@10 0.761 vs 0.661 at 0.25) but lets junk ride along a relevant first hit.
    """
    rows = store.rows()
    states = store.states()
    n = min(len(rows), len(states))
    if n == 0 or query.k <= 0:
        return [], 0
    states = states[:n].copy()  # one snapshot for masking and picking
    dead = (states == _HIDDEN) | (states == PURGED)
    # From the int8 codes, exact where it decides something (core.dense).
    cosines = Cosines(store, _cue_vector(query, embedder), n, dead, query.k)
    dense = cosines.dense
    n_dead = int(np.count_nonzero(dead))
    window = time_window(query.cue, query.now or utcnow())
    contexts: list[Context] = []
    fused, keyword, when = fused_scores(store, dense, query.cue, n, ~dead if n_dead else None, window, contexts)
    context = contexts[0] if contexts else None
    if query.prefer_project is not None:
        mine = _recall_index(store).in_project(query.prefer_project, n)
        if mine is not None:
            fused = fused + np.float32(PROJECT_PRIOR) * mine
    floor = min_score(query, embedder or store.embedder)
    keep = filter_of(query)
    def anchored(clears: np.ndarray) -> bool:
        return _anchored(clears, rows, states, dead, query, keep)

    def pick() -> tuple[list[int], list[int], int, np.ndarray]:
        relevant = (floor_mask(dense, keyword, floor, anchored=anchored)
                    if floor is not None else np.ones(n, dtype=bool))
        # Filters are checked on a generous head of the ranking; only when they
        # reject most of it (or superseded rows fill it) do we walk the whole order.
        head = min(n, max(query.k * (20 if keep else 1), 64))
        walked = _walk(top_k(fused, head), rows, states, query, keep, relevant)
        # Eligible counts the rows whose exact cosine may clear the floor: a
        # row the codes put just under it is met, and so re-scored (unsure).
        if len(walked[0]) < query.k and head < n and (
            bool(keep) or len(walked[0]) < _eligible(
                states, dead, relevant if floor is None else relevant | cosines.could_clear(floor), query)
        ):
            walked = _walk(np.argsort(-fused, kind="stable"), rows, states, query, keep, relevant)
        return walked

    def unsure() -> np.ndarray:
        return cosines.unsure(picked=picked, anti=anti, visited=met, fused=fused, dead=dead, k=query.k,
                              floor=floor, anchored=anchored, context=context)

    picked, anti, below, met = pick()
    for _ in range(MAX_ROUNDS):
        if not len(cosines.correct(unsure(), fused, context)):
            break
        picked, anti, below, met = pick()
    else:
        left = unsure()
        if len(left):  # the answer stands; the log says it may differ from a float32 scan's
            _log.warning("recall_rounds_capped", rounds=MAX_ROUNDS, unsure_rows=len(left), k=query.k)

    anti_set = set(anti)
    found = [
        Hit(rows[i], float(fused[i]), _reason(float(dense[i]), float(keyword[i]),
                                              window if when is not None and when[i] > 0 else None),
            anti=i in anti_set)
        for i in sorted([*picked, *anti], key=lambda i: (-fused[i], i))
    ]
    return [hit for hit in found if _whole(hit.row, store)], below


def min_score(query: RecallQuery, embedder: object) -> float | None:
    """The floor ``query`` asks for, else the one calibrated for ``embedder``."""
    return query.min_score if query.min_score is not None else relevance_floor(embedder)


def _reason(dense: float, keyword: float, window: TimeWindow | None = None) -> str:
    parts = [f"semantic similarity {dense:.2f}"]
    if keyword > 0:
        parts.append(f"keyword match {keyword:.2f}")
    if window is not None:
        parts.append(f"said around {window.phrase!r}")
    return ", ".join(parts)


def recall(store: MemoryStore, embedder: Embedder | None, query: RecallQuery) -> RecallResult:
    """Rank, then pack the hits into the token budget (``pack``)."""
    ranked, below = rank(store, embedder, query)
    return replace(pack(ranked, query.cue, query.budget_tokens), below_floor=below)


def pack(ranked: list[Hit], cue: str, budget_tokens: int) -> RecallResult:
    """``ranked`` (hits and anti-hits, best first) packed into ``budget_tokens``;
    ``budget_used`` never exceeds it.

    First every hit and anti-hit that fits whole is packed, in score order,
    skipping those that do not fit (so one long memory no longer hides the
    short ones after it). Then the hits that did not fit are excerpted, best
    first, into what is left (``excerpt``), when at least
    ``MIN_EXCERPT_TOKENS`` are left. The best hit always comes back: when it
    is longer than the budget, half the budget is held back for its excerpt
    while the others are packed whole, and the excerpt then takes all that is
    left. Anti-hits are only ever packed whole. Hits come back in score order.
    """
    hits = [hit for hit in ranked if not hit.anti]
    best = hits[0] if hits else None
    oversized = best is not None and estimate_tokens(best.row.literal_surface) > budget_tokens
    limit = budget_tokens // 2 if oversized else budget_tokens
    used = 0
    chosen: dict[int, Hit] = {}  # rank position -> packed hit
    anti: list[Hit] = []
    deferred: list[int] = []
    for pos, hit in enumerate(ranked):
        cost = estimate_tokens(hit.row.literal_surface)
        if (hit is best and oversized) or used + cost > limit:
            if not hit.anti:
                deferred.append(pos)
            continue
        used += cost
        if hit.anti:
            anti.append(hit)
        else:
            chosen[pos] = hit
    for pos in deferred:
        room = budget_tokens - used
        hit = ranked[pos]
        if room < MIN_EXCERPT_TOKENS and hit is not best:
            continue
        part = excerpt(hit.row.literal_surface, cue, room * CHARS_PER_TOKEN)
        if not part.text:
            continue
        used += estimate_tokens(part.text)
        chosen[pos] = replace(hit, excerpt=part)
    return RecallResult([chosen[pos] for pos in sorted(chosen)], used, anti)

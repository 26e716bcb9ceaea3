"""Fusing dense and keyword scores into one ranking, with context and priors.

Pure numpy over arrays the store already holds, vectorised over rows, because
recall must stay within a few milliseconds at 100k memories on two cores.
Each knob's value was measured on LoCoMo; the figures live in
:class:`FusionWeights`.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from iai_mcp.retrieval.top import at_least

@dataclass(frozen=True)
class FusionWeights:
    """Knobs of :func:`fuse`, with the values LoCoMo picked.

    Leave-one-conversation-out (tune on two conversations, test on the third)
    picked ``dense=0.6`` in all three folds and ``neighbour`` 0.25-0.5,
    ``window_weight=0.4``, ``window=8`` in all three; the defaults sit inside
    those choices, with ``window_weight`` halved to keep rank 1 steady.
    """

    #: Weight of the normalised dense score against the normalised keyword score (1.0).
    dense: float = 0.6
    #: Share of the better adjacent turn's keyword score a turn inherits. The
    #: words of a question often sit in the turn that asked it, the answer in
    #: the reply (turn R@10 0.722 -> 0.759).
    neighbour: float = 0.5
    #: Share of the best fused score within ``window`` turns of the same
    #: session a turn inherits: memories near a strong hit are about the same
    #: thing (R@10 0.759 -> 0.775).
    window_weight: float = 0.2
    window: int = 8
    #: Bonus for a row whose speaker label the query names. Turn R@10
    #: 0.775 -> 0.798, MRR 0.540 -> 0.581 at 0.3; gains level off from 0.3
    #: to 0.7 and leave-one-conversation-out picks 0.3-0.7 (held-out R@10
    #: 0.797). Kept at the low end so it ranks, rather than filters, by speaker.
    label: float = 0.3
    #: Bonus for a row whose role (user or assistant) the cue's person points
    #: at (``person.cue_role``: "what did I say" -> the user's turns). On
    #: LongMemEval dev (user/assistant turns; LoCoMo has no roles and is
    #: unchanged) turn R@10 0.786 -> 0.881 at 0.3, 0.944 at 0.8, 0.953 at
    #: 1.2; R@1 0.344 -> 0.425 from 0.3 on. Leave-one-fold-out picks 1.2 in
    #: five folds and 0.8 in one (held-out R@10 0.944). 0.8, the low end of
    #: that choice: a strong preference for the role asked about, under a top
    #: hit's score (~1.6), so an assistant's answer to "what did I decide"
    #: still ranks when it matches best.
    role: float = 0.8
    #: Bonus for a row said inside the time window the cue names
    #: (``when.time_window``: "last Tuesday", "in May"), fading to 0 one
    #: window length outside it (``when.window_match``).
    #: Leave-one-fold-out over both dev sets picks 0.8 in five folds of six
    #: and 0.4 in one: LoCoMo held-out turn R@10 0.798 -> 0.814 (its
    #: questions say "in May 2023", "on 7 July, 2023"); LongMemEval unchanged
    #: (its evidence is rarely dated where the question points). Gains level
    #: off above 0.4, so 0.4: it ranks by time rather than filtering by it.
    when: float = 0.4
    # No session-evidence prior: adding the sum of a session's three best
    # candidate scores to its rows (weights 0.05-0.4, chosen by session R@5)
    # left held-out session R@5 at 0.95 on LongMemEval and cost LoCoMo
    # (bench.tune_recall, knob "session"), so it was measured and left out.
    # No recency prior: an exp-decay prior on age (half-life 90 days) cost
    # R@10 0.01-0.03 on LoCoMo at weights 0.1-0.2, where old facts are asked
    # about as often as new ones, so it was measured and left out.


DEFAULT_WEIGHTS = FusionWeights()


def normalise_keyword(keyword: np.ndarray) -> np.ndarray:
    """BM25 scaled so the best row is 1: BM25 has no fixed range, and dividing
    by the per-query best beat z-scores and a query-length 'ideal score'."""
    top = float(keyword.max()) if keyword.size else 0.0
    return keyword / top if top > 0 else np.zeros_like(keyword)


def normalise_dense(dense: np.ndarray) -> np.ndarray:
    """Cosines scaled so the mean row is 0 and the best is 1. Cosine levels
    shift from query to query; the distance above the crowd is what counts."""
    if dense.size == 0:
        return dense
    mean = float(dense.mean())
    spread = float(dense.max()) - mean
    return (dense - mean) / spread if spread > 0 else np.zeros_like(dense)


def window_max(scores: np.ndarray, session: np.ndarray | None, window: int) -> np.ndarray:
    """Best score among the other rows of the same session at most ``window``
    rows away, 0 where there is none; ``scores`` must be >= 0. Rows are in
    capture order, so nearby rows of one session are nearby turns of one
    conversation; ``session=None`` treats all rows as one conversation.

    One shifted, masked maximum per offset into preallocated buffers: about
    0.2 ms per offset at 100k rows, and no Python loop over rows."""
    n = len(scores)
    best = np.zeros_like(scores)
    tmp = np.empty_like(scores)
    for d in range(1, min(window, n - 1) + 1):
        m = n - d
        if session is None:
            np.maximum(best[d:], scores[:m], out=best[d:])
            np.maximum(best[:m], scores[d:], out=best[:m])
            continue
        same = session[d:] == session[:m]
        # Scores are >= 0, so zeroing rows of other sessions removes them from the max.
        np.multiply(scores[:m], same, out=tmp[:m])
        np.maximum(best[d:], tmp[:m], out=best[d:])
        np.multiply(scores[d:], same, out=tmp[:m])
        np.maximum(best[:m], tmp[:m], out=best[:m])
    return best


def fuse(dense: np.ndarray, keyword: np.ndarray, session: np.ndarray | None = None, *,
         alive: np.ndarray | None = None, label: np.ndarray | None = None,
         role: np.ndarray | None = None, when: np.ndarray | None = None,
         weights: FusionWeights = DEFAULT_WEIGHTS, parts: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """One ranking score per row from dense cosines and BM25 scores.

    ``session`` holds an integer code per row (rows in capture order) and
    enables the two context terms; ``alive`` is False for rows that must
    neither rank nor lend context (forgotten memories); ``label`` is True for rows whose speaker
    the query names (:meth:`KeywordIndex.label_match`); ``role`` is True for
    rows whose role the query's person points at (``person.cue_role``); ``when``
    is each row's match (0..1) with the cue's time window (``when.window_match``). Returns float32
    scores, higher is better, ``-inf`` for rows that are not alive. A ``parts`` dict receives
    ``base`` (each row's score before context) and ``context`` (what context added), so a
    caller that corrects a few dense scores can redo the context of their neighbours alone.

    A weighted sum of normalised scores, not reciprocal-rank fusion: RRF
    throws away how far ahead a hit is, and scored R@10 0.615-0.692 (k=60..10)
    against 0.722 for the sum on the same inputs.
    """
    dense = np.asarray(dense, dtype=np.float32)
    keyword = np.asarray(keyword, dtype=np.float32)
    if dense.shape != keyword.shape:
        raise ValueError(f"dense {dense.shape} and keyword {keyword.shape} scores must align")
    if label is not None:
        label = np.asarray(label, dtype=bool)
        if label.shape != dense.shape:
            raise ValueError(f"label {label.shape} must align with scores {dense.shape}")
    n = len(dense)
    if alive is not None:
        alive = np.asarray(alive, dtype=bool)
        # A dead row takes the live mean cosine: it then normalises to 0 and
        # leaves the mean and the best of the live rows exactly as they are.
        fill = np.float32(dense[alive].mean()) if alive.any() else np.float32(0)
        dense = np.where(alive, dense, fill)
        keyword = np.where(alive, keyword, np.float32(0))
    if weights.neighbour and n > 1:
        keyword = keyword + weights.neighbour * window_max(keyword, session, 1)
    score = normalise_keyword(keyword) + weights.dense * normalise_dense(dense)
    if weights.window_weight and weights.window > 0 and n > 1:
        # Context only ever adds, so floor at 0 first: a row below the crowd
        # must not drag its neighbours down, and a dead row lends nothing.
        lend = np.maximum(score, 0) if alive is None else np.where(alive, np.maximum(score, 0), 0)
        context = weights.window_weight * window_max(lend, session, weights.window)
        if parts is not None:
            parts["base"], parts["context"] = score, context
        score = score + context
    if label is not None and weights.label:
        score = score + np.float32(weights.label) * label
    if role is not None and weights.role:
        score = score + np.float32(weights.role) * np.asarray(role, dtype=bool)
    if when is not None and weights.when:
        score = score + np.float32(weights.when) * np.asarray(when, dtype=np.float32)
    if alive is not None:
        score = np.where(alive, score, np.float32(-np.inf))
    return score.astype(np.float32, copy=False)


#: The relevance floor's rescue (``floor_mask``): least normalised keyword
#: score that lets a row under the floor pass. Leave-one-fold-out over both
#: dev sets (MiniLM's floor 0.2, grid 0.3-0.9) picks 0.3 in all six folds:
#: LongMemEval held-out turn R@10 0.836 -> 0.950 (0.944 with no floor at
#: all), R@1 0.400 -> 0.425; LoCoMo 0.815 -> 0.814 (pooled over questions).
FLOOR_RESCUE = 0.3


def floor_mask(dense: np.ndarray, keyword: np.ndarray, floor: float, alive: np.ndarray | None = None,
               rescue: float | None = FLOOR_RESCUE, *,
               anchored: Callable[[np.ndarray], bool] | None = None) -> np.ndarray:
    """Rows that clear the relevance floor: a cosine of at least ``floor``,
    or, when some live row clears it (the store holds something about the
    cue), a keyword score at least ``rescue`` of the best one.

    The cosine alone cut evidence the keywords find: "how many months passed
    between my degree and my thesis?" sits far from either turn in embedding
    space, while BM25 ranks the turn that names the thesis first. Asking the
    store as a whole to clear the cosine floor first keeps the floor's
    purpose: a cue about billing against deploy notes, where no row clears
    it, still returns nothing, however many words the notes share with it
    (raw BM25 levels do not separate such negatives: LongMemEval's best
    negative BM25 has a median of 10, above most rescued evidence).

    ``anchored(passes)``: whether a row the caller could return (its
    filters, its states) is among ``passes``, the rows clearing the cosine
    floor, when the caller knows better than ``alive``; a filter whose rows
    are all below it must rescue nothing.
    """
    passes = dense >= np.float32(floor)
    if rescue is None:
        return passes
    if anchored is None:
        live = bool((passes if alive is None else passes & alive).any())
    else:
        live = anchored(passes)
    if live:
        passes = passes | (normalise_keyword(keyword) >= np.float32(rescue))
    return passes


def rrf(*scores: np.ndarray, k: int = 60) -> np.ndarray:
    """Reciprocal-rank fusion, sum of 1 / (k + rank), kept as the baseline that
    :func:`fuse` is measured against. Sorts every list: O(n log n)."""
    total = np.zeros(len(scores[0]), dtype=np.float64)
    for s in scores:
        order = np.argsort(-np.asarray(s), kind="stable")
        ranks = np.empty(len(order), dtype=np.float64)
        ranks[order] = np.arange(1, len(order) + 1)
        total += 1.0 / (k + ranks)
    return total


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Row indices of the ``k`` best scores, best first, ties to the earlier row.
    Partitions before sorting, so 100k rows cost about a millisecond."""
    n = len(scores)
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    # Every row tied with the k-th best is kept so ties resolve by row order.
    cand = at_least(scores, k)
    return cand[np.argsort(-scores[cand], kind="stable")][:k]

"""Retrieval ranking: keyword scoring (BM25), fusion with dense scores, context.

The store keeps every memory decrypted in RAM, so ranking is a pure function of
arrays it already holds: a cosine vector from the embedder, a BM25 vector from
:class:`KeywordIndex`, and per-row session codes. Everything here is numpy +
stdlib and vectorised over rows, because recall must stay within a few
milliseconds at 100k memories on two cores.

Choices were measured on LoCoMo (three conversations, 383 questions, one memory
per turn); the numbers live in the docstrings of the knobs they justify.
"""
from __future__ import annotations

import re
import unicodedata
from array import array
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Letters and digits of any script, never "_" (so snake_case splits).
_WORD = re.compile(r"[^\W_]+")
# Scripts written without spaces: index them as overlapping character bigrams
# (the CJK analyzer approach), so a query can match inside a long run.
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
# A transcript line's speaker: up to three words and a colon opening the text
# ("Caroline: ...", "Dr Lee: ..."); not "12:30" and not a sentence with a colon.
_LABEL = re.compile(r"\s*([^\W\d_][^\W_]*(?:[ .'-]+[^\W_]+){0,2})\s*:\s")

#: Function words dropped from both documents and queries. A short list on
#: purpose: dropping them lifted BM25 turn R@10 on LoCoMo from 0.528 to 0.588,
#: while the longer NLTK list (which also drops "not", "before", "after"...)
#: did no better (0.591).
STOPWORDS: frozenset[str] = frozenset(
    """a an and are as at be been but by did do does for from had has have he her
    hers him his how i if in into is it its me my of on or our she so than that the
    their them then there these they this to was we were what when where which who
    whom why will with would you your yours s t""".split()
)


# ---------------------------------------------------------------- stemming --
# Porter (1980). Full stemming beat suffix-"s" stripping clearly on LoCoMo
# (BM25 R@10 0.632 vs 0.589): questions say "paint", turns say "painting".
# Only ASCII letters are stemmed; other scripts pass through untouched.

def _cons(w: str, i: int) -> bool:
    c = w[i]
    if c in "aeiou":
        return False
    if c == "y":
        return i == 0 or not _cons(w, i - 1)
    return True


def _measure(w: str) -> int:
    """Porter's m: how many vowel-consonant sequences the word has."""
    pattern = [_cons(w, i) for i in range(len(w))]
    return sum(1 for a, b in zip(pattern, pattern[1:]) if not a and b)


def _has_vowel(w: str) -> bool:
    return any(not _cons(w, i) for i in range(len(w)))


def _cvc(w: str) -> bool:
    return (len(w) >= 3 and _cons(w, len(w) - 3) and not _cons(w, len(w) - 2)
            and _cons(w, len(w) - 1) and w[-1] not in "wxy")


_STEP2 = (("ational", "ate"), ("tional", "tion"), ("enci", "ence"), ("anci", "ance"),
          ("izer", "ize"), ("bli", "ble"), ("alli", "al"), ("entli", "ent"), ("eli", "e"),
          ("ousli", "ous"), ("ization", "ize"), ("ation", "ate"), ("ator", "ate"),
          ("alism", "al"), ("iveness", "ive"), ("fulness", "ful"), ("ousness", "ous"),
          ("aliti", "al"), ("iviti", "ive"), ("biliti", "ble"), ("logi", "log"))
_STEP3 = (("icate", "ic"), ("ative", ""), ("alize", "al"), ("iciti", "ic"),
          ("ical", "ic"), ("ful", ""), ("ness", ""))
_STEP4 = ("ement", "ance", "ence", "able", "ible", "ment", "ant", "ent", "ion", "ism",
          "ate", "iti", "ous", "ive", "ize", "al", "er", "ic", "ou")


def _replace(w: str, table: tuple[tuple[str, str], ...]) -> str:
    for suffix, repl in table:
        if w.endswith(suffix):
            base = w[: -len(suffix)]
            return base + repl if _measure(base) > 0 else w
    return w


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Porter stem of a lowercase ASCII word; anything else comes back as is."""
    w = word
    if len(w) <= 2 or not (w.isascii() and w.isalpha()):
        return w
    # Step 1a; three-letter words keep their "s" ("has", "bus", "yes").
    if w.endswith("sses") or w.endswith("ies"):
        w = w[:-2]
    elif len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
    # Step 1b
    stripped = False
    if w.endswith("eed"):
        if _measure(w[:-3]) > 0:
            w = w[:-1]
    elif w.endswith("ed") and _has_vowel(w[:-2]):
        w, stripped = w[:-2], True
    elif w.endswith("ing") and _has_vowel(w[:-3]):
        w, stripped = w[:-3], True
    if stripped:
        if w.endswith(("at", "bl", "iz")):
            w += "e"
        elif len(w) >= 2 and w[-1] == w[-2] and _cons(w, len(w) - 1) and w[-1] not in "lsz":
            w = w[:-1]
        elif _measure(w) == 1 and _cvc(w):
            w += "e"
    # Step 1c
    if w.endswith("y") and _has_vowel(w[:-1]):
        w = w[:-1] + "i"
    w = _replace(w, _STEP2)
    w = _replace(w, _STEP3)
    for suffix in _STEP4:
        if w.endswith(suffix):
            st = w[: -len(suffix)]
            if _measure(st) > 1 and (suffix != "ion" or st.endswith(("s", "t"))):
                w = st
            break
    if w.endswith("e"):
        st = w[:-1]
        m = _measure(st)
        if m > 1 or (m == 1 and not _cvc(st)):
            w = st
    if w.endswith("ll") and _measure(w) > 1:
        w = w[:-1]
    return w


def tokenize(text: str) -> list[str]:
    """Index terms of ``text``: NFKC-normalised, casefolded, unicode word tokens,
    stopwords dropped, English words Porter-stemmed, CJK runs as bigrams."""
    out: list[str] = []
    for word in _WORD.findall(unicodedata.normalize("NFKC", text).casefold()):
        if word in STOPWORDS:
            continue
        if word.isascii():
            out.append(stem(word))
        elif _CJK.search(word):
            out.extend(_cjk_terms(word))
        else:
            out.append(word)
    return out


def _cjk_terms(word: str) -> list[str]:
    terms: list[str] = []
    pos = 0
    for m in _CJK.finditer(word):
        if m.start() > pos:
            terms.append(word[pos:m.start()])
        run = m.group()
        terms.extend([run] if len(run) == 1 else [run[i:i + 2] for i in range(len(run) - 1)])
        pos = m.end()
    if pos < len(word):
        terms.append(word[pos:])
    return terms


# ----------------------------------------------------------------- BM25 --

class KeywordIndex:
    """Incremental Okapi BM25 over documents appended as 0, 1, 2, ...

    Postings live per term in compact ``array`` buffers, so ``add`` is an
    append and nothing is ever rebuilt wholesale; a query copies the postings
    of its own terms into numpy (cached until that term grows) and scores them
    in a handful of vector operations. Removed documents stay as slots that
    score 0 and drop out of document frequencies and the average length.
    Not thread-safe: the store serialises access under its own lock.

    ``b`` defaults to 0.4, below the textbook 0.75: memories are short turns
    whose length says little about their topicality (LoCoMo turn R@10 0.648
    vs 0.628 at 0.75; leave-one-conversation-out over k1 x b picks b 0.2-0.5
    in every fold and scores 0.651 on the held-out conversations; k1 hardly
    matters).
    """

    def __init__(self, k1: float = 1.2, b: float = 0.4) -> None:
        self.k1 = k1
        self.b = b
        self._terms: dict[str, int] = {}
        self._docs: list[array] = []     # per term: doc ids (int32)
        self._tfs: list[array] = []      # per term: term frequency in that doc (uint16)
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._length = array("f")        # per doc: number of index terms
        self._deleted = array("b")
        self._n_deleted = 0
        self._live_length = 0.0
        self._norm: np.ndarray | None = None  # per-doc BM25 length norm, lazily
        self._label = array("i")         # per doc: term id of its speaker label, -1 if none

    def __len__(self) -> int:
        """Number of document slots (removed documents included)."""
        return len(self._length)

    @property
    def live(self) -> int:
        """Number of documents not removed."""
        return len(self._length) - self._n_deleted

    def add(self, doc: int, text: str) -> None:
        """Index ``text`` as document ``doc``, which must be the next slot."""
        if doc != len(self._length):
            raise ValueError(f"documents are appended in order: expected {len(self._length)}, got {doc}")
        counts: dict[str, int] = {}
        for term in tokenize(text):
            counts[term] = counts.get(term, 0) + 1
        for term, tf in counts.items():
            tid = self._terms.get(term)
            if tid is None:
                tid = self._terms[term] = len(self._docs)
                self._docs.append(array("i"))
                self._tfs.append(array("H"))
            self._docs[tid].append(doc)
            self._tfs[tid].append(min(tf, 65535))
        self._label.append(self._label_term(text))
        n = float(sum(counts.values()))
        self._length.append(n)
        self._deleted.append(0)
        self._live_length += n
        self._norm = None

    def _label_term(self, text: str) -> int:
        m = _LABEL.match(text)
        terms = tokenize(m.group(1)) if m else []
        return self._terms.get(terms[0], -1) if terms else -1

    def label_match(self, query: str) -> np.ndarray:
        """True for slots whose speaker label (the "Name:" opening the text)
        is a word of ``query``: "What did Caroline research?" names whose
        turns hold the answer. One vectorised membership test over slots."""
        labels = np.frombuffer(self._label, dtype=np.int32)
        tids = [t for t in (self._terms.get(w) for w in set(tokenize(query))) if t is not None]
        if not tids or not len(labels):
            return np.zeros(len(labels), dtype=bool)
        hit = np.isin(labels, np.array(tids, dtype=np.int32))
        if self._n_deleted:
            hit &= np.frombuffer(self._deleted, dtype=np.int8) == 0
        return hit

    def remove(self, doc: int) -> None:
        """Mark ``doc`` removed; it scores 0 from now on. Removing twice is a no-op."""
        if not 0 <= doc < len(self._length):
            raise IndexError(f"no document {doc} (index holds {len(self._length)})")
        if self._deleted[doc]:
            return
        self._deleted[doc] = 1
        self._n_deleted += 1
        self._live_length -= self._length[doc]
        self._norm = None

    def _postings(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        docs, tfs = self._docs[tid], self._tfs[tid]
        hit = self._cache.get(tid)
        if hit is None or len(hit[0]) != len(docs):
            hit = (np.array(docs, dtype=np.int32), np.array(tfs, dtype=np.float32))
            self._cache[tid] = hit
        return hit

    def _length_norm(self) -> np.ndarray:
        if self._norm is None:
            length = np.frombuffer(self._length, dtype=np.float32).copy()
            avg = self._live_length / max(self.live, 1) or 1.0
            self._norm = (self.k1 * (1.0 - self.b + self.b * length / avg)).astype(np.float32)
        return self._norm

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every slot for ``query`` (float32, length ``len(self)``).

        Each distinct query term counts once: repeating a word in a question
        should not outweigh the other words (measured: no gain from query tf).
        """
        n = len(self._length)
        out = np.zeros(n, dtype=np.float32)
        live = self.live
        if live == 0:
            return out
        norm = self._length_norm()
        deleted = np.frombuffer(self._deleted, dtype=np.int8).astype(bool) if self._n_deleted else None
        for term in dict.fromkeys(tokenize(query)):
            tid = self._terms.get(term)
            if tid is None:
                continue
            docs, tf = self._postings(tid)
            df = len(docs) if deleted is None else int(np.count_nonzero(~deleted[docs]))
            if df == 0:
                continue
            idf = np.log1p((live - df + 0.5) / (df + 0.5))
            out[docs] += (idf * (self.k1 + 1.0)) * tf / (tf + norm[docs])
        if deleted is not None:
            out[deleted] = 0.0
        return out


# --------------------------------------------------------------- fusion --

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
    #: Weight of the caller's recency prior; off because recency did not help
    #: on LoCoMo (R@10 -0.01 to -0.03 for weights 0.1-0.2), where old facts
    #: are asked about as often as new ones.
    recency: float = 0.0


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


def recency_prior(event_time: np.ndarray, now: float, half_life_days: float = 90.0) -> np.ndarray:
    """exp-decay weight in (0, 1] of each row's age (seconds since epoch in, 1 = said now)."""
    age_days = np.maximum(now - event_time, 0.0) / 86400.0
    return np.exp2(-age_days / half_life_days).astype(np.float32)


def fuse(dense: np.ndarray, keyword: np.ndarray, session: np.ndarray | None = None, *,
         alive: np.ndarray | None = None, recency: np.ndarray | None = None,
         label: np.ndarray | None = None, weights: FusionWeights = DEFAULT_WEIGHTS) -> np.ndarray:
    """One ranking score per row from dense cosines and BM25 scores.

    ``session`` holds an integer code per row (rows in capture order) and
    enables the two context terms; ``alive`` is False for rows that must
    neither rank nor lend context (forgotten memories); ``recency`` is a prior
    such as :func:`recency_prior`; ``label`` is True for rows whose speaker
    the query names (:meth:`KeywordIndex.label_match`). Returns float32
    scores, higher is better, ``-inf`` for rows that are not alive.

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
    if recency is not None and weights.recency:
        score = score + weights.recency * np.asarray(recency, dtype=np.float32)
    if weights.window_weight and weights.window > 0 and n > 1:
        # Context only ever adds, so floor at 0 first: a row below the crowd
        # must not drag its neighbours down, and a dead row lends nothing.
        lend = np.maximum(score, 0) if alive is None else np.where(alive, np.maximum(score, 0), 0)
        score = score + weights.window_weight * window_max(lend, session, weights.window)
    if label is not None and weights.label:
        score = score + np.float32(weights.label) * label
    if alive is not None:
        score = np.where(alive, score, np.float32(-np.inf))
    return score.astype(np.float32, copy=False)


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
    cand = np.arange(n)
    if k < n:
        kth = np.partition(scores, n - k)[n - k]  # values only: faster than argpartition
        # Keep every row tied with the k-th best so ties resolve by row order.
        cand = np.flatnonzero(scores >= kth)
    return cand[np.argsort(-scores[cand], kind="stable")][:k]

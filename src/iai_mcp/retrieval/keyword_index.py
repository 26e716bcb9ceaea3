"""The incremental BM25 keyword index recall scores every row with.

Hand-written on purpose: ``add`` must be an append (captures arrive one at a
time into a store of 100k rows) and a query must score every row in a few
milliseconds with numpy; the measured figures are in the class docstring.
"""
from __future__ import annotations

import threading
from array import array
from collections import Counter
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

import numpy as np

from iai_mcp.retrieval.packed import Pieces
from iai_mcp.retrieval.text import speaker_label, tokenize

#: What ``KeywordIndex._postings`` keeps of the postings it made arrays of.
CACHE_BYTES = 4 << 20


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
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # insertion order = recency
        self._cache_bytes = 0
        self._cache_lock = threading.Lock()
        self._length = array("f")        # per doc: number of index terms
        self._deleted = array("b")
        self._n_deleted = 0
        self._live_length = 0.0
        self._norm: np.ndarray | None = None  # per-doc BM25 length norm, lazily
        self._label = array("i")         # per doc: term id of its speaker label, -1 if none
        # Term ids that label some doc, as of the first ``_labels_seen`` docs (``_labelling``).
        self._labels: set[int] = set()
        self._labels_seen = 0

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
        terms = tokenize(text)
        # Counter counts in C, and the locals spare an attribute lookup per
        # term: this loop is most of a cold start's index build (10k records).
        counts = Counter(terms)
        ids, docs, tfs = self._terms, self._docs, self._tfs
        for term, tf in counts.items():
            tid = ids.get(term)
            if tid is None:
                tid = ids[term] = len(docs)
                docs.append(array("i"))
                tfs.append(array("H"))
            docs[tid].append(doc)
            tfs[tid].append(tf if tf < 65535 else 65535)
        self._label.append(self._label_term(text))
        n = float(len(terms))
        self._length.append(n)
        self._deleted.append(0)
        self._live_length += n
        self._norm = None

    def export(self) -> tuple[dict[str, Any], dict[str, np.ndarray | Pieces]]:
        """The whole index as plain data, ``(meta, arrays)`` (``retrieval.packed``
        writes them): terms in id order, postings concatenated per term with
        their offsets, and the per-document arrays. ``restored`` reads it back.

        The postings (most of it: 13 MB at 100k records) are ``Pieces`` read
        term by term as they are written, not a copy made here: postings only
        ever grow at their end (``add``), so what this call counted is
        still their start when the writer reads them, even while documents are
        added meanwhile (a writer outside the caller's lock)."""
        docs, tfs, terms = self._docs, self._tfs, list(self._terms)
        counts = np.fromiter(map(len, docs), dtype=np.int64, count=len(terms))
        offsets = np.zeros(len(terms) + 1, dtype=np.int64)
        np.cumsum(counts, out=offsets[1:])
        sizes = counts.tolist()
        arrays = {
            "offsets": offsets,
            "docs": Pieces("<i4", int(offsets[-1]), _heads(docs, sizes)),
            "tfs": Pieces("<u2", int(offsets[-1]), _heads(tfs, sizes)),
            "length": np.array(self._length, dtype=np.float32),
            "deleted": np.array(self._deleted, dtype=np.int8),
            "label": np.array(self._label, dtype=np.int32),
        }
        return {"k1": self.k1, "b": self.b, "terms": terms}, arrays

    @classmethod
    def restored(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> KeywordIndex:
        """The index ``export`` described, equal to it in every score: term ids,
        postings and removals as they were, the live length summed again (a
        sum of whole numbers, so exactly what the appends accumulated).
        ValueError when the parts do not fit together."""
        terms, offsets = meta["terms"], arrays["offsets"]
        n = len(arrays["length"])
        if not (len(offsets) == len(terms) + 1 and offsets[0] == 0 and np.all(np.diff(offsets) >= 0)
                and offsets[-1] == len(arrays["docs"]) == len(arrays["tfs"])
                and len(arrays["deleted"]) == len(arrays["label"]) == n
                and len(set(terms)) == len(terms) and all(isinstance(t, str) for t in terms)):
            raise ValueError("the keyword index's parts do not fit together")
        if len(arrays["docs"]) and not (0 <= int(arrays["docs"].min()) and int(arrays["docs"].max()) < n):
            raise ValueError("a posting names a document the index does not hold")
        if n and not (-1 <= int(arrays["label"].min()) and int(arrays["label"].max()) < len(terms)):
            raise ValueError("a speaker label names a term the index does not hold")
        index = cls(float(meta["k1"]), float(meta["b"]))
        index._terms = {term: tid for tid, term in enumerate(terms)}
        # One array per term, as ``add`` keeps them: slices of one buffer each.
        bounds = offsets.tolist()
        # Byte views: frombytes takes only those, and the buffers are never copied whole.
        docs, tfs = memoryview(arrays["docs"]).cast("B"), memoryview(arrays["tfs"]).cast("B")
        for lo, hi in pairwise(bounds):
            postings, counts = array("i"), array("H")
            postings.frombytes(docs[lo * 4:hi * 4])
            counts.frombytes(tfs[lo * 2:hi * 2])
            index._docs.append(postings)
            index._tfs.append(counts)
        index._length = array("f", arrays["length"].tobytes())
        deleted = arrays["deleted"] != 0
        index._deleted = array("b", deleted.astype(np.int8).tobytes())
        index._n_deleted = int(np.count_nonzero(deleted))
        index._live_length = float(np.sum(arrays["length"][~deleted], dtype=np.float64))
        index._label = array("i", arrays["label"].tobytes())
        return index

    def _label_term(self, text: str) -> int:
        label = speaker_label(text)
        terms = tokenize(label) if label else []
        return self._terms.get(terms[0], -1) if terms else -1

    def _labelling(self, labels: np.ndarray) -> set[int]:
        """The term ids that label some doc: a cue with none of them skips
        the membership test over every slot (0.38 ms at 100k docs, line-profiled)."""
        if self._labels_seen < len(labels):
            new = labels[self._labels_seen:]
            self._labels.update(np.unique(new[new >= 0]).tolist())
            self._labels_seen = len(labels)
        return self._labels

    def label_match(self, query: str) -> np.ndarray:
        """True for slots whose speaker label (the "Name:" opening the text)
        is a word of ``query``: "What did Caroline research?" names whose
        turns hold the answer. One vectorised membership test over slots."""
        labels = np.frombuffer(self._label, dtype=np.int32)
        labelling = self._labelling(labels)
        tids = [t for t in (self._terms.get(w) for w in set(tokenize(query))) if t in labelling]
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

    def restore(self, doc: int) -> None:
        """Undo ``remove(doc)``: it scores again, with the postings it always
        kept (a forgotten memory that was restored). Restoring a document
        that is not removed is a no-op."""
        if not 0 <= doc < len(self._length):
            raise IndexError(f"no document {doc} (index holds {len(self._length)})")
        if not self._deleted[doc]:
            return
        self._deleted[doc] = 0
        self._n_deleted -= 1
        self._live_length += self._length[doc]
        self._norm = None

    def removed(self, doc: int) -> bool:
        return bool(self._deleted[doc])

    def removed_mask(self) -> np.ndarray:
        """Which slots are removed (a bool copy: the index stays free to grow)."""
        return np.frombuffer(self._deleted, dtype=np.int8).astype(bool)

    def _postings(self, tid: int) -> tuple[np.ndarray, np.ndarray]:
        """A term's postings as arrays, from a cache of the recently scored
        ones bounded by ``CACHE_BYTES`` (least recently used out first):
        unbounded, it grew toward a second copy of every posting a long-lived
        daemon was ever asked about (13 MB after 200 recalls at 100k)."""
        docs, tfs = self._docs[tid], self._tfs[tid]
        with self._cache_lock:
            hit = self._cache.pop(tid, None)
            if hit is not None and len(hit[0]) == len(docs):
                self._cache[tid] = hit  # most recently used: last
                return hit
            if hit is not None:
                self._cache_bytes -= hit[0].nbytes + hit[1].nbytes
        hit = (np.array(docs, dtype=np.int32), np.array(tfs, dtype=np.float32))
        size = hit[0].nbytes + hit[1].nbytes
        with self._cache_lock:
            while self._cache and self._cache_bytes + size > CACHE_BYTES:
                old = self._cache.pop(next(iter(self._cache)))
                self._cache_bytes -= old[0].nbytes + old[1].nbytes
            if size <= CACHE_BYTES and tid not in self._cache:
                self._cache[tid] = hit
                self._cache_bytes += size
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


#: About how many bytes of postings ``export``'s pieces hold each.
EXPORT_CHUNK = 1 << 20


def _heads(postings: list[array], sizes: list[int]) -> Iterator[bytearray]:
    """The first ``sizes[i]`` items of each ``postings[i]``, in order, as
    byte chunks of about ``EXPORT_CHUNK``: a slice is a copy made in one step (a
    buffer view would stop ``add`` from growing the array meanwhile)."""
    out = bytearray()
    for held, size in zip(postings, sizes):
        out += held[:size]
        if len(out) >= EXPORT_CHUNK:
            yield out
            out = bytearray()
    if out:
        yield out

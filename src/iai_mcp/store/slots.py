"""The records of an open store, in memory: one slot per record, in capture
order. A slot holds the row, its LanceDB ``seq``, its vector as int8 codes
(a row of one int8 matrix, with a scale and an error bound:
``retrieval.quantized``), the exact vector's norm, its state code, and where
its sealed exact vector sits in ``sealed`` (``store.sealed_vectors``); the
slot of a record is found by id and by text.

At 100k records the codes take 38 MB (+1/8 headroom: 43 MB) where the
float32 matrix took 154 MB (173 MB); per-row arrays add 1.8 MB.

Slots are never removed while the store is open: a purged record's slot is
emptied (a blank row, a zero vector, ``PURGED``), so every array keeps its
alignment and a reader holding them sees a consistent view. Growth swaps
whole arrays for the same reason, all at once (``arrays``, one value): a
scan reads it once.
"""
from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from iai_mcp.errors import CorruptData
from iai_mcp.heap import return_freed_heap
from iai_mcp.retrieval.quantized import quantize
from iai_mcp.store.sealed_vectors import SealedVectors
from iai_mcp.store.sharing import SharedValues
from iai_mcp.store.slot_index import SlotIndex
from iai_mcp.types import EMBED_DIM, MemoryRow

#: ``states()`` codes: a row's ``state``, and ``PURGED`` for a slot whose
#: record was purged while the store was open (its slot stays, emptied, so
#: that every array keeps its alignment until the next open).
STATE_CODES: dict[str, int] = {"active": 0, "hidden": 1, "superseded": 2}
PURGED = 3
#: Norms are clamped to it: recall divides by them, and a zero vector must score 0, not NaN.
MIN_NORM = 1e-12
#: Rows per block when the vectors are quantised at open. Each float32
#: temporary of a block (98 KB) stays under glibc's mmap threshold (128 KB),
#: so the heap reuses them: with 2048-row blocks (3 MB temporaries) the open
#: of the 100k bench store kept 22 MB more resident (RssAnon 303 MB vs 281 MB).
_BLOCK_ROWS = 64
#: The per-slot arrays, swapped together on growth: name -> dtype.
_PER_ROW = {"scales": np.float32, "slack": np.float32, "norms": np.float32, "states": np.int8,
            "where": np.int64}


class SlotArrays(NamedTuple):
    """The codes and the ``_PER_ROW`` arrays, published as one value: a
    reader that takes ``Slots.arrays`` once never pairs one generation's
    codes with another's scales, whatever growth does meanwhile."""

    codes: np.ndarray
    scales: np.ndarray
    slack: np.ndarray
    norms: np.ndarray
    states: np.ndarray
    where: np.ndarray


def _arrays(capacity: int) -> SlotArrays:
    """Zeroed ``codes`` and the ``_PER_ROW`` arrays for ``capacity`` slots."""
    codes = np.zeros((capacity, EMBED_DIM), dtype=np.int8)
    return SlotArrays(codes, *(np.zeros(capacity, dtype=dtype) for dtype in _PER_ROW.values()))


def _array(name: str) -> property:
    """``Slots.<name>``: that array of the current ``arrays`` (changed in place by writers)."""
    return property(lambda self: getattr(self.arrays, name), doc=f"``arrays.{name}``")


def _ranked(code: int) -> bool:
    """Whether recall ranks a row in this state (forgotten and purged ones it does not)."""
    return code != STATE_CODES["hidden"] and code != PURGED


def _headroom(rows: int) -> int:
    """Spare rows: an eighth, so growth copies rarely without holding
    twice the codes (they are most of a large store's memory)."""
    return max(1024, rows // 8)


class Slots:
    """The in-memory table; the store reads and changes it under its lock."""

    codes = _array("codes")
    scales = _array("scales")
    slack = _array("slack")
    norms = _array("norms")
    states = _array("states")
    where = _array("where")

    def __init__(self, capacity: int = 0, sealed: SealedVectors | None = None) -> None:
        self.rows: list[MemoryRow] = []
        rows = self.rows  # never replaced: the indexes read each slot's key from it
        # LanceDB seq of each row, parallel to rows: 8 bytes a row, not a list of int objects (36).
        self.seqs: array[int] = array("q")
        # Slot numbers alone, the keys read from the rows (store.slot_index):
        # no second copy or digest of an id or a text.
        self.index_of = SlotIndex(rows, "id", capacity)
        self.by_text = SlotIndex(rows, "literal_surface", capacity)
        self.shared = SharedValues()
        self.sealed = sealed if sealed is not None else SealedVectors()
        #: ``(rows, sum of their unit vectors)`` over the rows recall ranks
        #: (neither hidden nor purged), in float64: the exact mean cosine of
        #: a query in one dot product, which the codes alone would miss by
        #: their mean error. Replaced whole, so a reader sees a matching pair.
        self.alive_sum: tuple[int, np.ndarray] = (0, np.zeros(EMBED_DIM, dtype=np.float64))
        self.arrays = _arrays(capacity)

    @classmethod
    def load(cls, expected: int, opened: Iterable[tuple[MemoryRow, np.ndarray, bytes, int]],
             directory: Path | None = None) -> Slots:
        """Slots of ``opened`` ``(row, vector, sealed vector, seq)``, sized for
        ``expected`` rows and headroom, in ``seq`` order: vectors quantised a
        block at a time (never a float32 copy of them all), sealed vectors
        into a ``SealedVectors`` file in ``directory``."""
        slots = cls(expected + _headroom(expected), SealedVectors(directory))
        block = np.zeros((_BLOCK_ROWS, EMBED_DIM), dtype=np.float32)
        blobs: list[bytes] = []
        rows: list[MemoryRow] = []
        seqs: array[int] = array("q")  # not a list: 8 bytes a row, not an int object each
        done = 0
        for row, vec, blob, seq in opened:
            if len(rows) == len(slots.codes):  # rows written while we counted
                slots._grow(len(rows) + _headroom(len(rows)))
            block[len(rows) - done] = vec
            blobs.append(blob)
            # Shared as each row arrives: the copies it drops free heap the next
            # row's decoding reuses. Shared after the loop, they left their holes
            # all over the heap and RSS barely moved.
            rows.append(slots.shared.share(row))
            seqs.append(seq)
            if len(rows) - done == _BLOCK_ROWS:
                slots._fill(done, block, rows[done:], blobs)
                done = len(rows)
        slots._fill(done, block[: len(rows) - done], rows[done:], blobs)
        n = len(rows)
        order = np.argsort(np.frombuffer(seqs, dtype=np.int64), kind="stable")
        if n and np.any(order != np.arange(n)):
            # Rewritten rows sit in newer fragments: restore capture order.
            for name in ("codes", *_PER_ROW):
                values = getattr(slots, name)
                values[:n] = values[order]
            rows = [rows[i] for i in order]
            seqs = array("q", np.frombuffer(seqs, dtype=np.int64)[order].tobytes())
        slots._remember(rows, seqs)
        return_freed_heap()  # the decrypted rows' heap: about 80 MB at 100k records
        return slots

    def _fill(self, lo: int, vectors: np.ndarray, rows: list[MemoryRow], blobs: list[bytes]) -> None:
        """A block of the open: its blobs written, its vectors quantised; ``blobs`` emptied."""
        if blobs:
            first = self.sealed.extend(blobs)
            self.where[lo:lo + len(blobs)] = np.arange(first, first + len(blobs))
            blobs.clear()
        self._quantize(lo, vectors, rows)

    def _quantize(self, lo: int, vectors: np.ndarray, rows: list[MemoryRow]) -> None:
        hi = lo + len(vectors)
        self.norms[lo:hi] = np.maximum(np.linalg.norm(vectors, axis=1), MIN_NORM)
        self.codes[lo:hi], self.scales[lo:hi], self.slack[lo:hi] = quantize(vectors, self.norms[lo:hi])
        alive = np.array([_ranked(STATE_CODES[row.state]) for row in rows], dtype=bool)
        if alive.any():
            units = vectors[alive] / self.norms[lo:hi][alive, None]
            self._count_alive(int(alive.sum()), units.sum(axis=0, dtype=np.float64))

    def _count_alive(self, rows: int, units: np.ndarray) -> None:
        count, total = self.alive_sum
        self.alive_sum = (count + rows, total + units)

    def _unit(self, index: int, vector: np.ndarray) -> np.ndarray:
        return np.asarray(vector, dtype=np.float64) / float(self.norms[index])

    def _remember(self, rows: list[MemoryRow], seqs: Iterable[int]) -> None:
        """New slots for ``rows`` (with their ``seqs``), found by id and text."""
        first = len(self.rows)
        self.seqs.extend(seqs)
        self.rows.extend(rows)
        states = self.states
        states[first:len(self.rows)] = [STATE_CODES[row.state] for row in rows]
        self.index_of.enter(first)
        # find_identical answers with an active record when there is one: a
        # text said again after its record was forgotten or superseded is
        # stored anew (core.capture), and its repeats fold into the new one.
        active = STATE_CODES["active"]
        self.by_text.enter(first, keep=lambda current: states[current] == active)

    def _grow(self, capacity: int) -> None:
        fresh = _arrays(capacity)
        for values, old in zip(fresh, self.arrays):
            values[: len(old)] = old
        # Swap all arrays at once, all filled first: a reader holding the old
        # ones still sees a consistent view.
        self.arrays = fresh

    def reserve(self, extra: int) -> None:
        """Room for ``extra`` more rows."""
        need = len(self.rows) + extra
        if need <= self.codes.shape[0]:
            return
        self._grow(need + _headroom(need))

    def add(self, row: MemoryRow, vector: np.ndarray, blob: bytes, seq: int) -> None:
        """A new slot (room ``reserve``d first); ``blob`` is ``vector`` sealed."""
        i = len(self.rows)
        self.where[i] = self.sealed.append(blob)
        self._quantize(i, np.asarray(vector, dtype=np.float32)[None, :], [row])
        self._remember([self.shared.share(row)], [seq])

    def exact(self, index: int, open_blob: Callable[[bytes, bytes], bytes]) -> np.ndarray:
        """Slot ``index``'s exact vector, its sealed blob opened with
        ``open_blob(blob, associated data)`` (a purged slot's is zeros)."""
        return self.exact_many(np.array([index]), open_blob)[0]

    def exact_many(self, indexes: np.ndarray, open_blob: Callable[[bytes, bytes], bytes]) -> np.ndarray:
        """``exact`` of each of ``indexes``: the slot arrays read once and the
        blobs under one lock: 60 rows of the 100k bench store in 0.24 ms
        against 0.30 ms a row at a time (p50, 2 cores under load)."""
        indexes = np.asarray(indexes, dtype=np.int64)
        out = np.zeros((len(indexes), EMBED_DIM), dtype=np.float32)
        arrays, rows = self.arrays, self.rows
        ids = [rows[i].id for i in indexes.tolist()]
        # The state after the row: a purge marks the slot PURGED before it blanks the row.
        states = arrays.states[indexes].tolist()
        wanted = [j for j, state in enumerate(states) if state != PURGED]
        blobs = self.sealed.read_many(arrays.where[indexes[wanted]].tolist())
        for j, blob in zip(wanted, blobs):
            try:
                out[j] = np.frombuffer(open_blob(blob, b"vec:" + str(ids[j]).encode()), np.float32)
            except CorruptData:
                if self.states[indexes[j]] != PURGED:  # else purged while we read it (a growth may have swapped the arrays)
                    raise
        return out

    def put(self, index: int, row: MemoryRow, vector: np.ndarray) -> None:
        """A rewritten row in its slot (same id, text and ``vector``, its exact one)."""
        was, now = _ranked(self.states[index]), _ranked(STATE_CODES[row.state])
        self.rows[index] = self.shared.share(row)
        self.states[index] = STATE_CODES[row.state]
        if was != now:  # forgotten or restored
            self._count_alive(1 if now else -1, self._unit(index, vector) * (1 if now else -1))

    def empty(self, indexes: list[int], blank: MemoryRow, vectors: np.ndarray) -> None:
        """Empty the slots of purged records (``vectors``: their exact ones):
        ``blank`` row, zero vector (its sealed copy erased), ``PURGED``;
        another record with the same text then answers by text."""
        lost_texts = set()
        for i, vector in zip(indexes, vectors):
            row = self.rows[i]
            if _ranked(self.states[i]):
                self._count_alive(-1, -self._unit(i, vector))
            # PURGED first: a reader that then finds the blank row or the
            # erased blob checks the state and reads a zero vector.
            self.states[i] = PURGED
            self.index_of.pop(row.id, None)
            key = row.literal_surface
            if self.by_text.get(key) == i:
                del self.by_text[key]
                lost_texts.add(row.literal_surface)
            self.rows[i] = blank
            self.sealed.erase(int(self.where[i]))
            self.codes[i], self.scales[i], self.slack[i], self.norms[i] = 0, 0.0, 0.0, MIN_NORM
        if lost_texts:
            for j, row in enumerate(self.rows):
                if row.literal_surface in lost_texts and self.states[j] != PURGED:
                    self.by_text.setdefault(row.literal_surface, j)

"""The records of an open store, in memory: one slot per record, in capture
order. A slot holds the row, its LanceDB ``seq``, its vector (a row of one
float32 matrix), the vector's norm and its state code; the slot of a record
is found by id and by text.

Slots are never removed while the store is open: a purged record's slot is
emptied (a blank row, a zero vector, ``PURGED``), so every array keeps its
alignment and a reader holding them sees a consistent view. Growth swaps
whole arrays for the same reason.
"""
from __future__ import annotations

from array import array
from collections.abc import Iterable
from uuid import UUID

import numpy as np

from iai_mcp.heap import return_freed_heap
from iai_mcp.store.sharing import SharedValues
from iai_mcp.types import EMBED_DIM, MemoryRow

#: ``states()`` codes: a row's ``state``, and ``PURGED`` for a slot whose
#: record was purged while the store was open (its slot stays, emptied, so
#: that every array keeps its alignment until the next open).
STATE_CODES: dict[str, int] = {"active": 0, "hidden": 1, "superseded": 2}
PURGED = 3
#: Norms are clamped to it: recall divides by them, and a zero vector must score 0, not NaN.
MIN_NORM = 1e-12
#: Rows per block when the norms are computed at open.
_NORM_ROWS = 8192


def _headroom(rows: int) -> int:
    """Spare matrix rows: an eighth, so growth copies rarely without holding
    twice the vectors (the matrix is most of a large store's memory)."""
    return max(1024, rows // 8)


class Slots:
    """The in-memory table; the store reads and changes it under its lock."""

    def __init__(self, capacity: int = 0) -> None:
        self.rows: list[MemoryRow] = []
        # LanceDB seq of each row, parallel to rows: 8 bytes a row, not a list of int objects (36).
        self.seqs: array[int] = array("q")
        self.index_of: dict[UUID, int] = {}
        # Keyed by the row's own text object: no second copy or digest of it.
        self.by_text: dict[str, int] = {}
        self.shared = SharedValues()
        self.matrix = np.zeros((capacity, EMBED_DIM), dtype=np.float32)
        self.norms = np.zeros(capacity, dtype=np.float32)
        self.states = np.zeros(capacity, dtype=np.int8)

    @classmethod
    def load(cls, expected: int, opened: Iterable[tuple[MemoryRow, np.ndarray, int]]) -> Slots:
        """Slots of ``opened`` ``(row, vector, seq)``, vectors straight into the
        matrix (sized for ``expected`` rows and headroom), in ``seq`` order."""
        matrix = np.zeros((expected + _headroom(expected), EMBED_DIM), dtype=np.float32)
        slots = cls()
        rows: list[MemoryRow] = []
        seqs: list[int] = []
        for row, vec, seq in opened:
            if len(rows) == len(matrix):  # rows written while we counted
                matrix = np.concatenate([matrix, np.zeros_like(matrix[: _headroom(len(rows))])])
            matrix[len(rows)] = vec
            # Shared as each row arrives: the copies it drops free heap the next
            # row's decoding reuses. Shared after the loop, they left their holes
            # all over the heap and RSS barely moved.
            rows.append(slots.shared.share(row))
            seqs.append(seq)
        n = len(rows)
        order = np.argsort(np.asarray(seqs, dtype=np.int64), kind="stable")
        if n and np.any(order != np.arange(n)):
            # Rewritten rows sit in newer fragments: restore capture order.
            matrix[:n] = matrix[order]
            rows = [rows[i] for i in order]
            seqs = [seqs[i] for i in order]
        slots.matrix = matrix
        slots.norms = np.zeros(len(matrix), dtype=np.float32)
        slots.states = np.zeros(len(matrix), dtype=np.int8)
        for lo in range(0, n, _NORM_ROWS):
            # By blocks: the norm of the whole matrix squares a full copy of it
            # first (154 MB at 100k records, on top of the open's peak).
            hi = min(n, lo + _NORM_ROWS)
            slots.norms[lo:hi] = np.maximum(np.linalg.norm(matrix[lo:hi], axis=1), MIN_NORM)
        for row, seq in zip(rows, seqs):
            slots._remember(row, seq)
        return_freed_heap()  # the decrypted rows' heap: about 80 MB at 100k records
        return slots

    def _remember(self, row: MemoryRow, seq: int) -> None:
        index = len(self.rows)
        self.seqs.append(seq)
        self.rows.append(row)
        self.index_of[row.id] = index
        self.states[index] = STATE_CODES[row.state]
        key = row.literal_surface
        current = self.by_text.get(key)
        # find_identical answers with an active record when there is one: a
        # text said again after its record was forgotten or superseded is
        # stored anew (core.capture), and its repeats fold into the new one.
        if current is None or self.states[current] != STATE_CODES["active"]:
            self.by_text[key] = index

    def reserve(self, extra: int) -> None:
        """Room for ``extra`` more rows."""
        need = len(self.rows) + extra
        if need <= self.matrix.shape[0]:
            return
        capacity = need + _headroom(need)
        matrix = np.zeros((capacity, EMBED_DIM), dtype=np.float32)
        norms = np.zeros(capacity, dtype=np.float32)
        states = np.zeros(capacity, dtype=np.int8)
        n = len(self.rows)
        matrix[:n] = self.matrix[:n]
        norms[:n] = self.norms[:n]
        states[:n] = self.states[:n]
        # Swap whole arrays: a reader holding the old ones still sees a consistent view.
        self.matrix, self.norms, self.states = matrix, norms, states

    def add(self, row: MemoryRow, vector: np.ndarray, seq: int) -> None:
        """A new slot (room ``reserve``d first)."""
        i = len(self.rows)
        self.matrix[i] = vector
        self.norms[i] = max(float(np.linalg.norm(vector)), MIN_NORM)
        self._remember(self.shared.share(row), seq)

    def put(self, index: int, row: MemoryRow) -> None:
        """A rewritten row in its slot (same id, text and vector)."""
        self.rows[index] = self.shared.share(row)
        self.states[index] = STATE_CODES[row.state]

    def empty(self, indexes: list[int], blank: MemoryRow) -> None:
        """Empty the slots of purged records: ``blank`` row, zero vector,
        ``PURGED``; another record with the same text then answers by text."""
        lost_texts = set()
        for i in indexes:
            row = self.rows[i]
            self.index_of.pop(row.id, None)
            key = row.literal_surface
            if self.by_text.get(key) == i:
                del self.by_text[key]
                lost_texts.add(row.literal_surface)
            self.rows[i] = blank
            self.matrix[i], self.norms[i], self.states[i] = 0.0, MIN_NORM, PURGED
        if lost_texts:
            for j, row in enumerate(self.rows):
                if row.literal_surface in lost_texts and self.states[j] != PURGED:
                    self.by_text.setdefault(row.literal_surface, j)

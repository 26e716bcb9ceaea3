"""The exact vectors, sealed, in one nameless file: where re-scoring reads them.

Memory holds each vector as int8 codes (``retrieval.quantized``); the exact
float32 vector of a candidate comes from here. Each slot's vector is the
sealed blob the records table holds (AES-GCM, bound to the record id:
nothing in clear), written at a fixed offset of a file that has no name
(``tempfile.TemporaryFile``, ``O_TMPFILE`` on Linux): it is gone when the
store closes or the process dies, so there is nothing to keep in step with
the table across runs, and the open rebuilds it from the blobs it reads
anyway. The kernel's page cache keeps the hot part in memory when there is
room, outside the process's own heap.

Measured (2 cores, shared): ``os.pread`` of one 1,564-byte blob and its
AES-GCM open: 2.4-3.1 us a vector, so re-scoring 100 candidates costs
about 0.3 ms. Fetching them from LanceDB instead costs a query per recall.

A purged slot's blob is overwritten with zeros at once (``erase``), so no
file of the store holds it after the purge.

The file takes what the vectors took in memory (1.5 KB a record: 156 MB at
100k) on the store's disk while the store is open. When the disk refuses a
write (full, or failing), the blobs move to memory and the store carries on
with one log line: a write that LanceDB has committed must reach memory.
"""
from __future__ import annotations

import os
import tempfile
import threading
from pathlib import Path
from typing import IO

from iai_mcp.errors import CorruptData
from iai_mcp.log import logger
from iai_mcp.store.crypto import NONCE_BYTES
from iai_mcp.types import EMBED_DIM

_log = logger("iai_mcp.store")
#: nonce, the float32 vector, the GCM tag.
BLOB_BYTES = NONCE_BYTES + EMBED_DIM * 4 + 16


class SealedVectors:
    """Fixed-width blobs by position; positions are handed out in order."""

    def __init__(self, directory: Path | None = None) -> None:
        self._lock = threading.Lock()
        self._next = 0
        #: The blobs, once the disk has refused them (see the module's docstring).
        self._memory: bytearray | None = None
        try:
            # In the store's directory when it may be written (its disk, its
            # permissions), else the system's temporary directory.
            self._file: IO[bytes] | None = tempfile.TemporaryFile(dir=directory)  # noqa: SIM115 (held open until close)
        except OSError as exc:
            self._file = None
            self._to_memory(exc)

    def _to_memory(self, exc: OSError) -> None:
        """Carry on with the blobs in memory (under ``_lock``)."""
        held = bytearray(self._next * BLOB_BYTES)
        if self._file is not None:
            held[:] = os.pread(self._file.fileno(), len(held), 0).ljust(len(held), b"\0")
            self._file.close()
        self._memory, self._file = held, None
        _log.warning("sealed_vectors_in_memory", error=f"{type(exc).__name__}: {exc}"[:300],
                     consequence=f"{len(held) // 2**20} MB more memory, growing 1.5 KB a record")

    def append(self, blob: bytes) -> int:
        """Write ``blob`` at the next position; returns the position."""
        return self.extend([blob])

    def extend(self, blobs: list[bytes]) -> int:
        """Write ``blobs`` at the next positions, in one write (the open
        writes a block at a time: one ``pwrite`` a record cost 0.3 s at
        100k); returns the first position."""
        for blob in blobs:
            if len(blob) != BLOB_BYTES:
                raise CorruptData(f"a sealed vector is {len(blob)} bytes, not {BLOB_BYTES}")
        data = b"".join(blobs)
        with self._lock:
            first = self._next
            if self._file is not None:
                try:
                    os.pwrite(self._file.fileno(), data, first * BLOB_BYTES)
                except OSError as exc:
                    self._to_memory(exc)
            if self._memory is not None:
                self._memory += data
            self._next += len(blobs)
        return first

    def read(self, position: int) -> bytes:
        memory, file = self._memory, self._file
        if memory is not None:
            return bytes(memory[position * BLOB_BYTES:(position + 1) * BLOB_BYTES])
        assert file is not None
        return os.pread(file.fileno(), BLOB_BYTES, position * BLOB_BYTES)

    def erase(self, position: int) -> None:
        """Zeros over the blob at ``position`` (a purged record's)."""
        with self._lock:
            if self._file is not None:
                try:
                    os.pwrite(self._file.fileno(), bytes(BLOB_BYTES), position * BLOB_BYTES)
                except OSError as exc:
                    self._to_memory(exc)
            if self._memory is not None:
                self._memory[position * BLOB_BYTES:(position + 1) * BLOB_BYTES] = bytes(BLOB_BYTES)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()

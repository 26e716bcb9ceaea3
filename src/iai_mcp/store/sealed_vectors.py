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
A write counts only once every byte is in the file: ``pwrite`` on a disk
that fills mid-write writes part and returns a short count, so the rest is
written again until done, and a call that writes nothing is the refusal.
The copy in memory is made of the blobs in hand and of the earlier ones,
each of which was written in full.
"""
from __future__ import annotations

import errno
import os
import tempfile
import threading
from pathlib import Path
from typing import IO

from iai_mcp.errors import CorruptData, StoreError
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
        """Carry on with the blobs in memory (under ``_lock``): the first
        ``_next`` were each written in full, so they are read back whole."""
        held = bytearray(self._next * BLOB_BYTES)
        unread = 0
        if self._file is not None:
            done = 0
            try:
                while done < len(held):
                    got = os.pread(self._file.fileno(), len(held) - done, done)
                    if not got:
                        break
                    held[done:done + len(got)] = got
                    done += len(got)
            except OSError:  # a failing disk: what was read stays, the rest reads as damaged
                pass
            unread = len(held) - done
            self._file.close()
        self._memory, self._file = held, None
        _log.warning("sealed_vectors_in_memory", error=f"{type(exc).__name__}: {exc}"[:300],
                     consequence=f"{len(held) // 2**20} MB more memory, growing 1.5 KB a record",
                     **({"unreadable_blobs": -(-unread // BLOB_BYTES)} if unread else {}))

    def _write(self, data: bytes, offset: int) -> None:
        """Every byte of ``data`` at ``offset`` of the file, else the blobs
        move to memory (under ``_lock``)."""
        assert self._file is not None
        view, done = memoryview(data), 0
        try:
            while done < len(view):
                wrote = os.pwrite(self._file.fileno(), view[done:], offset + done)
                if wrote <= 0:  # no progress: the disk refuses the rest
                    raise OSError(errno.ENOSPC, f"wrote {done} of {len(view)} bytes")
                done += wrote
        except OSError as exc:
            self._to_memory(exc)

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
                self._write(data, first * BLOB_BYTES)
            if self._memory is not None:
                self._memory += data
            self._next += len(blobs)
        return first

    def read(self, position: int) -> bytes:
        return self.read_many([position])[0]

    def read_many(self, positions: list[int]) -> list[bytes]:
        """The blobs at ``positions``, under one take of the lock (recall
        reads 40-80 at a time)."""
        # Under the lock: a move to memory or a close must not close the file under the read.
        with self._lock:
            if self._memory is not None:
                memory = self._memory
                return [bytes(memory[p * BLOB_BYTES:(p + 1) * BLOB_BYTES]) for p in positions]
            if self._file is None:
                raise StoreError("the store's exact vectors are closed: the store was closed; open it again")
            fd = self._file.fileno()
            return [os.pread(fd, BLOB_BYTES, p * BLOB_BYTES) for p in positions]

    def erase(self, position: int) -> None:
        """Zeros over the blob at ``position`` (a purged record's)."""
        with self._lock:
            if self._file is not None:
                self._write(bytes(BLOB_BYTES), position * BLOB_BYTES)
            if self._memory is not None:
                self._memory[position * BLOB_BYTES:(position + 1) * BLOB_BYTES] = bytes(BLOB_BYTES)

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

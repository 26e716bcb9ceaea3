"""Numpy arrays and a JSON header in one byte string: how a derived index is
persisted (``core.recall_snapshot``), with no pickle.

Layout: ``MAGIC``, the header's length (4 bytes, little-endian), the header
as UTF-8 JSON, then each array's raw little-endian bytes at the offset the
header gives, 8-byte aligned so a view needs no copy. ``unpack`` trusts
nothing it reads: a dtype outside ``DTYPES``, a shape that does not match its
byte count or bytes past the end raise ``ValueError``.
"""
from __future__ import annotations

import json
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

MAGIC = b"IAIPACK1"
#: The dtypes an array may have (little-endian, no objects).
DTYPES = frozenset({"<i4", "<i8", "<u2", "<f4", "|i1"})
_LEN = struct.Struct("<I")


Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class Pieces:
    """A 1-d array given as the bytes of consecutive pieces, produced as it
    is written (``pack_parts``): whoever packs it never holds it whole.
    ``length`` (elements) must be what the pieces add up to."""

    dtype: str  # one of DTYPES
    length: int
    pieces: Iterable[Buffer]


def pack(meta: dict[str, Any], arrays: dict[str, np.ndarray | Pieces]) -> bytes:
    """``meta`` (plain JSON) and ``arrays`` (1-d) as one byte string."""
    return b"".join(pack_parts(meta, arrays)[1])


def pack_parts(meta: dict[str, Any], arrays: dict[str, np.ndarray | Pieces]) -> tuple[int, Iterator[Buffer]]:
    """``pack``'s bytes as ``(size, parts)``: consecutive parts, the arrays'
    own memory where they are little-endian and contiguous already, and
    ``Pieces`` as they come, so a writer streams them without a joined copy.
    ValueError (while streaming) when a ``Pieces`` is not as long as it said."""
    specs: list[dict[str, Any]] = []
    chunks: list[Buffer | Pieces] = []
    offset = 0
    for name, array in arrays.items():
        if isinstance(array, Pieces):
            dtype, length, data = array.dtype, array.length, array
        else:
            data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
            if data.ndim != 1:
                raise ValueError(f"array {name!r}: {data.shape} cannot be packed")
            dtype, length, data = data.dtype.str, len(data), memoryview(data).cast("B")
        if dtype not in DTYPES:
            raise ValueError(f"array {name!r}: {dtype} cannot be packed")
        pad = -offset % 8
        chunks += [b"\0" * pad, data]
        offset += pad
        specs.append({"name": name, "dtype": dtype, "length": length, "offset": offset})
        offset += length * np.dtype(dtype).itemsize
    header = json.dumps({"meta": meta, "arrays": specs}, separators=(",", ":")).encode("utf-8")
    head = [MAGIC, _LEN.pack(len(header)), header]
    return sum(map(len, head)) + offset, _flatten(head + chunks)


def _flatten(chunks: list[Buffer | Pieces]) -> Iterator[Buffer]:
    for chunk in chunks:
        if not isinstance(chunk, Pieces):
            yield chunk
            continue
        expected, given = chunk.length * np.dtype(chunk.dtype).itemsize, 0
        for piece in chunk.pieces:
            given += memoryview(piece).nbytes
            yield piece
        if given != expected:
            raise ValueError(f"pieces gave {given} bytes for an array of {expected}")


def unpack(data: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` from ``pack``'s output; arrays are read-only views
    into ``data``. ValueError when it is not such a string."""
    start = len(MAGIC) + _LEN.size
    if len(data) < start or data[: len(MAGIC)] != MAGIC:
        raise ValueError("not a packed index (wrong magic)")
    (size,) = _LEN.unpack_from(data, len(MAGIC))
    if start + size > len(data):
        raise ValueError("the packed header runs past the end")
    header = json.loads(data[start:start + size].decode("utf-8"))
    body = memoryview(data)[start + size:]
    if not isinstance(header, dict) or not isinstance(header.get("meta"), dict):
        raise ValueError("the packed header is not an object with a meta object")
    arrays: dict[str, np.ndarray] = {}
    for spec in header.get("arrays", []):
        dtype, length, offset = spec["dtype"], spec["length"], spec["offset"]
        if dtype not in DTYPES or not (isinstance(length, int) and isinstance(offset, int)):
            raise ValueError(f"array {spec.get('name')!r}: bad dtype or length")
        end = offset + length * np.dtype(dtype).itemsize
        if not 0 <= offset <= end <= len(body):
            raise ValueError(f"array {spec.get('name')!r} runs past the end")
        arrays[str(spec["name"])] = np.frombuffer(body[offset:end], dtype=dtype)
    return header["meta"], arrays

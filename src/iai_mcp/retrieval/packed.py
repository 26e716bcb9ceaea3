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
from typing import Any

import numpy as np

MAGIC = b"IAIPACK1"
#: The dtypes an array may have (little-endian, no objects).
DTYPES = frozenset({"<i4", "<i8", "<u2", "<f4", "|i1"})
_LEN = struct.Struct("<I")


def pack(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """``meta`` (plain JSON) and ``arrays`` (1-d) as one byte string."""
    return b"".join(pack_parts(meta, arrays))


def pack_parts(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> list[bytes | memoryview]:
    """``pack``'s bytes as consecutive parts, the arrays' own memory where
    they are little-endian and contiguous already (a writer streams them
    without a joined copy)."""
    specs: list[dict[str, Any]] = []
    chunks: list[bytes | memoryview] = []
    offset = 0
    for name, array in arrays.items():
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False)
        if data.dtype.str not in DTYPES or data.ndim != 1:
            raise ValueError(f"array {name!r}: {data.dtype.str} {data.shape} cannot be packed")
        pad = -offset % 8
        chunks += [b"\0" * pad, memoryview(data).cast("B")]
        offset += pad
        specs.append({"name": name, "dtype": data.dtype.str, "length": len(data), "offset": offset})
        offset += data.nbytes
    header = json.dumps({"meta": meta, "arrays": specs}, separators=(",", ":")).encode("utf-8")
    return [MAGIC, _LEN.pack(len(header)), header, *chunks]


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

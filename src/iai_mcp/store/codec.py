"""Rows to bytes and back: what gets sealed for one record, and the sealing."""
from __future__ import annotations

import json
from datetime import datetime
from typing import Any
from uuid import UUID

import numpy as np

from iai_mcp.errors import CorruptData
from iai_mcp.store.crypto import Cipher
from iai_mcp.store.records_table import SealedRow
from iai_mcp.types import EMBED_DIM, ROW_FIELDS, MemoryRow

_DATETIME_FIELDS = frozenset(
    {"last_reviewed", "created_at", "updated_at", "event_time", "hidden_at", "undo_until", "valid_to"}
)
_UUID_FIELDS = frozenset({"superseded_by"})


def encode_row(row: MemoryRow) -> bytes:
    values: dict[str, Any] = {}
    for name in ROW_FIELDS:
        value = getattr(row, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, UUID):
            value = str(value)
        values[name] = value
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_row(record_id: str, payload: bytes) -> MemoryRow:
    values = json.loads(payload)
    for name in _DATETIME_FIELDS:
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name])
    for name in _UUID_FIELDS:
        if values.get(name) is not None:
            values[name] = UUID(values[name])
    # Rows written before a field existed decode with its default.
    known = {name: values.get(name) for name in ROW_FIELDS}
    known["tags"] = list(known["tags"] or [])
    known["reinforcements"] = known["reinforcements"] or 0
    known["history"] = list(known["history"] or [])
    return MemoryRow(id=UUID(record_id), **known)


def seal_row(cipher: Cipher, row: MemoryRow, vector: np.ndarray, seq: int) -> SealedRow:
    """The table row of ``row``: payload and vector sealed, each bound to the id."""
    rid = str(row.id)
    aad = rid.encode()
    return SealedRow(
        id=rid,
        seq=seq,
        created_us=int(row.created_at.timestamp() * 1_000_000),
        payload=cipher.seal(encode_row(row), b"row:" + aad),
        vector=cipher.seal(vector.astype(np.float32).tobytes(), b"vec:" + aad),
    )


def open_row(cipher: Cipher, sealed: SealedRow) -> tuple[MemoryRow, np.ndarray]:
    """``seal_row`` undone; CorruptData, ValueError, KeyError or TypeError
    when it cannot be (the caller reports it and keeps the row on disk)."""
    aad = sealed.id.encode()
    row = decode_row(sealed.id, cipher.open(sealed.payload, b"row:" + aad))
    vec = np.frombuffer(cipher.open(sealed.vector, b"vec:" + aad), np.float32)
    if vec.shape != (EMBED_DIM,):
        raise CorruptData(f"vector has {vec.shape[0]} dimensions")
    return row, vec

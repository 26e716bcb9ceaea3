"""Rows to bytes and back: what gets sealed for one record."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any
from uuid import UUID

from iai_mcp.types import ROW_FIELDS, MemoryRow

_DATETIME_FIELDS = frozenset({"last_reviewed", "created_at", "updated_at", "event_time"})


def encode_row(row: MemoryRow) -> bytes:
    values: dict[str, Any] = {}
    for name in ROW_FIELDS:
        value = getattr(row, name)
        values[name] = value.isoformat() if isinstance(value, datetime) else value
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def decode_row(record_id: str, payload: bytes) -> MemoryRow:
    values = json.loads(payload)
    for name in _DATETIME_FIELDS:
        if values.get(name) is not None:
            values[name] = datetime.fromisoformat(values[name])
    known = {name: values.get(name) for name in ROW_FIELDS}
    known["tags"] = list(known["tags"] or [])
    known["reinforcements"] = known["reinforcements"] or 0
    return MemoryRow(id=UUID(record_id), **known)


def text_key(text: str) -> bytes:
    # Only ever held in memory; on disk the text exists sealed and nowhere else.
    return hashlib.sha256(text.encode("utf-8")).digest()

"""Lifecycle history items: ``{ts, action, session_id, detail}``, sealed with
their row (``MemoryRow.history``). One constructor, so capture, forget,
restore, update and purge write the same shape."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from iai_mcp.types import HistoryItem


def history_item(action: str, now: datetime, *, session_id: str | None = None, detail: Any = None) -> HistoryItem:
    """One history item; ``detail`` is a short text or a small JSON object."""
    return {"ts": now.isoformat(), "action": action, "session_id": session_id, "detail": detail}

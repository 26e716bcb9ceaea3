"""Typed reads of a method's parameters, and the limits every method enforces.

Shared by ``core`` (memory methods) and ``admin`` (stats, export, import,
compaction, session packs): each check fails with an ``InvalidInput`` whose
message names the parameter and what it should be, before anything is
written.
"""
from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from uuid import UUID

import numpy as np

from iai_mcp.core.capture import CaptureRequest
from iai_mcp.errors import InvalidInput, LimitExceeded
from iai_mcp.types import EMBED_DIM, ROLES, TIERS, MemoryRow, parse_time

MAX_TEXT_CHARS = 100_000
MAX_CUE_CHARS = 10_000
MAX_K = 200
MAX_BUDGET_TOKENS = 100_000
MAX_TAGS = 64
MAX_TAG_CHARS = 128
MAX_ID_CHARS = 256
MAX_PAGE = 1000
MAX_PROVENANCE_PER_RECORD = 10_000
SESSION_PACK_TOKENS = 3000

_MISSING = object()


class Params:
    """Typed reads of a method's parameters, each failing with a message that
    names the parameter and what it should be."""

    def __init__(self, method: str, params: Any, allowed: set[str]) -> None:
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise InvalidInput(f"{method}: params must be an object, got {type(params).__name__}")
        unknown = set(params) - allowed
        if unknown:
            raise InvalidInput(
                f"{method}: unknown parameter(s) {sorted(map(str, unknown))}; "
                f"accepted: {sorted(allowed)}"
            )
        self.method = method
        self.values = params

    def _get(self, name: str, required: bool) -> Any:
        value = self.values.get(name, _MISSING)
        if value is _MISSING or value is None:
            if required:
                raise InvalidInput(f"{self.method}: parameter {name!r} is required")
            return _MISSING
        return value

    def text(self, name: str, *, required: bool = False, max_chars: int = MAX_ID_CHARS,
             default: str | None = None, nonempty: bool = False) -> str | None:
        value = self._get(name, required)
        if value is _MISSING:
            return default
        if not isinstance(value, str):
            raise InvalidInput(f"{self.method}: {name!r} must be a string, got {type(value).__name__}")
        if "\x00" in value:
            raise InvalidInput(f"{self.method}: {name!r} must not contain NUL characters")
        if not _valid_unicode(value):
            raise InvalidInput(f"{self.method}: {name!r} must be valid Unicode (it has a lone surrogate)")
        if nonempty and not value.strip():
            raise InvalidInput(f"{self.method}: {name!r} must not be empty")
        if len(value) > max_chars:
            raise LimitExceeded(f"{self.method}: {name!r} is {len(value)} characters; the maximum is {max_chars}")
        return value

    def integer(self, name: str, default: int, low: int, high: int) -> int:
        value = self._get(name, False)
        if value is _MISSING:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidInput(f"{self.method}: {name!r} must be an integer, got {type(value).__name__}")
        if value < low:
            raise InvalidInput(f"{self.method}: {name!r} must be at least {low}")
        if value > high:
            raise LimitExceeded(f"{self.method}: {name!r} is {value}; the maximum is {high}")
        return value

    def flag(self, name: str, default: bool = False) -> bool:
        value = self._get(name, False)
        if value is _MISSING:
            return default
        if not isinstance(value, bool):
            raise InvalidInput(f"{self.method}: {name!r} must be true or false")
        return value

    def choice(self, name: str, options: frozenset[str], default: str | None) -> str | None:
        value = self.text(name, default=default)
        if value is not None and value not in options:
            raise InvalidInput(f"{self.method}: {name!r} must be one of {sorted(options)}, got {value!r}")
        return value

    def tags(self, name: str = "tags") -> tuple[str, ...]:
        value = self._get(name, False)
        if value is _MISSING:
            return ()
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            raise InvalidInput(f"{self.method}: {name!r} must be a list of strings")
        if len(value) > MAX_TAGS:
            raise LimitExceeded(f"{self.method}: at most {MAX_TAGS} tags")
        for tag in value:
            if not tag.strip() or len(tag) > MAX_TAG_CHARS or "\x00" in tag or not _valid_unicode(tag):
                raise InvalidInput(
                    f"{self.method}: each tag must be 1-{MAX_TAG_CHARS} characters, got {tag!r:.40}"
                )
        return tuple(value)

    def time(self, name: str) -> datetime | None:
        value = self.text(name, max_chars=64)
        if value is None:
            return None
        parsed = parse_time(value)
        if parsed is None:
            raise InvalidInput(
                f"{self.method}: {name!r} must be an ISO-8601 time such as 2026-05-08T13:56:00Z"
            )
        return parsed

    def record_id(self, name: str) -> UUID:
        value = self.text(name, required=True, max_chars=64)
        try:
            return UUID(value)
        except ValueError:
            raise InvalidInput(f"{self.method}: {name!r} must be a record id (a UUID)") from None

    def array(self, name: str, *, max_items: int) -> list[Any]:
        value = self._get(name, True)
        if not isinstance(value, list):
            raise InvalidInput(f"{self.method}: {name!r} must be a list, got {type(value).__name__}")
        if len(value) > max_items:
            raise LimitExceeded(
                f"{self.method}: {name!r} has {len(value)} items; send at most {max_items} per call"
            )
        return value

    def vector(self, name: str) -> np.ndarray | None:
        value = self._get(name, False)
        if value is _MISSING:
            return None
        vec = None
        if (
            isinstance(value, (list, tuple))
            and len(value) == EMBED_DIM
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value)
        ):
            # Checked after the cast: an int past float range, or a float past
            # float32 range, would otherwise become inf and NaN scores.
            with np.errstate(over="ignore"):
                try:
                    vec = np.asarray(value, dtype=np.float32)
                except OverflowError:
                    vec = None
        if vec is None or not np.all(np.isfinite(vec)):
            raise InvalidInput(f"{self.method}: {name!r} must be a list of {EMBED_DIM} finite numbers")
        return vec


def _valid_unicode(value: str) -> bool:
    # A lone surrogate (possible in a Python str, never in UTF-8) would fail
    # later, mid-write, as a UnicodeEncodeError.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def row_summary(row: MemoryRow) -> dict[str, Any]:
    return {
        "record_id": str(row.id),
        "literal_surface": row.literal_surface,
        "tier": row.tier,
        "tags": list(row.tags),
        "session_id": row.session_id,
        "role": row.role,
        "ts": row.said_at.isoformat(),
    }



CAPTURE_PARAMS = frozenset({
    "text", "session_id", "role", "cue", "tier", "tags", "ts", "pinned", "language",
})


def capture_request(p: Params) -> CaptureRequest:
    return CaptureRequest(
        text=p.text("text", required=True, max_chars=MAX_TEXT_CHARS, nonempty=True),  # type: ignore[arg-type]
        session_id=p.text("session_id"),
        role=p.choice("role", ROLES, None),
        cue=p.text("cue", max_chars=MAX_CUE_CHARS),
        tier=p.choice("tier", TIERS, "episodic"),  # type: ignore[arg-type]
        tags=p.tags(),
        said_at=p.time("ts"),
        pinned=p.flag("pinned"),
        language=p.text("language", default="en", max_chars=32, nonempty=True),  # type: ignore[arg-type]
    )

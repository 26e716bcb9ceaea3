"""How the ``iai-mcp`` commands print: errors and notes on stderr, results
on stdout (as JSON with ``--json``, else a few human lines)."""
from __future__ import annotations

import json
import sys
from datetime import datetime
from typing import Any

PROG = "iai-mcp"


def fail(message: str) -> None:
    """One line on stderr: an error the user can act on."""
    print(f"{PROG}: error: {' '.join(str(message).split())}", file=sys.stderr)


def note(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


def print_json(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines() or [""])


def one_line(text: str, width: int = 80) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def provenance_line(entry: dict[str, Any]) -> str:
    verb = "captured with cue" if entry.get("kind") == "capture" else "recalled by cue"
    session = entry.get("session_id")
    where = f" in session {session}" if session else ""
    return f"  {when(entry.get('ts', '?'))}  {verb} {json.dumps(entry.get('cue'), ensure_ascii=False)}{where}"


def show_captured(result: dict[str, Any]) -> None:
    print(f"{result['status']} {result['record_id']}: {result['reason']}")
    for item in result.get("related", []):
        print(f"  related {item['score']:.2f} {item['record_id']}: {one_line(item['excerpt'])}")


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 memory``, ``2 memories``, ``0 records``."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"


def when(value: Any) -> str:
    """A time for a person: ISO, to the second, in local time with its
    offset. Takes an ISO string or Unix seconds; anything else as given."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        moment = datetime.fromtimestamp(value).astimezone()
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
        moment = moment.astimezone()  # a naive time is taken as local
    else:
        return str(value)
    return moment.isoformat(sep=" ", timespec="seconds")


#: Keys whose values are times (``when``) wherever ``human`` meets them.
TIME_KEYS = {"ts", "at", "created_at", "updated_at", "valid_from", "valid_to", "hidden_at",
             "undo_until", "started_at", "said", "last_capture"}


def human(key: str, value: Any) -> str:
    """One value as a person reads it: times via ``when``, lists joined with
    commas, yes/no for booleans, objects as ``k=v`` pairs (no Python reprs)."""
    if key in TIME_KEYS or key.endswith("_at"):
        return when(value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(human(key, item) for item in value) or "(none)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={human(k, v)}" for k, v in value.items() if v is not None)
    return str(value)


def fields(record: dict[str, Any], keys: tuple[str, ...], labels: dict[str, str] | None = None) -> None:
    """``key: value`` lines for the ``keys`` of ``record`` that say something
    (None and empty lists are left out, never printed as ``None`` or ``[]``)."""
    for key in keys:
        value = record.get(key)
        if value is None or value == [] or value == "":
            continue
        print(f"{(labels or {}).get(key, key)}: {human(key, value)}")

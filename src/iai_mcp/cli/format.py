"""How the ``iai-mcp`` commands print: errors and notes on stderr, results
on stdout (as JSON with ``--json``, else a few human lines)."""
from __future__ import annotations

import json
import sys
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
    return f"  {entry.get('ts', '?')}  {verb} {json.dumps(entry.get('cue'), ensure_ascii=False)}{where}"


def show_captured(result: dict[str, Any]) -> None:
    print(f"{result['status']} {result['record_id']}: {result['reason']}")
    for item in result.get("related", []):
        print(f"  related {item['score']:.2f} {item['record_id']}: {one_line(item['excerpt'])}")


def plural(count: int, singular: str, plural_form: str | None = None) -> str:
    """``1 memory``, ``2 memories``, ``0 records``."""
    return f"{count} {singular if count == 1 else (plural_form or singular + 's')}"

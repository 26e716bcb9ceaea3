"""Reading a host's JSONL transcript from a byte offset, and turning its
turns into ``memory_import`` records, batched under the wire's limits."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from iai_mcp.daemon import wire
from iai_mcp.project import project_of
from iai_mcp.types import parse_time

#: Import batch size; the method takes at most 1000 records per call.
BATCH = 200
#: A batch is also closed at half the wire's message limit (read at call
#: time), leaving room for the envelope: 200 parts of 100k characters could
#: otherwise exceed it, be refused before sending, and stall the cursor forever.
BATCH_BYTES_FRACTION = 2
#: Turns longer than core's text limit are stored as consecutive parts.
PART_CHARS = 100_000


@dataclass(frozen=True)
class Turn:
    text: str
    role: str
    ts: str | None
    #: The working directory the host recorded with the turn (Claude Code
    #: writes ``cwd`` on every entry), so a backfill knows each turn's project.
    cwd: str | None = None


def valid_ts(value: Any) -> str | None:
    return value if parse_time(value) is not None else None


def read_turns(path: Path, offset: int, turn_of: Callable[[Any], Turn | None]) -> tuple[list[Turn], int]:
    """Turns in complete lines after byte ``offset``, and the offset after them.

    A last line without its newline may still be being written: it is left
    for the next run.
    """
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    end = data.rfind(b"\n") + 1
    turns = []
    for line in data[:end].splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # not a message we can read; the rest still counts
        turn = turn_of(entry)
        if turn is not None:
            turns.append(turn)
    return turns, offset + end


def capture_record(turn: Turn, text: str, session_id: str | None, tag: str,
                   project: str | None = None) -> dict[str, Any]:
    """The capture params of one part of a turn (kept in one place for every host)."""
    return {"text": text, "role": turn.role, "ts": turn.ts, "session_id": session_id, "tags": [tag],
            "project": project}


def records(turns: list[Turn], session_id: str | None, tag: str,
            project: str | None = None) -> Iterator[dict[str, Any]]:
    """One record per new text. A text repeated within the run is sent once:
    its later copies would reinforce the first, and if this run were replayed
    (cursor lost) they would reinforce it again instead of being skipped.
    Each turn's project is ``project`` (the Stop hook's, from its input's
    ``cwd``), else the git root of the ``cwd`` the host recorded with the turn
    (a backfill has no hook input)."""
    seen: set[str] = set()
    projects: dict[str, str] = {}  # one walk up the tree per directory, not per turn
    for turn in turns:
        own = project
        if own is None and turn.cwd:
            if turn.cwd not in projects:
                projects[turn.cwd] = project_of(turn.cwd)
            own = projects[turn.cwd]
        for i in range(0, len(turn.text), PART_CHARS):
            part = turn.text[i:i + PART_CHARS]
            if part.strip() and part not in seen:
                seen.add(part)
                yield capture_record(turn, part, session_id, tag, own)


def batch_full(batch: list[dict[str, Any]], size: int, record_size: int) -> bool:
    """Whether ``batch`` (``size`` bytes) must be sent before adding a record
    of ``record_size``: at most ``BATCH`` records, and its JSON under half of
    ``MAX_MESSAGE_BYTES`` (one part is at most ~600 kB)."""
    limit = wire.MAX_MESSAGE_BYTES // BATCH_BYTES_FRACTION
    return bool(batch) and (len(batch) >= BATCH or size + record_size > limit)


def record_size(record: dict[str, Any]) -> int:
    return len(wire.encode(record))

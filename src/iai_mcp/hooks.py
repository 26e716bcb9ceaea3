"""Claude Code integration: the two hooks and their place in settings.json.

``SessionStart`` prints a memory pack (``session_start``) that Claude Code
adds to the new session's context. ``Stop`` captures the finished turns of
the transcript verbatim (``memory_import``, one batch per call).

Each turn is captured once. A cursor per transcript remembers how far the
last run got, and every turn goes in with the transcript's session id and
the turn's own timestamp, so a turn sent again (cursor lost, transcript
rewritten) is "skipped" by capture rather than stored or reinforced twice.

``install`` merges the hooks into the user's settings without touching
anything else, after a timestamped backup; ``uninstall`` removes exactly the
entries ``install`` adds (recognised by their command: ``iai-mcp ... hook
session-start`` / ``hook stop``). Nothing here imports the store: the hook
runners get a backend from the caller.
"""
from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import stat
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from iai_mcp.daemon import wire
from iai_mcp.errors import InvalidInput
from iai_mcp.fs import write_atomic
from iai_mcp.project import project_of
from iai_mcp.types import parse_time

#: Hook event -> the ``iai-mcp hook`` subcommand that serves it.
EVENTS = {"SessionStart": "session-start", "Stop": "stop"}
CAPTURE_TAG = "claude-code"
STATE_DIR = "hook-state"
#: Import batch size; the method takes at most 1000 records per call.
BATCH = 200
#: A batch is also closed at half the wire's message limit (read at call
#: time), leaving room for the envelope: 200 parts of 100k characters could
#: otherwise exceed it, be refused before sending, and stall the cursor forever.
BATCH_BYTES_FRACTION = 2
#: Turns longer than core's text limit are stored as consecutive parts.
PART_CHARS = 100_000
#: Mode of a settings.json that ``install`` creates (an existing one keeps its own).
NEW_SETTINGS_MODE = 0o600


def default_settings_path() -> Path:
    return Path.home() / ".claude" / "settings.json"


def executable() -> str:
    """The iai-mcp command hooks should run: the script next to this
    interpreter (the same install), else the one on PATH."""
    beside = Path(sys.executable).parent / "iai-mcp"
    if beside.exists():
        return str(beside)
    return shutil.which("iai-mcp") or "iai-mcp"


def hook_commands(program: str, store: str | None = None) -> dict[str, str]:
    prefix = [program] + (["--store", store] if store else [])
    return {event: shlex.join([*prefix, "hook", sub]) for event, sub in EVENTS.items()}


def is_ours(command: Any, event: str) -> bool:
    """Whether ``command`` is the iai-mcp hook ``install`` writes for ``event``."""
    if not isinstance(command, str):
        return False
    try:
        argv = shlex.split(command)
    except ValueError:
        return False
    return (
        len(argv) >= 3
        and os.path.basename(argv[0]) == "iai-mcp"
        and argv[-2:] == ["hook", EVENTS[event]]
    )


# ----------------------------------------------------------------- settings


@dataclass
class SettingsChange:
    path: Path
    changed: bool
    settings: dict[str, Any]
    backup: Path | None = None
    notes: list[str] = field(default_factory=list)


def _load_settings(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        return {}
    try:
        settings = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise InvalidInput(f"{path} is not valid JSON ({exc}); fix it, then run this again") from None
    if not isinstance(settings, dict):
        raise InvalidInput(f"{path} does not hold a JSON object; fix it, then run this again")
    hooks = settings.get("hooks", {})
    if not isinstance(hooks, dict) or not all(isinstance(v, list) for v in hooks.values()):
        raise InvalidInput(f"{path}: 'hooks' is not an object of lists; fix it, then run this again")
    return settings


def _write_settings(change: SettingsChange) -> None:
    path = change.path
    path.parent.mkdir(parents=True, exist_ok=True)
    # The user's file keeps its mode; a new one is owner-only, since settings
    # may carry secrets (its "env" block).
    mode = NEW_SETTINGS_MODE
    if path.exists():
        stamp = datetime.now().strftime("%Y%m%dT%H%M%S%f")
        change.backup = path.with_name(f"{path.name}.iai-mcp-backup-{stamp}")
        shutil.copy2(path, change.backup)
        mode = stat.S_IMODE(change.backup.stat().st_mode)
    write_atomic(path, json.dumps(change.settings, indent=2, ensure_ascii=False) + "\n", mode=mode)


def install(path: Path, commands: Mapping[str, str], *, dry_run: bool = False) -> SettingsChange:
    """Add (or update) one hook per event; a no-op when already installed."""
    settings = _load_settings(path)
    change = SettingsChange(path, False, settings)
    hooks = settings.setdefault("hooks", {})
    for event, command in commands.items():
        groups = hooks.setdefault(event, [])
        mine = [
            hook
            for group in groups if isinstance(group, dict) and isinstance(group.get("hooks"), list)
            for hook in group["hooks"] if isinstance(hook, dict) and is_ours(hook.get("command"), event)
        ]
        if any(hook["command"] == command for hook in mine):
            continue
        if mine:  # installed from another path: point it here
            mine[0]["command"] = command
            change.notes.append(f"{event}: updated the command to {command}")
        else:
            groups.append({"matcher": "", "hooks": [{"type": "command", "command": command}]})
            change.notes.append(f"{event}: added {command}")
        change.changed = True
    if change.changed and not dry_run:
        _write_settings(change)
    return change


def uninstall(path: Path, *, dry_run: bool = False) -> SettingsChange:
    """Remove the entries ``install`` adds, and the containers it created
    that are left empty; nothing else."""
    settings = _load_settings(path)
    change = SettingsChange(path, False, settings)
    hooks = settings.get("hooks")
    if not isinstance(hooks, dict):
        return change
    for event in EVENTS:
        groups = hooks.get(event)
        if not isinstance(groups, list):
            continue
        kept_groups, removed = [], 0
        for group in groups:
            if not (isinstance(group, dict) and isinstance(group.get("hooks"), list)):
                kept_groups.append(group)
                continue
            kept = [h for h in group["hooks"] if not (isinstance(h, dict) and is_ours(h.get("command"), event))]
            removed += len(group["hooks"]) - len(kept)
            if kept or len(kept) == len(group["hooks"]):
                kept_groups.append({**group, "hooks": kept})
        if removed:
            change.changed = True
            change.notes.append(f"{event}: removed {removed} iai-mcp hook(s)")
            if kept_groups:
                hooks[event] = kept_groups
            else:
                del hooks[event]
    if change.changed and not hooks:
        del settings["hooks"]
    if change.changed and not dry_run:
        _write_settings(change)
    return change


# --------------------------------------------------------------- transcript


@dataclass(frozen=True)
class Turn:
    text: str
    role: str
    ts: str | None


def _text_of(content: Any) -> str:
    """The text of a message: a string, or its "text" blocks (tool calls,
    tool results and thinking are not conversation)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts = [
        block["text"]
        for block in content
        if isinstance(block, dict) and block.get("type") == "text" and isinstance(block.get("text"), str)
    ]
    return "\n\n".join(parts)


def _valid_ts(value: Any) -> str | None:
    return value if parse_time(value) is not None else None


def turn_of(entry: Any) -> Turn | None:
    """The conversation turn in one transcript entry, or None."""
    if not isinstance(entry, dict) or entry.get("type") not in ("user", "assistant"):
        return None
    if entry.get("isMeta") or entry.get("isSidechain"):
        return None  # notes Claude Code injects, and subagents' own conversations
    message = entry.get("message")
    if not isinstance(message, dict):
        return None
    text = _text_of(message.get("content"))
    if not text.strip():
        return None
    role = message.get("role") if message.get("role") in ("user", "assistant") else entry["type"]
    return Turn(text, role, _valid_ts(entry.get("timestamp")))


def read_turns(path: Path, offset: int = 0) -> tuple[list[Turn], int]:
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


def _records(turns: list[Turn], session_id: str | None, project: str | None = None) -> Iterator[dict[str, Any]]:
    """One record per new text. A text repeated within the run is sent once:
    its later copies would reinforce the first, and if this run were replayed
    (cursor lost) they would reinforce it again instead of being skipped."""
    seen: set[str] = set()
    for turn in turns:
        for i in range(0, len(turn.text), PART_CHARS):
            part = turn.text[i:i + PART_CHARS]
            if part.strip() and part not in seen:
                seen.add(part)
                yield {"text": part, "role": turn.role, "ts": turn.ts, "session_id": session_id,
                       "tags": [CAPTURE_TAG], "project": project}


def _batches(records: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    """Records in order, at most ``BATCH`` per batch and each batch's JSON
    under half of ``MAX_MESSAGE_BYTES`` (one part is at most ~600 kB)."""
    limit = wire.MAX_MESSAGE_BYTES // BATCH_BYTES_FRACTION
    batch: list[dict[str, Any]] = []
    size = 0
    for record in records:
        record_size = len(wire.encode(record))
        if batch and (len(batch) >= BATCH or size + record_size > limit):
            yield batch
            batch, size = [], 0
        batch.append(record)
        size += record_size
    if batch:
        yield batch


# -------------------------------------------------------------------- runners


def _payload_field(payload: Mapping[str, Any], name: str) -> str | None:
    value = payload.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidInput(f"hook input: {name!r} must be a string")
    return value


def parse_payload(raw: str) -> dict[str, Any]:
    try:
        payload = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise InvalidInput(f"hook input is not JSON ({exc}); Claude Code sends a JSON object on stdin") from None
    if not isinstance(payload, dict):
        raise InvalidInput("hook input must be a JSON object")
    return payload


def project_field(payload: Mapping[str, Any]) -> str | None:
    """The project of the hook input's ``cwd`` (its git root, else the
    directory; ``project.project_of``), None when Claude Code sent no cwd."""
    cwd = _payload_field(payload, "cwd")
    return project_of(cwd) if cwd else None


def session_start(backend: Any, payload: Mapping[str, Any], budget_tokens: int) -> dict[str, Any]:
    return backend.call("session_start", {
        "session_id": _payload_field(payload, "session_id"), "budget_tokens": budget_tokens,
        "project": project_field(payload),
    })


def _cursor_path(state_dir: Path, transcript: Path, session_id: str | None) -> Path:
    key = hashlib.sha256(f"{session_id}\0{transcript}".encode()).hexdigest()[:24]
    return state_dir / f"stop-{key}.json"


def _read_cursor(path: Path, transcript: Path) -> int:
    try:
        state = json.loads(path.read_text("utf-8"))
        offset = int(state["offset"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0
    # A transcript shorter than the cursor was rewritten: start again (capture skips repeats).
    return offset if 0 <= offset <= transcript.stat().st_size else 0


def _write_cursor(path: Path, transcript: Path, offset: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # No fsync: a cursor lost to a power cut only makes the next run send
    # turns again, which capture skips (same session, text and time).
    write_atomic(path, json.dumps({"transcript": str(transcript), "offset": offset}), fsync=False)


def capture_transcript(backend: Any, payload: Mapping[str, Any], state_dir: Path) -> dict[str, int]:
    """Capture the turns the Stop hook has not seen yet; returns counts."""
    session_id = _payload_field(payload, "session_id")
    raw_path = _payload_field(payload, "transcript_path")
    if not raw_path:
        raise InvalidInput("hook input has no 'transcript_path'; is this the Stop hook of Claude Code?")
    transcript = Path(raw_path).expanduser()
    if not transcript.is_file():
        raise InvalidInput(f"transcript {transcript} does not exist")
    cursor = _cursor_path(state_dir, transcript, session_id)
    turns, end = read_turns(transcript, _read_cursor(cursor, transcript))
    records = list(_records(turns, session_id, project_field(payload)))
    counts = {"turns": len(turns), "inserted": 0, "reinforced": 0, "skipped": 0}
    for batch in _batches(records):
        result = backend.call("memory_import", {"records": batch})
        for status in ("inserted", "reinforced", "skipped"):
            counts[status] += result[status]
    # Only after every batch is stored: a failed run is simply run again.
    _write_cursor(cursor, transcript, end)
    return counts

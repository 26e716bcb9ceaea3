"""The assistants iai-mcp hooks into, and what differs between them.

Claude Code and OpenAI Codex CLI both document command hooks in the same
shape (``{"hooks": {Event: [{"matcher", "hooks": [{"type": "command",
"command", "timeout"}]}]}}``), both hand the hook a JSON object on stdin with
``session_id`` and ``transcript_path``, and both keep each session as an
append-only JSONL file. Codex was chosen over Gemini CLI as the second host
for that reason: its rollout files (``~/.codex/sessions/YYYY/MM/DD/
rollout-<time>-<uuid>.jsonl``) are JSON lines appended as the session goes,
so the byte cursors of the Claude Code hook work unchanged, while Gemini CLI
rewrites one JSON document per chat.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from iai_mcp.hooks import claude_code, codex
from iai_mcp.hooks.transcript import Turn

#: Hook event -> the ``iai-mcp hook`` subcommand that serves it (both hosts).
EVENTS = {"SessionStart": "session-start", "Stop": "stop"}

#: Seconds a hook may run before the host cancels it. A cold daemon takes
#: 2-6 s to start and load the model; SessionStart must finish for its pack to
#: reach the session, so it gets room for that and no more.
SESSION_START_TIMEOUT_S = 30
#: The Stop hook runs in the background where the host allows it
#: (Claude Code's ``async``) so no turn waits for capture; the timeout still
#: bounds it where the host enforces one.
STOP_TIMEOUT_S = 120

_UUID_TAIL = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$", re.IGNORECASE)


@dataclass(frozen=True)
class Host:
    name: str
    label: str
    #: Tag every capture from this host carries.
    tag: str
    #: The host's user-level hooks file.
    config_path: Callable[[], Path]
    #: Where the host keeps its transcripts, and the pattern of their names.
    transcripts_root: Callable[[], Path]
    transcript_glob: str
    #: The conversation turn in one transcript entry, or None.
    turn_of: Callable[[Any], Turn | None]
    #: Extra keys of each installed hook entry, per event.
    entry_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Whether SessionStart context goes out as JSON (``additionalContext``)
    #: rather than as plain stdout.
    json_context: bool = False
    #: What else the host needs before it runs installed hooks, if missing.
    missing: Callable[[], list[str]] = list
    #: The working directory a transcript records once for the whole session
    #: (Codex's ``session_meta``), or None: a backfill's project when its
    #: turns carry no ``cwd`` of their own.
    cwd_of: Callable[[Path], str | None] = lambda transcript: None

    def session_of(self, transcript: Path) -> str:
        """A transcript's session id, from its file name (both hosts name the
        file after the session); the hook's payload gives the same id."""
        match = _UUID_TAIL.search(transcript.stem)
        return match.group(1) if match else transcript.stem

    def transcripts(self) -> Iterator[Path]:
        root = self.transcripts_root()
        if root.is_dir():
            yield from sorted(p for p in root.glob(self.transcript_glob) if p.is_file())


def _codex_home() -> Path:
    # Codex reads CODEX_HOME before falling back to ~/.codex.
    return Path(os.environ.get("CODEX_HOME") or Path.home() / ".codex").expanduser()


def _codex_feature_missing() -> list[str]:
    """Codex versions that gate hooks behind ``[features] codex_hooks`` run
    none until it is set; say so rather than report hooks that never run."""
    import tomllib

    path = _codex_home() / "config.toml"
    try:
        config = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        config = {}
    except (OSError, ValueError) as exc:
        return [f"{path} could not be read ({exc})"]
    features = config.get("features")
    if isinstance(features, dict) and features.get("codex_hooks") is True:
        return []
    return [f"{path} does not set [features] codex_hooks = true: Codex versions that need it run no hooks"]


HOSTS: dict[str, Host] = {
    "claude-code": Host(
        name="claude-code",
        label="Claude Code",
        tag="claude-code",
        config_path=lambda: Path.home() / ".claude" / "settings.json",
        transcripts_root=lambda: Path.home() / ".claude" / "projects",
        transcript_glob="**/*.jsonl",
        turn_of=claude_code.turn_of,
        # "async": the hook runs in the background and the turn does not
        # wait for it (Claude Code's hooks reference, "async hooks").
        entry_options={
            "SessionStart": {"timeout": SESSION_START_TIMEOUT_S},
            "Stop": {"timeout": STOP_TIMEOUT_S, "async": True},
        },
    ),
    "codex": Host(
        name="codex",
        label="Codex CLI",
        tag="codex",
        config_path=lambda: _codex_home() / "hooks.json",
        transcripts_root=lambda: _codex_home() / "sessions",
        transcript_glob="**/rollout-*.jsonl",
        turn_of=codex.turn_of,
        cwd_of=codex.cwd_of,
        # Codex documents "timeout" (seconds) but no background option.
        entry_options={
            "SessionStart": {"timeout": SESSION_START_TIMEOUT_S},
            "Stop": {"timeout": STOP_TIMEOUT_S},
        },
        json_context=True,
        missing=_codex_feature_missing,
    ),
}


def host(name: str) -> Host:
    from iai_mcp.errors import InvalidInput

    found = HOSTS.get(name)
    if found is None:
        raise InvalidInput(f"unknown host {name!r}; known: {', '.join(HOSTS)}")
    return found

"""Hooks into assistants: a memory pack when a session starts, and the
finished turns of its transcript captured verbatim when a turn stops.

Hosts (``hosts.HOSTS``): Claude Code and OpenAI Codex CLI. Modules:
``hosts`` (what differs between them), ``claude_code`` and ``codex`` (each
transcript parser), ``transcript`` (reading from a byte offset, records),
``cursors`` (the per-transcript cursors, keyed by a digest of the path, and
when each hook last ran), ``capture`` (the Stop hook and the backfill, one
loop), ``settings`` (install and uninstall in a host's hooks file) and
``status``. Nothing here imports the store: the runners get a backend from
the caller.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from iai_mcp.hooks.capture import capture_transcript as _capture_transcript
from iai_mcp.hooks.capture import capture_transcripts, parse_payload, session_start
from iai_mcp.hooks.cursors import STATE_DIR
from iai_mcp.hooks.hosts import EVENTS, HOSTS, Host, host
from iai_mcp.hooks.settings import (
    NEW_SETTINGS_MODE,
    SettingsChange,
    default_settings_path,
    executable,
    hook_commands,
    install,
    is_ours,
    uninstall,
)
from iai_mcp.hooks.transcript import Turn
from iai_mcp.hooks.transcript import read_turns as _read_turns

CAPTURE_TAG = HOSTS["claude-code"].tag

__all__ = [
    "CAPTURE_TAG", "EVENTS", "HOSTS", "NEW_SETTINGS_MODE", "STATE_DIR", "Host", "SettingsChange", "Turn",
    "capture_transcript", "capture_transcripts", "default_settings_path", "executable", "hook_commands",
    "host", "install", "is_ours", "parse_payload", "read_turns", "session_start", "uninstall",
]


def read_turns(path: Path, offset: int = 0, host_name: str = "claude-code") -> tuple[list[Turn], int]:
    """``transcript.read_turns`` with a host's parser (Claude Code's by default)."""
    return _read_turns(path, offset, host(host_name).turn_of)


def capture_transcript(
    backend: Any, payload: Mapping[str, Any], state_dir: Path, host_name: str = "claude-code"
) -> dict[str, int]:
    """The Stop hook of a host (Claude Code's by default): ``capture.capture_transcript``."""
    return _capture_transcript(backend, payload, state_dir, host(host_name))

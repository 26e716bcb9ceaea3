"""OpenAI Codex CLI's rollout files: which lines are what was said.

A rollout (``~/.codex/sessions/YYYY/MM/DD/rollout-<time>-<uuid>.jsonl``)
holds two interleaved logs, every line ``{"timestamp", "type", "payload"}``:
``response_item`` is what the model was sent, which includes the
instructions and environment context Codex injects as "user" messages;
``event_msg`` is what the terminal shows, where ``user_message`` is what the
person typed and ``agent_message`` what the agent answered. Only those two
are captured; reasoning, tool calls and their output, token counts and
turn context are not conversation.

Some Codex versions also mirror the injected context into ``user_message``
events, telling them apart by ``kind`` (``plain`` for the person's words,
``user_instructions`` / ``environment_context`` for what Codex added;
openai/codex#3127). A ``user_message`` is kept only when ``kind`` is absent
or ``plain``, and never when its text is one of those wrapped blocks
(``<environment_context>...``, ``<user_instructions>...``): older rollouts
have no ``kind`` to tell.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from iai_mcp.hooks.transcript import Turn, valid_ts

_ROLES = {"user_message": "user", "agent_message": "assistant"}
#: The ``kind`` of a user_message the person typed.
_PLAIN = "plain"
#: Context Codex injects, wrapped whole in one of these tags.
_INJECTED = re.compile(r"\s*<(environment_context|user_instructions)>.*</\1>\s*", re.DOTALL)


def turn_of(entry: Any) -> Turn | None:
    """The conversation turn in one rollout line, or None."""
    if not isinstance(entry, dict) or entry.get("type") != "event_msg":
        return None
    payload = entry.get("payload")
    if not isinstance(payload, dict):
        return None
    role = _ROLES.get(payload.get("type"))  # type: ignore[arg-type]
    text = payload.get("message")
    if role is None or not isinstance(text, str) or not text.strip():
        return None
    if role == "user" and ((payload.get("kind") or _PLAIN) != _PLAIN or _INJECTED.fullmatch(text)):
        return None
    return Turn(text, role, valid_ts(entry.get("timestamp")))


def cwd_of(transcript: Path) -> str | None:
    """The ``cwd`` of a rollout's ``session_meta`` line (its first line), or None."""
    try:
        with open(transcript, "rb") as fh:
            first = fh.readline(1 << 20)
        entry = json.loads(first)
    except (OSError, ValueError):
        return None
    payload = entry.get("payload") if isinstance(entry, dict) and entry.get("type") == "session_meta" else None
    cwd = payload.get("cwd") if isinstance(payload, dict) else None
    return cwd if isinstance(cwd, str) and cwd else None

"""OpenAI Codex CLI's rollout files: which lines are what was said.

A rollout (``~/.codex/sessions/YYYY/MM/DD/rollout-<time>-<uuid>.jsonl``)
holds two interleaved logs, every line ``{"timestamp", "type", "payload"}``:
``response_item`` is what the model was sent, which includes the
instructions and environment context Codex injects as "user" messages;
``event_msg`` is what the terminal shows, where ``user_message`` is what the
person typed and ``agent_message`` what the agent answered. Only those two
are captured; reasoning, tool calls and their output, token counts and
turn context are not conversation.
"""
from __future__ import annotations

from typing import Any

from iai_mcp.hooks.transcript import Turn, valid_ts

_ROLES = {"user_message": "user", "agent_message": "assistant"}


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
    return Turn(text, role, valid_ts(entry.get("timestamp")))

"""Claude.ai's data export: ``conversations.json``, a list of conversations
``{"uuid", "name", "created_at", "chat_messages": [...]}``, each message
``{"uuid", "sender": "human" | "assistant", "text", "content": [{"type",
"text"}], "created_at"}`` with ISO-8601 times.

One memory per message with text: the conversation's uuid is its session
id, ``human`` becomes the ``user`` role, the message's time is kept. A
message's ``text`` is used; when it is empty, its text content blocks
joined (tool calls and attachments are left out).
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from iai_mcp.errors import InvalidInput
from iai_mcp.importers import Item
from iai_mcp.importers.source import NOTHING, conversations, iso_time, need

ROLES = {"human": "user", "assistant": "assistant"}


def _text(message: dict[str, Any]) -> str:
    text = message.get("text")
    if isinstance(text, str) and text.strip():
        return text
    blocks = message.get("content")
    if not isinstance(blocks, list):
        return ""
    return "\n\n".join(b["text"] for b in blocks
                       if isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str))


def read(path: Path) -> Iterator[Item]:
    for where, conversation in conversations(path, "Claude.ai"):
        session = need(conversation, "uuid", str, where)
        where = f"{where} ({session})"
        for j, message in enumerate(need(conversation, "chat_messages", list, where)):
            at = f"{where}, message {j}"
            sender = need(message, "sender", str, at)
            if sender not in ROLES:
                raise InvalidInput(f"{at}: unknown sender {sender!r} (expected 'human' or 'assistant'){NOTHING}")
            text = _text(message)
            if not text.strip():
                continue  # an attachment or tool call only
            key = message.get("uuid") if isinstance(message.get("uuid"), str) else f"{session}:{j}"
            yield Item(at, {
                "id": f"claude-ai:{key}", "text": text, "role": ROLES[sender], "session_id": session,
                "ts": iso_time(message.get("created_at"), f"{at}.created_at"), "tags": ["claude-ai"],
            })

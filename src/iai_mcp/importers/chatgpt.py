"""ChatGPT's data export: ``conversations.json``, a list of conversations,
each ``{"id" (or "conversation_id"), "title", "create_time", "current_node",
"mapping"}``; ``mapping`` is a tree of nodes ``{"id", "parent", "children",
"message"}``, a message ``{"id", "author": {"role"}, "create_time",
"content": {"content_type", "parts"}}`` with times in Unix seconds.

One memory per message of the thread the person saw (``current_node``
back to the root; edited-away branches are left out), said by the user or
the assistant, with text: the conversation's id is its session id, the
message's role and time are kept. System and tool messages, and content
that is not text (images, code runs, browsing), are left out.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from iai_mcp.errors import InvalidInput
from iai_mcp.importers import Item
from iai_mcp.importers.source import NOTHING, conversations, iso_time, need

ROLES = ("user", "assistant")
TEXT_CONTENT = ("text", "multimodal_text")


def _thread(mapping: dict[str, Any], current: Any, where: str) -> list[dict[str, Any]]:
    """The nodes from the root to ``current``, in order."""
    if not isinstance(current, str) or current not in mapping:
        # No current node: every node, oldest first (an export of one branch).
        nodes = [n for n in mapping.values() if isinstance(n, dict)]
        return sorted(nodes, key=lambda n: ((n.get("message") or {}).get("create_time") or 0))
    path, seen, node_id = [], set(), current
    while isinstance(node_id, str) and node_id in mapping:
        if node_id in seen:
            raise InvalidInput(f"{where}: the message tree loops at node {node_id!r}{NOTHING}")
        seen.add(node_id)
        node = need(mapping, node_id, dict, f"{where}.mapping")
        path.append(node)
        node_id = node.get("parent")
    return path[::-1]


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if not isinstance(content, dict) or content.get("content_type") not in TEXT_CONTENT:
        return ""
    parts = content.get("parts")
    return "\n".join(part for part in parts if isinstance(part, str)) if isinstance(parts, list) else ""


def read(path: Path) -> Iterator[Item]:
    for where, conversation in conversations(path, "ChatGPT"):
        mapping = need(conversation, "mapping", dict, where)
        session = conversation.get("conversation_id") or conversation.get("id")
        if not isinstance(session, str):
            raise InvalidInput(f"{where}: 'id' must be a string{NOTHING}")
        where = f"{where} ({session})"
        started = iso_time(conversation.get("create_time"), f"{where}.create_time")
        for node in _thread(mapping, conversation.get("current_node"), where):
            message = node.get("message")
            if not isinstance(message, dict):
                continue  # the synthetic root
            author = message.get("author")
            role = author.get("role") if isinstance(author, dict) else None
            text = _text(message)
            hidden = (message.get("metadata") or {}).get("is_visually_hidden_from_conversation")
            if role not in ROLES or not text.strip() or hidden:
                continue
            message_id = message.get("id") or node.get("id")
            at = f"{where}, message {message_id}"
            yield Item(at, {
                "id": f"chatgpt:{message_id}", "text": text, "role": role, "session_id": session,
                "ts": iso_time(message.get("create_time"), f"{at}.create_time") or started,
                "tags": ["chatgpt"],
            })

"""mcp-memory-service's JSON export (its ``export_memories.py``): one object
``{"export_metadata": {...}, "memories": [...]}``, each memory ``{"content",
"content_hash", "tags", "created_at", "updated_at", "memory_type",
"metadata"}`` with times as Unix seconds (or ISO strings).

Each memory keeps its text, tags (plus ``type:<memory_type>``) and times;
its ``content_hash`` gives its id, so a second import lands on the same records.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from iai_mcp.errors import InvalidInput
from iai_mcp.importers import Item
from iai_mcp.importers.source import (
    NOTHING,
    iso_time,
    member_items,
    need,
    parse_json,
    read_text,
)


def _tags(value: object, where: str) -> list[str]:
    # Older versions stored tags as one comma-separated string.
    if value is None:
        return []
    if isinstance(value, str):
        return [tag.strip() for tag in value.split(",") if tag.strip()]
    if isinstance(value, list) and all(isinstance(tag, str) for tag in value):
        return [tag for tag in value if tag.strip()]
    raise InvalidInput(f"{where}: 'tags' must be a list of strings{NOTHING}")


def read(path: Path) -> Iterator[Item]:
    name = str(path)
    text = read_text(path)
    need(parse_json(text, name), "memories", list, f"{name} (an mcp-memory-service export)")
    # Each memory named by the line it starts on, as the chat exports are.
    for i, (line, memory) in enumerate(member_items(text, name, "memories", "a list of memories")):
        where = f"{name}, line {line}, memories[{i}]"
        content = need(memory, "content", str, where)
        tags = _tags(memory.get("tags"), where)
        if isinstance(memory.get("memory_type"), str) and memory["memory_type"]:
            tags.append(f"type:{memory['memory_type']}")
        created = iso_time(memory.get("created_at_iso") or memory.get("created_at"), f"{where}.created_at")
        updated = iso_time(memory.get("updated_at_iso") or memory.get("updated_at"), f"{where}.updated_at")
        key = memory.get("content_hash") if isinstance(memory.get("content_hash"), str) else content
        yield Item(where, {
            "id": f"mcp-memory-service:{key}", "text": content, "tags": list(dict.fromkeys(tags)) or None,
            "tier": "semantic", "role": "note", "ts": created, "created_at": created, "updated_at": updated,
        })

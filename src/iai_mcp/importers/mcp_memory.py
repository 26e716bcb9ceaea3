"""The official MCP memory server's ``memory.json`` (``@modelcontextprotocol/
server-memory``): JSON lines, each an entity ``{"type": "entity", "name",
"entityType", "observations": [...]}`` or a relation ``{"type": "relation",
"from", "to", "relationType"}``.

Each observation becomes a memory of its own, tagged ``entity:<name>`` and
``type:<entityType>``; each relation a memory "<from> <relationType> <to>"
tagged with both entities and ``relation``. The file records no times, so
every memory is dated by the file's modification time (the latest it can
have been said), the same on each import: importing the file again skips
what the first import stored.
"""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

from iai_mcp.errors import InvalidInput
from iai_mcp.importers import Item
from iai_mcp.importers.source import NOTHING, json_lines, need, read_text


def read(path: Path) -> Iterator[Item]:
    name = str(path)
    ts = datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).isoformat()
    for number, value in json_lines(read_text(path), name):
        where = f"{name}, line {number}"
        kind = need(value, "type", str, where)
        if kind == "entity":
            entity = need(value, "name", str, where)
            entity_type = need(value, "entityType", str, where)
            observations = need(value, "observations", list, where)
            tags = [f"entity:{entity}", f"type:{entity_type}"]
            for i, observation in enumerate(observations):
                if not isinstance(observation, str):
                    raise InvalidInput(f"{where}: observations[{i}] must be a string, "
                                       f"got {type(observation).__name__}{NOTHING}")
                yield Item(f"{where}, observations[{i}]", {
                    "id": f"mcp-memory:{entity}:{observation}", "text": observation, "tags": tags,
                    "tier": "semantic", "role": "note", "ts": ts,
                })
        elif kind == "relation":
            source, target = need(value, "from", str, where), need(value, "to", str, where)
            relation = need(value, "relationType", str, where)
            text = f"{source} {relation} {target}"
            yield Item(where, {
                "id": f"mcp-memory:relation:{text}", "text": text, "tier": "semantic", "role": "note",
                "tags": [f"entity:{source}", f"entity:{target}", "relation"], "ts": ts,
            })
        else:
            raise InvalidInput(f"{where}: unknown type {kind!r} (expected 'entity' or 'relation'); "
                               f"is this the MCP memory server's memory.json?{NOTHING}")

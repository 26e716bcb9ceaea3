"""Importers: memories from where people keep them now, as ``memory_import``
records.

Each format is a small adapter that reads a file (or folder) and yields
``Item``s: one record for ``memory_import`` and where it came from, so an
error names the file and the line (or, inside a single JSON document, the
element). Pure data: no store, no model, nothing written; the CLI checks
every record against the import contract (``check``) before it sends the
first batch, so a damaged file imports nothing.

Formats (``FORMATS``):

``iai-mcp``
    this program's own export (``iai-mcp export``): JSON lines, kept whole.
``mcp-memory``
    the official MCP memory server's ``memory.json`` (``mcp_memory``).
``mcp-memory-service``
    mcp-memory-service's JSON export (``mcp_memory_service``).
``basic-memory``
    a basic-memory folder of Markdown notes (``basic_memory``).
``chatgpt``
    ChatGPT's data export, ``conversations.json`` (``chatgpt``).
``claude-ai``
    Claude.ai's data export, ``conversations.json`` (``claude_ai``).

A foreign record gets an ``id`` derived from what identifies it in its
source (``transfer.imported_id`` maps it to a UUID), so the same file
imported twice lands on the same records.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Item:
    """One memory to import: a ``memory_import`` record and where it came from."""

    where: str
    record: dict[str, Any]


Reader = Callable[[Path], Iterator[Item]]


def _readers() -> dict[str, Reader]:
    from iai_mcp.importers import basic_memory, chatgpt, claude_ai, mcp_memory, mcp_memory_service, native

    return {
        "iai-mcp": native.read,
        "mcp-memory": mcp_memory.read,
        "mcp-memory-service": mcp_memory_service.read,
        "basic-memory": basic_memory.read,
        "chatgpt": chatgpt.read,
        "claude-ai": claude_ai.read,
    }


#: The names ``import --from`` takes, in the order ``--help`` lists them.
FORMATS: tuple[str, ...] = (
    "iai-mcp", "mcp-memory", "mcp-memory-service", "basic-memory", "chatgpt", "claude-ai",
)


def read(fmt: str, path: Path) -> list[Item]:
    """Every item of ``path`` in format ``fmt``; ``InvalidInput`` naming the
    line (or element) of the first problem, before anything is imported."""
    from iai_mcp.errors import InvalidInput

    reader = _readers().get(fmt)
    if reader is None:
        raise InvalidInput(f"unknown import format {fmt!r}; known: {', '.join(FORMATS)}")
    items = list(reader(path))
    return items if fmt == NATIVE else fold_repeats(items)


#: This program's own format: its records are kept whole, never folded.
NATIVE = "iai-mcp"


def fold_repeats(items: list[Item]) -> list[Item]:
    """One item per distinct text, the first said, counting the later ones as
    its ``reinforcements`` (what capturing them one by one would do).

    Without this, a text said twice ("ok, go on") would be inserted once and
    then reinforced by its second occurrence on every import of the same
    file, so importing again (or resuming) would change the count each time.
    Folded here, the file holds one record per text and a second import skips it.
    """
    first: dict[str, int] = {}
    kept: list[Item] = []
    repeats: dict[int, int] = {}
    for item in items:
        text = item.record.get("text")
        if isinstance(text, str) and text in first:
            repeats[first[text]] = repeats.get(first[text], 0) + 1
            continue
        if isinstance(text, str):
            first[text] = len(kept)
        kept.append(item)
    for index, count in repeats.items():
        item = kept[index]
        kept[index] = Item(item.where, {**item.record, "reinforcements": count})
    return kept


def check(items: list[Item]) -> None:
    """Check each record against the import contract (``contract.ImportRecord``);
    the first bad one is an ``InvalidInput`` that names its line."""
    from iai_mcp.core.contract import ImportRecord
    from iai_mcp.core.params import parse
    from iai_mcp.errors import InvalidInput
    from iai_mcp.importers.source import NOTHING

    for item in items:
        try:
            parse(ImportRecord, item.where, item.record)
        except InvalidInput as exc:
            raise type(exc)(f"{exc}{NOTHING}") from None

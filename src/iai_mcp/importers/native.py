"""This program's own export: JSON lines, one record per line, imported whole
(ids, times, reinforcements, provenance, lifecycle: ``core.transfer``)."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from iai_mcp.errors import InvalidInput
from iai_mcp.importers import Item
from iai_mcp.importers.source import NOTHING, json_lines, read_text


def items(text: str, name: str) -> Iterator[Item]:
    for number, value in json_lines(text, name):
        if not isinstance(value, dict):
            raise InvalidInput(f"{name}, line {number}: a record must be a JSON object, "
                               f"got {type(value).__name__}{NOTHING}")
        yield Item(f"{name}, line {number}", value)


def read(path: Path) -> Iterator[Item]:
    return items(read_text(path), str(path))

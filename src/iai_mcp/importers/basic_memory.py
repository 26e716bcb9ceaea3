"""A basic-memory folder: Markdown notes, each with YAML frontmatter
(``title``, ``type``, ``permalink``, ``tags``) above its body.

One memory per note: the body verbatim (the title when the body is empty),
tagged with the frontmatter's tags (a list, or one string split on commas
and spaces, a leading ``#`` dropped). Dated by the frontmatter's ``created``
(or ``date``) when it has one, else by the file's modification time; its
path in the folder and its text give its id, so importing the folder again
skips every note that did not change, even when its file was touched. Hidden folders
(``.git``, ``.obsidian``) are left out.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from iai_mcp.errors import InvalidInput
from iai_mcp.importers import Item
from iai_mcp.importers.source import (
    MAX_DEPTH,
    NOTHING,
    check_depth,
    iso_time,
    read_text,
)

FENCE = "---"


def _frontmatter(text: str, where: str) -> tuple[dict[str, Any], str]:
    """(frontmatter, body) of a note; a note without frontmatter has {}."""
    import yaml

    lines = text.split("\n")
    if not lines or lines[0].rstrip() != FENCE:
        return {}, text
    for end in range(1, len(lines)):
        if lines[end].rstrip() == FENCE:
            break
    else:
        raise InvalidInput(f"{where}, line 1: frontmatter opened with '---' is never closed{NOTHING}")
    try:
        meta = yaml.safe_load("\n".join(lines[1:end])) or {}
    except RecursionError:  # PyYAML composes nested nodes recursively
        raise InvalidInput(f"{where}, frontmatter: nested too deeply (more than {MAX_DEPTH} levels){NOTHING}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 2}" if mark is not None else "frontmatter"
        problem = getattr(exc, "problem", None) or "not YAML"
        raise InvalidInput(f"{where}, {line}: frontmatter is not valid YAML ({problem}){NOTHING}") from None
    if not isinstance(meta, dict):
        raise InvalidInput(f"{where}, line 2: frontmatter must be a mapping of keys{NOTHING}")
    check_depth(meta, where)
    return meta, "\n".join(lines[end + 1:])


def _tags(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = value.replace(",", " ").split()
    if not isinstance(value, list):
        raise InvalidInput(f"{where}: frontmatter 'tags' must be a list or a string{NOTHING}")
    return list(dict.fromkeys(str(tag).strip().lstrip("#") for tag in value if str(tag).strip().lstrip("#")))


def _time(value: Any, where: str) -> str | None:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).isoformat()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=timezone.utc).isoformat()
    return iso_time(value, where)


def _notes(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.md")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read(path: Path) -> Iterator[Item]:
    if not path.is_dir():
        raise InvalidInput(f"{path}: basic-memory imports a folder of Markdown notes{NOTHING}")
    for note in _notes(path):
        where = str(note)
        meta, body = _frontmatter(read_text(note), where)
        text = body.strip("\n") if body.strip() else str(meta.get("title") or "").strip()
        if not text:
            raise InvalidInput(f"{where}: the note has neither a body nor a title{NOTHING}")
        mtime = datetime.fromtimestamp(note.stat().st_mtime, timezone.utc).isoformat()
        created = _time(meta.get("created", meta.get("date")), f"{where}: frontmatter 'created'") or mtime
        # The path and the text: a note changed since the last import is a new
        # memory, an unchanged one (however often its file was touched) is skipped.
        key = f"{note.relative_to(path).as_posix()}:{hashlib.sha256(text.encode('utf-8')).hexdigest()}"
        yield Item(where, {
            "id": f"basic-memory:{key}", "text": text, "tags": _tags(meta.get("tags"), where) or None,
            "tier": "semantic", "role": "note", "ts": created, "created_at": created,
            "updated_at": max(created, mtime),
        })

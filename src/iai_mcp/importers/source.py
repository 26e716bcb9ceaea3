"""Reading a file to import: bytes to text to JSON, every failure an
``InvalidInput`` that names the file and the line.

A damaged export must never end in a traceback: invalid UTF-8 names the
line it is on, JSON a parser refuses names its line and column, and JSON
nested deeper than any real export (``MAX_DEPTH``) is refused before the
recursive parts of the pipeline (``json.dumps`` on the wire, pydantic)
could overflow the stack on it.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from iai_mcp.errors import InvalidInput

#: Deepest nesting an imported value may have. The deepest real format here
#: (ChatGPT's message metadata) nests about 8 levels; 64 leaves room and
#: stays far below Python's recursion limit.
MAX_DEPTH = 64

NOTHING = "; nothing was imported"


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def decode(data: bytes, name: str) -> str:
    """``data`` as UTF-8 text (a leading byte-order mark dropped)."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{name}, line {_line_of(data, exc.start)}: not UTF-8 (byte 0x{data[exc.start]:02x} at "
            f"offset {exc.start}); save the file as UTF-8{NOTHING}"
        ) from None


def read_text(path: Path) -> str:
    return decode(path.read_bytes(), str(path))


def check_depth(value: Any, where: str) -> None:
    """InvalidInput when ``value`` nests deeper than ``MAX_DEPTH`` (walked
    without recursion, so the check itself cannot overflow)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidInput(f"{where}: nested too deeply (more than {MAX_DEPTH} levels){NOTHING}")
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def parse_json(text: str, where: str, line: int = 1) -> Any:
    """One JSON value; ``line`` is the file line ``text`` starts on."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise InvalidInput(f"{where}: nested too deeply (more than {MAX_DEPTH} levels){NOTHING}") from None
    except json.JSONDecodeError as exc:
        name = where.split(", line")[0]
        raise InvalidInput(f"{name}, line {line + exc.lineno - 1}: not JSON ({exc.msg} at column "
                           f"{exc.colno}){NOTHING}") from None
    check_depth(value, where)
    return value


def json_lines(text: str, name: str) -> Iterator[tuple[int, Any]]:
    """(line number, value) for each non-blank line of a JSON-lines text.

    Split on newlines only: ``str.splitlines`` also splits on U+2028, U+0085
    and the like, which an export (``ensure_ascii=False``) writes raw inside
    a memory's text, and would cut a valid record in two."""
    for number, line in enumerate(text.split("\n"), 1):
        if line.strip():
            yield number, parse_json(line, f"{name}, line {number}", number)


def iso_time(value: Any, where: str) -> str | None:
    """An ISO-8601 time from an ISO string or a Unix time in seconds (what
    the formats here write); None when absent; InvalidInput when unreadable."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidInput(f"{where}: {value!r} is not a time{NOTHING}")
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, timezone.utc).isoformat()
        except (OverflowError, OSError, ValueError):
            raise InvalidInput(f"{where}: {value!r} is not a Unix time{NOTHING}") from None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
        except ValueError:
            raise InvalidInput(f"{where}: {value[:40]!r} is not an ISO-8601 time{NOTHING}") from None
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).isoformat()
    raise InvalidInput(f"{where}: a time must be a string or a number, got {type(value).__name__}{NOTHING}")


def need(mapping: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``mapping[key]``, which must be of ``kind``; InvalidInput otherwise."""
    if not isinstance(mapping, dict):
        raise InvalidInput(f"{where}: expected an object, got {type(mapping).__name__}{NOTHING}")
    value = mapping.get(key)
    if not isinstance(value, kind):
        names = " or ".join(t.__name__ for t in (kind if isinstance(kind, tuple) else (kind,)))
        got = "nothing" if value is None else type(value).__name__
        raise InvalidInput(f"{where}: {key!r} must be {names}, got {got}{NOTHING}")
    return value


_WS = " \t\r\n"


def _skip_ws(text: str, at: int) -> int:
    while at < len(text) and text[at] in _WS:
        at += 1
    return at


def _refuse(text: str, name: str, at: int, problem: str) -> InvalidInput:
    line = text.count("\n", 0, at) + 1
    return InvalidInput(f"{name}, line {line}: not JSON ({problem} at column "
                        f"{at - text.rfind(chr(10), 0, at)}){NOTHING}")


def _elements(text: str, name: str, at: int, what: str, end: list[int]) -> Iterator[tuple[int, Any]]:
    """(line it starts on, value) for each element of the JSON array at
    offset ``at``; ``end`` gets the offset just past its ``]``."""
    decoder = json.JSONDecoder()
    at = _skip_ws(text, at)
    if not text.startswith("[", at):
        raise InvalidInput(f"{name}: expected {what}{NOTHING}")
    at += 1
    first = True
    while True:
        at = _skip_ws(text, at)
        if text.startswith("]", at):
            break
        if not first:
            if not text.startswith(",", at):
                raise _refuse(text, name, at, "expected ',' or ']'")
            at = _skip_ws(text, at + 1)
        first = False
        line = text.count("\n", 0, at) + 1
        try:
            value, at = decoder.raw_decode(text, at)
        except RecursionError:
            raise InvalidInput(f"{name}, line {line}: nested too deeply (more than {MAX_DEPTH} levels)"
                               f"{NOTHING}") from None
        except json.JSONDecodeError as exc:
            raise _refuse(text, name, exc.pos, exc.msg) from None
        check_depth(value, f"{name}, line {line}")
        yield line, value
    end.append(at + 1)


def _array_items(text: str, name: str) -> Iterator[tuple[int, Any]]:
    """(line it starts on, value) for each element of a top-level JSON
    array: a chat export is one array, often on one line per element, and an
    error in element 3000 names the line it starts on."""
    end: list[int] = []
    yield from _elements(text, name, 0, "a list of conversations", end)
    rest = _skip_ws(text, end[-1])
    if rest < len(text):
        raise _refuse(text, name, rest, "extra data after the list")


def member_items(text: str, name: str, key: str, what: str) -> Iterator[tuple[int, Any]]:
    """(line it starts on, value) for each element of the array that member
    ``key`` of the top-level object holds (the last one, as ``json.loads``
    keeps it); ``text`` was parsed already (``parse_json``), so it is valid JSON."""
    decoder = json.JSONDecoder()
    at, found = _skip_ws(text, 0) + 1, None  # past the object's "{"
    while not text.startswith("}", at := _skip_ws(text, at)):
        member, at = decoder.raw_decode(text, at)
        at = _skip_ws(text, _skip_ws(text, at) + 1)  # past the ":"
        if member == key:
            found = at
        _, at = decoder.raw_decode(text, at)
        at = _skip_ws(text, at)
        at += text.startswith(",", at)
    yield from _elements(text, name, found if found is not None else len(text), what, [])


def conversations(path: Path, product: str) -> Iterator[tuple[str, Any]]:
    """(where, conversation) for each conversation of a chat product's
    ``conversations.json`` (a JSON list, one object per conversation);
    ``where`` names the file, the line the conversation starts on and its index."""
    name = str(path)
    text = read_text(path)
    if not text.lstrip(" \t\r\n").startswith("["):
        raise InvalidInput(f"{name}: expected a list of conversations ({product}'s conversations.json){NOTHING}")
    for index, (line, conversation) in enumerate(_array_items(text, name)):
        yield f"{name}, line {line}, conversation {index}", conversation

"""A process's resident memory by kind, read from ``/proc/self/smaps``,
Python's object allocator and glibc: what ``VmRSS`` is made of.

- ``libraries``: file-backed pages (the code and data of shared libraries
  the process has touched: ``_lancedb``'s code is most of what an open adds).
  The kernel can drop them under pressure, but ``VmRSS`` counts them.
- ``python objects``: pymalloc's arenas (objects of up to 512 bytes: rows,
  ids, most texts, datetimes, small ints).
- ``malloc heap``: glibc's main heap and its per-thread arenas (larger
  objects, dict tables; what freed memory glibc keeps is here too).
- ``other anonymous``: the rest, mostly blocks malloc maps on their own
  (numpy arrays over 128 KB: the vectors' codes) and thread stacks.

Linux and CPython only: ``None`` elsewhere. Thread arenas are told apart by
their alignment (glibc maps each at a multiple of 64 MB on 64-bit).
"""
from __future__ import annotations

import ctypes
import os
import re
import sys
import tempfile
from pathlib import Path

_ARENA_ALIGN = 64 << 20
_MAPPING = re.compile(r"^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$")


def pymalloc_arena_bytes() -> int:
    """Bytes of the arenas pymalloc holds now (``sys._debugmallocstats``,
    which writes to the C stderr: read back from a temporary file)."""
    with tempfile.TemporaryFile() as out:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(out.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        text = out.read().decode("utf-8", "replace")
    current = re.search(r"# arenas allocated current\s*=\s*([\d,]+)", text)
    size = re.search(r"arenas \* (\d+) bytes/arena", text)
    return int(current.group(1).replace(",", "")) * int(size.group(1)) if current and size else 0


def malloc_in_use() -> int | None:
    """Bytes glibc's arenas hand out now (``mallinfo2().uordblks``); None off glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        info = libc.mallinfo2
    except (OSError, AttributeError):
        return None

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]

    info.restype = MallInfo2
    return int(info().uordblks)


def resident_kinds() -> dict[str, int] | None:
    """``{kind: resident bytes}`` (see the module docstring), or None when
    ``/proc/self/smaps`` cannot be read."""
    smaps = Path("/proc/self/smaps")
    if not smaps.exists():
        return None
    kinds = {"libraries": 0, "python objects": 0, "malloc heap": 0, "other anonymous": 0}
    anonymous = 0
    region: tuple[int, int, str] | None = None
    rss = 0
    for line in smaps.read_text().splitlines():
        head = _MAPPING.match(line)
        if head:
            region = (int(head.group(1), 16), int(head.group(2), 16), head.group(3))
            continue
        key, _, value = line.partition(":")
        if region is None or key not in ("Rss", "Anonymous"):
            continue
        size = int(value.split()[0]) << 10
        lo, hi, name = region
        if key == "Rss":
            rss = size
            continue
        # "Anonymous" follows "Rss" for each mapping.
        if name and not name.startswith("["):
            kinds["libraries"] += rss - size
            anonymous += size
        elif name == "[heap]" or (not name and lo % _ARENA_ALIGN == 0 and hi - lo <= _ARENA_ALIGN):
            kinds["malloc heap"] += rss
        else:
            anonymous += rss
    kinds["python objects"] = min(pymalloc_arena_bytes(), anonymous)
    kinds["other anonymous"] = anonymous - kinds["python objects"]
    return kinds

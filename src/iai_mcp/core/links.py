"""Supersede links as a graph: finding a cycle before one is written.

A memory replaced by a newer one points at it (``superseded_by``); following
the links must always end at a current memory. A cycle (A replaced by B, B
replaced by A) would leave every memory in it superseded, so recall would
return none of them. Captures check their own links (``capture.supersede_plan``);
imports bring links in bulk, so the whole batch, and the links already in
the store that it leads into, are walked here before anything is inserted.

Standard library only: the CLI checks a whole export file with it before it
sends the first batch.
"""
from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def find_cycle(starts: Iterable[K], next_of: Callable[[K], K | None]) -> list[K] | None:
    """The first cycle reachable from ``starts`` by following ``next_of``
    (None: the chain ends), as the list of its members in link order; None
    when there is none. Each node is walked once: O(nodes) in all."""
    done: set[K] = set()
    for start in starts:
        path: list[K] = []
        on_path: dict[K, int] = {}
        node: K | None = start
        while node is not None and node not in done:
            if node in on_path:
                return path[on_path[node]:]
            on_path[node] = len(path)
            path.append(node)
            node = next_of(node)
        done.update(path)
    return None


def cycle_in_export(records: Iterable[object]) -> list[str] | None:
    """A cycle among the ``superseded_by`` links of exported records (plain
    dicts, as ``memory_export`` writes them), by exported id; None if none."""
    links: dict[str, str] = {}
    for record in records:
        if isinstance(record, dict) and isinstance(record.get("id"), str) and isinstance(
                record.get("superseded_by"), str) and record["superseded_by"] != record["id"]:
            links[record["id"]] = record["superseded_by"]
    return find_cycle(list(links), links.get)
